//! The matching engine of the simulated venue (and of paper mode): a synthetic order book around each
//! symbol's mid price, orders, positions and the USD margin account.
//!
//! Everything here is synchronous and takes `now` as a parameter; the HTTP layer and the timers only move
//! data in and out. Guarantees:
//! - a `clientOrderId` names at most one order, ever;
//! - a terminal order (`filled`, `cancelled`, `expired`) never changes again, and the filled quantity of
//!   an order only grows;
//! - takers walk the synthetic book level by level (`depth_levels` levels per side, `level_notional` of
//!   quote currency each, `level_step_bps` apart, `spread_bps` between the touches), so slippage grows
//!   with size; a resting limit order is the maker and fills at its own price, at most the volume the
//!   market trades at that price in one tick, so large orders fill partially over several ticks;
//! - GTC rests, IOC fills what it can and expires the rest, FOK fills completely at once or expires
//!   untouched; a market order fills what the book holds and expires the rest;
//! - every fill pays the maker or taker fee in basis points of its notional, out of the account's cash;
//! - every mutation returns the venue events it causes, in the order a client must see them:
//!   `order.updated`, then the `position.*` events it caused, then `account.balance_updated`;
//! - for a given seed and the same calls with the same `now`, the events are identical byte for byte
//!   (every random draw comes from seeded generators, every collection iterated here is ordered);
//! - order inputs are bounded (see [`max_input`]), so no product or sum computed here can overflow
//!   `Decimal`, whose arithmetic panics on overflow.
//!
//! The account is a 1x margin account in USD: `total` is the starting balance plus realized PnL minus
//! fees, `locked` is the margin of open positions (|quantity| × average price), `available` is the
//! difference.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One event the venue must push, in the order produced. The envelope timestamp is added at enqueue time.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub name: &'static str,
    pub data: Value,
}

/// Largest quantity or price an order may carry (10^12). Far below `Decimal`'s ~7.9·10^28, so every
/// product of two inputs and every running sum fits.
pub(crate) fn max_input() -> Decimal {
    Decimal::new(1_000_000_000_000, 0)
}

fn bps(v: Decimal) -> Decimal {
    v / Decimal::new(10_000, 0)
}

/// How one symbol's price moves per tick: a uniform step in `[-volatility, +volatility]` plus `trend`,
/// both in basis points of the current mid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    pub volatility_bps: Decimal,
    pub trend_bps: Decimal,
}

impl Default for Walk {
    /// ±5 bps per tick, no trend.
    fn default() -> Self {
        Self {
            volatility_bps: Decimal::new(5, 0),
            trend_bps: Decimal::ZERO,
        }
    }
}

impl Walk {
    /// The mid one tick after `mid`: a uniform draw from `rng` in [-1, 1] in steps of 10^-4 (no
    /// float involved) scales the volatility, the trend is added, and the result is rounded like
    /// a quote. A step that would round to zero keeps `mid` (a venue never quotes zero).
    pub(crate) fn next_mid(&self, mid: Decimal, rng: &mut impl Rng) -> Decimal {
        let u = Decimal::new(rng.gen_range(-10_000..=10_000), 4);
        let step = bps(self.trend_bps + self.volatility_bps * u);
        let next = round_price(mid + mid * step);
        if next > Decimal::ZERO {
            next
        } else {
            mid
        }
    }
}

/// One bar of a replayed price history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candle {
    pub timestamp: DateTime<Utc>,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
}

impl Candle {
    /// The four prices a bar is walked through, one per tick: open, the extreme nearer the open
    /// (the low of a rising bar, the high of a falling one), the other extreme, close.
    pub fn path(&self) -> [Decimal; 4] {
        let (first, second) = if self.close >= self.open {
            (self.low, self.high)
        } else {
            (self.high, self.low)
        };
        [self.open, first, second, self.close]
    }
}

/// The matching engine's parameters.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Fee of a fill that rested on the book, in bps of its notional.
    pub maker_fee_bps: Decimal,
    /// Fee of a fill that took liquidity, in bps of its notional.
    pub taker_fee_bps: Decimal,
    /// Distance between the best bid and the best ask, in bps of mid.
    pub spread_bps: Decimal,
    /// Price levels on each side of the synthetic book.
    pub depth_levels: u32,
    /// Distance between two levels, in bps of mid.
    pub level_step_bps: Decimal,
    /// Quote currency offered at each level.
    pub level_notional: Decimal,
    /// Largest |position| × price a symbol may reach through new orders; `None`: no limit.
    pub position_limit_notional: Option<Decimal>,
    /// The price walk of every symbol without its own entry in `walks`.
    pub walk: Walk,
    pub walks: BTreeMap<String, Walk>,
    /// Replayed candles per symbol; a symbol listed here follows its candles (open, high/low, low/high,
    /// close: four ticks per candle, looping at the end) instead of the random walk.
    pub candles: BTreeMap<String, Vec<Candle>>,
}

impl Default for EngineConfig {
    /// Maker 2 bps, taker 5 bps, 2 bps spread, 10 levels 1 bp apart of 50 000 USD each, no position
    /// limit, ±5 bps per tick.
    fn default() -> Self {
        Self {
            maker_fee_bps: Decimal::new(2, 0),
            taker_fee_bps: Decimal::new(5, 0),
            spread_bps: Decimal::new(2, 0),
            depth_levels: 10,
            level_step_bps: Decimal::ONE,
            level_notional: Decimal::new(50_000, 0),
            position_limit_notional: None,
            walk: Walk::default(),
            walks: BTreeMap::new(),
            candles: BTreeMap::new(),
        }
    }
}

