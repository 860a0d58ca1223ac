//! Protective exits: a stop-loss (venue `stop` order) at the signal's support for longs /
//! resistance for shorts, and a take-profit (venue `limit` order) at the other level. Pure.
//!
//! An entry records the levels when it is approved; once it has filled, the supervisor asks
//! [`protective_orders`] for the orders. They only ever close: their side is opposite to the
//! entry, their quantity is at most the entry's fill and at most the open position, and they are
//! refused while halted or in a maintenance window (the supervisor tries again later). Sibling
//! cancellation (one fills, the other is cancelled) and cancellation once the position is gone are
//! the supervisor's; between a fill and that cancel both could trigger on a gap, which only a
//! venue-side OCO would exclude.

use super::sizing::SymbolSpec;
use super::state::TradingState;
use super::{Gate, OrderPlan, Protect, RiskApproved, Role};
use crate::model::{Price, Quantity, Side, Signal, Symbol};
use crate::strategy::Strategy;
use rust_decimal::Decimal;

/// The levels an opening entry carries, from its signal; each only when on the right side of the
/// price.
pub fn levels(
    strategy: &Strategy,
    signal: &Signal,
    side: Side,
    price: Decimal,
    spec: &SymbolSpec,
) -> Protect {
    let (support, resistance) = (signal.technical.support, signal.technical.resistance);
    let long = side == Side::Buy;
    let (stop, target) = if long {
        (support, resistance)
    } else {
        (resistance, support)
    };
    // The stop is rounded away from the price, the target towards it: never a worse fill.
    let stop = stop
        .filter(|s| strategy.exits.stop_loss && if long { *s < price } else { *s > price })
        .and_then(|s| Price::new(spec.round_price(s, long)).ok());
    let target = target
        .filter(|t| strategy.exits.take_profit && if long { *t > price } else { *t < price })
        .and_then(|t| Price::new(spec.round_price(t, !long)).ok());
    Protect { stop, target }
}

/// An entry that has filled and carries protective levels.
#[derive(Debug, Clone)]
pub struct FilledEntry {
    pub client_order_id: String,
    pub strategy: String,
    pub symbol: Symbol,
    pub side: Side,
    pub filled: Decimal,
    pub protect: Protect,
}

/// The stop-loss and take-profit orders for a filled entry, or why not now.
pub fn protective_orders(
    entry: &FilledEntry,
    position: Decimal,
    spec: &SymbolSpec,
    gate: &Gate,
) -> Result<Vec<RiskApproved<OrderPlan>>, String> {
    if let Some(reason) = &gate.maintenance {
        return Err(reason.clone());
    }
    if let Some(s) = gate
        .state
        .as_ref()
        .filter(|s| s.state == TradingState::Halted)
    {
        return Err(s.describe());
    }
    // Only what is still open in the entry's direction is protected.
    let open = (position * entry.side.sign()).max(Decimal::ZERO);
    let quantity = spec.round_quantity(entry.filled.min(open));
    if quantity.is_zero() || quantity < spec.min_quantity {
        return Ok(vec![]);
    }
    let quantity = Quantity::new(quantity).map_err(|e| e.to_string())?;
    let side = match entry.side {
        Side::Buy => Side::Sell,
        Side::Sell => Side::Buy,
    };
    let plan = |role: Role, order_type: &'static str, level: Price| {
        RiskApproved(OrderPlan {
            strategy: entry.strategy.clone(),
            symbol: entry.symbol.clone(),
            side,
            quantity,
            reference_price: level,
            order_type,
            limit_price: (role == Role::TakeProfit).then_some(level),
            time_in_force: "GTC",
            reduces_only: true,
            role,
            parent: Some(entry.client_order_id.clone()),
            stop_price: (role == Role::StopLoss).then_some(level),
            protect: Protect::default(),
        })
    };
    let mut out = Vec::new();
    if let Some(stop) = entry.protect.stop {
        out.push(plan(Role::StopLoss, "stop", stop));
    }
    if let Some(target) = entry.protect.target {
        out.push(plan(Role::TakeProfit, "limit", target));
    }
    Ok(out)
}

/// A working protective order, as [`stale_protection`] judges it.
#[derive(Debug, Clone, Copy)]
pub struct WorkingProtective<'a> {
    pub symbol: &'a str,
    pub role: Role,
    pub side: Side,
    /// Quantity not filled yet.
    pub remaining: Decimal,
    /// Another protective order of the same entry has (partly) filled.
    pub sibling_filled: bool,
}

