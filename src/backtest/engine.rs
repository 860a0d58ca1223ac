//! The replay: recorded events, price ticks and the paper venue's matching engine on one
//! timeline, under a clock that is each item's time.
//!
//! What runs is the live decision path, function for function: a signal goes through
//! `Strategy::evaluate`, the circuit breakers (`AccountLimits::breaker_halt`), a gate and an
//! account view assembled from the books as the dispatcher assembles them from SQL
//! (`maintenance::blocking`, `state::effective`, `alerts::applicable_scale`, `risk::elsewhere`),
//! then `risk::decide_guarded` (an order whose numbers a `Decimal` cannot hold is refused, as
//! live); an approved order gets the dispatcher's client order id and is placed on the paper
//! venue's `Book` (fees, slippage through its synthetic book, partial fills, stops);
//! the `Book`'s events come back as the webhooks would in paper mode and are applied as the
//! dispatcher applies them (`order::apply` and `portfolio::Position` for fills, the equity peak,
//! the breakers, the margin rule); the supervisor's duties run with its pure rules (protective
//! orders with `protect::protective_orders` and `protect::stale_protection`, unfilled-order
//! timeouts, cancelling before maintenance, resuming after it). Nothing here knows more than the
//! live bot would: the reference price is the venue's mid at the signal's time, and "now" is a
//! `ManualClock` moved to each item's time.
//!
//! Order of items at one instant: price ticks, then scheduled venue and supervisor work (in the
//! order it was scheduled), then the hourly equity sample, then the recorded event. The venue's
//! first look at an order comes `[paper] latency_ms` after it was placed, as in paper mode.

use super::books::{Books, OrderRec, PositionBook, SignalTag};
use super::collect::{band, Collector, DecisionRecord, Keys, NONE};
use super::prices::Feed;
use super::source::{Origin, Replayed};
use super::BacktestError;
use crate::clock::{Clock, ManualClock};
use crate::config::{PaperConfig, TradingConfig};
use crate::model::events::Event;
use crate::model::{checked, Price, Side, Signal};
use crate::order::{self, OrderStatus, Progress};
use crate::risk::limits::{day_start, peak_after_balance, peak_after_transfer, QUOTE_ASSET};
use crate::risk::{self, alerts, maintenance, protect, state, Gate, OrderPlan, RiskApproved, Role};
use crate::sim::book::{Book, OrderKind, OrderRequest, Placed, TimeInForce};
use crate::sim::{EngineConfig, Walk};
use crate::strategy::{Evaluation, Filter, Strategy};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// The venue's book forgets its finished orders once it holds this many.
const FORGET_AFTER: usize = 4096;

/// Work scheduled on the timeline.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    /// The venue's first look at an order (after `[paper] latency_ms`).
    Accept(String),
    /// An order of a strategy with `unfilled_timeout_secs` (`after`) is due to be cancelled if
    /// unfilled and the timeout rule applies to it.
    Timeout {
        cid: String,
        after: chrono::Duration,
    },
    /// A maintenance window's lead time begins (`cancel_open_orders`).
    LeadStart { key: String, start: DateTime<Utc> },
    /// A maintenance window's end + settle: the reconciliation pass (here, with nothing to
    /// disagree, it succeeds at once).
    Reconcile { key: String, end: DateTime<Utc> },
}

/// What one run is given.
pub struct Setup<'a> {
    pub strategies: &'a [Strategy],
    pub trading: &'a TradingConfig,
    pub paper: &'a PaperConfig,
    /// Signals before it are not traded (state events before it still apply).
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

pub struct Engine<'a> {
    setup: &'a Setup<'a>,
    book: Book,
    feeds: Vec<Feed>,
    feed_of: BTreeMap<String, usize>,
    mids: Vec<Option<Decimal>>,
    synced: Vec<bool>,
    /// The replay's clock: each item's time, as the live bot's clock would read then.
    clock: ManualClock,
    /// The start of the period, once the first event set it.
    pub start: Option<DateTime<Utc>>,
    queue: BinaryHeap<Reverse<(DateTime<Utc>, u64, Action)>>,
    queued: u64,
    /// The next hourly equity sample (00:00 UTC ones are also the daily closes).
    next_sample: Option<DateTime<Utc>>,
    pub books: Books,
    pub collect: Collector,
    /// Orders awaiting protection, by key, oldest first.
    protect_pending: Vec<u64>,
    /// An order or a position changed since the supervisor's rules last looked.
    orders_changed: bool,
    cancelled_for: Vec<String>,
    latency: Duration,
    pub starting_balance: Decimal,
    pub first_mids: BTreeMap<String, Decimal>,
}

