//! The backtest's books: in memory, what the store holds for a live or paper bot and what a
//! decision reads from it (trading states, maintenance windows, alert size scales, the equity
//! peak, the USD balance, the venue's reported positions and margin ratios, our positions from
//! our fills, working orders, order counts, the daily realized-PnL ledger).
//!
//! No rule lives here: what to write is decided by the same pure functions the dispatcher calls
//! (`risk::limits`, `risk::alerts`, `risk::maintenance`, `order::apply`, `portfolio`); this
//! module only keeps the values with the store's semantics (an `active` state is no entry, a
//! window update that moves its times forgets its reconciliation, a size scale replaces the one
//! of its scope, counts follow the store's queries).

use crate::model::Side;
use crate::order::Progress;
use crate::portfolio::Position;
use crate::risk::alerts::SizeScale;
use crate::risk::maintenance::Window;
use crate::risk::state::{StateEntry, TradingState};
use crate::risk::{Exposure, Protect, Role};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// What an order carries from the signal that caused it, for the report's breakdowns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalTag {
    pub confidence: u8,
    pub risk_level: Option<String>,
    pub time_horizon: Option<String>,
}

/// One of our orders while it matters to a decision or to protection.
#[derive(Debug, Clone)]
pub struct OrderRec {
    pub client_order_id: String,
    pub venue_id: Option<String>,
    pub strategy: String,
    pub symbol: String,
    pub side: Side,
    pub role: Role,
    pub order_type: &'static str,
    pub quantity: Decimal,
    pub price: Option<Decimal>,
    pub parent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub progress: Progress,
    /// Fees booked for its fills.
    pub fees: Decimal,
    pub protect: Protect,
    pub protection_done: bool,
    pub cancel_requested: bool,
    pub tag: Option<SignalTag>,
    /// Why the venue refused it, when it did.
    pub rejected: Option<String>,
}

impl OrderRec {
    pub fn working(&self) -> bool {
        self.progress.status.is_working()
    }

    /// An entry that is done filling, carries levels, and has no protective orders yet.
    pub fn needs_protection(&self) -> bool {
        self.role == Role::Entry
            && !self.protection_done
            && (self.protect.stop.is_some() || self.protect.target.is_some())
            && self.progress.status.is_terminal()
            && self.progress.filled_quantity > Decimal::ZERO
    }
}

/// A symbol's position from our fills and the last price we filled at.
#[derive(Debug, Clone, Default)]
pub struct PositionBook {
    pub position: Position,
    pub last_price: Option<Decimal>,
}

/// The books, as the store would hold them.
#[derive(Debug, Default)]
pub struct Books {
    states: Vec<StateEntry>,
    pub windows: Vec<Window>,
    /// When each window's latest notice was signed: an older one is not applied.
    notices: BTreeMap<String, DateTime<Utc>>,
    scales: BTreeMap<String, SizeScale>,
    pub peak: Option<Decimal>,
    /// `(available, total)` USD.
    pub balance: Option<(Decimal, Decimal)>,
    /// The venue's reported quantity and last margin ratio per symbol.
    venue_positions: BTreeMap<String, (Decimal, Option<Decimal>)>,
    transfers: BTreeSet<String>,
    realized_day: Option<(NaiveDate, Decimal)>,
    pub positions: BTreeMap<String, PositionBook>,
    orders: BTreeMap<u64, OrderRec>,
    by_venue_id: HashMap<String, u64>,
    next_id: u64,
    created: VecDeque<DateTime<Utc>>,
    last_order: BTreeMap<(String, String), DateTime<Utc>>,
}

impl Books {
    // ---- trading state ---------------------------------------------------------------------

    pub fn states(&self) -> &[StateEntry] {
        &self.states
    }

    pub fn account_state(&self) -> Option<&StateEntry> {
        self.states.iter().find(|s| s.symbol.is_none())
    }

    pub fn symbol_state(&self, symbol: &str) -> Option<&StateEntry> {
        self.states
            .iter()
            .find(|s| s.symbol.as_deref() == Some(symbol))
    }

    /// Stores a state; `active` removes the scope's entry (no entry means active).
    pub fn set_state(&mut self, entry: StateEntry) {
        self.states.retain(|s| s.symbol != entry.symbol);
        if entry.state != TradingState::Active {
            self.states.push(entry);
            self.states.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        }
    }

    // ---- maintenance, scales, transfers ---------------------------------------------------------