impl EngineConfig {
    /// Refuses parameters the engine cannot run with, naming the field.
    pub fn check(&self) -> Result<(), String> {
        let non_negative = [
            ("maker_fee_bps", self.maker_fee_bps),
            ("taker_fee_bps", self.taker_fee_bps),
            ("spread_bps", self.spread_bps),
            ("level_step_bps", self.level_step_bps),
            ("volatility_bps", self.walk.volatility_bps),
        ];
        for (name, v) in non_negative {
            if v < Decimal::ZERO || v > Decimal::new(1_000, 0) {
                return Err(format!("{name} must be between 0 and 1000, got {v}"));
            }
        }
        if self.trend_out_of_range() {
            return Err("trend_bps must be between -100 and 100".into());
        }
        if self.depth_levels == 0 || self.depth_levels > 1_000 {
            return Err(format!(
                "depth_levels must be between 1 and 1000, got {}",
                self.depth_levels
            ));
        }
        if self.level_notional <= Decimal::ZERO || self.level_notional > max_input() {
            return Err(format!(
                "level_notional must be positive and at most {}, got {}",
                max_input(),
                self.level_notional
            ));
        }
        if let Some(limit) = self.position_limit_notional {
            if limit <= Decimal::ZERO || limit > max_input() {
                return Err(format!(
                    "position_limit_notional must be positive, got {limit}"
                ));
            }
        }
        Ok(())
    }

    fn trend_out_of_range(&self) -> bool {
        let bound = Decimal::new(100, 0);
        std::iter::once(&self.walk)
            .chain(self.walks.values())
            .any(|w| w.trend_bps.abs() > bound || w.volatility_bps < Decimal::ZERO)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Side {
    Buy,
    Sell,
}

impl Side {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "buy" => Some(Self::Buy),
            "sell" => Some(Self::Sell),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Self::Buy => "buy",
            Self::Sell => "sell",
        }
    }
    fn signed(self, quantity: Decimal) -> Decimal {
        match self {
            Self::Buy => quantity,
            Self::Sell => -quantity,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum TimeInForce {
    Gtc,
    Ioc,
    Fok,
}

impl TimeInForce {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "GTC" => Some(Self::Gtc),
            "IOC" => Some(Self::Ioc),
            "FOK" => Some(Self::Fok),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Self::Gtc => "GTC",
            Self::Ioc => "IOC",
            Self::Fok => "FOK",
        }
    }
}

/// The order type with the prices it needs, so a limit order without a price cannot be represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum OrderKind {
    Market,
    Limit { price: Decimal },
    Stop { stop: Decimal },
    StopLimit { price: Decimal, stop: Decimal },
}

impl OrderKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Market => "market",
            Self::Limit { .. } => "limit",
            Self::Stop { .. } => "stop",
            Self::StopLimit { .. } => "stop_limit",
        }
    }
    fn limit_price(self) -> Option<Decimal> {
        match self {
            Self::Limit { price } | Self::StopLimit { price, .. } => Some(price),
            Self::Market | Self::Stop { .. } => None,
        }
    }
    fn stop_price(self) -> Option<Decimal> {
        match self {
            Self::Stop { stop } | Self::StopLimit { stop, .. } => Some(stop),
            Self::Market | Self::Limit { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Status {
    Pending,
    Open,
    PartiallyFilled,
    Filled,
    Cancelled,
    Expired,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Open => "open",
            Self::PartiallyFilled => "partially_filled",
            Self::Filled => "filled",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }
    fn is_live(self) -> bool {
        matches!(self, Self::Pending | Self::Open | Self::PartiallyFilled)
    }
    fn is_resting(self) -> bool {
        matches!(self, Self::Open | Self::PartiallyFilled)
    }
}

/// A well-formed order request: positive bounded quantity, positive bounded prices, the prices its type
/// needs. Whether the symbol exists is the book's question, not this type's.
#[derive(Debug, Clone)]
pub(crate) struct OrderRequest {
    symbol: String,
    side: Side,
    kind: OrderKind,
    quantity: Decimal,
    time_in_force: TimeInForce,
    client_order_id: Option<String>,
}

impl OrderRequest {
    pub(crate) fn new(
        symbol: String,
        side: Side,
        kind: OrderKind,
        quantity: Decimal,
        time_in_force: TimeInForce,
        client_order_id: Option<String>,
    ) -> Result<Self, String> {
        let in_range = |name: &str, v: Decimal| {
            if v <= Decimal::ZERO {
                Err(format!("{name} must be greater than 0"))
            } else if v > max_input() {
                Err(format!("{name} must be at most {}", max_input()))
            } else {
                Ok(())
            }
        };
        in_range("quantity", quantity)?;
        if let Some(price) = kind.limit_price() {
            in_range("price", price)?;
        }
        if let Some(stop) = kind.stop_price() {
            in_range("stopPrice", stop)?;
        }
        if symbol.is_empty() {
            return Err("symbol must not be empty".into());
        }
        if client_order_id.as_deref() == Some("") {
            return Err("clientOrderId must not be empty when present".into());
        }
        Ok(Self {
            symbol,
            side,
            kind,
            quantity,
            time_in_force,
            client_order_id,
        })
    }
}

/// A fill as reported by `GET /orders/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimFill {
    pub fill_id: String,
    pub quantity: Decimal,
    pub price: Decimal,
    /// Fee paid in USD.
    pub fee: Decimal,
    /// `maker` or `taker`.
    pub liquidity: String,
    pub timestamp: DateTime<Utc>,
}

/// A snapshot of one order as the venue sees it.
#[derive(Debug, Clone, Serialize)]
pub struct SimOrder {
    pub order_id: String,
    pub client_order_id: Option<String>,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub quantity: Decimal,
    pub price: Option<Decimal>,
    pub stop_price: Option<Decimal>,
    pub time_in_force: String,
    pub status: String,
    pub filled_quantity: Decimal,
    pub average_price: Option<Decimal>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub fills: Vec<SimFill>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: String,
    client_order_id: Option<String>,
    symbol: String,
    side: Side,
    kind: OrderKind,
    quantity: Decimal,
    time_in_force: TimeInForce,
    status: Status,
    /// A stop order executes (a stop-limit becomes a limit) once its stop price has been reached.
    stop_triggered: bool,
    average_price: Option<Decimal>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    fills: Vec<SimFill>,
}

impl Order {
    fn filled_quantity(&self) -> Decimal {
        self.fills.iter().map(|f| f.quantity).sum()
    }

    fn remaining(&self) -> Decimal {
        self.quantity - self.filled_quantity()
    }

    fn snapshot(&self) -> SimOrder {
        SimOrder {
            order_id: self.id.clone(),
            client_order_id: self.client_order_id.clone(),
            symbol: self.symbol.clone(),
            side: self.side.as_str().into(),
            order_type: self.kind.as_str().into(),
            quantity: self.quantity,
            price: self.kind.limit_price(),
            stop_price: self.kind.stop_price(),
            time_in_force: self.time_in_force.as_str().into(),
            status: self.status.as_str().into(),
            filled_quantity: self.filled_quantity(),
            average_price: self.average_price,
            created_at: self.created_at,
            updated_at: self.updated_at,
            fills: self.fills.clone(),
        }
    }
}

/// The synthetic market of one symbol.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Market {
    mid: Decimal,
    volume_24h: Decimal,
    /// What makers can still trade in the current tick.
    #[serde(default)]
    maker_volume: Decimal,
    /// Position in the replayed candles (four ticks per candle).
    #[serde(default)]
    replay_step: usize,
}

