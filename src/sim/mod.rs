//! The simulator: the Vibe Trading venue behind its REST API, with signed webhooks, a random-walk
//! market and synthetic AI signals, so tests, benchmarks and the demo run offline.
//!
//! It owns its own copy of everything the bot's venue client also does (signing, wire shapes), on
//! purpose: it checks signatures with its own code (`auth`), so a client signing bug shows up as a 401
//! instead of being reproduced on both ends.
//!
//! The same simulator is paper mode's venue: `app` runs one in-process on loopback, and persists its
//! state through [`Simulator::state_json`] and [`SimConfig::restore`].
//!
//! Parts: `api` (routes, the signature gate, injected REST faults, maintenance answers), `auth` (HMAC
//! checks), `book` (the matching engine: orders, prices, positions, account; synchronous), `webhooks`
//! (outbox, registered webhooks and the delivery loop), `faults` (what to inject and when), `signals`
//! (synthetic `signal.generated` payloads).
//!
//! Guarantees:
//! - all randomness (prices, ids, signals, faults) comes from generators seeded by [`SimConfig::seed`];
//! - every state change and the events it causes are applied and queued under one lock, so webhook
//!   order always matches the order in which the venue's state changed;
//! - [`Simulator::serve`] stops the HTTP server and every background task when `shutdown` resolves.

mod api;
mod auth;
pub(crate) mod book;
mod faults;
mod history;
mod signals;
#[cfg(test)]
pub(crate) mod testkit;
mod webhooks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::Utc;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

pub use book::PositionView as SimPosition;
pub use book::{Balance as SimBalance, Candle, EngineConfig, SimFill, SimOrder, Walk};
pub use faults::{Faults, Probability, RestRoutes};
pub use signals::SignalGenerator;
pub use webhooks::{DeadLetter, DeliveryRecord, FaultCounts};

use book::{Book, BookState, CancelError, Event, OrderRequest, PlaceError, Placed};
use faults::Injector;
use webhooks::{Outbox, RetryPolicy};

/// How often the synthetic prices move.
const PRICE_TICK: Duration = Duration::from_millis(200);

/// Configuration of one simulated venue.
#[derive(Clone)]
pub struct SimConfig {
    pub api_key: String,
    /// REST HMAC secret.
    pub api_secret: String,
    /// Where to POST signed webhooks; `None` drops them undelivered.
    pub webhook_url: Option<String>,
    /// HMAC key for `X-Webhook-Signature`.
    pub webhook_secret: String,
    /// Seed of every random choice the simulator makes.
    pub seed: u64,
    /// Traded symbols and their starting mid prices.
    pub symbols: Vec<(String, Decimal)>,
    /// Starting USD balance.
    pub starting_balance: Decimal,
    /// Emit a random `signal.generated` this often when `Some`.
    pub signal_interval: Option<Duration>,
    /// Delay between accepting an order and the venue's first attempt to fill it.
    pub fill_latency: Duration,
    /// Accepted distance, in seconds, between `X-Timestamp` and the simulator's clock.
    pub timestamp_tolerance_secs: i64,
    /// The matching engine: fees, spread, depth, position limit, price walk or replayed candles.
    pub engine: EngineConfig,
    /// Injected faults; none by default.
    pub faults: Faults,
    /// More timer signals, each generator on its own interval (beside `signal_interval`).
    pub signal_generators: Vec<SignalGenerator>,
    /// Maintenance windows, counted from the start of `serve`.
    pub maintenance: Vec<MaintenanceWindow>,
    /// Emit a `system.alert` this often when `Some`.
    pub alert_interval: Option<Duration>,
    /// A state saved by [`Simulator::state_json`] to start from (paper mode after a restart).
    pub restore: Option<String>,
    /// Webhooks in flight at once: 1 (the default) delivers one at a time in order; more lets
    /// them overtake each other, as a venue delivering in parallel does.
    pub webhook_concurrency: usize,
}

/// A scheduled maintenance: announced by a `system.maintenance` webhook `notice` before it starts;
/// while it lasts every REST request answers 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceWindow {
    pub starts_after: Duration,
    pub lasts: Duration,
    pub notice: Duration,
}

