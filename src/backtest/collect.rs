//! What a replay records as it goes, for the report: every signal's outcome (counted by rule,
//! filter and breakdown key; listed while there are few), every order once it is finished,
//! round-trip trades built from our fills, the equity curve and trading-state changes.
//!
//! A trade is a position's life on one symbol, from flat to flat (a fill that reverses the
//! position closes one trade and opens the next, its fee split between them by quantity). Its
//! gross PnL is what `portfolio::Position` realizes over that life; its fees are those of every
//! fill that opened, grew or closed it; it is tagged with the signal whose order opened it.

use super::books::{OrderRec, SignalTag};
use crate::risk::Role;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// Beyond this many signals (or orders), the report lists none and only counts them.
pub const LIST_CAP: usize = 10_000;

/// One signal's outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    pub at: String,
    pub source: String,
    pub symbol: String,
    pub strategy: String,
    pub recommendation: String,
    pub confidence: u8,
    /// `ordered`, `refused`, `ignored` or `dead_letter`.
    pub outcome: &'static str,
    /// The rule (refused) or filter (ignored) that decided.
    pub rule: Option<&'static str>,
    pub reason: String,
    pub client_order_id: Option<String>,
}

/// One order once finished (or at the end of the run).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSummary {
    pub client_order_id: String,
    pub created_at: String,
    pub strategy: String,
    pub symbol: String,
    pub side: &'static str,
    #[serde(rename = "type")]
    pub order_type: &'static str,
    pub role: &'static str,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub quantity: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision_option")]
    pub price: Option<Decimal>,
    pub status: &'static str,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub filled_quantity: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision_option")]
    pub average_price: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub fees: Decimal,
    pub rejected: Option<String>,
}

impl OrderSummary {
    fn of(o: &OrderRec) -> Self {
        Self {
            client_order_id: o.client_order_id.clone(),
            created_at: crate::clock::ts(o.created_at),
            strategy: o.strategy.clone(),
            symbol: o.symbol.clone(),
            side: o.side.as_str(),
            order_type: o.order_type,
            role: o.role.as_str(),
            quantity: o.quantity,
            price: o.price,
            status: o.progress.status.as_str(),
            filled_quantity: o.progress.filled_quantity,
            average_price: o.progress.average_price.map(|p| p.round_dp(8).normalize()),
            fees: o.fees.normalize(),
            rejected: o.rejected.clone(),
        }
    }
}

/// One round trip.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trade {
    pub symbol: String,
    pub strategy: String,
    /// `long` or `short`.
    pub side: &'static str,
    pub opened_at: String,
    pub closed_at: String,
    /// Seconds between the first and the last fill.
    pub duration_secs: i64,
    /// The largest |position| during the trade.
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub quantity: Decimal,
    /// Average price of the fills that opened or grew it.
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub entry_price: Decimal,
    /// Average price of the fills that closed it (at the end of the run: the last mid).
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub exit_price: Decimal,
    /// What the opening fills cost (quantity x price): the base of `returnPct`.
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub entry_notional: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub gross_pnl: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub fees: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub net_pnl: Decimal,
    /// Net PnL over entry notional, in percent.
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub return_pct: Decimal,
    /// `signal`, `stop_loss`, `take_profit`, or `open` for a position still open at the end.
    pub exit: &'static str,
    pub confidence: Option<u8>,
    pub risk_level: Option<String>,
    pub time_horizon: Option<String>,
    #[serde(skip)]
    pub opened: DateTime<Utc>,
    #[serde(skip)]
    pub closed: DateTime<Utc>,
}

/// A trading-state change the replay made (a breaker, an alert, the margin rule).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChange {
    pub at: String,
    pub scope: String,
    pub state: &'static str,
    pub set_by: &'static str,
    pub reason: String,
}

/// Signal counts for one breakdown key.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalRow {
    pub signals: u64,
    pub ordered: u64,
    pub refused: u64,
    pub ignored: u64,
}

/// The breakdown keys of a signal.
#[derive(Debug, Clone)]
pub struct Keys<'a> {
    pub strategy: &'a str,
    pub symbol: &'a str,
    pub band: &'static str,
    pub risk_level: &'a str,
    pub time_horizon: &'a str,
}

/// Confidence bands of the breakdown.
pub fn band(confidence: u8) -> &'static str {
    match confidence {
        90..=100 => "90-100",
        80..=89 => "80-89",
        70..=79 => "70-79",
        60..=69 => "60-69",
        50..=59 => "50-59",
        _ => "0-49",
    }
}

pub const NONE: &str = "(none)";

/// Counters per breakdown dimension.
#[derive(Debug, Clone, Default)]
pub struct Dimensions {
    pub strategy: BTreeMap<String, SignalRow>,
    pub symbol: BTreeMap<String, SignalRow>,
    pub band: BTreeMap<String, SignalRow>,
    pub risk_level: BTreeMap<String, SignalRow>,
    pub time_horizon: BTreeMap<String, SignalRow>,
}