    /// Inserts or updates (same key) a window, unless its notice was signed before the one held
    /// (`false`: not applied); an update of its times forgets its reconciliation.
    pub fn upsert_window(&mut self, w: Window, noticed_at: DateTime<Utc>) -> bool {
        if self
            .notices
            .get(&w.key)
            .is_some_and(|held| noticed_at < *held)
        {
            return false;
        }
        self.notices.insert(w.key.clone(), noticed_at);
        match self.windows.iter_mut().find(|x| x.key == w.key) {
            Some(old) => {
                let same_times = old.start == w.start && old.end == w.end;
                let reconciled_at = if same_times {
                    old.reconciled_at.or(w.reconciled_at)
                } else {
                    w.reconciled_at
                };
                *old = Window { reconciled_at, ..w };
            }
            None => self.windows.push(w),
        }
        self.windows
            .sort_by(|a, b| (a.start, &a.key).cmp(&(b.start, &b.key)));
        true
    }

    pub fn window(&self, key: &str) -> Option<&Window> {
        self.windows.iter().find(|w| w.key == key)
    }

    pub fn mark_reconciled(&mut self, key: &str, now: DateTime<Utc>) {
        if let Some(w) = self.windows.iter_mut().find(|w| w.key == key) {
            w.reconciled_at.get_or_insert(now);
        }
    }

    pub fn set_scale(&mut self, scale: SizeScale) {
        self.scales
            .insert(scale.symbol.clone().unwrap_or_default(), scale);
    }

    pub fn scales(&self) -> impl Iterator<Item = &SizeScale> {
        self.scales.values()
    }

    /// Whether a transfer is seen for the first time.
    pub fn first_transfer(&mut self, id: &str) -> bool {
        self.transfers.insert(id.to_owned())
    }

    // ---- the venue's reports -----------------------------------------------------------------

    pub fn save_venue_position(&mut self, symbol: &str, quantity: Decimal, ratio: Option<Decimal>) {
        let entry = self
            .venue_positions
            .entry(symbol.to_owned())
            .or_insert((Decimal::ZERO, None));
        entry.0 = quantity;
        if ratio.is_some() {
            entry.1 = ratio;
        }
    }

    /// The largest margin ratio reported for a position still open.
    pub fn max_margin_ratio(&self) -> Option<Decimal> {
        self.venue_positions
            .values()
            .filter(|(q, _)| !q.is_zero())
            .filter_map(|(_, r)| *r)
            .max()
    }

    // ---- realized PnL ledger -------------------------------------------------------------------

    /// Adds to the day's realized PnL (after fees).
    pub fn record_realized(&mut self, amount: Decimal, now: DateTime<Utc>) {
        let day = now.date_naive();
        match &mut self.realized_day {
            Some((d, total)) if *d == day => *total += amount,
            _ => self.realized_day = Some((day, amount)),
        }
    }

    /// Realized PnL since `since`, a midnight UTC: time only moves forward, so only the current
    /// day's total can be asked for.
    pub fn realized_since(&self, since: DateTime<Utc>) -> Decimal {
        match self.realized_day {
            Some((d, total)) if d >= since.date_naive() => total,
            _ => Decimal::ZERO,
        }
    }

    // ---- orders ------------------------------------------------------------------------------

    /// Writes an order intent; returns its key.
    pub fn insert_order(&mut self, rec: OrderRec) -> u64 {
        self.created.push_back(rec.created_at);
        let last = self
            .last_order
            .entry((rec.strategy.clone(), rec.symbol.clone()))
            .or_insert(rec.created_at);
        *last = (*last).max(rec.created_at);
        let id = self.next_id;
        self.next_id += 1;
        self.orders.insert(id, rec);
        id
    }

    pub fn link(&mut self, id: u64, venue_id: &str) {
        if let Some(o) = self.orders.get_mut(&id) {
            o.venue_id = Some(venue_id.to_owned());
            self.by_venue_id.insert(venue_id.to_owned(), id);
        }
    }

    pub fn order_by_venue_id(&self, venue_id: &str) -> Option<u64> {
        self.by_venue_id.get(venue_id).copied()
    }

    pub fn order(&self, id: u64) -> Option<&OrderRec> {
        self.orders.get(&id)
    }

    pub fn order_mut(&mut self, id: u64) -> Option<&mut OrderRec> {
        self.orders.get_mut(&id)
    }

    /// Orders in the order they were written.
    pub fn orders(&self) -> impl Iterator<Item = (u64, &OrderRec)> {
        self.orders.iter().map(|(k, v)| (*k, v))
    }

    /// Whether another protective order of `order`'s entry has (partly) filled.
    pub fn sibling_filled(&self, order: &OrderRec) -> bool {
        order.parent.as_ref().is_some_and(|p| {
            self.orders.values().any(|o| {
                o.parent.as_ref() == Some(p)
                    && o.client_order_id != order.client_order_id
                    && o.progress.filled_quantity > Decimal::ZERO
            })
        })
    }

