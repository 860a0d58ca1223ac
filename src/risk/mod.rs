//! The risk manager: the gate between a strategy's intent and money. No I/O.
//!
//! `RiskApproved<T>` can only be constructed in this module, and the store only writes orders from
//! a `RiskApproved<OrderPlan>`: an order that skipped the checks cannot be expressed. [`decide`]
//! is a pure function of the intent, the account's numbers, the trading state, the maintenance
//! calendar and `now`; every refusal carries the rule and the numbers it compared.
//!
//! Order of the checks: maintenance → halted → daily-loss breaker → direction (exits, shorts,
//! reducing state) → cooldown and concurrency → sizing and lot rounding → limits → rate limits.
//!
//! Guarantees (checked by the property test in `tests`): no approved order exceeds a configured
//! limit when it increases exposure; nothing is approved while halted or inside a maintenance
//! window; in `reducing` only orders that shrink a position without flipping it are approved.

pub mod alerts;
pub mod limits;
pub mod maintenance;
pub mod protect;
pub mod release;
pub mod sizing;
pub mod state;

use crate::model::{Price, Quantity, Side, Signal, Symbol};
use crate::strategy::{Direction, OrderKind, Strategy};
use chrono::{DateTime, Utc};
use limits::AccountLimits;
use rust_decimal::Decimal;
use sizing::{SizingInputs, SymbolSpec};
use state::{StateEntry, TradingState};

/// A value that passed the risk checks. Deliberately has no public constructor.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskApproved<T>(T);

impl<T> RiskApproved<T> {
    pub fn get(&self) -> &T {
        &self.0
    }
}

/// A sized order, ready to be written as an intent.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderPlan {
    pub strategy: String,
    pub symbol: Symbol,
    pub side: Side,
    pub quantity: Quantity,
    /// The price the size was computed at.
    pub reference_price: Price,
    /// `market` or `limit`.
    pub order_type: &'static str,
    /// The limit price, rounded to the tick; `None` for market orders.
    pub limit_price: Option<Price>,
    pub time_in_force: &'static str,
    /// Only shrinks a position (a close, or the reducing state).
    pub reduces_only: bool,
    pub role: Role,
    /// The entry a protective order protects.
    pub parent: Option<String>,
    /// The trigger of a `stop` order.
    pub stop_price: Option<Price>,
    /// For an opening entry: where its protective orders go once it has filled.
    pub protect: Protect,
}

impl OrderPlan {
    /// The decision's text: what is ordered, at what reference price, and why its size is what
    /// it is (`market buy 0.02 BTC/USD (~1000.00 USD at 50000)`).
    pub fn describe(&self, price: Price, size_scale: Option<&(Decimal, String)>) -> String {
        let mut reason = format!(
            "{} {} {} {} (~{} USD at {}{})",
            self.order_type,
            self.side,
            self.quantity.get(),
            self.symbol,
            (self.quantity.get() * price.get()).round_dp(2),
            price.get(),
            self.limit_price
                .map(|l| format!(", limit {}", l.get()))
                .unwrap_or_default()
        );
        if self.reduces_only {
            reason.push_str("; reduces the position");
        }
        if let Some((factor, why)) = size_scale {
            reason.push_str(&format!("; size x{factor} by {why}"));
        }
        reason
    }
}

/// What an order is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Entry,
    StopLoss,
    TakeProfit,
}

impl Role {
    /// The stored form back; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "entry" => Self::Entry,
            "stop_loss" => Self::StopLoss,
            "take_profit" => Self::TakeProfit,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Entry => "entry",
            Self::StopLoss => "stop_loss",
            Self::TakeProfit => "take_profit",
        }
    }
}

/// Whether an unfilled order is due to be cancelled under its strategy's
/// `unfilled_timeout_secs`. Only entries time out: a protective order rests until its level is
/// reached, and cancelling it would leave the position it protects unprotected.
pub fn unfilled_timed_out(
    role: Role,
    created_at: DateTime<Utc>,
    timeout: chrono::Duration,
    now: DateTime<Utc>,
) -> bool {
    role == Role::Entry && created_at + timeout <= now
}

/// Stop-loss and take-profit prices an entry carries from its signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Protect {
    pub stop: Option<Price>,
    pub target: Option<Price>,
}