impl Dimensions {
    fn count(&mut self, keys: &Keys, f: impl Fn(&mut SignalRow)) {
        for (map, key) in [
            (&mut self.strategy, keys.strategy),
            (&mut self.symbol, keys.symbol),
            (&mut self.band, keys.band),
            (&mut self.risk_level, keys.risk_level),
            (&mut self.time_horizon, keys.time_horizon),
        ] {
            let row = match map.get_mut(key) {
                Some(r) => r,
                None => map.entry(key.to_owned()).or_default(),
            };
            f(row);
        }
    }
}

/// An open trade.
#[derive(Debug, Clone)]
struct Episode {
    strategy: String,
    long: bool,
    opened: DateTime<Utc>,
    entry_qty: Decimal,
    entry_notional: Decimal,
    exit_qty: Decimal,
    exit_notional: Decimal,
    fees: Decimal,
    max_qty: Decimal,
    tag: Option<SignalTag>,
}

/// Everything recorded during one run.
#[derive(Debug, Default)]
pub struct Collector {
    pub signals: u64,
    pub ordered: u64,
    pub refused: BTreeMap<&'static str, u64>,
    pub ignored: BTreeMap<&'static str, u64>,
    /// Each dead letter's source and reason, in order (the first 100).
    pub dead_letters: Vec<String>,
    pub before_from: u64,
    pub replayed: BTreeMap<&'static str, u64>,
    pub dimensions: Dimensions,
    pub decisions: Vec<DecisionRecord>,
    pub decisions_overflow: bool,
    pub orders: Vec<OrderSummary>,
    pub orders_overflow: bool,
    pub order_status: BTreeMap<&'static str, u64>,
    pub order_roles: BTreeMap<&'static str, u64>,
    pub venue_rejections: BTreeMap<String, u64>,
    pub orders_total: u64,
    pub traded_volume: Decimal,
    pub fees: Decimal,
    pub trades: Vec<Trade>,
    episodes: BTreeMap<String, Episode>,
    pub equity: Vec<(DateTime<Utc>, Decimal)>,
    /// Equity at each UTC midnight inside the period (and at its end).
    pub daily: Vec<(DateTime<Utc>, Decimal)>,
    pub state_changes: Vec<StateChange>,
    /// Time with at least one open position.
    pub in_market: chrono::Duration,
    open_since: Option<DateTime<Utc>>,
    pub max_open_positions: usize,
    pub max_gross_exposure: Decimal,
}

impl Collector {
    /// Counts one signal's outcome (`ordered`, `refused` or `ignored`, with the rule or filter);
    /// `record` builds its listing, asked for only while the list is not full.
    pub fn decision(
        &mut self,
        keys: &Keys,
        outcome: &'static str,
        rule: Option<&'static str>,
        record: impl FnOnce() -> DecisionRecord,
    ) {
        self.signals += 1;
        match (outcome, rule) {
            ("ordered", _) => self.ordered += 1,
            ("refused", Some(rule)) => *self.refused.entry(rule).or_default() += 1,
            ("ignored", Some(filter)) => *self.ignored.entry(filter).or_default() += 1,
            _ => {}
        }
        self.dimensions.count(keys, |row| {
            row.signals += 1;
            match outcome {
                "ordered" => row.ordered += 1,
                "refused" => row.refused += 1,
                _ => row.ignored += 1,
            }
        });
        if self.decisions.len() < LIST_CAP {
            self.decisions.push(record());
        } else {
            self.decisions_overflow = true;
        }
    }

    /// An order that will not change again.
    pub fn order_done(&mut self, o: &OrderRec) {
        self.orders_total += 1;
        *self
            .order_status
            .entry(o.progress.status.as_str())
            .or_default() += 1;
        *self.order_roles.entry(o.role.as_str()).or_default() += 1;
        if self.orders.len() < LIST_CAP {
            self.orders.push(OrderSummary::of(o));
        } else {
            self.orders_overflow = true;
        }
    }

    pub fn state_change(&mut self, at: DateTime<Utc>, e: &crate::risk::state::StateEntry) {
        if self.state_changes.len() < LIST_CAP {
            self.state_changes.push(StateChange {
                at: crate::clock::ts(at),
                scope: e.symbol.clone().unwrap_or_else(|| "account".into()),
                state: e.state.as_str(),
                set_by: e.set_by.as_str(),
                reason: e.reason.clone(),
            });
        }
    }

