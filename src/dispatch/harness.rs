//! A parse-and-apply harness for fuzzing: signed webhook bodies go into a real inbox (SQLite) and
//! through the real dispatcher (parse, strategies, the risk gate with every account limit set,
//! order news, positions, balances, alerts, maintenance), with a simulator on loopback for
//! reference prices. Used by the seeded no-panic test in `cargo test` and by the coverage-guided
//! target in `fuzz/`.
//!
//! A panic while processing is caught by the dispatcher and kept as a dead letter whose reason
//! starts with [`PANICKED`]: that is what a fuzzer looks for. At start the harness places one
//! order through the pipeline; the text `sx-known` in a body stands for that order's
//! `clientOrderId`, so mutated order news can reach a real order, its fills and its position.

use super::Dispatcher;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Credentials, Secret, TradingConfig};
use crate::risk::limits::AccountLimits;
use crate::shutdown::{shutdown_pair, ShutdownTrigger};
use crate::store::{NewEvent, Store};
use crate::strategy::Strategy;
use crate::venue::VenueClient;
use rust_decimal::Decimal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How a caught panic's dead letter reason starts (`processing panicked: ...` and `parsing
/// panicked: ...` both contain it).
pub const PANICKED: &str = "panicked: ";

/// Stands for the harness's own order's `clientOrderId` in a body.
pub const KNOWN_ORDER: &[u8] = b"sx-known";

const STRATEGIES: &[(&str, &str)] = &[
    (
        "notional",
        r#"symbols = ["BTC/USD"]
recommendations = ["buy", "sell", "hold"]
min_confidence = 0
allow_short = true
[sizing]
method = "fixed_notional"
notional = 1000
scale_by_confidence = true
[exits]
on_opposite_signal = "reverse"
hold_closes = true
stop_loss = true
take_profit = true"#,
    ),
    (
        "risk",
        r#"symbols = ["ETH/USD"]
recommendations = ["buy", "sell"]
min_confidence = 0
[sizing]
method = "risk_per_trade"
percent = 1"#,
    ),
    (
        "balance",
        r#"symbols = ["SOL/USD"]
recommendations = ["buy", "sell"]
min_confidence = 0
allow_short = true
[sizing]
method = "percent_of_balance"
percent = 5
[orders]
type = "limit"
limit_offset_bps = 5"#,
    ),
];

pub struct Harness {
    store: Store,
    strategies: Arc<Vec<Strategy>>,
    venue: VenueClient,
    clock: SharedClock,
    trading: Arc<TradingConfig>,
    next_key: u64,
    known_order: Vec<u8>,
    sim_stop: ShutdownTrigger,
}

impl Harness {
    /// A fresh database under `db_dir`, a simulator on loopback, and one order placed.
    pub async fn start(db_dir: &Path) -> Self {
        let store = Store::open(&format!("sqlite://{}", db_dir.join("fuzz.db").display()))
            .await
            .expect("the harness database opens");
        let sim = crate::sim::Simulator::new(crate::sim::SimConfig::new(
            "fuzz-key",
            "fuzz-secret",
            "fuzz-webhook-secret",
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let sim_url = format!(
            "http://{}/api/v1",
            listener.local_addr().expect("a local address")
        );
        let (sim_stop, mut sim_shutdown) = shutdown_pair();
        tokio::spawn(sim.serve(listener, async move { sim_shutdown.wait().await }));
        let clock: SharedClock = Arc::new(SystemClock);
        let venue = VenueClient::new(
            &sim_url,
            Credentials {
                api_key: Secret::new("fuzz-key"),
                api_secret: Secret::new("fuzz-secret"),
            },
            Duration::from_secs(2),
            clock.clone(),
        )
        .expect("the simulator's URL is valid");
        let sources: Vec<(String, String, String)> = STRATEGIES
            .iter()
            .map(|(name, text)| {
                (
                    format!("{name}.toml"),
                    (*name).to_owned(),
                    (*text).to_owned(),
                )
            })
            .collect();
        let strategies = crate::strategy::load_sources(&sources).expect("the strategies load");
        let d = |s: &str| s.parse::<Decimal>().ok();
        let trading = TradingConfig {
            limits: AccountLimits {
                max_order_notional: d("50000"),
                max_position_notional: d("100000"),
                max_gross_exposure: d("250000"),
                max_open_orders: Some(1000),
                max_orders_per_minute: Some(100_000),
                daily_loss_limit: d("100000"),
                max_drawdown_percent: d("50"),
                max_margin_ratio: d("0.9"),
            },
            ..TradingConfig::default()
        };
        let mut harness = Self {
            store,
            strategies: Arc::new(strategies),
            venue,
            clock,
            trading: Arc::new(trading),
            next_key: 0,
            known_order: Vec::new(),
            sim_stop,
        };
        let now = chrono::Utc::now().to_rfc3339();
        let signal = format!(
            r#"{{"event":"signal.generated","timestamp":"{now}","data":{{"symbol":"BTC/USD","recommendation":"buy","confidence":90,"timeHorizon":"short_term","riskLevel":"medium","technicalAnalysis":{{"support":45000,"resistance":55000}}}}}}"#
        );
        harness.apply(&[signal.into_bytes()]).await;
        harness.known_order = harness
            .store
            .list_orders(1)
            .await
            .ok()
            .and_then(|o| o.into_iter().next())
            .map(|o| o.client_order_id.into_bytes())
            .unwrap_or_else(|| KNOWN_ORDER.to_vec());
        harness
    }

    /// The store the events go into.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores each body (as a new event) and processes the inbox as far as it goes; returns each
    /// body's `(status, error)` afterwards.
    pub async fn apply(&mut self, bodies: &[Vec<u8>]) -> Vec<(String, Option<String>)> {
        let now = self.clock.now();
        let events: Vec<NewEvent> = bodies
            .iter()
            .map(|b| {
                self.next_key += 1;
                NewEvent {
                    dedupe_key: format!("fuzz:{}", self.next_key),
                    event_type: "fuzz".into(),
                    received_at: now,
                    body: axum::body::Bytes::from(replace(b, KNOWN_ORDER, &self.known_order)),
                    webhook_id: None,
                }
            })
            .collect();
        let seqs = self
            .store
            .insert_events(&events)
            .await
            .expect("the harness inbox takes events");
        let mut dispatcher = Dispatcher::new(
            self.store.clone(),
            self.strategies.clone(),
            self.venue.clone(),
            self.clock.clone(),
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
            self.trading.clone(),
        );
        // Whatever a body's date, it is applied: the fuzzer is after what applying does (the
        // freshness check itself still runs on every body, and has its own tests).
        let century = chrono::Duration::days(36_500);
        dispatcher.freshness = crate::model::events::Freshness {
            max_age: century,
            max_skew: century,
        };
        // Triggered already: the dispatcher drains what is pending and returns.
        let (trigger, shutdown) = shutdown_pair();
        trigger.trigger();
        dispatcher.run(shutdown).await;
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs.into_iter().flatten() {
            let seen = self.store.event(seq).await.ok().flatten();
            out.push(seen.map_or(("missing".to_owned(), None), |(e, _)| (e.status, e.error)));
        }
        out
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.sim_stop.trigger();
    }
}

fn replace(body: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}