/// What is already committed on one symbol: the position and working (non-terminal) orders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exposure {
    /// Signed: long > 0.
    pub position: Decimal,
    /// Unfilled remainder of working buy orders.
    pub working_buy: Decimal,
    /// Unfilled remainder of working sell orders.
    pub working_sell: Decimal,
}

impl Exposure {
    /// The largest absolute position if every working order on one side fills.
    pub fn worst_case(&self) -> Decimal {
        (self.position + self.working_buy)
            .abs()
            .max((self.position - self.working_sell).abs())
    }
}

/// The account's numbers at decision time.
#[derive(Debug, Clone, Default)]
pub struct AccountView {
    pub exposure: Exposure,
    /// Worst-case value (USD) of every other symbol's position and working orders.
    pub gross_other: Decimal,
    /// Other symbols with exposure whose price is unknown: the gross limit cannot be checked.
    pub unpriced: Vec<String>,
    pub open_orders: u32,
    pub orders_last_minute: u32,
    pub available_usd: Option<Decimal>,
    pub equity_usd: Option<Decimal>,
    /// Realized PnL since 00:00 UTC (a loss is negative).
    pub daily_realized: Decimal,
    /// When this strategy last created an order on this symbol.
    pub last_order_at: Option<DateTime<Utc>>,
    /// Other symbols on which this strategy holds a position or working orders.
    pub strategy_open_symbols: u32,
}

/// One symbol's position and working entries, as a decision about another symbol counts them.
#[derive(Debug, Clone, Copy)]
pub struct OpenBook<'a> {
    pub symbol: &'a str,
    pub exposure: Exposure,
    /// The last price we filled at on it.
    pub last_price: Option<Decimal>,
    /// Strategies with working orders on it.
    pub strategies: &'a [String],
}

/// What the other symbols' books add up to, for a decision on one symbol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Elsewhere {
    /// Worst-case value (USD) of every other symbol's position and working orders.
    pub gross: Decimal,
    /// Other symbols with exposure whose price is unknown.
    pub unpriced: Vec<String>,
    /// Other symbols the strategy holds: it lists them, or has working orders on them.
    pub strategy_open_symbols: u32,
}

/// Sums the books of every symbol but `symbol` with exposure left: each valued at its last fill
/// price, else at `price_of` (a reference price), else listed as unpriced (the gross-exposure
/// limit then refuses orders that grow exposure).
pub fn elsewhere<'a>(
    books: impl IntoIterator<Item = OpenBook<'a>>,
    symbol: &str,
    strategy: &Strategy,
    price_of: impl Fn(&str) -> Option<Decimal>,
) -> Elsewhere {
    let mut out = Elsewhere::default();
    for book in books {
        if book.symbol == symbol || book.exposure.worst_case().is_zero() {
            continue;
        }
        match book.last_price.or_else(|| price_of(book.symbol)) {
            Some(p) => out.gross += book.exposure.worst_case() * p,
            None => out.unpriced.push(book.symbol.to_owned()),
        }
        if strategy.symbols.iter().any(|x| x.as_str() == book.symbol)
            || book.strategies.contains(&strategy.name)
        {
            out.strategy_open_symbols += 1;
        }
    }
    out
}

/// Trading state, maintenance and alert scaling that apply to this symbol now.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    /// Why a maintenance window forbids orders, if one does.
    pub maintenance: Option<String>,
    /// The effective (stricter of account and symbol) state when not active.
    pub state: Option<StateEntry>,
    /// A size factor from an alert, with its description.
    pub size_scale: Option<(Decimal, String)>,
}