    /// Drops a finished order that no rule will look at again; returns it.
    pub fn retire(&mut self, id: u64) -> Option<OrderRec> {
        let o = self.orders.get(&id)?;
        let needed = o.working()
            || o.needs_protection()
            // A filled protective order's siblings are judged by it while they work.
            || (o.role != Role::Entry
                && o.progress.filled_quantity > Decimal::ZERO
                && self.orders.values().any(|s| s.parent == o.parent && s.working()));
        if needed {
            return None;
        }
        let o = self.orders.remove(&id)?;
        if let Some(v) = &o.venue_id {
            self.by_venue_id.remove(v);
        }
        Some(o)
    }

    /// `(orders not finished, orders written at or after now - 60 s)`, as the store counts them.
    pub fn order_counts(&mut self, now: DateTime<Utc>) -> (u32, u32) {
        let since = now - Duration::seconds(60);
        while self.created.front().is_some_and(|t| *t < since) {
            self.created.pop_front();
        }
        let open = self.orders.values().filter(|o| o.working()).count() as u32;
        (open, self.created.len() as u32)
    }

    pub fn last_order_at(&self, strategy: &str, symbol: &str) -> Option<DateTime<Utc>> {
        self.last_order
            .get(&(strategy.to_owned(), symbol.to_owned()))
            .copied()
    }

    /// Every symbol's position and working entries (protective orders are contingent closes,
    /// not working exposure), with the last fill price and the strategies working on it.
    pub fn symbol_books(&self) -> BTreeMap<String, (Exposure, Option<Decimal>, Vec<String>)> {
        let mut out: BTreeMap<String, (Exposure, Option<Decimal>, Vec<String>)> = BTreeMap::new();
        for (symbol, p) in &self.positions {
            let b = out.entry(symbol.clone()).or_default();
            b.0.position = p.position.quantity;
            b.1 = p.last_price;
        }
        for o in self.orders.values() {
            if o.role != Role::Entry || !o.working() {
                continue;
            }
            let b = out.entry(o.symbol.clone()).or_default();
            let remaining = o.quantity - o.progress.filled_quantity;
            match o.side {
                Side::Buy => b.0.working_buy += remaining,
                Side::Sell => b.0.working_sell += remaining,
            }
            if !b.2.contains(&o.strategy) {
                b.2.push(o.strategy.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::state::SetBy;

    fn at(m: i64) -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::minutes(m)
    }

    #[test]
    fn the_books_keep_the_stores_semantics() {
        let mut b = Books::default();
        let entry = |state| StateEntry {
            symbol: None,
            state,
            reason: "r".into(),
            since: at(0),
            set_by: SetBy::Operator,
        };
        b.set_state(entry(TradingState::Halted));
        assert_eq!(
            b.account_state().map(|s| s.state),
            Some(TradingState::Halted)
        );
        b.set_state(entry(TradingState::Active));
        assert!(b.account_state().is_none(), "active is no entry");

        let window = |start, end| Window {
            key: "w".into(),
            start: at(start),
            end: at(end),
            services: vec!["trading".into()],
            description: String::new(),
            reconciled_at: None,
        };
        assert!(b.upsert_window(window(10, 20), at(1)));
        b.mark_reconciled("w", at(30));
        assert!(b.upsert_window(window(10, 20), at(2)));
        assert_eq!(
            b.window("w").unwrap().reconciled_at,
            Some(at(30)),
            "same times: kept"
        );
        assert!(
            !b.upsert_window(window(60, 70), at(1)),
            "an older notice is not applied"
        );
        assert!(b.upsert_window(window(40, 50), at(3)));
        assert_eq!(
            b.window("w").unwrap().reconciled_at,
            None,
            "moved: forgotten"
        );

        b.record_realized(Decimal::new(-5, 0), at(10));
        b.record_realized(Decimal::new(-3, 0), at(20));
        assert_eq!(b.realized_since(at(0)), Decimal::new(-8, 0));
        b.record_realized(Decimal::new(1, 0), at(24 * 60 + 1));
        assert_eq!(
            b.realized_since(at(24 * 60)),
            Decimal::ONE,
            "a new day starts at zero"
        );

        b.save_venue_position("BTC/USD", Decimal::ONE, Some(Decimal::new(5, 1)));
        b.save_venue_position("BTC/USD", Decimal::TWO, None);
        assert_eq!(
            b.max_margin_ratio(),
            Some(Decimal::new(5, 1)),
            "a report without a ratio keeps it"
        );
        b.save_venue_position("BTC/USD", Decimal::ZERO, None);
        assert_eq!(b.max_margin_ratio(), None, "a closed position has no ratio");
    }
}
