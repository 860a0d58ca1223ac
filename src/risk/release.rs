//! The last look before an order leaves for the venue: a decision taken a moment ago may no longer
//! hold when the executor gets to it (a halt, a breaker, a maintenance window, a backlog after a
//! restart). Pure: the executor supplies the order, the book and the gate as they are now.
//!
//! Rules, applied to every `intent` (and every `unknown` order the venue confirmed it does not
//! have) at send time:
//! - an entry is not sent while the account or its symbol is halted, or a maintenance window
//!   blocks orders: it is dropped (ends `cancelled` with the reason);
//! - while reducing, an entry is sent only if it shrinks the position without flipping it,
//!   counting the working entries on the same side decided before it; otherwise it is dropped;
//! - an entry that would open or grow a position and was decided longer than `max_age` ago is
//!   dropped rather than sent late;
//! - a protective order (stop-loss, take-profit) waits while halted or in maintenance, as when it
//!   is placed, and is sent once trading may go on; it only ever closes, so reducing lets it out
//!   and it never gets too old.

use super::state::TradingState;
use super::{Gate, Role};
use crate::model::Side;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

/// An order about to be sent, and its symbol's book now.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing {
    pub role: Role,
    pub side: Side,
    /// Its unfilled quantity.
    pub quantity: Decimal,
    /// When it was decided.
    pub created_at: DateTime<Utc>,
    /// The symbol's position, signed (long > 0).
    pub position: Decimal,
    /// Unfilled quantity of the other working entries on the same side decided before it.
    pub ahead: Decimal,
}

impl Outgoing {
    /// Whether it only shrinks the position, without flipping it, after the entries ahead of it.
    pub fn reduces(&self) -> bool {
        let against = self.position * self.side.sign() < Decimal::ZERO;
        against && self.quantity <= self.position.abs() - self.ahead
    }
}

/// What to do with an order now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    Send,
    /// Not now; look again later (a protective order while trading is stopped).
    Wait(String),
    /// Never: it ends `cancelled` with this reason (once the venue confirms it has no such order).
    Drop(String),
}

pub fn release(o: &Outgoing, gate: &Gate, max_age: Duration, now: DateTime<Utc>) -> Release {
    let halted = gate
        .state
        .as_ref()
        .filter(|s| s.state == TradingState::Halted);
    if o.role != Role::Entry {
        return match (&gate.maintenance, halted) {
            (Some(why), _) => Release::Wait(why.clone()),
            (None, Some(s)) => Release::Wait(s.describe()),
            (None, None) => Release::Send,
        };
    }
    if let Some(why) = &gate.maintenance {
        return Release::Drop(format!("not sent: {why}"));
    }
    if let Some(s) = halted {
        return Release::Drop(format!("not sent: {}", s.describe()));
    }
    let reduces = o.reduces();
    if let Some(s) = gate.state.as_ref().filter(|_| !reduces) {
        return Release::Drop(format!(
            "not sent: {}; this order would open or grow a position",
            s.describe()
        ));
    }
    let age = now - o.created_at;
    if !reduces && age > max_age {
        return Release::Drop(format!(
            "not sent: decided {} s ago, longer than max_intent_age_secs = {}; an opening order \
             is not sent late",
            age.num_seconds(),
            max_age.num_seconds()
        ));
    }
    Release::Send
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::state::{SetBy, StateEntry};

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn state(state: TradingState) -> Option<StateEntry> {
        Some(StateEntry {
            symbol: None,
            state,
            reason: "exchange incident".into(),
            since: Utc::now(),
            set_by: SetBy::Operator,
        })
    }

    #[test]
    fn what_leaves_when_trading_is_stopped_or_the_order_is_old() {
        let now = Utc::now();
        let max_age = Duration::seconds(120);
        let order = |role, side, quantity: &str, position: &str, ahead: &str, age_secs| Outgoing {
            role,
            side,
            quantity: d(quantity),
            created_at: now - Duration::seconds(age_secs),
            position: d(position),
            ahead: d(ahead),
        };
        let open_buy = order(Role::Entry, Side::Buy, "1", "0", "0", 1);
        let close_sell = order(Role::Entry, Side::Sell, "1", "2", "0", 1);
        let flip_sell = order(Role::Entry, Side::Sell, "3", "2", "0", 1);
        let close_behind_another = order(Role::Entry, Side::Sell, "1", "1", "1", 1);
        let old_open = order(Role::Entry, Side::Buy, "1", "0", "0", 121);
        let old_close = order(Role::Entry, Side::Sell, "1", "2", "0", 600);
        let stop = order(Role::StopLoss, Side::Sell, "2", "2", "0", 900);
        let active = Gate::default();
        let halted = Gate {
            state: state(TradingState::Halted),
            ..Gate::default()
        };
        let reducing = Gate {
            state: state(TradingState::Reducing),
            ..Gate::default()
        };
        let maintenance = Gate {
            maintenance: Some("maintenance window ...".into()),
            ..Gate::default()
        };
        use Release::*;
        type Case<'a> = (&'a str, Outgoing, &'a Gate, fn(&Release) -> bool);
        let cases: Vec<Case> = vec![
            ("active: an opening order", open_buy, &active, |r| {
                *r == Send
            }),
            ("active: a closing order", close_sell, &active, |r| {
                *r == Send
            }),
            (
                "halted: an opening order",
                open_buy,
                &halted,
                |r| matches!(r, Drop(m) if m.contains("halted")),
            ),
            ("halted: even a closing entry", close_sell, &halted, |r| {
                matches!(r, Drop(_))
            }),
            (
                "maintenance: an entry",
                close_sell,
                &maintenance,
                |r| matches!(r, Drop(m) if m.contains("maintenance")),
            ),
            ("reducing: a closing order", close_sell, &reducing, |r| {
                *r == Send
            }),
            (
                "reducing: an opening order",
                open_buy,
                &reducing,
                |r| matches!(r, Drop(m) if m.contains("open or grow")),
            ),
            (
                "reducing: a sell that flips the long",
                flip_sell,
                &reducing,
                |r| matches!(r, Drop(_)),
            ),
            (
                "reducing: a close another close already covers",
                close_behind_another,
                &reducing,
                |r| matches!(r, Drop(_)),
            ),
            (
                "active: an opening order too old",
                old_open,
                &active,
                |r| matches!(r, Drop(m) if m.contains("max_intent_age_secs = 120")),
            ),
            (
                "active: a closing order is never too old",
                old_close,
                &active,
                |r| *r == Send,
            ),
            ("halted: a protective order waits", stop, &halted, |r| {
                matches!(r, Wait(_))
            }),
            (
                "maintenance: a protective order waits",
                stop,
                &maintenance,
                |r| matches!(r, Wait(_)),
            ),
            ("reducing: a protective order goes", stop, &reducing, |r| {
                *r == Send
            }),
            (
                "active: a protective order is never too old",
                stop,
                &active,
                |r| *r == Send,
            ),
        ];
        for (name, o, gate, ok) in cases {
            let got = release(&o, gate, max_age, now);
            assert!(ok(&got), "{name}: {got:?}");
        }
    }
}