impl SimConfig {
    /// BTC/USD 50000, ETH/USD 3000, SOL/USD 150; 100000 USD; seed 42; no timer signals; 5 ms fill
    /// latency; 30 s timestamp tolerance; no webhook URL.
    pub fn new(
        api_key: impl Into<String>,
        api_secret: impl Into<String>,
        webhook_secret: impl Into<String>,
    ) -> Self {
        Self {
            api_key: api_key.into(),
            api_secret: api_secret.into(),
            webhook_url: None,
            webhook_secret: webhook_secret.into(),
            seed: 42,
            symbols: vec![
                ("BTC/USD".into(), Decimal::new(50_000, 0)),
                ("ETH/USD".into(), Decimal::new(3_000, 0)),
                ("SOL/USD".into(), Decimal::new(150, 0)),
            ],
            starting_balance: Decimal::new(100_000, 0),
            signal_interval: None,
            fill_latency: Duration::from_millis(5),
            timestamp_tolerance_secs: 30,
            engine: EngineConfig::default(),
            faults: Faults::default(),
            signal_generators: Vec::new(),
            maintenance: Vec::new(),
            alert_interval: None,
            restore: None,
            webhook_concurrency: 1,
        }
    }
}

/// Secrets stay out of logs.
impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &"<redacted>")
            .field("seed", &self.seed)
            .field("symbols", &self.symbols)
            .field("starting_balance", &self.starting_balance)
            .field("signal_interval", &self.signal_interval)
            .field("fill_latency", &self.fill_latency)
            .field("timestamp_tolerance_secs", &self.timestamp_tolerance_secs)
            .field("engine", &self.engine)
            .field("faults", &self.faults)
            .field("signal_generators", &self.signal_generators)
            .field("maintenance", &self.maintenance)
            .field("alert_interval", &self.alert_interval)
            .field("restore", &self.restore.as_ref().map(|_| "<saved state>"))
            .field("webhook_concurrency", &self.webhook_concurrency)
            .finish()
    }
}

/// Counters a test or the demo can assert on.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SimStats {
    pub orders_accepted: u64,
    pub duplicate_client_order_ids: u64,
    pub auth_failures: u64,
    pub webhooks_sent: u64,
    pub webhooks_failed: u64,
    pub signals_emitted: u64,
    pub alerts_emitted: u64,
    pub maintenance_refusals: u64,
    /// REST faults injected: 5xx, 429, timeouts, lost responses.
    pub rest_5xx: u64,
    pub rest_429: u64,
    pub rest_timeouts: u64,
    pub lost_responses: u64,
    /// Order requests processed, then answered 500.
    pub processed_5xx: u64,
    /// Order requests processed, then answered late.
    pub slow_responses: u64,
    #[serde(flatten)]
    pub webhook_faults: FaultCounts,
}

/// A handle to one simulated venue; clones share it.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

pub(crate) enum PlaceOutcome {
    Created(SimOrder),
    Duplicate(SimOrder),
}

pub(crate) struct Inner {
    api_key: String,
    api_secret: String,
    tolerance_secs: i64,
    fill_latency: Duration,
    webhook_concurrency: usize,
    /// Timer signal generators: `signal_interval`'s default one first, then the configured ones.
    generators: Vec<SignalGenerator>,
    /// The one lock over trading state. Events are queued while it is held (see the module guarantees);
    /// it is never held across an await.
    book: Mutex<Book>,
    outbox: Arc<Outbox>,
    signal_rng: Mutex<StdRng>,
    orders_accepted: AtomicU64,
    /// When each accepted order's POST arrived, by clientOrderId (for the latency benchmark).
    arrivals: Mutex<Vec<(String, std::time::Instant)>>,
    duplicate_client_order_ids: AtomicU64,
    auth_failures: AtomicU64,
    signals_emitted: AtomicU64,
    alerts_emitted: AtomicU64,
    pub(crate) maintenance_refusals: AtomicU64,
    pub(crate) rest_5xx: AtomicU64,
    pub(crate) rest_429: AtomicU64,
    pub(crate) rest_timeouts: AtomicU64,
    pub(crate) lost_responses: AtomicU64,
    pub(crate) processed_5xx: AtomicU64,
    pub(crate) slow_responses: AtomicU64,
    /// Authenticated requests by `METHOD path`, so a test can tell how often a request was sent.
    requests: Mutex<std::collections::HashMap<String, u64>>,
    maintenance: Vec<MaintenanceWindow>,
    alert_interval: Option<Duration>,
    /// Set when `serve` starts: maintenance windows count from here.
    started: Mutex<Option<Instant>>,
    /// Bumped after every change of orders, positions or balances, so paper mode knows to save.
    changed: watch::Sender<u64>,
    /// Sampled prices for the candles endpoint. Taken after the book lock, never before it.
    history: Mutex<history::History>,
}