/// The quoted levels of one side of a market.
struct Ladder {
    half_spread: Decimal,
    step: Decimal,
    levels: u32,
    size: Decimal,
}

impl Ladder {
    fn new(cfg: &EngineConfig, mid: Decimal) -> Self {
        Self {
            half_spread: bps(cfg.spread_bps) / Decimal::TWO,
            step: bps(cfg.level_step_bps),
            levels: cfg.depth_levels,
            size: (cfg.level_notional / mid).round_dp(8),
        }
    }

    /// The price of level `k` a taker on `side` trades at: buyers lift asks, sellers hit bids.
    fn price(&self, mid: Decimal, side: Side, k: u32) -> Decimal {
        let offset = self.half_spread + self.step * Decimal::from(k);
        match side {
            Side::Buy => round_price(mid + mid * offset),
            Side::Sell => round_price(mid - mid * offset),
        }
    }

    /// Levels a taker on `side` may trade, best first, stopping at `limit`.
    fn levels(&self, mid: Decimal, side: Side, limit: Option<Decimal>) -> Vec<(Decimal, Decimal)> {
        (0..self.levels)
            .map(|k| (self.price(mid, side, k), self.size))
            .filter(|(p, _)| *p > Decimal::ZERO)
            .take_while(|(p, _)| match (side, limit) {
                (_, None) => true,
                (Side::Buy, Some(l)) => *p <= l,
                (Side::Sell, Some(l)) => *p >= l,
            })
            .collect()
    }
}

/// A quote as served by `GET /market/price/{symbol}`.
#[derive(Debug, Clone)]
pub(crate) struct Quote {
    pub symbol: String,
    pub price: Decimal,
    pub bid: Decimal,
    pub ask: Decimal,
    pub bid_size: Decimal,
    pub ask_size: Decimal,
    pub volume_24h: Decimal,
}

/// A non-zero position as served by `GET /positions`.
#[derive(Debug, Clone)]
pub struct PositionView {
    pub symbol: String,
    pub side: &'static str,
    pub quantity: Decimal,
    pub average_price: Decimal,
    pub unrealized_pnl: Decimal,
    pub realized_pnl: Decimal,
    pub margin_used: Decimal,
    pub mark_price: Decimal,
}

/// The USD account as served by `GET /account/balances`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    pub available: Decimal,
    pub locked: Decimal,
    pub total: Decimal,
    pub realized_pnl: Decimal,
    pub unrealized_pnl: Decimal,
    pub fees_paid: Decimal,
    /// Margin used over total (0 when total is not positive).
    pub margin_ratio: Decimal,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Position {
    /// Signed: positive long, negative short. Never stored as zero (the entry is removed instead).
    quantity: Decimal,
    average_price: Decimal,
    /// Realized PnL since the position was opened, before fees: `position.closed` reports it.
    #[serde(default)]
    realized: Decimal,
}

pub(crate) enum Placed {
    New(SimOrder, Vec<Event>),
    /// The `clientOrderId` was already used; nothing changed.
    Duplicate(SimOrder),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PlaceError {
    #[error("unknown symbol {0}")]
    UnknownSymbol(String),
    #[error("order needs {required} USD of margin, {available} available")]
    InsufficientBalance {
        required: Decimal,
        available: Decimal,
    },
    #[error("position of {would_be} USD would exceed the limit of {limit} USD")]
    PositionLimit { limit: Decimal, would_be: Decimal },
}

#[derive(Debug, Clone)]
pub(crate) enum CancelError {
    NotFound,
    NotCancellable(Box<SimOrder>),
}

/// Filters of `GET /orders`; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct OrderFilter {
    pub status: Option<String>,
    pub symbol: Option<String>,
    pub client_order_id: Option<String>,
    pub limit: usize,
}