/// Which working protective orders must be cancelled because they could open a position instead
/// of closing one, with the reason: their position is closed or points the other way, their
/// sibling filled, or together with the newer ones of their kind they exceed the position.
/// `orders` come newest first; `position_of` gives our signed position per symbol.
pub fn stale_protection(
    orders: &[WorkingProtective],
    position_of: impl Fn(&str) -> Decimal,
) -> Vec<Option<&'static str>> {
    // Per (symbol, role): the quantity the newer orders already cover.
    let mut covered: Vec<((&str, Role), Decimal)> = Vec::new();
    orders
        .iter()
        .map(|o| {
            // A protective sell protects a long (position > 0); a protective buy a short.
            let closes = -o.side.sign() * position_of(o.symbol);
            let i = match covered.iter().position(|(k, _)| *k == (o.symbol, o.role)) {
                Some(i) => i,
                None => {
                    covered.push(((o.symbol, o.role), Decimal::ZERO));
                    covered.len() - 1
                }
            };
            if closes <= Decimal::ZERO {
                Some("its position is closed")
            } else if o.sibling_filled {
                Some("its sibling filled")
            } else if covered[i].1 + o.remaining > closes {
                Some("together they exceed the position")
            } else {
                covered[i].1 += o.remaining;
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::state::{SetBy, StateEntry};

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn entry(side: Side) -> FilledEntry {
        FilledEntry {
            client_order_id: "sx-entry".into(),
            strategy: "t".into(),
            symbol: Symbol::parse("BTC/USD").unwrap(),
            side,
            filled: d("0.5"),
            protect: Protect {
                stop: Some(Price::new(d("48500")).unwrap()),
                target: Some(Price::new(d("50200")).unwrap()),
            },
        }
    }

    #[test]
    fn protective_orders_only_close_what_is_still_open_in_the_entry_direction() {
        let spec = SymbolSpec::default();
        let halted = Gate {
            state: Some(StateEntry {
                symbol: None,
                state: TradingState::Halted,
                reason: "x".into(),
                since: chrono::Utc::now(),
                set_by: SetBy::Operator,
            }),
            ..Default::default()
        };
        type Want = Result<Vec<(&'static str, &'static str)>, &'static str>;
        let cases: Vec<(&str, Side, &str, Gate, Want)> = vec![
            (
                "a filled long gets a sell stop and a sell limit for its fill",
                Side::Buy,
                "0.5",
                Gate::default(),
                Ok(vec![("stop", "0.5"), ("limit", "0.5")]),
            ),
            (
                "a smaller position caps the quantity",
                Side::Buy,
                "0.2",
                Gate::default(),
                Ok(vec![("stop", "0.2"), ("limit", "0.2")]),
            ),
            (
                "a position already closed gets nothing",
                Side::Buy,
                "0",
                Gate::default(),
                Ok(vec![]),
            ),
            (
                "a position the other way gets nothing",
                Side::Buy,
                "-1",
                Gate::default(),
                Ok(vec![]),
            ),
            (
                "a short entry is protected by buys",
                Side::Sell,
                "-0.5",
                Gate::default(),
                Ok(vec![("stop", "0.5"), ("limit", "0.5")]),
            ),
            ("halted waits", Side::Buy, "0.5", halted, Err("halted")),
            (
                "maintenance waits",
                Side::Buy,
                "0.5",
                Gate {
                    maintenance: Some("maintenance window".into()),
                    ..Default::default()
                },
                Err("maintenance"),
            ),
        ];
        for (name, side, position, gate, want) in cases {
            let got = protective_orders(&entry(side), d(position), &spec, &gate);
            match (want, got) {
                (Ok(w), Ok(g)) => {
                    let g: Vec<_> = g.iter().map(|a| a.get()).collect();
                    assert_eq!(g.len(), w.len(), "{name}");
                    for (plan, (kind, q)) in g.iter().zip(w) {
                        assert_eq!(plan.order_type, kind, "{name}");
                        assert_eq!(plan.quantity.get(), d(q), "{name}");
                        assert_ne!(plan.side, side, "{name}: must close");
                        assert!(plan.reduces_only, "{name}");
                        assert_eq!(plan.parent.as_deref(), Some("sx-entry"), "{name}");
                    }
                    if let Some(stop) = g.first().filter(|p| p.order_type == "stop") {
                        assert_eq!(stop.stop_price.map(|p| p.get()), Some(d("48500")), "{name}");
                        assert_eq!(stop.limit_price, None, "{name}");
                    }
                }
                (Err(needle), Err(e)) => assert!(e.contains(needle), "{name}: {e}"),
                (w, g) => panic!("{name}: want {w:?}, got {:?}", g.map(|v| v.len())),
            }
        }
    }

    #[test]
    fn protective_orders_that_could_open_a_position_are_marked_for_cancelling() {
        let o = |symbol, role, side, remaining: &str, sibling_filled| WorkingProtective {
            symbol,
            role,
            side,
            remaining: d(remaining),
            sibling_filled,
        };
        let orders = [
            o("BTC/USD", Role::StopLoss, Side::Sell, "0.3", false),
            o("BTC/USD", Role::StopLoss, Side::Sell, "0.3", false),
            o("BTC/USD", Role::TakeProfit, Side::Sell, "0.3", true),
            o("ETH/USD", Role::StopLoss, Side::Sell, "1", false),
            o("SOL/USD", Role::StopLoss, Side::Buy, "2", false),
        ];
        let positions = |s: &str| match s {
            "BTC/USD" => d("0.5"),
            "ETH/USD" => d("0"),
            _ => d("-2"),
        };
        assert_eq!(
            stale_protection(&orders, positions),
            vec![
                None,
                Some("together they exceed the position"),
                Some("its sibling filled"),
                Some("its position is closed"),
                None,
            ]
        );
    }
}
