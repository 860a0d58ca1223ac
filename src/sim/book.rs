//! The simulated venue's trading state: orders, the synthetic quote of each symbol, positions and the USD
//! margin account.
//!
//! Everything here is synchronous and takes `now` as a parameter; the HTTP layer and the timers only move
//! data in and out. Guarantees:
//! - a `clientOrderId` names at most one order, ever;
//! - an order leaves `pending`/`open` at most once, and a terminal order (`filled`, `cancelled`,
//!   `expired`) never changes again;
//! - orders fill completely or not at all (partial fills belong to the paper venue's matching engine);
//! - every mutation returns the venue events it causes, in the order a client must see them:
//!   `order.updated`, then the `position.*` events it caused, then `account.balance_updated`;
//! - order inputs are bounded (see [`MAX_INPUT`]), so no product or sum computed here can overflow
//!   `Decimal`, whose arithmetic panics on overflow.
//!
//! The account is a 1x margin account in USD: `total` is the starting balance plus realized PnL,
//! `locked` is the margin of open positions (|quantity| × average price), `available` is the difference.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde::Serialize;
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

/// Half the quoted spread as a fraction of mid: 1 bp each side, 2 bps in total.
fn half_spread() -> Decimal {
    Decimal::new(1, 4)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Open,
    Filled,
    Cancelled,
    Expired,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Open => "open",
            Self::Filled => "filled",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }
    fn is_live(self) -> bool {
        matches!(self, Self::Pending | Self::Open)
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
#[derive(Debug, Clone, Serialize)]
pub struct SimFill {
    pub fill_id: String,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub quantity: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub price: Decimal,
    pub timestamp: DateTime<Utc>,
}

/// A snapshot of one order as the venue sees it. Decimal fields serialize as exact JSON numbers
/// (plain `Decimal` would serialize as a string).
#[derive(Debug, Clone, Serialize)]
pub struct SimOrder {
    pub order_id: String,
    pub client_order_id: Option<String>,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub quantity: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision_option")]
    pub price: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::arbitrary_precision_option")]
    pub stop_price: Option<Decimal>,
    pub time_in_force: String,
    pub status: String,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub filled_quantity: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision_option")]
    pub average_price: Option<Decimal>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub fills: Vec<SimFill>,
}

#[derive(Debug, Clone)]
struct Order {
    id: String,
    client_order_id: Option<String>,
    symbol: String,
    side: Side,
    kind: OrderKind,
    quantity: Decimal,
    time_in_force: TimeInForce,
    status: Status,
    /// A stop-limit order becomes a plain resting limit once its stop price has been reached.
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
#[derive(Debug, Clone)]
struct Market {
    mid: Decimal,
    bid_size: Decimal,
    ask_size: Decimal,
    volume_24h: Decimal,
}

impl Market {
    fn bid(&self) -> Decimal {
        round_price(self.mid - self.mid * half_spread())
    }
    fn ask(&self) -> Decimal {
        round_price(self.mid + self.mid * half_spread())
    }
    /// The price a taker gets: buyers pay the ask, sellers receive the bid.
    fn taker_price(&self, side: Side) -> Decimal {
        match side {
            Side::Buy => self.ask(),
            Side::Sell => self.bid(),
        }
    }
    /// Whether a limit order at `price` would trade against the current quote.
    fn is_marketable(&self, side: Side, price: Decimal) -> bool {
        match side {
            Side::Buy => self.ask() <= price,
            Side::Sell => self.bid() >= price,
        }
    }
    /// Buy stops fire when the price rises to the stop, sell stops when it falls to it.
    fn stop_reached(&self, side: Side, stop: Decimal) -> bool {
        match side {
            Side::Buy => self.mid >= stop,
            Side::Sell => self.mid <= stop,
        }
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
pub(crate) struct PositionView {
    pub symbol: String,
    pub side: &'static str,
    pub quantity: Decimal,
    pub average_price: Decimal,
    pub unrealized_pnl: Decimal,
    pub mark_price: Decimal,
}

/// The USD balance as served by `GET /account/balances`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Balance {
    pub available: Decimal,
    pub locked: Decimal,
    pub total: Decimal,
}

#[derive(Debug, Clone, Copy, Default)]
struct Position {
    /// Signed: positive long, negative short. Never stored as zero (the entry is removed instead).
    quantity: Decimal,
    average_price: Decimal,
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

pub(crate) struct Book {
    markets: BTreeMap<String, Market>,
    orders: Vec<Order>,
    by_id: HashMap<String, usize>,
    by_client_id: HashMap<String, usize>,
    positions: BTreeMap<String, Position>,
    /// Starting balance plus realized PnL.
    cash: Decimal,
    /// Separate streams so the price path for a seed does not depend on how many orders were placed.
    walk_rng: StdRng,
    id_rng: StdRng,
}

impl Book {
    pub(crate) fn new(symbols: &[(String, Decimal)], starting_balance: Decimal, seed: u64) -> Self {
        let mut walk_rng = StdRng::seed_from_u64(seed);
        let markets = symbols
            .iter()
            .map(|(symbol, mid)| {
                let market = Market {
                    mid: round_price(*mid),
                    bid_size: random_size(&mut walk_rng),
                    ask_size: random_size(&mut walk_rng),
                    volume_24h: Decimal::new(walk_rng.gen_range(100_000..=900_000), 2),
                };
                (symbol.clone(), market)
            })
            .collect();
        Self {
            markets,
            orders: Vec::new(),
            by_id: HashMap::new(),
            by_client_id: HashMap::new(),
            positions: BTreeMap::new(),
            cash: starting_balance,
            walk_rng,
            id_rng: StdRng::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15),
        }
    }

    /// A UUID v4 drawn from the seeded stream, so a seeded run produces the same ids.
    fn new_id(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.id_rng.gen())
            .into_uuid()
            .to_string()
    }

    pub(crate) fn mid_price(&self, symbol: &str) -> Option<Decimal> {
        self.markets.get(symbol).map(|m| m.mid)
    }

    pub(crate) fn quote(&self, symbol: &str) -> Option<Quote> {
        self.markets.get(symbol).map(|m| Quote {
            symbol: symbol.to_string(),
            price: m.mid,
            bid: m.bid(),
            ask: m.ask(),
            bid_size: m.bid_size,
            ask_size: m.ask_size,
            volume_24h: m.volume_24h,
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

    pub(crate) fn positions(&self) -> Vec<PositionView> {
        self.positions
            .iter()
            .map(|(symbol, p)| {
                let mark = self.mid_price(symbol).unwrap_or(p.average_price);
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
                    mark_price: mark,
                }
            })
            .collect()
    }

    pub(crate) fn balance(&self) -> Balance {
        let locked: Decimal = self
            .positions
            .values()
            .map(|p| p.quantity.abs() * p.average_price)
            .sum();
        let locked = locked.round_dp(8).normalize();
        Balance {
            available: (self.cash - locked).normalize(),
            locked,
            total: self.cash.normalize(),
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

        // Pre-trade margin check on the exposure this order would add, valued at the price it would
        // most likely trade at. Other live orders are not reserved: the check is a guard, not a ledger.
        let reference = match req.kind {
            OrderKind::Market => market.taker_price(req.side),
            OrderKind::Limit { price } | OrderKind::StopLimit { price, .. } => price,
            OrderKind::Stop { stop } => stop,
        };
        let current = self
            .positions
            .get(&req.symbol)
            .map_or(Decimal::ZERO, |p| p.quantity);
        let next = current + req.side.signed(req.quantity);
        let added = (next.abs() - current.abs()).max(Decimal::ZERO);
        let required = (added * reference).round_dp(8).normalize();
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
        let event = order_created(&order);
        let snapshot = order.snapshot();
        self.orders.push(order);
        Ok(Placed::New(snapshot, vec![event]))
    }

    /// The venue's first look at an order, `fill_latency` after accepting it: market orders fill, a
    /// marketable limit fills as a taker, an IOC/FOK limit that cannot fill expires, anything else rests.
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
        let taker = market.taker_price(order.side);
        match order.kind {
            OrderKind::Market => self.fill(i, taker, now),
            OrderKind::Limit { price } if market.is_marketable(order.side, price) => {
                self.fill(i, taker, now)
            }
            OrderKind::Limit { .. } if order.time_in_force != TimeInForce::Gtc => {
                self.set_status(i, Status::Expired, now)
            }
            OrderKind::Stop { stop } if market.stop_reached(order.side, stop) => {
                self.fill(i, taker, now)
            }
            OrderKind::StopLimit { price, stop } if market.stop_reached(order.side, stop) => {
                let marketable = market.is_marketable(order.side, price);
                self.orders[i].stop_triggered = true;
                if marketable {
                    self.fill(i, taker, now)
                } else {
                    self.set_status(i, Status::Open, now)
                }
            }
            OrderKind::Limit { .. } | OrderKind::Stop { .. } | OrderKind::StopLimit { .. } => {
                self.set_status(i, Status::Open, now)
            }
        }
    }

    /// One step of every symbol's random walk, then the resting orders the new prices reach.
    pub(crate) fn tick(&mut self, now: DateTime<Utc>) -> Vec<Event> {
        for market in self.markets.values_mut() {
            // ±0.05% per step, in integer hundredths of a basis point so no float is involved.
            let step = Decimal::new(self.walk_rng.gen_range(-50..=50), 5);
            let next = round_price(market.mid + market.mid * step);
            // Rounding can only shrink a tiny price to zero; a venue never quotes zero.
            if next > Decimal::ZERO {
                market.mid = next;
            }
            market.bid_size = random_size(&mut self.walk_rng);
            market.ask_size = random_size(&mut self.walk_rng);
        }
        let mut events = Vec::new();
        for i in 0..self.orders.len() {
            if self.orders[i].status == Status::Open {
                events.extend(self.check_resting(i, now));
            }
        }
        events
    }

    fn check_resting(&mut self, i: usize, now: DateTime<Utc>) -> Vec<Event> {
        let order = &self.orders[i];
        let Some(market) = self.markets.get(&order.symbol) else {
            return Vec::new();
        };
        let resting_limit = match order.kind {
            OrderKind::Limit { price } => Some(price),
            OrderKind::StopLimit { price, .. } if order.stop_triggered => Some(price),
            _ => None,
        };
        if let Some(price) = resting_limit {
            // A resting order is the maker: it trades at its own price once the quote reaches it.
            return if market.is_marketable(order.side, price) {
                self.fill(i, price, now)
            } else {
                Vec::new()
            };
        }
        let taker = market.taker_price(order.side);
        match order.kind {
            OrderKind::Stop { stop } if market.stop_reached(order.side, stop) => {
                self.fill(i, taker, now)
            }
            OrderKind::StopLimit { price, stop } if market.stop_reached(order.side, stop) => {
                let marketable = market.is_marketable(order.side, price);
                self.orders[i].stop_triggered = true;
                if marketable {
                    self.fill(i, taker, now)
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        }
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
        let order = &mut self.orders[i];
        order.status = status;
        order.updated_at = now;
        vec![order_updated(order, now)]
    }

    /// Fills order `i` completely at `price` and books the position and account consequences.
    fn fill(&mut self, i: usize, price: Decimal, now: DateTime<Utc>) -> Vec<Event> {
        let fill_id = self.new_id();
        let balance_before = self.balance();
        let order = &mut self.orders[i];
        order.fills.push(SimFill {
            fill_id,
            quantity: order.quantity,
            price,
            timestamp: now,
        });
        order.status = Status::Filled;
        order.average_price = Some(price);
        order.updated_at = now;
        let mut events = vec![order_updated(order, now)];
        let (symbol, signed) = (order.symbol.clone(), order.side.signed(order.quantity));
        if let Some(market) = self.markets.get_mut(&symbol) {
            market.volume_24h += signed.abs();
        }
        events.extend(self.apply_to_position(&symbol, signed, price, now));

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
                    average_price: price,
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
            let closed_event = Event {
                name: "position.closed",
                data: json!({
                    "symbol": symbol,
                    "quantity": num(closed),
                    "averagePrice": num(before.average_price),
                    "closePrice": num(price),
                    "realizedPnl": num(realized),
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
                        average_price: price,
                    },
                );
                events.push(self.position_opened(symbol, now));
            }
        }
        events
    }

    fn position_opened(&self, symbol: &str, now: DateTime<Utc>) -> Event {
        let p = self.positions.get(symbol).copied().unwrap_or_default();
        let mark = self.mid_price(symbol).unwrap_or(p.average_price);
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
        let mark = self.mid_price(symbol).unwrap_or(p.average_price);
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

    pub(crate) fn set_mid(&mut self, symbol: &str, mid: Decimal) {
        if let Some(m) = self.markets.get_mut(symbol) {
            m.mid = mid;
        }
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

fn random_size(rng: &mut StdRng) -> Decimal {
    Decimal::new(rng.gen_range(1..=500), 2)
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
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().expect("test decimal")
    }

    fn book() -> Book {
        Book::new(
            &[
                ("BTC/USD".into(), dec("50000")),
                ("ETH/USD".into(), dec("3000")),
            ],
            dec("100000"),
            42,
        )
    }

    fn req(side: Side, kind: OrderKind, qty: &str, coid: Option<&str>) -> OrderRequest {
        OrderRequest::new(
            "BTC/USD".into(),
            side,
            kind,
            dec(qty),
            TimeInForce::Gtc,
            coid.map(String::from),
        )
        .expect("valid request")
    }

    fn place(book: &mut Book, r: OrderRequest) -> SimOrder {
        match book.place(r, Utc::now()) {
            Ok(Placed::New(o, _)) => o,
            Ok(Placed::Duplicate(_)) => panic!("unexpected duplicate"),
            Err(e) => panic!("rejected: {e}"),
        }
    }

    fn names(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(|e| e.name).collect()
    }

    fn trade(book: &mut Book, side: Side, qty: &str, mid: &str) -> Vec<Event> {
        book.set_mid("BTC/USD", dec(mid));
        let o = place(book, req(side, OrderKind::Market, qty, None));
        book.on_accepted(&o.order_id, Utc::now())
    }

    #[test]
    fn market_buy_fills_at_the_ask_and_opens_a_long() {
        let mut b = book();
        let events = trade(&mut b, Side::Buy, "0.1", "50000");
        assert_eq!(
            names(&events),
            [
                "order.updated",
                "position.opened",
                "account.balance_updated"
            ]
        );
        let o = &b.orders()[0];
        assert_eq!(o.status, "filled");
        assert_eq!(o.average_price, Some(dec("50005")));
        assert_eq!(o.filled_quantity, dec("0.1"));
        let bal = b.balance();
        assert_eq!(bal.locked, dec("5000.5"));
        assert_eq!(bal.total, dec("100000"));
        assert_eq!(bal.available, dec("94999.5"));
    }

    #[test]
    fn reducing_closing_and_flipping_realize_pnl() {
        let mut b = book();
        trade(&mut b, Side::Buy, "0.1", "50000"); // long 0.1 @ ask 50005
        let e = trade(&mut b, Side::Buy, "0.1", "51000"); // + 0.1 @ ask 51005.1
        assert_eq!(names(&e)[1], "position.updated");
        let p = &b.positions()[0];
        assert_eq!((p.side, p.quantity), ("long", dec("0.2")));
        assert_eq!(p.average_price, dec("50505.05"));

        // Sells at bid 51994.8: 1489.75 per unit above the average.
        let e = trade(&mut b, Side::Sell, "0.05", "52000");
        assert_eq!(names(&e)[1], "position.updated");
        assert_eq!(b.balance().total, dec("100074.4875"));

        // Closes the remaining 0.15 and opens a 0.05 short at the same bid.
        let e = trade(&mut b, Side::Sell, "0.2", "52000");
        assert_eq!(
            names(&e),
            [
                "order.updated",
                "position.closed",
                "position.opened",
                "account.balance_updated"
            ]
        );
        assert_eq!(e[1].data["realizedPnl"], num(dec("223.4625")));
        let p = &b.positions()[0];
        assert_eq!((p.side, p.quantity), ("short", dec("0.05")));
        assert_eq!(p.average_price, dec("51994.8"));

        // Buys back at ask 50005: 1989.8 per unit of profit on the short.
        let e = trade(&mut b, Side::Buy, "0.05", "50000");
        assert_eq!(names(&e)[1], "position.closed");
        assert!(b.positions().is_empty());
        let bal = b.balance();
        assert_eq!(bal.total, dec("100397.44"));
        assert_eq!((bal.locked, bal.available), (Decimal::ZERO, bal.total));
    }

    #[test]
    fn limit_order_rests_until_the_price_crosses_and_fills_at_its_price() {
        let mut b = book();
        b.set_mid("BTC/USD", dec("50000"));
        let o = place(
            &mut b,
            req(
                Side::Buy,
                OrderKind::Limit {
                    price: dec("49000"),
                },
                "0.1",
                None,
            ),
        );
        let e = b.on_accepted(&o.order_id, Utc::now());
        assert_eq!(names(&e), ["order.updated"]);
        assert_eq!(b.orders()[0].status, "open");
        b.set_mid("BTC/USD", dec("48900"));
        let e = b.tick(Utc::now());
        // The walk moves at most 0.05% (~24.5), so the ask stays below 49000.
        assert_eq!(e.first().map(|e| e.name), Some("order.updated"));
        let o = &b.orders()[0];
        assert_eq!(o.status, "filled");
        assert_eq!(o.average_price, Some(dec("49000")));
    }

    #[test]
    fn ioc_limit_that_cannot_fill_expires() {
        let mut b = book();
        let r = OrderRequest::new(
            "BTC/USD".into(),
            Side::Sell,
            OrderKind::Limit {
                price: dec("60000"),
            },
            dec("1"),
            TimeInForce::Ioc,
            None,
        )
        .expect("valid");
        let o = place(&mut b, r);
        b.on_accepted(&o.order_id, Utc::now());
        assert_eq!(b.orders()[0].status, "expired");
    }

    #[test]
    fn sell_stop_fires_when_the_price_falls_to_it() {
        let mut b = book();
        b.set_mid("BTC/USD", dec("50000"));
        let o = place(
            &mut b,
            req(
                Side::Sell,
                OrderKind::Stop { stop: dec("49000") },
                "0.1",
                None,
            ),
        );
        b.on_accepted(&o.order_id, Utc::now());
        assert_eq!(b.orders()[0].status, "open");
        b.set_mid("BTC/USD", dec("48000"));
        b.tick(Utc::now());
        assert_eq!(b.orders()[0].status, "filled");
    }

    #[test]
    fn duplicate_client_order_id_returns_the_first_order() {
        let mut b = book();
        let first = place(&mut b, req(Side::Buy, OrderKind::Market, "0.1", Some("c1")));
        let again = b.place(
            req(Side::Sell, OrderKind::Market, "5", Some("c1")),
            Utc::now(),
        );
        match again {
            Ok(Placed::Duplicate(o)) => assert_eq!(o.order_id, first.order_id),
            _ => panic!("expected duplicate"),
        }
        assert_eq!(b.orders().len(), 1);
    }

    #[test]
    fn terminal_orders_cannot_be_cancelled_and_cancelled_orders_never_fill() {
        let mut b = book();
        let o = place(&mut b, req(Side::Buy, OrderKind::Market, "0.1", None));
        let (cancelled, events) = b.cancel(&o.order_id, Utc::now()).expect("cancellable");
        assert_eq!(cancelled.status, "cancelled");
        assert_eq!(names(&events), ["order.cancelled"]);
        assert!(b.on_accepted(&o.order_id, Utc::now()).is_empty());
        assert!(matches!(
            b.cancel(&o.order_id, Utc::now()),
            Err(CancelError::NotCancellable(_))
        ));
        assert!(matches!(
            b.cancel("nope", Utc::now()),
            Err(CancelError::NotFound)
        ));
    }

    #[test]
    fn orders_beyond_the_available_margin_are_refused() {
        let mut b = book();
        let r = b.place(req(Side::Buy, OrderKind::Market, "3", None), Utc::now());
        assert!(matches!(r, Err(PlaceError::InsufficientBalance { .. })));
        assert!(b.orders().is_empty());
    }

    #[test]
    fn malformed_requests_cannot_be_built() {
        let bad = [
            (OrderKind::Market, "0"),
            (OrderKind::Market, "-1"),
            (OrderKind::Market, "1000000000001"),
            (OrderKind::Limit { price: dec("0") }, "1"),
            (OrderKind::Stop { stop: dec("-5") }, "1"),
        ];
        for (kind, qty) in bad {
            let r = OrderRequest::new(
                "BTC/USD".into(),
                Side::Buy,
                kind,
                dec(qty),
                TimeInForce::Gtc,
                None,
            );
            assert!(r.is_err(), "{kind:?} {qty}");
        }
    }

    #[test]
    fn price_walk_is_seeded_and_small() {
        let (mut a, mut b) = (book(), book());
        for _ in 0..100 {
            a.tick(Utc::now());
            b.tick(Utc::now());
        }
        let (pa, pb) = (a.mid_price("BTC/USD"), b.mid_price("BTC/USD"));
        assert_eq!(pa, pb);
        let p = pa.expect("known symbol");
        assert!(p > dec("45000") && p < dec("55000"), "{p}");
    }
}