/// Maker or taker: which fee applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liquidity {
    Maker,
    Taker,
}

/// Everything that must survive a restart of paper mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BookState {
    markets: BTreeMap<String, Market>,
    orders: Vec<Order>,
    positions: BTreeMap<String, Position>,
    realized: BTreeMap<String, Decimal>,
    cash: Decimal,
    fees_paid: Decimal,
}

pub(crate) struct Book {
    cfg: EngineConfig,
    markets: BTreeMap<String, Market>,
    orders: Vec<Order>,
    by_id: HashMap<String, usize>,
    by_client_id: HashMap<String, usize>,
    /// Indices of the orders still live (pending, open, partly filled), so a tick looks at working
    /// orders only, not at every order ever placed.
    live: BTreeSet<usize>,
    positions: BTreeMap<String, Position>,
    /// Realized PnL per symbol, fees not included.
    realized: BTreeMap<String, Decimal>,
    /// Starting balance plus realized PnL minus fees.
    cash: Decimal,
    fees_paid: Decimal,
    /// Separate streams so the price path for a seed does not depend on how many orders were placed.
    walk_rng: StdRng,
    id_rng: StdRng,
}

impl Book {
    pub(crate) fn new(
        symbols: &[(String, Decimal)],
        starting_balance: Decimal,
        seed: u64,
        cfg: EngineConfig,
    ) -> Self {
        let mut walk_rng = StdRng::seed_from_u64(seed);
        let markets = symbols
            .iter()
            .map(|(symbol, mid)| {
                let start = cfg
                    .candles
                    .get(symbol)
                    .and_then(|c| c.first())
                    .map_or(*mid, |c| c.open);
                let market = Market {
                    mid: round_price(start),
                    volume_24h: Decimal::new(walk_rng.gen_range(100_000..=900_000), 2),
                    maker_volume: Decimal::ZERO,
                    replay_step: 0,
                };
                (symbol.clone(), market)
            })
            .collect();
        Self {
            cfg,
            markets,
            orders: Vec::new(),
            by_id: HashMap::new(),
            by_client_id: HashMap::new(),
            live: BTreeSet::new(),
            positions: BTreeMap::new(),
            realized: BTreeMap::new(),
            cash: starting_balance,
            fees_paid: Decimal::ZERO,
            walk_rng,
            id_rng: StdRng::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15),
        }
    }

    /// Everything a restart must keep.
    pub(crate) fn state(&self) -> BookState {
        BookState {
            markets: self.markets.clone(),
            orders: self.orders.clone(),
            positions: self.positions.clone(),
            realized: self.realized.clone(),
            cash: self.cash,
            fees_paid: self.fees_paid,
        }
    }

    /// Puts a saved state back. Symbols the configuration no longer trades keep their orders and
    /// positions (they are history) but get no market; new symbols start fresh. The generators are
    /// re-seeded from `seed` and the number of orders, so new ids never repeat old ones.
    pub(crate) fn restore(&mut self, state: BookState, seed: u64) {
        for (symbol, market) in state.markets {
            if let Some(m) = self.markets.get_mut(&symbol) {
                *m = market;
            }
        }
        self.by_id.clear();
        self.by_client_id.clear();
        self.live.clear();
        for (i, o) in state.orders.iter().enumerate() {
            self.by_id.insert(o.id.clone(), i);
            if o.status.is_live() {
                self.live.insert(i);
            }
            if let Some(c) = &o.client_order_id {
                self.by_client_id.insert(c.clone(), i);
            }
        }
        let n = state.orders.len() as u64;
        self.orders = state.orders;
        self.positions = state.positions;
        self.realized = state.realized;
        self.cash = state.cash;
        self.fees_paid = state.fees_paid;
        self.id_rng = StdRng::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15 ^ n.rotate_left(17));
        self.walk_rng = StdRng::seed_from_u64(seed ^ n.rotate_left(29));
    }

    /// A UUID v4 drawn from the seeded stream, so a seeded run produces the same ids.
    fn new_id(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.id_rng.gen())
            .into_uuid()
            .to_string()
    }

    fn ladder(&self, mid: Decimal) -> Ladder {
        Ladder::new(&self.cfg, mid)
    }

    pub(crate) fn mid_price(&self, symbol: &str) -> Option<Decimal> {
        self.markets.get(symbol).map(|m| m.mid)
    }

    pub(crate) fn quote(&self, symbol: &str) -> Option<Quote> {
        self.markets.get(symbol).map(|m| {
            let ladder = self.ladder(m.mid);
            Quote {
                symbol: symbol.to_string(),
                price: m.mid,
                bid: ladder.price(m.mid, Side::Sell, 0),
                ask: ladder.price(m.mid, Side::Buy, 0),
                bid_size: ladder.size,
                ask_size: ladder.size,
                volume_24h: m.volume_24h,
            }
        })
    }

    pub(crate) fn symbols(&self) -> impl Iterator<Item = &str> {
        self.markets.keys().map(String::as_str)
    }

    pub(crate) fn orders(&self) -> Vec<SimOrder> {
        self.orders.iter().map(Order::snapshot).collect()
    }

    pub(crate) fn order(&self, order_id: &str) -> Option<SimOrder> {
        self.by_id.get(order_id).map(|&i| self.orders[i].snapshot())
    }

    /// Newest first.
    pub(crate) fn list(&self, filter: &OrderFilter) -> Vec<SimOrder> {
        self.orders
            .iter()
            .rev()
            .filter(|o| {
                filter
                    .status
                    .as_deref()
                    .is_none_or(|s| s == o.status.as_str())
                    && filter.symbol.as_deref().is_none_or(|s| s == o.symbol)
                    && filter
                        .client_order_id
                        .as_deref()
                        .is_none_or(|c| Some(c) == o.client_order_id.as_deref())
            })
            .take(filter.limit)
            .map(Order::snapshot)
            .collect()
    }

    fn mark(&self, symbol: &str, p: &Position) -> Decimal {
        self.mid_price(symbol).unwrap_or(p.average_price)
    }

    pub(crate) fn positions(&self) -> Vec<PositionView> {
        self.positions
            .iter()
            .map(|(symbol, p)| {
                let mark = self.mark(symbol, p);
                PositionView {
                    symbol: symbol.clone(),
                    side: if p.quantity > Decimal::ZERO {
                        "long"
                    } else {
                        "short"
                    },
                    quantity: p.quantity.abs(),
                    average_price: p.average_price,
                    unrealized_pnl: unrealized_pnl(p, mark),
                    realized_pnl: self
                        .realized
                        .get(symbol)
                        .copied()
                        .unwrap_or_default()
                        .normalize(),
                    margin_used: margin(p).round_dp(8).normalize(),
                    mark_price: mark,
                }
            })
            .collect()
    }

    pub(crate) fn balance(&self) -> Balance {
        let locked: Decimal = self.positions.values().map(margin).sum();
        let locked = locked.round_dp(8).normalize();
        let unrealized: Decimal = self
            .positions
            .iter()
            .map(|(s, p)| unrealized_pnl(p, self.mark(s, p)))
            .sum();
        let total = self.cash.normalize();
        Balance {
            available: (self.cash - locked).normalize(),
            locked,
            total,
            realized_pnl: self.realized.values().copied().sum::<Decimal>().normalize(),
            unrealized_pnl: unrealized.normalize(),
            fees_paid: self.fees_paid.normalize(),
            margin_ratio: if total > Decimal::ZERO {
                (locked / total).round_dp(4).normalize()
            } else {
                Decimal::ZERO
            },
        }
    }

    /// Accepts an order (status `pending`) or returns the one already holding its `clientOrderId`.
    pub(crate) fn place(
        &mut self,
        req: OrderRequest,
        now: DateTime<Utc>,
    ) -> Result<Placed, PlaceError> {
        // A retried POST must see its first attempt, whatever else it carries this time.
        if let Some(&i) = req
            .client_order_id
            .as_ref()
            .and_then(|c| self.by_client_id.get(c))
        {
            return Ok(Placed::Duplicate(self.orders[i].snapshot()));
        }
        let market = self
            .markets
            .get(&req.symbol)
            .ok_or_else(|| PlaceError::UnknownSymbol(req.symbol.clone()))?;

        // Pre-trade checks on the exposure this order would add, valued at the price it would most
        // likely trade at. Other live orders are not reserved: the checks are guards, not a ledger.
        let reference = match req.kind {
            OrderKind::Market => self.ladder(market.mid).price(market.mid, req.side, 0),
            OrderKind::Limit { price } | OrderKind::StopLimit { price, .. } => price,
            OrderKind::Stop { stop } => stop,
        };
        let current = self
            .positions
            .get(&req.symbol)
            .map_or(Decimal::ZERO, |p| p.quantity);
        let next = current + req.side.signed(req.quantity);
        let added = (next.abs() - current.abs()).max(Decimal::ZERO);
        if let Some(limit) = self.cfg.position_limit_notional {
            let would_be = (next.abs() * reference).round_dp(2).normalize();
            if added > Decimal::ZERO && would_be > limit {
                return Err(PlaceError::PositionLimit { limit, would_be });
            }
        }
        let fee = bps(self.cfg.taker_fee_bps.max(self.cfg.maker_fee_bps));
        let required = (added * reference * (Decimal::ONE + fee))
            .round_dp(8)
            .normalize();
        let available = self.balance().available;
        if required > available {
            return Err(PlaceError::InsufficientBalance {
                required,
                available,
            });
        }

        let id = self.new_id();
        let order = Order {
            id: id.clone(),
            client_order_id: req.client_order_id,
            symbol: req.symbol,
            side: req.side,
            kind: req.kind,
            quantity: req.quantity,
            time_in_force: req.time_in_force,
            status: Status::Pending,
            stop_triggered: false,
            average_price: None,
            created_at: now,
            updated_at: now,
            fills: Vec::new(),
        };
        let index = self.orders.len();
        if let Some(c) = &order.client_order_id {
            self.by_client_id.insert(c.clone(), index);
        }
        self.by_id.insert(id, index);
        self.live.insert(index);
        let event = order_created(&order);
        let snapshot = order.snapshot();
        self.orders.push(order);
        Ok(Placed::New(snapshot, vec![event]))
    }

    /// The venue's first look at an order, `fill_latency` after accepting it: market orders and
    /// marketable limits take liquidity, stops whose price is reached execute, everything else rests.
    pub(crate) fn on_accepted(&mut self, order_id: &str, now: DateTime<Utc>) -> Vec<Event> {
        let Some(&i) = self.by_id.get(order_id) else {
            return Vec::new();
        };
        // Cancelled while pending: nothing left to do.
        if self.orders[i].status != Status::Pending {
            return Vec::new();
        }
        let order = &self.orders[i];
        let Some(market) = self.markets.get(&order.symbol) else {
            return Vec::new();
        };
        match order.kind {
            OrderKind::Market => self.take(i, None, now),
            OrderKind::Limit { price } => self.take(i, Some(price), now),
            OrderKind::Stop { stop } if stop_reached(market.mid, order.side, stop) => {
                self.orders[i].stop_triggered = true;
                self.take(i, None, now)
            }
            OrderKind::StopLimit { price, stop } if stop_reached(market.mid, order.side, stop) => {
                self.orders[i].stop_triggered = true;
                self.take(i, Some(price), now)
            }
            OrderKind::Stop { .. } | OrderKind::StopLimit { .. } => {
                self.set_status(i, Status::Open, now)
            }
        }
    }

    /// Order `i` takes liquidity from the book, up to `limit` when it has one, then ends as its type
    /// and time in force say: filled, resting (GTC limit), or expired (the rest of an IOC, a FOK that
    /// could not fill completely, a market order larger than the book).
    fn take(&mut self, i: usize, limit: Option<Decimal>, now: DateTime<Utc>) -> Vec<Event> {
        let order = &self.orders[i];
        let Some(market) = self.markets.get(&order.symbol) else {
            return Vec::new();
        };
        let levels = self
            .ladder(market.mid)
            .levels(market.mid, order.side, limit);
        let mut remaining = order.remaining();
        if order.time_in_force == TimeInForce::Fok {
            let offered: Decimal = levels.iter().map(|(_, size)| *size).sum();
            if offered < remaining {
                return self.set_status(i, Status::Expired, now);
            }
        }
        let mut fills = Vec::new();
        for (price, size) in levels {
            if remaining.is_zero() {
                break;
            }
            let q = remaining.min(size);
            fills.push((q, price));
            remaining -= q;
        }
        let unfilled_status = match (limit, order.time_in_force) {
            (Some(_), TimeInForce::Gtc) if remaining < order.quantity => Status::PartiallyFilled,
            (Some(_), TimeInForce::Gtc) => Status::Open,
            _ => Status::Expired,
        };
        self.execute(i, &fills, Liquidity::Taker, unfilled_status, now)
    }

    /// One step of every symbol's price, then the resting orders the new prices reach.
    pub(crate) fn tick(&mut self, now: DateTime<Utc>) -> Vec<Event> {
        for (symbol, market) in self.markets.iter_mut() {
            let ladder_size = (self.cfg.level_notional / market.mid).round_dp(8);
            // The volume traded this tick is a share of one level; makers fill out of it.
            let share = Decimal::new(self.walk_rng.gen_range(20..=100), 2);
            market.maker_volume = (ladder_size * share).round_dp(8);
            if let Some(candles) = self.cfg.candles.get(symbol).filter(|c| !c.is_empty()) {
                market.replay_step = (market.replay_step + 1) % (candles.len() * 4);
                let next =
                    round_price(candles[market.replay_step / 4].path()[market.replay_step % 4]);
                // Rounding can only shrink a tiny price to zero; a venue never quotes zero.
                if next > Decimal::ZERO {
                    market.mid = next;
                }
            } else {
                let walk = self.cfg.walks.get(symbol).unwrap_or(&self.cfg.walk);
                market.mid = walk.next_mid(market.mid, &mut self.walk_rng);
            }
        }
        let mut events = Vec::new();
        // In index order, as placed.
        let live: Vec<usize> = self.live.iter().copied().collect();
        for i in live {
            if self.orders[i].status.is_resting() {
                events.extend(self.check_resting(i, now));
            }
        }
        events
    }

    /// Forgets every finished order (filled, cancelled, expired): a replay over a long history
    /// keeps only what can still trade. A forgotten order's `clientOrderId` is no longer
    /// recognised as a duplicate, so only a caller whose ids never repeat may use this.
    pub(crate) fn forget_finished(&mut self) {
        let orders = std::mem::take(&mut self.orders);
        self.by_id.clear();
        self.by_client_id.clear();
        self.live.clear();
        for o in orders.into_iter().filter(|o| o.status.is_live()) {
            let i = self.orders.len();
            self.by_id.insert(o.id.clone(), i);
            if let Some(c) = &o.client_order_id {
                self.by_client_id.insert(c.clone(), i);
            }
            self.live.insert(i);
            self.orders.push(o);
        }
    }

    /// How many orders the book holds.
    pub(crate) fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// Whether an order rests on `symbol` (open or partly filled, a stop not yet triggered):
    /// only then can a price tick there fill anything.
    pub(crate) fn resting_on(&self, symbol: &str) -> bool {
        self.live.iter().any(|&i| {
            let o = &self.orders[i];
            o.status.is_resting() && o.symbol == symbol
        })
    }

    fn check_resting(&mut self, i: usize, now: DateTime<Utc>) -> Vec<Event> {
        let order = &self.orders[i];
        let Some(market) = self.markets.get(&order.symbol) else {
            return Vec::new();
        };
        if !order.stop_triggered {
            if let Some(stop) = order.kind.stop_price() {
                if !stop_reached(market.mid, order.side, stop) {
                    return Vec::new();
                }
                let limit = order.kind.limit_price();
                self.orders[i].stop_triggered = true;
                return self.take(i, limit, now);
            }
        }
        let Some(price) = order.kind.limit_price() else {
            return Vec::new();
        };
        let ladder = self.ladder(market.mid);
        // The opposite touch: what a taker on the other side would trade at.
        let crosses = match order.side {
            Side::Buy => ladder.price(market.mid, Side::Buy, 0) <= price,
            Side::Sell => ladder.price(market.mid, Side::Sell, 0) >= price,
        };
        if !crosses || market.maker_volume.is_zero() {
            return Vec::new();
        }
        let q = order.remaining().min(market.maker_volume);
        let symbol = order.symbol.clone();
        if let Some(m) = self.markets.get_mut(&symbol) {
            m.maker_volume -= q;
        }
        self.execute(
            i,
            &[(q, price)],
            Liquidity::Maker,
            Status::PartiallyFilled,
            now,
        )
    }

    pub(crate) fn cancel(
        &mut self,
        order_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(SimOrder, Vec<Event>), CancelError> {
        let &i = self.by_id.get(order_id).ok_or(CancelError::NotFound)?;
        let order = &mut self.orders[i];
        if !order.status.is_live() {
            return Err(CancelError::NotCancellable(Box::new(order.snapshot())));
        }
        order.status = Status::Cancelled;
        order.updated_at = now;
        self.live.remove(&i);
        let order = &self.orders[i];
        let event = Event {
            name: "order.cancelled",
            data: json!({
                "orderId": order.id,
                "status": "cancelled",
                "cancelledAt": iso(now),
                "reason": "user_cancelled",
            }),
        };
        Ok((order.snapshot(), vec![event]))
    }

    fn set_status(&mut self, i: usize, status: Status, now: DateTime<Utc>) -> Vec<Event> {
        if !status.is_live() {
            self.live.remove(&i);
        }
        let order = &mut self.orders[i];
        order.status = status;
        order.updated_at = now;
        vec![order_updated(order, now)]
    }

    /// Books `fills` (quantity, price) into order `i`, its position and the account, charging the
    /// fee of `liquidity`. The order ends `filled` when nothing remains, `unfilled_status` otherwise.
    fn execute(
        &mut self,
        i: usize,
        fills: &[(Decimal, Decimal)],
        liquidity: Liquidity,
        unfilled_status: Status,
        now: DateTime<Utc>,
    ) -> Vec<Event> {
        if fills.is_empty() {
            return self.set_status(i, unfilled_status, now);
        }
        let fee_bps = match liquidity {
            Liquidity::Maker => self.cfg.maker_fee_bps,
            Liquidity::Taker => self.cfg.taker_fee_bps,
        };
        let ids: Vec<String> = fills.iter().map(|_| self.new_id()).collect();
        let balance_before = self.balance();
        let order = &mut self.orders[i];
        let mut fees = Decimal::ZERO;
        for ((q, p), fill_id) in fills.iter().zip(ids) {
            let fee = (*q * *p * bps(fee_bps)).round_dp(8).normalize();
            fees += fee;
            order.fills.push(SimFill {
                fill_id,
                quantity: *q,
                price: *p,
                fee,
                liquidity: match liquidity {
                    Liquidity::Maker => "maker".into(),
                    Liquidity::Taker => "taker".into(),
                },
                timestamp: now,
            });
        }
        let filled = order.filled_quantity();
        let notional: Decimal = order.fills.iter().map(|f| f.quantity * f.price).sum();
        order.average_price = Some((notional / filled).round_dp(8).normalize());
        order.status = if filled >= order.quantity {
            Status::Filled
        } else {
            unfilled_status
        };
        if !order.status.is_live() {
            self.live.remove(&i);
        }
        order.updated_at = now;
        let mut events = vec![order_updated(order, now)];

        let qty: Decimal = fills.iter().map(|(q, _)| *q).sum();
        let pass_notional: Decimal = fills.iter().map(|(q, p)| *q * *p).sum();
        let vwap = (pass_notional / qty).round_dp(10);
        let (symbol, signed) = (order.symbol.clone(), order.side.signed(qty));
        if let Some(market) = self.markets.get_mut(&symbol) {
            market.volume_24h += qty;
        }
        self.cash -= fees;
        self.fees_paid += fees;
        events.extend(self.apply_to_position(&symbol, signed, vwap, now));

        let after = self.balance();
        events.push(Event {
            name: "account.balance_updated",
            data: json!({
                "asset": "USD",
                "available": num(after.available),
                "locked": num(after.locked),
                "total": num(after.total),
                "change": num((after.available - balance_before.available).normalize()),
                "reason": "order_execution",
            }),
        });
        events
    }

    /// Moves the signed position of `symbol` by `signed` units traded at `price`, realizing PnL on the
    /// part that reduces it. A fill that crosses zero closes the old position and opens a new one.
    fn apply_to_position(
        &mut self,
        symbol: &str,
        signed: Decimal,
        price: Decimal,
        now: DateTime<Utc>,
    ) -> Vec<Event> {
        let before = self.positions.get(symbol).copied().unwrap_or_default();
        let after_qty = before.quantity + signed;
        let mut events = Vec::new();

        if before.quantity.is_zero() {
            self.positions.insert(
                symbol.to_string(),
                Position {
                    quantity: signed,
                    average_price: price.round_dp(8).normalize(),
                    realized: Decimal::ZERO,
                },
            );
            events.push(self.position_opened(symbol, now));
        } else if (before.quantity > Decimal::ZERO) == (signed > Decimal::ZERO) {
            let old = before.quantity.abs();
            let add = signed.abs();
            let average = ((old * before.average_price + add * price) / (old + add))
                .round_dp(8)
                .normalize();
            self.positions.insert(
                symbol.to_string(),
                Position {
                    quantity: after_qty,
                    average_price: average,
                    realized: before.realized,
                },
            );
            events.push(self.position_updated(symbol, now));
        } else {
            let closed = before.quantity.abs().min(signed.abs());
            let direction = if before.quantity > Decimal::ZERO {
                Decimal::ONE
            } else {
                Decimal::NEGATIVE_ONE
            };
            let realized = (closed * (price - before.average_price) * direction)
                .round_dp(8)
                .normalize();
            self.cash += realized;
            *self.realized.entry(symbol.to_string()).or_default() += realized;
            let closed_event = Event {
                name: "position.closed",
                data: json!({
                    "symbol": symbol,
                    "quantity": num(closed),
                    "averagePrice": num(before.average_price),
                    "closePrice": num(price.round_dp(8).normalize()),
                    // The position's whole life, not only this last reduction.
                    "realizedPnl": num((before.realized + realized).normalize()),
                    "closedAt": iso(now),
                }),
            };
            if after_qty.is_zero() {
                self.positions.remove(symbol);
                events.push(closed_event);
            } else if (after_qty > Decimal::ZERO) == (before.quantity > Decimal::ZERO) {
                // Partly reduced: the average price of what remains is unchanged.
                self.positions.insert(
                    symbol.to_string(),
                    Position {
                        quantity: after_qty,
                        average_price: before.average_price,
                        realized: before.realized + realized,
                    },
                );
                events.push(self.position_updated(symbol, now));
            } else {
                self.positions.remove(symbol);
                events.push(closed_event);
                self.positions.insert(
                    symbol.to_string(),
                    Position {
                        quantity: after_qty,
                        average_price: price.round_dp(8).normalize(),
                        realized: Decimal::ZERO,
                    },
                );
                events.push(self.position_opened(symbol, now));
            }
        }
        events
    }

    fn position_opened(&self, symbol: &str, now: DateTime<Utc>) -> Event {
        let p = self.positions.get(symbol).copied().unwrap_or_default();
        let mark = self.mark(symbol, &p);
        Event {
            name: "position.opened",
            data: json!({
                "symbol": symbol,
                "side": if p.quantity > Decimal::ZERO { "long" } else { "short" },
                "quantity": num(p.quantity.abs()),
                "averagePrice": num(p.average_price),
                "unrealizedPnl": num(unrealized_pnl(&p, mark)),
                "marginUsed": num(margin(&p).round_dp(2).normalize()),
                "createdAt": iso(now),
            }),
        }
    }

    fn position_updated(&self, symbol: &str, now: DateTime<Utc>) -> Event {
        let p = self.positions.get(symbol).copied().unwrap_or_default();
        let mark = self.mark(symbol, &p);
        let pnl = unrealized_pnl(&p, mark);
        let margin = margin(&p);
        let percent = if margin.is_zero() {
            Decimal::ZERO
        } else {
            (pnl / margin * Decimal::ONE_HUNDRED)
                .round_dp(2)
                .normalize()
        };
        let total = self.balance().total;
        let ratio = if total > Decimal::ZERO {
            (margin / total).round_dp(4).normalize()
        } else {
            Decimal::ZERO
        };
        Event {
            name: "position.updated",
            data: json!({
                "symbol": symbol,
                "quantity": num(p.quantity.abs()),
                "unrealizedPnl": num(pnl),
                "unrealizedPnlPercent": num(percent),
                "markPrice": num(mark),
                "marginRatio": num(ratio),
                "updatedAt": iso(now),
            }),
        }
    }

    /// Moves a symbol's mid (tests, and paper mode fed by outside reference prices).
    pub(crate) fn set_mid(&mut self, symbol: &str, mid: Decimal) {
        if let Some(m) = self.markets.get_mut(symbol) {
            if mid > Decimal::ZERO {
                m.mid = round_price(mid);
            }
        }
    }
}