impl Inner {
    /// Counts one authenticated request.
    pub(crate) fn count_request(&self, method: &str, path: &str) {
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(format!("{method} {path}"))
            .or_default() += 1;
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic elsewhere must not take the whole venue down with it.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn with_book<T>(&self, f: impl FnOnce(&Book) -> T) -> T {
        f(&self.book())
    }

    pub(crate) fn credentials(&self) -> auth::Credentials<'_> {
        auth::Credentials {
            api_key: &self.api_key,
            api_secret: &self.api_secret,
            tolerance_secs: self.tolerance_secs,
        }
    }

    pub(crate) fn count_auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Call with the book lock held, so queue order is state-change order.
    fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        for e in events {
            self.outbox.enqueue(e.name, &e.data);
        }
        self.changed.send_modify(|n| *n += 1);
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub(crate) fn injector(&self) -> &Injector {
        self.outbox.injector()
    }

    /// Whether a maintenance window is open now.
    pub(crate) fn in_maintenance(&self) -> bool {
        let Some(started) = *self.started.lock().unwrap_or_else(PoisonError::into_inner) else {
            return false;
        };
        let elapsed = started.elapsed();
        self.maintenance
            .iter()
            .any(|w| elapsed >= w.starts_after && elapsed < w.starts_after + w.lasts)
    }

    fn emit_alert(&self) {
        const ALERTS: [(&str, &str, &str, &str); 3] = [
            (
                "warning",
                "High Market Volatility",
                "experiencing unusually high volatility",
                "Consider reducing position sizes",
            ),
            (
                "info",
                "Liquidity Notice",
                "order book depth is thinner than usual",
                "Prefer limit orders",
            ),
            (
                "critical",
                "Price Feed Degraded",
                "price updates are delayed",
                "Avoid market orders until resolved",
            ),
        ];
        let symbols: Vec<String> = self.book().symbols().map(String::from).collect();
        let (alert, symbol) = {
            let mut rng = self
                .signal_rng
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let alert = ALERTS[rng.gen_range(0..ALERTS.len())];
            let symbol = symbols.choose(&mut *rng).cloned().unwrap_or_default();
            (alert, symbol)
        };
        let (level, title, message, recommendation) = alert;
        self.outbox.enqueue(
            "system.alert",
            &serde_json::json!({
                "level": level,
                "title": title,
                "message": format!("{symbol} {message}"),
                "affectedSymbols": [symbol],
                "recommendation": recommendation,
            }),
        );
        self.alerts_emitted.fetch_add(1, Ordering::Relaxed);
    }

    fn announce_maintenance(&self, window: MaintenanceWindow) {
        let now = Utc::now();
        let starts = now + chrono::Duration::from_std(window.notice).unwrap_or_default();
        let ends = starts + chrono::Duration::from_std(window.lasts).unwrap_or_default();
        self.outbox.enqueue(
            "system.maintenance",
            &serde_json::json!({
                "startTime": book::iso(starts),
                "endTime": book::iso(ends),
                "description": "Scheduled maintenance (simulated)",
                "affectedServices": ["trading", "api"],
            }),
        );
    }

