//! `sigex demo`: the simulator and the bot wired together on loopback, with nothing to configure.
//! Synthetic signals flow through the whole live pipeline (signed webhooks, inbox, strategies,
//! risk, signed REST orders, fill callbacks) and a summary is printed every second.
//!
//! The simulator runs with a little of each fault the bot copes with today (duplicated, delayed
//! and reordered webhooks; 5xx, 429, no answer and lost responses on `POST /orders`); the header and
//! the final summary say which, and how often each struck. Webhook drops stay off: a dropped fill
//! is only found once stale-order polling exists.

use crate::app;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{
    AdminConfig, Config, Credentials, InboxConfig, Mode, PaperConfig, Secret, StorageConfig,
    VenueConfig, WebhookConfig, DEFAULT_WEBHOOK_PATH,
};
use crate::sim::{Faults, Probability, RestRoutes, SimConfig, Simulator};
use crate::store::Store;
use rust_decimal::Decimal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The example strategies, built in so the demo runs from any directory.
pub const BUILTIN_STRATEGIES: &[(&str, &str)] = &[
    (
        "strategies/momentum.toml",
        include_str!("../strategies/momentum.toml"),
    ),
    (
        "strategies/sol_high_conviction.toml",
        include_str!("../strategies/sol_high_conviction.toml"),
    ),
    (
        "strategies/eth_oversold_risk.toml",
        include_str!("../strategies/eth_oversold_risk.toml"),
    ),
];

pub struct DemoOptions {
    pub duration: Option<Duration>,
    pub signal_interval: Duration,
    /// Where the SQLite file goes; a fresh temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
    pub seed: u64,
    /// Inject [`demo_faults`]; `false` runs a well-behaved venue.
    pub faults: bool,
    /// Where the admin API and the dashboard listen.
    pub admin_listen: SocketAddr,
}

/// The faults the demo injects: a little of each the bot handles without stale-order polling.
pub fn demo_faults() -> Faults {
    Faults {
        webhook_duplicate: Probability::per_mille(50),
        webhook_delay: Probability::per_mille(50),
        webhook_delay_max: Duration::from_millis(300),
        webhook_reorder: Probability::per_mille(50),
        rest_5xx: Probability::per_mille(30),
        rest_429: Probability::per_mille(30),
        rest_retry_after_secs: 1,
        rest_timeout: Probability::per_mille(10),
        // Just past the bot's 5 s request timeout below.
        rest_timeout_after: Duration::from_secs(6),
        order_lost_response: Probability::per_mille(30),
        processed_5xx: Probability::per_mille(20),
        // Cancels (timeouts, protective exits) meet the same faults as placements.
        rest_routes: RestRoutes::OrderRequests,
        ..Faults::default()
    }
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let data_dir = match &opts.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("sigex-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&data_dir)?;
    let db_path = data_dir.join("sigex-demo.db");

    let api_key = format!("demo-{}", uuid::Uuid::new_v4().simple());
    let api_secret = uuid::Uuid::new_v4().simple().to_string();
    let webhook_secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());

    println!("sigex demo: starting the simulator and the bot...");
    let mut sim_config =
        SimConfig::new(api_key.clone(), api_secret.clone(), webhook_secret.clone());
    sim_config.seed = opts.seed;
    // Signals the shipped strategies can act on: confident enough, and buys ahead of sells so
    // positions open before they are closed. Everything else about them is random.
    sim_config.signal_generators = vec![crate::sim::SignalGenerator {
        min_confidence: 60,
        weights: [55, 35, 10],
        ..crate::sim::SignalGenerator::every(opts.signal_interval)
    }];
    if opts.faults {
        sim_config.faults = demo_faults();
    }
    let sim = Simulator::new(sim_config);
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim_addr = sim_listener.local_addr()?;
    let (sim_stop, mut sim_shutdown) = app::shutdown_pair();
    let sim_task = tokio::spawn(
        sim.clone()
            .serve(sim_listener, async move { sim_shutdown.wait().await }),
    );

    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = Config {
        mode: Mode::Live,
        venue: VenueConfig {
            base_url: format!("http://{sim_addr}/api/v1"),
            credentials: Some(Credentials {
                api_key: Secret::new(api_key),
                api_secret: Secret::new(api_secret),
            }),
            request_timeout: Duration::from_secs(5),
            max_orders_per_second: crate::config::DEFAULT_MAX_ORDERS_PER_SECOND,
            max_intent_age: crate::config::DEFAULT_MAX_INTENT_AGE,
        },
        webhook: WebhookConfig::new(loopback, Secret::new(webhook_secret)),
        inbox: InboxConfig::default(),
        admin: AdminConfig::read_only(opts.admin_listen),
        storage: StorageConfig {
            database_url: format!("sqlite://{}", db_path.display()),
        },
        strategies_dir: PathBuf::from("strategies"),
        trading: Default::default(),
        paper: PaperConfig::default(),
        notify: Vec::new(),
        shutdown_deadline: crate::config::DEFAULT_SHUTDOWN_DEADLINE,
        reconcile: crate::config::ReconcileConfig::default(),
    };
    let strategies = crate::strategy::load_sources(
        &BUILTIN_STRATEGIES
            .iter()
            .map(|(file, text)| {
                let stem = file
                    .trim_start_matches("strategies/")
                    .trim_end_matches(".toml");
                (file.to_string(), stem.to_string(), text.to_string())
            })
            .collect::<Vec<_>>(),
    )?;
    let clock: SharedClock = Arc::new(SystemClock);
    let bot = app::start(config, strategies, clock).await?;
    sim.set_webhook_url(Some(format!(
        "http://{}{}",
        bot.webhook_addr, DEFAULT_WEBHOOK_PATH
    )));

    println!("simulator:  http://{sim_addr}/api/v1");
    println!(
        "webhooks:   http://{}{DEFAULT_WEBHOOK_PATH}",
        bot.webhook_addr
    );
    println!("dashboard:  http://{}/", bot.admin_addr);
    println!(
        "admin API:  http://{0}/api/summary  /api/orders  /api/positions  /api/signals  /metrics  /readyz",
        bot.admin_addr
    );
    println!("database:   {}", db_path.display());
    println!("faults:     {}", sim.faults_description());
    if opts.faults {
        println!("            (webhook drops off: a dropped fill is only found once stale-order polling exists; --no-faults turns all off)");
    }
    println!(
        "a signal every {} ms; {}",
        opts.signal_interval.as_millis(),
        match opts.duration {
            Some(d) => format!("stopping after {} s (or Ctrl-C)", d.as_secs()),
            None => "Ctrl-C to stop".to_owned(),
        }
    );

    let started = tokio::time::Instant::now();
    let deadline = opts.duration.map(|d| started + d);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        let stop_at = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {
                let elapsed = started.elapsed().as_secs();
                let progress = match opts.duration {
                    Some(d) => format!("[{elapsed:>3}/{} s]", d.as_secs()),
                    None => format!("[{elapsed:>3} s]"),
                };
                println!("{progress} {}", summary(&bot.store, &sim).await);
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = stop_at => break,
        }
    }
    println!("{}", summary(&bot.store, &sim).await);
    println!("stopping: draining the inbox, final reconciliation...");
    let stats = sim.stats();
    println!(
        "simulator: {} orders accepted, {} duplicate clientOrderIds answered 409, {} auth failures, {} webhooks sent ({} failed)",
        stats.orders_accepted,
        stats.duplicate_client_order_ids,
        stats.auth_failures,
        stats.webhooks_sent,
        stats.webhooks_failed
    );
    let w = stats.webhook_faults;
    println!(
        "faults injected: order requests {} x 5xx, {} x 429, {} x no answer, {} x response lost, {} x 500 after processing | webhooks {} duplicated, {} delayed, {} reordered, {} dropped",
        stats.rest_5xx,
        stats.rest_429,
        stats.rest_timeouts,
        stats.lost_responses,
        stats.processed_5xx,
        w.webhooks_duplicated,
        w.webhooks_delayed,
        w.webhooks_reordered,
        w.webhooks_dropped,
    );
    let account = sim.balance();
    println!(
        "venue account: total {} USD (realized PnL {}, fees {}), margin used {}",
        account.total.round_dp(2),
        account.realized_pnl.round_dp(2),
        account.fees_paid.round_dp(2),
        account.locked.round_dp(2),
    );
    bot.stop().await;
    sim_stop.trigger();
    let _ = sim_task.await;
    if opts.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    Ok(())
}