/// The first full hour after `t`.
fn hour_after(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::DurationRound;
    t.duration_trunc(Duration::hours(1)).unwrap_or(t) + Duration::hours(1)
}

fn dec(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => n.to_string().parse().ok(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl<'a> Engine<'a> {
    pub fn new(setup: &'a Setup<'a>, feeds: Vec<Feed>) -> Self {
        let paper = setup.paper;
        // The backtest moves every mid itself, so the book's own walk stands still.
        let still = Walk {
            volatility_bps: Decimal::ZERO,
            trend_bps: Decimal::ZERO,
        };
        let cfg = EngineConfig {
            walk: still,
            walks: BTreeMap::new(),
            candles: BTreeMap::new(),
            ..paper.engine.clone()
        };
        let symbols: Vec<(String, Decimal)> = feeds
            .iter()
            .map(|f| (f.symbol.clone(), f.first_price))
            .collect();
        let book = Book::new(&symbols, paper.starting_balance, paper.seed, cfg);
        let feed_of = feeds
            .iter()
            .enumerate()
            .map(|(i, f)| (f.symbol.clone(), i))
            .collect();
        let n = feeds.len();
        let mut books = Books::default();
        // What paper mode's start-up snapshot (`GET /account/balances`) records.
        let b = book.balance();
        books.balance = Some((b.available, b.total));
        Self {
            setup,
            book,
            feeds,
            feed_of,
            mids: vec![None; n],
            synced: vec![true; n],
            clock: ManualClock::new(DateTime::<Utc>::MIN_UTC),
            start: None,
            queue: BinaryHeap::new(),
            queued: 0,
            next_sample: None,
            books,
            collect: Collector::default(),
            protect_pending: Vec::new(),
            orders_changed: false,
            cancelled_for: Vec::new(),
            latency: Duration::from_std(paper.latency).unwrap_or_default(),
            starting_balance: paper.starting_balance,
            first_mids: BTreeMap::new(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Moves the clock forward to `t` (never back: events are applied in arrival order).
    fn advance_clock(&self, t: DateTime<Utc>) {
        let now = self.clock.now();
        if t > now {
            self.clock.advance(t - now);
        }
    }

    pub fn mid(&self, symbol: &str) -> Option<Decimal> {
        self.feed_of.get(symbol).and_then(|&i| self.mids[i])
    }

    fn schedule(&mut self, at: DateTime<Utc>, action: Action) {
        self.queued += 1;
        self.queue
            .push(Reverse((at.max(self.now()), self.queued, action)));
    }

    /// Starts the period at `at`: prices up to it are taken in, each symbol's mid noted (the
    /// market change is measured from it), and equity is sampled from here and at each following
    /// midnight.
    fn begin(&mut self, at: DateTime<Utc>) -> Result<(), BacktestError> {
        self.advance_to(at)?;
        self.start = Some(at);
        self.next_sample = Some(hour_after(at));
        self.collect.equity.push((at, self.starting_balance));
        for f in &self.feeds {
            if let Some(mid) = self.feed_of.get(&f.symbol).and_then(|&i| self.mids[i]) {
                self.first_mids.insert(f.symbol.clone(), mid);
            }
        }
        Ok(())
    }

    /// Runs every tick, scheduled action and day boundary up to `t`, in order.
    pub fn advance_to(&mut self, t: DateTime<Utc>) -> Result<(), BacktestError> {
        loop {
            let tick = self
                .feeds
                .iter()
                .filter_map(Feed::peek)
                .min()
                .filter(|at| *at <= t);
            let sched = self
                .queue
                .peek()
                .map(|Reverse((at, _, _))| *at)
                .filter(|at| *at <= t);
            let day = self.next_sample.filter(|at| *at <= t);
            // At one instant: ticks, then scheduled work, then the day's sample.
            match (tick, sched, day) {
                (Some(at), s, d) if s.is_none_or(|s| at <= s) && d.is_none_or(|d| at <= d) => {
                    self.tick(at)?
                }
                (_, Some(at), d) if d.is_none_or(|d| at <= d) => {
                    let Some(Reverse((_, _, action))) = self.queue.pop() else {
                        unreachable!("peeked")
                    };
                    self.advance_clock(at);
                    self.run_action(action)?;
                }
                (_, _, Some(at)) => {
                    self.advance_clock(at);
                    let equity = self.equity()?;
                    if at == day_start(at) {
                        self.collect.daily.push((at, equity));
                    }
                    self.collect.equity.push((at, equity));
                    self.next_sample = Some(at + Duration::hours(1));
                }
                _ => break,
            }
        }
        self.advance_clock(t);
        Ok(())
    }

    fn tick(&mut self, at: DateTime<Utc>) -> Result<(), BacktestError> {
        self.advance_clock(at);
        let mut resting = false;
        for i in 0..self.feeds.len() {
            if self.feeds[i].peek() != Some(at) {
                continue;
            }
            if let Some((_, price)) = self.feeds[i].pop()? {
                if self.mids[i] != Some(price) {
                    self.mids[i] = Some(price);
                    self.synced[i] = false;
                }
                resting |= self.book.resting_on(&self.feeds[i].symbol);
            }
        }
        // Only a price that can fill something needs the venue's tick.
        if resting {
            self.sync_mids();
            let events = self.book.tick(at);
            self.apply_venue(events)?;
        }
        Ok(())
    }

    fn sync_mids(&mut self) {
        for i in 0..self.feeds.len() {
            if !self.synced[i] {
                if let Some(mid) = self.mids[i] {
                    self.book.set_mid(&self.feeds[i].symbol, mid);
                }
                self.synced[i] = true;
            }
        }
    }

    /// Applies one recorded event at its time.
    pub fn replay(&mut self, r: Replayed) -> Result<(), BacktestError> {
        if self.start.is_none() {
            self.begin(self.setup.from.unwrap_or(r.at))?;
        }
        self.advance_to(r.at)?;
        let name = match &r.event {
            Ok(Event::Signal(_)) => "signal.generated",
            Ok(Event::Alert { .. }) => "system.alert",
            Ok(Event::Maintenance { .. }) => "system.maintenance",
            Ok(Event::Transaction(t)) if t.kind == "deposit" => "account.deposit_received",
            Ok(Event::Transaction(_)) => "account.withdrawal_processed",
            Ok(_) => "other",
            Err(_) => "dead_letter",
        };
        *self.collect.replayed.entry(name).or_default() += 1;
        match r.event {
            Err(e) => self.dead_letter(format!("{}: {e}", r.origin)),
            Ok(Event::Signal(signal)) => {
                if self.setup.from.is_some_and(|f| r.at < f) {
                    self.collect.before_from += 1;
                } else {
                    self.on_signal(&signal, &r.key, &r.origin)?;
                }
            }
            Ok(Event::Alert {
                level,
                symbols,
                title,
            }) => {
                let changes = self.setup.trading.alerts.changes(
                    &level,
                    &symbols,
                    &title,
                    self.books.states(),
                    self.now(),
                );
                for change in changes {
                    match change {
                        alerts::AlertChange::Scale(s) => self.books.set_scale(s),
                        alerts::AlertChange::State(entry) => self.set_state(entry),
                    }
                }
            }
            Ok(Event::Maintenance {
                mut window,
                noticed_at,
            }) => {
                let settings = &self.setup.trading.maintenance;
                if window.affects_trading() && window.is_past(settings, self.now()) {
                    window.reconciled_at = Some(self.now());
                }
                // A notice older than the one held for its window is not applied, as live.
                let applied = self.books.upsert_window(window.clone(), noticed_at);
                if applied && window.affects_trading() && window.reconciled_at.is_none() {
                    let (lead, end) = (window.start - settings.lead, window.end + settings.settle);
                    if settings.cancel_open_orders {
                        self.schedule(
                            lead,
                            Action::LeadStart {
                                key: window.key.clone(),
                                start: window.start,
                            },
                        );
                    }
                    self.schedule(
                        end,
                        Action::Reconcile {
                            key: window.key.clone(),
                            end: window.end,
                        },
                    );
                }
            }
            Ok(Event::Transaction(t)) => {
                if self.books.first_transfer(&t.transaction_id) {
                    match peak_after_transfer(
                        self.books.peak,
                        t.kind,
                        &t.asset,
                        t.amount,
                        t.status.as_deref(),
                    ) {
                        Ok(Some(peak)) => self.books.peak = Some(peak),
                        Ok(None) => {}
                        // As live: an amount the books cannot hold makes a dead letter.
                        Err(e) => self.dead_letter(format!("{}: {e}", r.origin)),
                    }
                }
            }
            Ok(_) => {}
        }
        Ok(())
    }

    fn dead_letter(&mut self, what: String) {
        if self.collect.dead_letters.len() < 100 {
            self.collect.dead_letters.push(what);
        }
    }

    fn keys<'s>(signal: &'s Signal, strategy: Option<&'s Strategy>) -> Keys<'s> {
        Keys {
            strategy: strategy.map_or(NONE, |s| s.name.as_str()),
            symbol: signal.symbol.as_str(),
            band: band(signal.confidence),
            risk_level: signal.risk_level.as_deref().unwrap_or(NONE),
            time_horizon: signal.time_horizon.as_deref().unwrap_or(NONE),
        }
    }

    /// The dispatcher's `decide`: strategy verdict, breakers, gate, `risk::decide_guarded`, intent.
    fn on_signal(
        &mut self,
        signal: &Signal,
        key: &str,
        origin: &Origin,
    ) -> Result<(), BacktestError> {
        let setup = self.setup;
        let strategy = setup.strategies.iter().find(|s| s.trades(&signal.symbol));
        let evaluation = match strategy {
            None => Evaluation::Ignored {
                filter: Filter::NotTraded,
                reason: format!("no strategy trades {}", signal.symbol),
            },
            Some(s) => s.evaluate(signal, self.now()),
        };
        let (outcome, rule, reason, client_order_id) = match (evaluation, strategy) {
            (Evaluation::Ignored { filter, reason }, _) => {
                ("ignored", Some(filter.as_str()), reason, None)
            }
            (Evaluation::Intent { direction }, Some(strategy)) => {
                let price = self.reference_price(signal, origin)?;
                self.apply_breakers();
                let (gate, account) = self.gate_and_account(strategy, signal);
                let request = risk::Request {
                    strategy,
                    signal,
                    direction,
                    price,
                    spec: setup.trading.spec(signal.symbol.as_str()),
                    limits: &setup.trading.limits,
                    gate: &gate,
                    account: &account,
                    now: self.now(),
                };
                match risk::decide_guarded(&request) {
                    Err(refusal) => ("refused", Some(refusal.rule.as_str()), refusal.reason, None),
                    Ok(approved) => {
                        let cid = order::client_order_id(&strategy.name, key, "entry");
                        let reason = approved.get().describe(price, gate.size_scale.as_ref());
                        let tag = SignalTag {
                            confidence: signal.confidence,
                            risk_level: signal.risk_level.clone(),
                            time_horizon: signal.time_horizon.clone(),
                        };
                        self.place(&approved, cid.clone(), Some(tag), strategy)?;
                        ("ordered", None, reason, Some(cid))
                    }
                }
            }
            (Evaluation::Intent { .. }, None) => ("ignored", None, "no strategy".into(), None),
        };
        let keys = Self::keys(signal, strategy);
        let now = self.now();
        self.collect
            .decision(&keys, outcome, rule, || DecisionRecord {
                at: crate::clock::ts(now),
                source: origin.to_string(),
                symbol: signal.symbol.as_str().to_owned(),
                strategy: keys.strategy.to_owned(),
                recommendation: signal.recommendation.as_str().to_owned(),
                confidence: signal.confidence,
                outcome,
                rule,
                reason,
                client_order_id,
            });
        self.supervise()?;
        Ok(())
    }

    /// The venue's mid for the signal's symbol now, as paper mode's `GET /market/price` gives it.
    fn reference_price(&self, signal: &Signal, origin: &Origin) -> Result<Price, BacktestError> {
        let symbol = signal.symbol.as_str();
        let outside = |message: String| BacktestError::Input {
            at: origin.to_string(),
            message,
        };
        let Some(&i) = self.feed_of.get(symbol) else {
            return Err(outside(format!(
                "signal.generated for {symbol} at {}: no prices for {symbol}; give them with \
                 --prices {symbol}=FILE.csv (or venue, random-walk)",
                crate::clock::ts(self.now())
            )));
        };
        self.feeds[i].covers(self.now()).map_err(|range| {
            outside(format!(
                "signal.generated for {symbol} at {} is outside the prices: {range}",
                crate::clock::ts(self.now())
            ))
        })?;
        let mid = self.mids[i].ok_or_else(|| {
            outside(format!(
                "signal.generated for {symbol} at {} comes before the first price",
                crate::clock::ts(self.now())
            ))
        })?;
        Price::new(mid).map_err(|e| outside(e.to_string()))
    }

    /// What `risk::decide` looks at, from the books, as the dispatcher reads it from SQL.
    fn gate_and_account(
        &mut self,
        strategy: &Strategy,
        signal: &Signal,
    ) -> (Gate, risk::AccountView) {
        let symbol = signal.symbol.as_str();
        let now = self.now();
        let gate = Gate {
            maintenance: maintenance::blocking(
                &self.books.windows,
                &self.setup.trading.maintenance,
                now,
            ),
            state: state::effective(self.books.account_state(), self.books.symbol_state(symbol))
                .cloned(),
            size_scale: alerts::applicable_scale(self.books.scales(), symbol, now),
        };
        let books = self.books.symbol_books();
        let elsewhere = risk::elsewhere(
            books
                .iter()
                .map(|(s, (exposure, last, strategies))| risk::OpenBook {
                    symbol: s,
                    exposure: *exposure,
                    last_price: *last,
                    strategies,
                }),
            symbol,
            strategy,
            |s| self.mid(s),
        );
        let (open_orders, orders_last_minute) = self.books.order_counts(now);
        let account = risk::AccountView {
            exposure: books.get(symbol).map(|b| b.0).unwrap_or_default(),
            gross_other: elsewhere.gross,
            unpriced: elsewhere.unpriced,
            open_orders,
            orders_last_minute,
            available_usd: self.books.balance.map(|b| b.0),
            equity_usd: self.books.balance.map(|b| b.1),
            daily_realized: self.books.realized_since(day_start(now)),
            last_order_at: self.books.last_order_at(&strategy.name, symbol),
            strategy_open_symbols: elsewhere.strategy_open_symbols,
        };
        (gate, account)
    }

    fn set_state(&mut self, entry: state::StateEntry) {
        self.collect.state_change(self.now(), &entry);
        self.books.set_state(entry);
    }

    /// The circuit breakers, on our books as the dispatcher checks them on its tables.
    fn apply_breakers(&mut self) {
        let limits = &self.setup.trading.limits;
        let halt = limits.breaker_halt(
            self.books.realized_since(day_start(self.now())),
            self.books.balance.map(|b| b.1),
            self.books.peak,
            self.books.account_state(),
            self.now(),
        );
        if let Some(halt) = halt {
            self.set_state(halt);
        }
    }

    /// Writes the intent and sends it to the venue at once (there is no network to wait for).
    fn place(
        &mut self,
        approved: &RiskApproved<OrderPlan>,
        cid: String,
        tag: Option<SignalTag>,
        strategy: &Strategy,
    ) -> Result<(), BacktestError> {
        let plan = approved.get();
        let rec = OrderRec {
            client_order_id: cid.clone(),
            venue_id: None,
            strategy: plan.strategy.clone(),
            symbol: plan.symbol.as_str().to_owned(),
            side: plan.side,
            role: plan.role,
            order_type: plan.order_type,
            quantity: plan.quantity.get(),
            price: plan.limit_price.or(plan.stop_price).map(|p| p.get()),
            parent: plan.parent.clone(),
            created_at: self.now(),
            progress: Progress {
                status: OrderStatus::Intent,
                filled_quantity: Decimal::ZERO,
                average_price: None,
            },
            fees: Decimal::ZERO,
            protect: plan.protect,
            protection_done: false,
            cancel_requested: false,
            tag,
            rejected: None,
        };
        let id = self.books.insert_order(rec);
        self.orders_changed = true;
        if let Some(timeout) = strategy.orders.unfilled_timeout {
            self.schedule(
                self.now() + timeout,
                Action::Timeout {
                    cid: cid.clone(),
                    after: timeout,
                },
            );
        }
        let kind = match (plan.order_type, plan.limit_price, plan.stop_price) {
            ("limit", Some(p), _) => OrderKind::Limit { price: p.get() },
            ("stop", _, Some(s)) => OrderKind::Stop { stop: s.get() },
            _ => OrderKind::Market,
        };
        let tif = TimeInForce::parse(plan.time_in_force).unwrap_or(TimeInForce::Gtc);
        let side = match plan.side {
            Side::Buy => crate::sim::book::Side::Buy,
            Side::Sell => crate::sim::book::Side::Sell,
        };
        self.sync_mids();
        let placed = OrderRequest::new(
            plan.symbol.as_str().to_owned(),
            side,
            kind,
            plan.quantity.get(),
            tif,
            Some(cid),
        )
        .map_err(|e| format!("invalid order: {e}"))
        .and_then(|req| self.book.place(req, self.now()).map_err(|e| e.to_string()));
        match placed {
            Ok(Placed::New(snapshot, events)) => {
                // Finished orders are history the replay no longer needs (its ids never repeat).
                if self.book.order_count() >= FORGET_AFTER {
                    self.book.forget_finished();
                }
                self.books.link(id, &snapshot.order_id);
                self.news(id, OrderStatus::Pending, None, None)?;
                self.apply_venue(events)?;
                self.schedule(self.now() + self.latency, Action::Accept(snapshot.order_id));
            }
            // Client order ids derive from unique dedupe keys: a duplicate cannot happen.
            Ok(Placed::Duplicate(_)) => {}
            Err(reason) => {
                *self
                    .collect
                    .venue_rejections
                    .entry(reason.clone())
                    .or_default() += 1;
                if let Some(o) = self.books.order_mut(id) {
                    o.rejected = Some(reason);
                }
                self.news(id, OrderStatus::Rejected, None, None)?;
            }
        }
        Ok(())
    }

    fn run_action(&mut self, action: Action) -> Result<(), BacktestError> {
        match action {
            Action::Accept(order_id) => {
                self.sync_mids();
                let events = self.book.on_accepted(&order_id, self.now());
                self.apply_venue(events)?;
            }
            Action::Timeout { cid, after } => {
                let now = self.now();
                let due = self
                    .books
                    .orders()
                    .find(|(_, o)| {
                        o.client_order_id == cid
                            && o.working()
                            && !o.cancel_requested
                            && crate::risk::unfilled_timed_out(o.role, o.created_at, after, now)
                    })
                    .map(|(id, _)| id);
                if let Some(id) = due {
                    self.cancel(id)?;
                }
            }
            Action::LeadStart { key, start } => {
                let settings = &self.setup.trading.maintenance;
                let cancels = self.books.window(&key).is_some_and(|w| {
                    w.start == start && w.cancels_open_orders(settings, self.now())
                });
                if cancels && !self.cancelled_for.contains(&key) {
                    self.cancelled_for.push(key);
                    let working: Vec<u64> = self
                        .books
                        .orders()
                        .filter(|(_, o)| o.working() && o.venue_id.is_some() && !o.cancel_requested)
                        .map(|(id, _)| id)
                        .collect();
                    for id in working {
                        self.cancel(id)?;
                    }
                }
            }
            Action::Reconcile { key, end } => {
                let settings = &self.setup.trading.maintenance;
                let due = self
                    .books
                    .window(&key)
                    .is_some_and(|w| w.end == end && w.awaits_reconciliation(settings, self.now()));
                if due {
                    self.books.mark_reconciled(&key, self.now());
                }
            }
        }
        self.supervise()
    }

    fn cancel(&mut self, id: u64) -> Result<(), BacktestError> {
        let Some(venue_id) = self.books.order_mut(id).and_then(|o| {
            o.cancel_requested = true;
            o.venue_id.clone()
        }) else {
            return Ok(());
        };
        // A refusal means the order is already final at the venue, and its events applied.
        match self.book.cancel(&venue_id, self.now()) {
            Ok((_, events)) => self.apply_venue(events),
            Err(_) => Ok(()),
        }
    }

    /// Applies the venue's events as paper mode's webhooks would be, in order.
    fn apply_venue(&mut self, events: Vec<crate::sim::book::Event>) -> Result<(), BacktestError> {
        for e in events {
            let d = &e.data;
            match e.name {
                "order.updated" | "order.cancelled" => {
                    let Some(id) = d["orderId"]
                        .as_str()
                        .and_then(|v| self.books.order_by_venue_id(v))
                    else {
                        continue;
                    };
                    let status = d["status"].as_str().and_then(OrderStatus::from_venue);
                    if let Some(status) = status {
                        self.news(
                            id,
                            status,
                            dec(&d["filledQuantity"]),
                            dec(&d["averagePrice"]),
                        )?;
                    }
                    self.apply_breakers();
                }
                "position.opened" | "position.updated" | "position.closed" => {
                    let Some(symbol) = d["symbol"].as_str() else {
                        continue;
                    };
                    let quantity = if e.name == "position.closed" {
                        Decimal::ZERO
                    } else {
                        dec(&d["quantity"]).unwrap_or_default()
                    };
                    self.books
                        .save_venue_position(symbol, quantity, dec(&d["marginRatio"]));
                    let limits = &self.setup.trading.limits;
                    let entry = limits.margin_rule(
                        self.books.max_margin_ratio(),
                        self.books.account_state(),
                        self.now(),
                    );
                    if let Some(entry) = entry {
                        self.set_state(entry);
                    }
                }
                "account.balance_updated" => {
                    if d["asset"].as_str() == Some(QUOTE_ASSET) {
                        if let (Some(available), Some(total)) =
                            (dec(&d["available"]), dec(&d["total"]))
                        {
                            self.books.balance = Some((available, total));
                            if let Some(peak) = peak_after_balance(self.books.peak, total) {
                                self.books.peak = Some(peak);
                            }
                        }
                    }
                    self.apply_breakers();
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Merges venue news into our order through the order state machine; books a new fill into
    /// the position, with the fee the venue charged for it.
    fn news(
        &mut self,
        id: u64,
        seen: OrderStatus,
        filled: Option<Decimal>,
        average: Option<Decimal>,
    ) -> Result<(), BacktestError> {
        let now = self.now();
        let Some(o) = self.books.order_mut(id) else {
            return Ok(());
        };
        let applied = order::apply(&o.progress, seen, filled, average)?;
        o.progress = applied.progress;
        self.orders_changed = true;
        let order = o.clone();
        if let Some((qty, price)) = applied.new_fill {
            // The venue's fees for the fills this news covers: what fill settlement books.
            let fee_total = order
                .venue_id
                .as_deref()
                .and_then(|v| self.book.order(v))
                .map(|snapshot| {
                    let mut covered = Decimal::ZERO;
                    let mut fees = Decimal::ZERO;
                    for f in &snapshot.fills {
                        if covered >= order.progress.filled_quantity {
                            break;
                        }
                        covered += f.quantity;
                        fees += f.fee;
                    }
                    fees
                })
                .unwrap_or(order.fees);
            let fee = fee_total - order.fees;
            if let Some(o) = self.books.order_mut(id) {
                o.fees = fee_total;
            }
            let signed = order.side.sign() * qty;
            let book = self
                .books
                .positions
                .entry(order.symbol.clone())
                .or_default();
            let before = book.position.clone();
            let (mut after, closed) = before.book_fill(signed, price)?;
            after.fees = checked::add(after.fees, fee)?;
            book.position = after.clone();
            book.last_price = Some(price);
            let realized = checked::sub(after.net_realized()?, before.net_realized()?)?;
            self.books.record_realized(realized, now);
            self.collect.fill(
                &order,
                before.quantity,
                signed,
                price,
                fee,
                closed.map(|c| c.realized_pnl),
                now,
            );
            let open = self
                .books
                .positions
                .values()
                .filter(|p| !p.position.quantity.is_zero())
                .count();
            let gross = self.gross_exposure();
            self.collect.positions_changed(open, gross, now);
            let equity = self.equity()?;
            self.collect.equity.push((now, equity));
        }
        if order.needs_protection() && !self.protect_pending.contains(&id) {
            self.protect_pending.push(id);
        }
        if !order.working() {
            self.retire(id);
        }
        Ok(())
    }

    fn retire(&mut self, id: u64) {
        if let Some(done) = self.books.retire(id) {
            self.collect.order_done(&done);
        }
    }

    /// The supervisor's duties after a change: cancel protective orders that could open a
    /// position, then place the protection of filled entries (or leave it waiting).
    fn supervise(&mut self) -> Result<(), BacktestError> {
        // What the rules look at (positions, orders) only changes through news and placements;
        // without such a change since the last look they would decide the same again.
        if std::mem::take(&mut self.orders_changed) {
            self.enforce_protection()?;
        }
        if !self.protect_pending.is_empty() {
            self.place_protection()?;
        }
        Ok(())
    }

    fn enforce_protection(&mut self) -> Result<(), BacktestError> {
        let working: Vec<(u64, OrderRec)> = self
            .books
            .orders()
            .filter(|(_, o)| o.role != Role::Entry && o.working())
            .map(|(id, o)| (id, o.clone()))
            .collect();
        if working.is_empty() {
            return Ok(());
        }
        // Newest first, as the store lists them.
        let mut working = working;
        working.sort_by(|a, b| {
            (Reverse(a.1.created_at), &a.1.client_order_id)
                .cmp(&(Reverse(b.1.created_at), &b.1.client_order_id))
        });
        let judged: Vec<protect::WorkingProtective> = working
            .iter()
            .map(|(_, o)| protect::WorkingProtective {
                symbol: &o.symbol,
                role: o.role,
                side: o.side,
                remaining: o.quantity - o.progress.filled_quantity,
                sibling_filled: self.books.sibling_filled(o),
            })
            .collect();
        let positions = &self.books.positions;
        let verdicts = protect::stale_protection(&judged, |s| {
            positions
                .get(s)
                .map(|p| p.position.quantity)
                .unwrap_or_default()
        });
        let due: Vec<u64> = working
            .iter()
            .zip(verdicts)
            .filter(|((_, o), why)| why.is_some() && o.venue_id.is_some() && !o.cancel_requested)
            .map(|((id, _), _)| *id)
            .collect();
        for id in due {
            self.cancel(id)?;
        }
        Ok(())
    }

    fn place_protection(&mut self) -> Result<(), BacktestError> {
        let mut i = 0;
        while i < self.protect_pending.len() {
            let id = self.protect_pending[i];
            let Some(entry) = self.books.order(id).cloned() else {
                self.protect_pending.remove(i);
                continue;
            };
            let symbol = crate::model::Symbol::parse(&entry.symbol);
            let (Ok(symbol), Some(strategy)) = (
                symbol,
                self.setup
                    .strategies
                    .iter()
                    .find(|s| s.name == entry.strategy),
            ) else {
                self.protect_pending.remove(i);
                continue;
            };
            let filled = protect::FilledEntry {
                client_order_id: entry.client_order_id.clone(),
                strategy: entry.strategy.clone(),
                symbol,
                side: entry.side,
                filled: entry.progress.filled_quantity,
                protect: entry.protect,
            };
            let position = self
                .books
                .positions
                .get(&entry.symbol)
                .map(|p| p.position.quantity)
                .unwrap_or_default();
            let gate = Gate {
                maintenance: maintenance::blocking(
                    &self.books.windows,
                    &self.setup.trading.maintenance,
                    self.now(),
                ),
                state: state::effective(
                    self.books.account_state(),
                    self.books.symbol_state(&entry.symbol),
                )
                .cloned(),
                size_scale: None,
            };
            let spec = self.setup.trading.spec(&entry.symbol);
            match protect::protective_orders(&filled, position, &spec, &gate) {
                // Halted or in maintenance: it waits, as the supervisor's does.
                Err(_) => i += 1,
                Ok(plans) => {
                    self.protect_pending.remove(i);
                    if let Some(o) = self.books.order_mut(id) {
                        o.protection_done = true;
                    }
                    for plan in &plans {
                        let role = plan.get().role.as_str();
                        let cid =
                            order::client_order_id(&entry.strategy, &entry.client_order_id, role);
                        self.place(plan, cid, None, strategy)?;
                    }
                    self.retire(id);
                    // Placing may have filled and queued more; start over.
                    i = 0;
                }
            }
        }
        Ok(())
    }

    /// Our equity: the starting balance, realized PnL after fees, and open positions at the mid.
    pub fn equity(&self) -> Result<Decimal, BacktestError> {
        let mut equity = self.starting_balance;
        for (symbol, p) in &self.books.positions {
            equity = checked::add(equity, p.position.net_realized()?)?;
            if !p.position.quantity.is_zero() {
                let mark = self
                    .mid(symbol)
                    .or(p.last_price)
                    .unwrap_or(p.position.average_price);
                let open = crate::portfolio::unrealized_pnl(
                    p.position.quantity,
                    p.position.average_price,
                    mark,
                );
                equity = checked::add(equity, open)?;
            }
        }
        Ok(equity)
    }

    fn gross_exposure(&self) -> Decimal {
        self.books
            .positions
            .iter()
            .map(|(s, p)| {
                p.position.quantity.abs() * self.mid(s).or(p.last_price).unwrap_or_default()
            })
            .sum()
    }

    /// Ends the run at `end`: runs what is due until then, lets the venue look at orders placed
    /// in the last instant, and records the final equity.
    pub fn finish(&mut self, end: DateTime<Utc>) -> Result<(), BacktestError> {
        if self.start.is_none() {
            self.begin(end)?;
        }
        self.advance_to(end)?;
        // Orders placed at the very end still get the venue's first look, at the end's prices.
        let pending: Vec<String> = self
            .queue
            .iter()
            .filter_map(|Reverse((_, _, a))| match a {
                Action::Accept(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        self.queue.clear();
        for id in pending {
            self.run_action(Action::Accept(id))?;
        }
        let equity = self.equity()?;
        self.collect.equity.push((self.now(), equity));
        self.collect.daily.push((self.now(), equity));
        self.collect.end(self.now());
        for (_, o) in self.books.orders() {
            self.collect.order_done(o);
        }
        Ok(())
    }

    /// The position and average price of `symbol` from our fills.
    pub fn position(&self, symbol: &str) -> (Decimal, Decimal) {
        self.books
            .positions
            .get(symbol)
            .map(|p: &PositionBook| (p.position.quantity, p.position.average_price))
            .unwrap_or_default()
    }

    pub fn symbols(&self) -> Vec<String> {
        self.feeds.iter().map(|f| f.symbol.clone()).collect()
    }
}