    /// Books the order and schedules the venue's first look at it after `fill_latency`.
    pub(crate) fn place(self: &Arc<Self>, req: OrderRequest) -> Result<PlaceOutcome, PlaceError> {
        let placed = {
            let mut book = self.book();
            let placed = book.place(req, Utc::now())?;
            match placed {
                Placed::New(order, events) => {
                    self.publish(events);
                    PlaceOutcome::Created(order)
                }
                Placed::Duplicate(order) => PlaceOutcome::Duplicate(order),
            }
        };
        match &placed {
            PlaceOutcome::Created(order) => {
                self.orders_accepted.fetch_add(1, Ordering::Relaxed);
                if let Some(cid) = &order.client_order_id {
                    self.arrivals
                        .lock()
                        .expect("arrivals lock poisoned")
                        .push((cid.clone(), std::time::Instant::now()));
                }
                let inner = Arc::clone(self);
                let order_id = order.order_id.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(inner.fill_latency).await;
                    let mut book = inner.book();
                    let events = book.on_accepted(&order_id, Utc::now());
                    inner.publish(events);
                });
            }
            PlaceOutcome::Duplicate(order) => {
                self.duplicate_client_order_ids
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(order_id = %order.order_id, "sim: clientOrderId reused");
            }
        }
        Ok(placed)
    }

    pub(crate) fn cancel(&self, order_id: &str) -> Result<SimOrder, CancelError> {
        let mut book = self.book();
        let (order, events) = book.cancel(order_id, Utc::now())?;
        self.publish(events);
        Ok(order)
    }

    fn tick(&self) {
        let now = Utc::now();
        let mut book = self.book();
        let events = book.tick(now);
        self.publish(events);
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        for symbol in book.symbols() {
            if let Some(q) = book.quote(symbol) {
                history.record(symbol, now, q.price, q.volume_24h);
            }
        }
    }

    pub(crate) fn history(&self) -> MutexGuard<'_, history::History> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit_signal(&self, symbol: &str, recommendation: &str, confidence: u8) {
        let price = self.book().mid_price(symbol);
        let data = {
            let mut rng = self
                .signal_rng
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            signals::signal_data(&mut rng, symbol, recommendation, confidence, price)
        };
        self.outbox.enqueue("signal.generated", &data);
        self.signals_emitted.fetch_add(1, Ordering::Relaxed);
    }

    fn emit_random_signal(&self, generator: &SignalGenerator) {
        let symbols: Vec<String> = self.book().symbols().map(String::from).collect();
        let pick = {
            let mut rng = self
                .signal_rng
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            generator.pick(&mut rng, &symbols)
        };
        if let Some((symbol, recommendation, confidence)) = pick {
            self.emit_signal(&symbol, recommendation, confidence);
        }
    }
}