/// One line of what happened so far, from the bot's own database.
async fn summary(store: &Store, sim: &Simulator) -> String {
    let count =
        |v: &[(String, i64)], k: &str| v.iter().find(|(name, _)| name == k).map_or(0, |(_, n)| *n);
    let decisions = store.decision_counts().await.unwrap_or_default();
    let orders = store.order_counts().await.unwrap_or_default();
    let positions = store.list_positions().await.unwrap_or_default();
    let signals: i64 = decisions.iter().map(|(_, n)| n).sum();
    let total_orders: i64 = orders.iter().map(|(_, n)| n).sum();
    let mut realized = Decimal::ZERO;
    let mut unrealized = Decimal::ZERO;
    let mut fees = Decimal::ZERO;
    let mut held = Vec::new();
    for p in &positions {
        realized += p.realized_pnl;
        fees += p.fees;
        if !p.quantity.is_zero() {
            let mark = sim
                .mid_price(&p.symbol)
                .or(p.last_price)
                .unwrap_or(p.average_price);
            unrealized += p.quantity * (mark - p.average_price);
            held.push(format!("{} {}", p.symbol, p.quantity.normalize()));
        }
    }
    format!(
        "signals {signals} (ordered {}, refused {}, ignored {}) | orders {total_orders} (filled {}, working {}, rejected {}, unknown {}) | positions [{}] | PnL realized {} unrealized {} fees {}",
        count(&decisions, "ordered"),
        count(&decisions, "refused"),
        count(&decisions, "ignored"),
        count(&orders, "filled"),
        count(&orders, "pending") + count(&orders, "open") + count(&orders, "partially_filled") + count(&orders, "intent"),
        count(&orders, "rejected"),
        count(&orders, "unknown"),
        held.join(", "),
        realized.round_dp(2),
        unrealized.round_dp(2),
        fees.round_dp(2),
    )
}