    /// Books one fill into the trades: `before` is the position before it.
    #[allow(clippy::too_many_arguments)]
    pub fn fill(
        &mut self,
        order: &OrderRec,
        before: Decimal,
        signed_qty: Decimal,
        price: Decimal,
        fee: Decimal,
        realized_episode: Option<Decimal>,
        now: DateTime<Utc>,
    ) {
        let symbol = &order.symbol;
        let qty = signed_qty.abs();
        self.traded_volume += qty * price;
        self.fees += fee;
        let after = before + signed_qty;
        let opening = |long: bool, q: Decimal, fee: Decimal| Episode {
            strategy: order.strategy.clone(),
            long,
            opened: now,
            entry_qty: q,
            entry_notional: q * price,
            exit_qty: Decimal::ZERO,
            exit_notional: Decimal::ZERO,
            fees: fee,
            max_qty: q,
            tag: order.tag.clone(),
        };
        if before.is_zero() || before.is_sign_positive() == signed_qty.is_sign_positive() {
            match self.episodes.get_mut(symbol) {
                Some(e) if !before.is_zero() => {
                    e.entry_qty += qty;
                    e.entry_notional += qty * price;
                    e.fees += fee;
                    e.max_qty = e.max_qty.max(after.abs());
                }
                _ => {
                    self.episodes.insert(
                        symbol.clone(),
                        opening(signed_qty > Decimal::ZERO, qty, fee),
                    );
                }
            }
            return;
        }
        let closing = qty.min(before.abs());
        let closing_fee = fee * closing / qty;
        if let Some(e) = self.episodes.get_mut(symbol) {
            e.exit_qty += closing;
            e.exit_notional += closing * price;
            e.fees += closing_fee;
        }
        let Some(gross) = realized_episode else {
            return;
        };
        if let Some(e) = self.episodes.remove(symbol) {
            let exit = match order.role {
                Role::Entry => "signal",
                Role::StopLoss => "stop_loss",
                Role::TakeProfit => "take_profit",
            };
            self.trades.push(finish(symbol, e, gross, now, exit));
        }
        if !after.is_zero() {
            self.episodes.insert(
                symbol.clone(),
                opening(after > Decimal::ZERO, after.abs(), fee - closing_fee),
            );
        }
    }

    /// Trades still open, marked at `mids` (gross PnL unrealized, fees so far).
    pub fn open_trades(
        &self,
        now: DateTime<Utc>,
        mid: impl Fn(&str) -> Option<Decimal>,
        position: impl Fn(&str) -> (Decimal, Decimal),
    ) -> Vec<Trade> {
        self.episodes
            .iter()
            .filter_map(|(symbol, e)| {
                let mark = mid(symbol)?;
                let (qty, avg) = position(symbol);
                let mut e = e.clone();
                e.exit_qty = qty.abs();
                e.exit_notional = qty.abs() * mark;
                let gross = qty * (mark - avg);
                Some(finish(symbol, e, gross, now, "open"))
            })
            .collect()
    }

    /// Follows how many symbols hold a position, for the time in market.
    pub fn positions_changed(&mut self, open: usize, gross: Decimal, now: DateTime<Utc>) {
        self.max_open_positions = self.max_open_positions.max(open);
        self.max_gross_exposure = self.max_gross_exposure.max(gross);
        match (open > 0, self.open_since) {
            (true, None) => self.open_since = Some(now),
            (false, Some(since)) => {
                self.in_market += now - since;
                self.open_since = None;
            }
            _ => {}
        }
    }

    /// Closes the time-in-market count at the end of the run.
    pub fn end(&mut self, now: DateTime<Utc>) {
        if let Some(since) = self.open_since.take() {
            self.in_market += now - since;
        }
    }
}

fn finish(
    symbol: &str,
    e: Episode,
    gross: Decimal,
    now: DateTime<Utc>,
    exit: &'static str,
) -> Trade {
    let net = gross - e.fees;
    let avg = |notional: Decimal, qty: Decimal| {
        if qty.is_zero() {
            Decimal::ZERO
        } else {
            (notional / qty).round_dp(8).normalize()
        }
    };
    Trade {
        symbol: symbol.to_owned(),
        strategy: e.strategy,
        side: if e.long { "long" } else { "short" },
        opened_at: crate::clock::ts(e.opened),
        closed_at: crate::clock::ts(now),
        duration_secs: (now - e.opened).num_seconds(),
        quantity: e.max_qty.normalize(),
        entry_price: avg(e.entry_notional, e.entry_qty),
        exit_price: avg(e.exit_notional, e.exit_qty),
        entry_notional: e.entry_notional.round_dp(8).normalize(),
        gross_pnl: gross.round_dp(8).normalize(),
        fees: e.fees.round_dp(8).normalize(),
        net_pnl: net.round_dp(8).normalize(),
        return_pct: if e.entry_notional.is_zero() {
            Decimal::ZERO
        } else {
            (net / e.entry_notional * Decimal::ONE_HUNDRED)
                .round_dp(4)
                .normalize()
        },
        exit,
        confidence: e.tag.as_ref().map(|t| t.confidence),
        risk_level: e.tag.as_ref().and_then(|t| t.risk_level.clone()),
        time_horizon: e.tag.as_ref().and_then(|t| t.time_horizon.clone()),
        opened: e.opened,
        closed: now,
    }
}