impl Simulator {
    pub fn new(cfg: SimConfig) -> Self {
        let mut book = Book::new(
            &cfg.symbols,
            cfg.starting_balance,
            cfg.seed,
            cfg.engine.clone(),
        );
        if let Some(saved) = &cfg.restore {
            match serde_json::from_str::<BookState>(saved) {
                Ok(state) => book.restore(state, cfg.seed),
                // Paper mode checks the saved state with `check_state` before it gets here.
                Err(e) => {
                    tracing::error!(error = %e, "saved simulator state unreadable; starting fresh")
                }
            }
        }
        let inner = Inner {
            api_key: cfg.api_key,
            api_secret: cfg.api_secret,
            tolerance_secs: cfg.timestamp_tolerance_secs,
            fill_latency: cfg.fill_latency,
            webhook_concurrency: cfg.webhook_concurrency.max(1),
            generators: cfg
                .signal_interval
                .map(SignalGenerator::every)
                .into_iter()
                .chain(cfg.signal_generators)
                .collect(),
            book: Mutex::new(book),
            outbox: Arc::new(Outbox::new(
                cfg.webhook_secret,
                cfg.webhook_url,
                Injector::new(cfg.faults, cfg.seed),
            )),
            signal_rng: Mutex::new(StdRng::seed_from_u64(cfg.seed ^ 0xD1B5_4A32_D192_ED03)),
            orders_accepted: AtomicU64::new(0),
            arrivals: Mutex::new(Vec::new()),
            duplicate_client_order_ids: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            signals_emitted: AtomicU64::new(0),
            alerts_emitted: AtomicU64::new(0),
            maintenance_refusals: AtomicU64::new(0),
            rest_5xx: AtomicU64::new(0),
            rest_429: AtomicU64::new(0),
            rest_timeouts: AtomicU64::new(0),
            lost_responses: AtomicU64::new(0),
            processed_5xx: AtomicU64::new(0),
            slow_responses: AtomicU64::new(0),
            requests: Mutex::new(std::collections::HashMap::new()),
            maintenance: cfg.maintenance,
            alert_interval: cfg.alert_interval,
            started: Mutex::new(None),
            changed: watch::channel(0).0,
            history: Mutex::new(history::History::default()),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Serves the REST API on `listener` and runs webhook delivery, the price walk and the signal timer
    /// until `shutdown` resolves. A simulator serves once; a second call returns an error.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let rx = self
            .inner
            .outbox
            .take_receiver()
            .ok_or_else(|| std::io::Error::other("this simulator is already serving"))?;
        *self
            .inner
            .started
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        self.inner.injector().start();
        let policy = RetryPolicy::VENUE;
        let client = webhooks::http_client(&policy).map_err(std::io::Error::other)?;

        // The tasks stop on this flag rather than being aborted, so none is cut off mid-update.
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(webhooks::run_delivery(
                Arc::clone(&self.inner.outbox),
                rx,
                client,
                policy,
                stop_rx.clone(),
                self.inner.webhook_concurrency,
            )),
            tokio::spawn(every(PRICE_TICK, stop_rx.clone(), {
                let inner = Arc::clone(&self.inner);
                move || inner.tick()
            })),
        ];
        for generator in self.inner.generators.clone() {
            tasks.push(tokio::spawn(every(generator.interval, stop_rx.clone(), {
                let inner = Arc::clone(&self.inner);
                move || inner.emit_random_signal(&generator)
            })));
        }

        if let Some(interval) = self.inner.alert_interval {
            tasks.push(tokio::spawn(every(interval, stop_rx.clone(), {
                let inner = Arc::clone(&self.inner);
                move || inner.emit_alert()
            })));
        }
        for window in self.inner.maintenance.clone() {
            let inner = Arc::clone(&self.inner);
            let mut stop = stop_rx.clone();
            let announce_at = Instant::now() + window.starts_after.saturating_sub(window.notice);
            tasks.push(tokio::spawn(async move {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => {}
                    _ = tokio::time::sleep_until(announce_at) => inner.announce_maintenance(window),
                }
            }));
        }

        let served = axum::serve(listener, api::router(Arc::clone(&self.inner)))
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop_tx.send(true);
        for task in tasks {
            let _ = task.await;
        }
        served
    }

    /// Points webhook delivery somewhere else (tests learn the bot's port after the simulator starts).
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.inner.outbox.set_url(url);
    }

    /// How many authenticated requests `METHOD path` received (`path` as sent, without the query).
    pub fn requests(&self, method: &str, path: &str) -> u64 {
        self.inner
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&format!("{method} {path}"))
            .copied()
            .unwrap_or(0)
    }

    /// Every order, in creation order.
    pub fn orders(&self) -> Vec<SimOrder> {
        self.inner.book().orders()
    }

    pub fn stats(&self) -> SimStats {
        let i = &self.inner;
        SimStats {
            orders_accepted: i.orders_accepted.load(Ordering::Relaxed),
            duplicate_client_order_ids: i.duplicate_client_order_ids.load(Ordering::Relaxed),
            auth_failures: i.auth_failures.load(Ordering::Relaxed),
            webhooks_sent: i.outbox.sent(),
            webhooks_failed: i.outbox.failed(),
            signals_emitted: i.signals_emitted.load(Ordering::Relaxed),
            alerts_emitted: i.alerts_emitted.load(Ordering::Relaxed),
            maintenance_refusals: i.maintenance_refusals.load(Ordering::Relaxed),
            rest_5xx: i.rest_5xx.load(Ordering::Relaxed),
            rest_429: i.rest_429.load(Ordering::Relaxed),
            rest_timeouts: i.rest_timeouts.load(Ordering::Relaxed),
            lost_responses: i.lost_responses.load(Ordering::Relaxed),
            processed_5xx: i.processed_5xx.load(Ordering::Relaxed),
            slow_responses: i.slow_responses.load(Ordering::Relaxed),
            webhook_faults: i.outbox.fault_counts(),
        }
    }

    /// The USD account: cash, margin, PnL, fees.
    pub fn balance(&self) -> SimBalance {
        self.inner.book().balance()
    }

    /// Open positions, by symbol.
    pub fn positions(&self) -> Vec<SimPosition> {
        self.inner.book().positions()
    }

    /// The injected faults, in words.
    pub fn faults_description(&self) -> String {
        self.inner.injector().faults.describe()
    }

    /// The last `limit` delivery attempts, newest first.
    pub fn deliveries(&self, limit: usize) -> Vec<DeliveryRecord> {
        self.inner.outbox.deliveries(limit)
    }

    /// Orders, positions, balances and prices as JSON, for [`SimConfig::restore`].
    pub fn state_json(&self) -> String {
        let state = self.inner.book().state();
        // The state holds only strings, decimals, timestamps and maps with string keys.
        serde_json::to_string(&state).unwrap_or_default()
    }

    /// Whether `saved` is a state [`SimConfig::restore`] can start from.
    pub fn check_state(saved: &str) -> Result<(), String> {
        serde_json::from_str::<BookState>(saved)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Changes whenever orders, positions or balances change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Moves a symbol's mid price (a reference price from elsewhere); resting orders it reaches are
    /// matched at the next tick.
    pub fn set_mid_price(&self, symbol: &str, mid: Decimal) {
        self.inner.book().set_mid(symbol, mid);
    }

    /// Webhooks that failed every retry, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.inner.outbox.dead_letters()
    }

    /// Queues one signed `signal.generated` webhook now. The arguments are sent verbatim, even values a
    /// real venue would never send, so tests can check how the bot handles them.
    pub async fn emit_signal(&self, symbol: &str, recommendation: &str, confidence: u8) {
        self.inner.emit_signal(symbol, recommendation, confidence);
    }

    /// `(clientOrderId, when its POST was accepted)` for every order so far, in arrival order.
    pub fn order_arrivals(&self) -> Vec<(String, std::time::Instant)> {
        self.inner
            .arrivals
            .lock()
            .expect("arrivals lock poisoned")
            .clone()
    }

    pub fn mid_price(&self, symbol: &str) -> Option<Decimal> {
        self.inner.book().mid_price(symbol)
    }
}