/// The rule behind a refusal. The reason's text says it with its numbers; the rule is for
/// counting and matching (the backtest report, tests), never parsed back out of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A maintenance window forbids orders.
    Maintenance,
    /// Halted, or reducing while the order would open.
    TradingState,
    /// The daily realized-loss breaker.
    DailyLoss,
    /// A `hold` that closes, with no position to close.
    NoPosition,
    /// A sell with no long left to close, shorts not allowed.
    LongOnly,
    /// Working orders already cover the position.
    NothingToClose,
    Cooldown,
    MaxConcurrentPositions,
    /// The sizing method cannot size the order (no balance, no stop level, ...).
    Sizing,
    /// The size rounds below the symbol's minimum quantity.
    MinQuantity,
    MaxOrderNotional,
    /// The strategy's `max_position_notional`.
    MaxPositionNotional,
    /// The account's `[limits] max_position_notional`.
    AccountMaxPositionNotional,
    MaxGrossExposure,
    MaxOpenOrders,
    MaxOrdersPerMinute,
    /// The limit price rounds to nothing.
    LimitPrice,
    /// A venue number (price, balance, a signal's level) too large for the order's arithmetic.
    Overflow,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Maintenance => "maintenance",
            Self::TradingState => "trading_state",
            Self::DailyLoss => "daily_loss",
            Self::NoPosition => "no_position",
            Self::LongOnly => "long_only",
            Self::NothingToClose => "nothing_to_close",
            Self::Cooldown => "cooldown",
            Self::MaxConcurrentPositions => "max_concurrent_positions",
            Self::Sizing => "sizing",
            Self::MinQuantity => "min_quantity",
            Self::MaxOrderNotional => "max_order_notional",
            Self::MaxPositionNotional => "max_position_notional",
            Self::AccountMaxPositionNotional => "account_max_position_notional",
            Self::MaxGrossExposure => "max_gross_exposure",
            Self::MaxOpenOrders => "max_open_orders",
            Self::MaxOrdersPerMinute => "max_orders_per_minute",
            Self::LimitPrice => "limit_price",
            Self::Overflow => "overflow",
        }
    }
}

/// Why no order: the rule that decided and the reason, with the numbers it compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    pub reason: String,
}