/// Buy stops fire when the price rises to the stop, sell stops when it falls to it.
fn stop_reached(mid: Decimal, side: Side, stop: Decimal) -> bool {
    match side {
        Side::Buy => mid >= stop,
        Side::Sell => mid <= stop,
    }
}

fn margin(p: &Position) -> Decimal {
    p.quantity.abs() * p.average_price
}

fn unrealized_pnl(p: &Position, mark: Decimal) -> Decimal {
    ((mark - p.average_price) * p.quantity)
        .round_dp(8)
        .normalize()
}

fn order_created(order: &Order) -> Event {
    Event {
        name: "order.created",
        data: json!({
            "orderId": order.id,
            "clientOrderId": order.client_order_id,
            "symbol": order.symbol,
            "side": order.side.as_str(),
            "type": order.kind.as_str(),
            "quantity": num(order.quantity),
            // The venue's own example sends 0, not null, for an order without a limit price.
            "price": num(order.kind.limit_price().unwrap_or(Decimal::ZERO)),
            "status": "pending",
            "createdAt": iso(order.created_at),
        }),
    }
}

fn order_updated(order: &Order, now: DateTime<Utc>) -> Event {
    Event {
        name: "order.updated",
        data: json!({
            "orderId": order.id,
            "status": order.status.as_str(),
            "filledQuantity": num(order.filled_quantity()),
            "averagePrice": order.average_price.map(num),
            "updatedAt": iso(now),
        }),
    }
}

/// Prices of 1 and above quote in cents; below that, 8 places so a cheap symbol still moves.
pub(crate) fn round_price(p: Decimal) -> Decimal {
    let dp = if p >= Decimal::ONE { 2 } else { 8 };
    p.round_dp(dp).normalize()
}

/// ISO-8601 UTC with milliseconds, the venue's timestamp format.
pub(crate) fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A Decimal as an exact JSON number (serde_json's `arbitrary_precision` keeps the digits as written).
pub(crate) fn num(d: Decimal) -> Value {
    // Decimal's Display is plain digits with an optional sign and point, always valid JSON; the string
    // fallback exists only to avoid a panic path.
    d.to_string()
        .parse::<serde_json::Number>()
        .map_or_else(|_| Value::String(d.to_string()), Value::Number)
}

#[cfg(test)]
mod tests;