/// Runs `f` every `period` (first run one period from now) until `stop` turns true.
async fn every(period: Duration, mut stop: watch::Receiver<bool>, f: impl Fn()) {
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    // After a stall, carry on at the normal pace instead of bursting to catch up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = ticks.tick() => f(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::testkit::{eventually, within, TestVenue, WEBHOOK_SECRET};
    use super::*;

    #[tokio::test]
    async fn timer_signals_are_delivered_signed() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let _ = tx.send(testkit::Received::new(&headers, body));
                    async { axum::http::StatusCode::OK }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });

        let venue = TestVenue::start(|cfg| {
            cfg.webhook_url = Some(url);
            cfg.signal_interval = Some(Duration::from_millis(20));
        })
        .await;
        let got = within(rx.recv()).await.expect("a signal");
        assert_eq!(
            got.signature.as_deref(),
            Some(testkit::hmac_hex(WEBHOOK_SECRET, &got.body).as_str())
        );
        let body: Value = serde_json::from_slice(&got.body).expect("json");
        assert_eq!(body["event"], "signal.generated");
        let confidence = body["data"]["confidence"].as_u64().expect("confidence");
        assert!((40..=99).contains(&confidence));

        venue.sim.emit_signal("BTC/USD", "sell", 140).await;
        let manual = within(async {
            loop {
                let got = rx.recv().await.expect("webhook");
                let body: Value = serde_json::from_slice(&got.body).expect("json");
                if body["data"]["confidence"] == 140 {
                    return body;
                }
            }
        })
        .await;
        assert_eq!(manual["data"]["recommendation"], "sell");
        assert!(venue.sim.stats().signals_emitted >= 2);
    }

    #[tokio::test]
    async fn prices_walk_while_serving_and_serve_returns_on_shutdown() {
        let sim = Simulator::new(SimConfig::new("k", "s", "w"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(sim.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        let start = sim.mid_price("BTC/USD");
        eventually(|| async { (sim.mid_price("BTC/USD") != start).then_some(()) }).await;

        // `serve` joins its background tasks before returning, so returning at all is the guarantee.
        let _ = stop.send(());
        within(served).await.expect("join").expect("serve");
        assert!(sim.mid_price("XRP/USD").is_none());
    }
}