impl Refusal {
    fn new(rule: Rule, reason: impl Into<String>) -> Self {
        Self {
            rule,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

pub struct Request<'a> {
    pub strategy: &'a Strategy,
    pub signal: &'a Signal,
    pub direction: Direction,
    pub price: Price,
    pub spec: SymbolSpec,
    pub limits: &'a AccountLimits,
    pub gate: &'a Gate,
    pub account: &'a AccountView,
    pub now: DateTime<Utc>,
}

const BPS: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);

fn usd(d: Decimal) -> Decimal {
    d.round_dp(2)
}

/// [`decide`], with a panic inside it turned into a refusal: sizing and limits multiply venue
/// numbers (prices, balances, a signal's levels), and one a `Decimal` cannot hold refuses the
/// signal with the reason instead of taking the caller down.
pub fn decide_guarded(r: &Request) -> Result<RiskApproved<OrderPlan>, Refusal> {
    std::panic::catch_unwind(|| decide(r)).unwrap_or_else(|payload| {
        Err(Refusal::new(
            Rule::Overflow,
            format!(
                "the order's numbers do not fit a decimal ({})",
                crate::supervise::panic_message(&*payload)
            ),
        ))
    })
}

/// The one decision: an approved, sized order or the reason there is none.
pub fn decide(r: &Request) -> Result<RiskApproved<OrderPlan>, Refusal> {
    let symbol = &r.signal.symbol;
    let p = r.price.get();
    if let Some(reason) = &r.gate.maintenance {
        return Err(Refusal::new(Rule::Maintenance, reason.clone()));
    }
    let reducing = match &r.gate.state {
        Some(s) if s.state == TradingState::Halted => {
            return Err(Refusal::new(Rule::TradingState, s.describe()))
        }
        Some(s) => Some(s),
        None => None,
    };
    if let Some(limits::Breach::DailyLoss(m) | limits::Breach::Drawdown(m)) =
        r.limits.daily_loss_breach(r.account.daily_realized)
    {
        return Err(Refusal::new(Rule::DailyLoss, m));
    }

    let e = r.account.exposure;
    let reverse = r.strategy.exits.reverse_on_opposite;
    let long_only = || {
        Refusal::new(
            Rule::LongOnly,
            format!(
                "long-only: no long {symbol} position left to sell (position {}, working sells \
                 {}); set allow_short = true to open shorts",
                e.position.normalize(),
                e.working_sell.normalize()
            ),
        )
    };
    let long_left = (e.position - e.working_sell).max(Decimal::ZERO);
    let short_left = (-e.position - e.working_buy).max(Decimal::ZERO);
    // (side, quantity that closes, whether to open beyond it)
    let (side, close_qty, open) = match r.direction {
        Direction::Close if e.position > Decimal::ZERO => (Side::Sell, long_left, false),
        Direction::Close if e.position < Decimal::ZERO => (Side::Buy, short_left, false),
        Direction::Close => {
            return Err(Refusal::new(
                Rule::NoPosition,
                format!("hold closes positions, but there is no {symbol} position"),
            ))
        }
        Direction::Buy if e.position < Decimal::ZERO => (Side::Buy, short_left, reverse),
        Direction::Buy => (Side::Buy, Decimal::ZERO, true),
        Direction::Sell if e.position > Decimal::ZERO => {
            (Side::Sell, long_left, reverse && r.strategy.allow_short)
        }
        Direction::Sell if !r.strategy.allow_short => return Err(long_only()),
        Direction::Sell => (Side::Sell, Decimal::ZERO, true),
    };
    let open = open && reducing.is_none();
    if close_qty.is_zero() && !open {
        return Err(match (reducing, side) {
            (Some(s), _) if e.position.is_zero() || !matches!(r.direction, Direction::Close) => {
                Refusal::new(
                    Rule::TradingState,
                    format!(
                        "{}; only orders that reduce a position are allowed",
                        s.describe()
                    ),
                )
            }
            (_, Side::Sell) if !r.strategy.allow_short => long_only(),
            _ => Refusal::new(
                Rule::NothingToClose,
                format!(
                    "nothing left to close on {symbol}: working orders already cover the \
                     position {}",
                    e.position.normalize()
                ),
            ),
        });
    }

    let mut open_qty = Decimal::ZERO;
    let mut open = open;
    if open {
        if let (Some(cooldown), Some(last)) = (r.strategy.cooldown, r.account.last_order_at) {
            if r.now < last + cooldown {
                if close_qty.is_zero() {
                    return Err(Refusal::new(
                        Rule::Cooldown,
                        format!(
                            "cooldown {}s on {symbol}: the last order was {}s ago",
                            cooldown.num_seconds(),
                            (r.now - last).num_seconds()
                        ),
                    ));
                }
                // A reversal inside the cooldown only closes.
                open = false;
            }
        }
    }
    if open {
        let flat_here = e.position.is_zero() && e.worst_case().is_zero();
        if let Some(max) = r.strategy.max_concurrent_positions {
            if flat_here && r.account.strategy_open_symbols >= max && close_qty.is_zero() {
                return Err(Refusal::new(
                    Rule::MaxConcurrentPositions,
                    format!(
                        "max concurrent positions {max} reached: {} symbols already open",
                        r.account.strategy_open_symbols
                    ),
                ));
            }
        }
        let inputs = SizingInputs {
            price: p,
            buy: side == Side::Buy,
            confidence: r.signal.confidence,
            available_usd: r.account.available_usd,
            equity_usd: r.account.equity_usd,
            support: r.signal.technical.support,
            resistance: r.signal.technical.resistance,
        };
        match sizing::raw_quantity(&r.strategy.sizing, &inputs) {
            Ok(q) => open_qty = q,
            // A reversal whose opening leg cannot be sized still closes.
            Err(reason) if close_qty.is_zero() => return Err(Refusal::new(Rule::Sizing, reason)),
            Err(_) => {}
        }
        if let Some((factor, _)) = &r.gate.size_scale {
            open_qty *= *factor;
        }
    }

    let raw = close_qty + open_qty;
    let rounded = r.spec.round_quantity(raw);
    if rounded.is_zero() || rounded < r.spec.min_quantity {
        return Err(Refusal::new(
            Rule::MinQuantity,
            format!(
                "quantity {} rounds down to {} at lot step {}, below the minimum order size {}",
                raw.round_dp(8).normalize(),
                rounded,
                r.spec.lot_step.normalize(),
                r.spec.min_quantity.normalize()
            ),
        ));
    }
    let quantity =
        Quantity::new(rounded).map_err(|e| Refusal::new(Rule::MinQuantity, e.to_string()))?;

    // Worst case in this direction: every working order on this side fills.
    let (current, after) = match side {
        Side::Buy => {
            let c = e.position + e.working_buy;
            (c, c + rounded)
        }
        Side::Sell => {
            let c = e.position - e.working_sell;
            (c, c - rounded)
        }
    };
    let increases = after.abs() > current.abs() || after * current < Decimal::ZERO;
    if increases {
        let opening = if after * current < Decimal::ZERO {
            after.abs()
        } else {
            after.abs() - current.abs()
        };
        let (current_n, after_n, opening_n) = ((current * p).abs(), (after * p).abs(), opening * p);
        if let Some(max) = r.limits.max_order_notional {
            if opening_n > max {
                return Err(Refusal::new(
                    Rule::MaxOrderNotional,
                    format!(
                        "max order notional {max} would be exceeded: {} {symbol} at {p} = {} USD",
                        opening.normalize(),
                        usd(opening_n)
                    ),
                ));
            }
        }
        for (rule, name, limit) in [
            (
                Rule::MaxPositionNotional,
                "max position notional",
                r.strategy.max_position_notional,
            ),
            (
                Rule::AccountMaxPositionNotional,
                "account max position notional",
                r.limits.max_position_notional,
            ),
        ] {
            if let Some(max) = limit {
                if after_n > max {
                    return Err(Refusal::new(
                        rule,
                        format!(
                            "{name} {max} would be exceeded: {:.2} + {:.2} = {:.2} USD",
                            current_n,
                            rounded * p,
                            after_n
                        ),
                    ));
                }
            }
        }
        if let Some(max) = r.limits.max_gross_exposure {
            if !r.account.unpriced.is_empty() {
                return Err(Refusal::new(
                    Rule::MaxGrossExposure,
                    format!(
                        "max gross exposure {max} cannot be checked: no price for {}",
                        r.account.unpriced.join(", ")
                    ),
                ));
            }
            let other = r.account.gross_other;
            // This symbol's worst case after the order, in either direction.
            let here = after.abs().max(e.worst_case()) * p;
            if other + here > max {
                return Err(Refusal::new(
                    Rule::MaxGrossExposure,
                    format!(
                        "max gross exposure {max} would be exceeded: other symbols {} + {symbol} \
                         {} = {} USD",
                        usd(other),
                        usd(here),
                        usd(other + here)
                    ),
                ));
            }
        }
    }
    if let Some(max) = r.limits.max_open_orders {
        if r.account.open_orders >= max {
            return Err(Refusal::new(
                Rule::MaxOpenOrders,
                format!(
                    "max open orders {max} reached: {} orders are open",
                    r.account.open_orders
                ),
            ));
        }
    }
    if let Some(max) = r.limits.max_orders_per_minute {
        if r.account.orders_last_minute >= max {
            return Err(Refusal::new(
                Rule::MaxOrdersPerMinute,
                format!(
                    "max orders per minute {max} reached: {} orders in the last 60 s",
                    r.account.orders_last_minute
                ),
            ));
        }
    }
    if reducing.is_some() && increases {
        // Unreachable by construction (no opening leg in reducing); kept as a last line.
        return Err(Refusal::new(
            Rule::TradingState,
            "trading is reducing: this order would grow a position",
        ));
    }

    let (order_type, limit_price) = match r.strategy.orders.kind {
        OrderKind::Market => ("market", None),
        OrderKind::Limit { offset_bps } => {
            let buy = side == Side::Buy;
            let offset = p * offset_bps / BPS;
            let raw = if buy { p - offset } else { p + offset };
            let price = Price::new(r.spec.round_price(raw, buy)).map_err(|_| {
                Refusal::new(
                    Rule::LimitPrice,
                    format!(
                        "limit price {raw} rounds to zero at tick {}",
                        r.spec.tick_size
                    ),
                )
            })?;
            ("limit", Some(price))
        }
    };
    // Protective exits only for an order that opens or grows a position in its own direction.
    let protect = if increases && after * side.sign() > Decimal::ZERO {
        protect::levels(r.strategy, r.signal, side, p, &r.spec)
    } else {
        Protect::default()
    };
    Ok(RiskApproved(OrderPlan {
        strategy: r.strategy.name.clone(),
        symbol: symbol.clone(),
        side,
        quantity,
        reference_price: r.price,
        order_type,
        limit_price,
        time_in_force: r.strategy.orders.time_in_force,
        reduces_only: !increases,
        role: Role::Entry,
        parent: None,
        stop_price: None,
        protect,
    }))
}

#[cfg(test)]
mod tests;
