//! `sigex demo`: the bot, in live mode, against the built-in simulator on loopback, with nothing to
//! configure. Synthetic signals flow through the whole live pipeline (signed webhooks, inbox,
//! strategies, risk, signed REST orders, fill callbacks, reconciliation) and a progress line is
//! printed every second. No real venue is called and no real money moves.
//!
//! The bot trades the shipped example strategies (`strategies/*.toml`, built in) under the shipped
//! example config's account limits (`sigex.example.toml`), so what the demo shows is what those
//! files do. The simulator injects a little of each fault the bot copes with (dropped, duplicated,
//! delayed and reordered webhooks; 5xx, 429, no answer, lost responses and 500-after-processing
//! on order requests); the header says which and the final summary how often each struck.
//!
//! Guarantees: the progress line's order counts add up to the number of orders (every status is
//! counted), and its PnL is `admin::pnl`'s, the same numbers as the admin API and the dashboard.

use crate::app;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, Credentials, Mode, Secret, VenueConfig, DEFAULT_WEBHOOK_PATH};
use crate::sim::{Faults, Probability, RestRoutes, SimConfig, Simulator, Walk};
use crate::store::Store;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
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

/// The example config: the demo takes its account limits, symbols, maintenance and alert policy.
const EXAMPLE_CONFIG: &str = include_str!("../sigex.example.toml");

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

/// The faults the demo injects: some of each the bot survives, often enough to be seen in a minute.
pub fn demo_faults() -> Faults {
    Faults {
        // A dropped fill callback is found by the stale-order poll (`[reconcile] stale_after_secs`).
        webhook_drop: Probability::per_mille(20),
        webhook_duplicate: Probability::per_mille(50),
        webhook_delay: Probability::per_mille(50),
        webhook_delay_max: Duration::from_millis(300),
        webhook_reorder: Probability::per_mille(50),
        rest_5xx: Probability::per_mille(50),
        rest_429: Probability::per_mille(40),
        rest_retry_after_secs: 1,
        rest_timeout: Probability::per_mille(20),
        // Just past the bot's 5 s request timeout below.
        rest_timeout_after: Duration::from_secs(6),
        order_lost_response: Probability::per_mille(50),
        processed_5xx: Probability::per_mille(40),
        // Cancels (timeouts, protective exits) meet the same faults as placements.
        rest_routes: RestRoutes::OrderRequests,
        ..Faults::default()
    }
}

/// The simulator as the demo runs it: signals every strategy can act on, prices that move.
fn sim_config(opts: &DemoOptions, secrets: &DemoSecrets) -> SimConfig {
    let mut sim = SimConfig::new(
        secrets.api_key.clone(),
        secrets.api_secret.clone(),
        secrets.webhook_secret.clone(),
    );
    sim.seed = opts.seed;
    // Every symbol, confident enough for some strategies and not for others, buys a little more
    // often than sells so positions open before they close. Time horizon, risk level and RSI
    // are random, so every strategy's own filters refuse some.
    sim.signal_generators = vec![crate::sim::SignalGenerator {
        min_confidence: 60,
        weights: [50, 40, 10],
        ..crate::sim::SignalGenerator::every(opts.signal_interval)
    }];
    // ETH swings enough for its stop-loss and take-profit (at the signal's support and
    // resistance, 3 % away) to be reached within a few minutes.
    sim.engine.walks.insert(
        "ETH/USD".into(),
        Walk {
            volatility_bps: Decimal::new(30, 0),
            trend_bps: Decimal::ZERO,
        },
    );
    if opts.faults {
        sim.faults = demo_faults();
    }
    sim
}

struct DemoSecrets {
    api_key: String,
    api_secret: String,
    webhook_secret: String,
}

/// The bot's configuration: the example config's trading sections, the simulator as the venue.
fn bot_config(
    opts: &DemoOptions,
    secrets: &DemoSecrets,
    sim_addr: SocketAddr,
    db: &std::path::Path,
) -> anyhow::Result<Config> {
    let example = Config::from_toml(
        EXAMPLE_CONFIG,
        "sigex.example.toml",
        [(
            "SIGEX_WEBHOOK__SECRET".to_owned(),
            secrets.webhook_secret.clone(),
        )],
    )?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut admin = crate::config::AdminConfig::read_only(opts.admin_listen);
    // The curve gets a point a second: a minute of demo is a line, not a dot.
    admin.pnl_sample_interval = Duration::from_secs(1);
    Ok(Config {
        mode: Mode::Live,
        venue: VenueConfig {
            base_url: format!("http://{sim_addr}/api/v1"),
            credentials: Some(Credentials {
                api_key: Secret::new(secrets.api_key.clone()),
                api_secret: Secret::new(secrets.api_secret.clone()),
            }),
            request_timeout: Duration::from_secs(5),
            ..example.venue
        },
        webhook: crate::config::WebhookConfig::new(
            loopback,
            Secret::new(secrets.webhook_secret.clone()),
        ),
        admin,
        storage: crate::config::StorageConfig {
            database_url: format!("sqlite://{}", db.display()),
        },
        strategies_dir: PathBuf::from("strategies"),
        notify: Vec::new(),
        ..example
    })
}

/// A running demo: the simulator and the bot, wired together.
pub struct Demo {
    pub bot: app::RunningBot,
    pub sim: Simulator,
    sim_stop: crate::shutdown::ShutdownTrigger,
    sim_task: tokio::task::JoinHandle<Result<(), std::io::Error>>,
    sim_addr: SocketAddr,
    data_dir: PathBuf,
    keep_data: bool,
    pub db_path: PathBuf,
}

impl Demo {
    /// Starts the simulator and the bot; returns once both listen.
    pub async fn start(opts: &DemoOptions) -> anyhow::Result<Demo> {
        let data_dir = match &opts.data_dir {
            Some(d) => d.clone(),
            None => std::env::temp_dir().join(format!(
                "sigex-demo-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            )),
        };
        std::fs::create_dir_all(&data_dir)?;
        let db_path = data_dir.join("sigex-demo.db");
        let secrets = DemoSecrets {
            api_key: format!("demo-{}", uuid::Uuid::new_v4().simple()),
            api_secret: uuid::Uuid::new_v4().simple().to_string(),
            webhook_secret: format!("whsec_{}", uuid::Uuid::new_v4().simple()),
        };

        let sim = Simulator::new(sim_config(opts, &secrets));
        let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sim_addr = sim_listener.local_addr()?;
        let (sim_stop, mut sim_shutdown) = crate::shutdown::shutdown_pair();
        let sim_task = tokio::spawn(
            sim.clone()
                .serve(sim_listener, async move { sim_shutdown.wait().await }),
        );

        let config = bot_config(opts, &secrets, sim_addr, &db_path)?;
        let clock: SharedClock = Arc::new(SystemClock);
        let bot = app::start(config, builtin_strategies()?, clock).await?;
        sim.set_webhook_url(Some(format!(
            "http://{}{}",
            bot.webhook_addr, DEFAULT_WEBHOOK_PATH
        )));
        Ok(Demo {
            bot,
            sim,
            sim_stop,
            sim_task,
            sim_addr,
            data_dir,
            keep_data: opts.data_dir.is_some(),
            db_path,
        })
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.bot.admin_addr)
    }

    /// One line of what happened so far, from the bot's own database.
    pub async fn progress(&self) -> anyhow::Result<String> {
        progress_line(&self.bot.store).await
    }

    /// Stops the bot (drain, final reconciliation), then the simulator; removes a temporary
    /// data directory.
    pub async fn stop(self) {
        self.bot.stop().await;
        self.sim_stop.trigger();
        let _ = self.sim_task.await;
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// The built-in strategies, named after their files.
pub fn builtin_strategies() -> anyhow::Result<Vec<crate::strategy::Strategy>> {
    Ok(crate::strategy::load_sources(
        &BUILTIN_STRATEGIES
            .iter()
            .map(|(file, text)| {
                let stem = file
                    .trim_start_matches("strategies/")
                    .trim_end_matches(".toml");
                (file.to_string(), stem.to_string(), text.to_string())
            })
            .collect::<Vec<_>>(),
    )?)
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    println!("sigex demo: starting the simulator and the bot...");
    let demo = Demo::start(&opts).await?;
    let strategies = builtin_strategies()?;
    println!(
        "mode:       live, against the built-in simulator on loopback (no real venue, no real money)"
    );
    println!(
        "strategies: {} (strategies/*.toml), under sigex.example.toml's account limits",
        strategies
            .iter()
            .map(|s| format!(
                "{} ({})",
                s.name,
                s.symbols
                    .iter()
                    .map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("simulator:  http://{}/api/v1", demo.sim_addr);
    println!(
        "webhooks:   http://{}{DEFAULT_WEBHOOK_PATH}",
        demo.bot.webhook_addr
    );
    println!("dashboard:  {}/", demo.admin_url());
    println!(
        "admin API:  {0}/api/summary  /api/orders  /api/positions  /api/signals  /metrics  /readyz",
        demo.admin_url()
    );
    println!("database:   {}", demo.db_path.display());
    println!("faults:     {}", demo.sim.faults_description());
    if opts.faults {
        println!("            (each one the bot must survive; --no-faults turns them off)");
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
                let at = match opts.duration {
                    Some(d) => format!("[{elapsed:>3}/{} s]", d.as_secs()),
                    None => format!("[{elapsed:>3} s]"),
                };
                println!("{at} {}", demo.progress().await?);
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = stop_at => break,
        }
    }
    println!("{}", demo.progress().await?);
    print!("{}", final_summary(&demo.bot.store).await?);
    println!("stopping: draining the inbox, final reconciliation...");
    let stats = demo.sim.stats();
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
    let account = demo.sim.balance();
    println!(
        "venue account: total {} USD (realized PnL {}, fees {}), margin used {}",
        account.total.round_dp(2),
        account.realized_pnl.round_dp(2),
        account.fees_paid.round_dp(2),
        account.locked.round_dp(2),
    );
    demo.stop().await;
    Ok(())
}

/// Orders by status, in the progress line's words; the parts always add up to the total.
fn order_breakdown(counts: &[(String, i64)]) -> (i64, Vec<(&'static str, i64)>) {
    let count = |names: &[&str]| -> i64 {
        counts
            .iter()
            .filter(|(s, _)| names.contains(&s.as_str()))
            .map(|(_, n)| n)
            .sum()
    };
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let mut parts = vec![
        ("filled", count(&["filled"])),
        (
            "working",
            count(&["intent", "pending", "open", "partially_filled"]),
        ),
        ("cancelled", count(&["cancelled"])),
        ("expired", count(&["expired"])),
        ("rejected", count(&["rejected"])),
        ("unknown", count(&["unknown"])),
    ];
    let listed: i64 = parts.iter().map(|(_, n)| n).sum();
    if total > listed {
        // A status the venue invented: kept verbatim by the bot, counted here.
        parts.push(("other", total - listed));
    }
    (total, parts)
}

async fn progress_line(store: &Store) -> anyhow::Result<String> {
    let decisions = store.decision_counts().await?;
    let decided = |k: &str| {
        decisions
            .iter()
            .find(|(name, _)| name == k)
            .map_or(0, |(_, n)| *n)
    };
    let signals: i64 = decisions.iter().map(|(_, n)| n).sum();
    let (orders, parts) = order_breakdown(&store.order_counts().await?);
    let (positions, totals) = crate::admin::pnl::positions(store).await?;
    let held: Vec<String> = positions
        .iter()
        .filter(|p| !p.position.quantity.is_zero())
        .map(|p| format!("{} {}", p.position.symbol, p.position.quantity.normalize()))
        .collect();
    Ok(format!(
        "signals {signals} (ordered {}, refused {}, ignored {}) | orders {orders} ({}) | positions [{}] | PnL {} after fees (realized {}, unrealized {}, fees {})",
        decided("ordered"),
        decided("refused"),
        decided("ignored"),
        parts
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        held.join(", "),
        totals.net().round_dp(2),
        totals.realized_pnl.round_dp(2),
        totals.unrealized_pnl.round_dp(2),
        totals.fees.round_dp(2),
    ))
}

/// Per strategy: its orders by status, and the rules that refused its signals.
async fn final_summary(store: &Store) -> anyhow::Result<String> {
    let mut orders: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for o in store.list_orders(100_000).await? {
        let entry = orders.entry(o.strategy).or_default();
        match entry.iter_mut().find(|(s, _)| *s == o.status) {
            Some((_, n)) => *n += 1,
            None => entry.push((o.status, 1)),
        }
    }
    let mut refusals: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for d in store.list_decisions(100_000).await? {
        if d.decision == "refused" {
            *refusals
                .entry(d.strategy)
                .or_default()
                .entry(refusal_rule(&d.reason))
                .or_default() += 1;
        }
    }
    let mut out = String::from("by strategy:\n");
    for s in builtin_strategies()? {
        let (total, parts) = order_breakdown(orders.get(&s.name).map_or(&[][..], |v| v.as_slice()));
        let parts: Vec<String> = parts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{n} {name}"))
            .collect();
        let mut rules: Vec<(String, i64)> = refusals
            .remove(&s.name)
            .unwrap_or_default()
            .into_iter()
            .collect();
        rules.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let refused: Vec<String> = rules
            .iter()
            .map(|(rule, n)| format!("{n} x {rule}"))
            .collect();
        out.push_str(&format!(
            "  {}: {total} orders ({}); refused: {}\n",
            s.name,
            if parts.is_empty() {
                "none".to_owned()
            } else {
                parts.join(", ")
            },
            if refused.is_empty() {
                "none".to_owned()
            } else {
                refused.join(", ")
            }
        ));
    }
    Ok(out)
}

/// The rule part of a refusal reason, without its numbers ("cooldown 20s on BTC/USD: the last
/// order was 3s ago" -> "cooldown 20s on BTC/USD").
fn refusal_rule(reason: &str) -> String {
    reason.split(':').next().unwrap_or(reason).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_breakdown_adds_up_whatever_the_statuses() {
        let counts: Vec<(String, i64)> = [
            ("filled", 4),
            ("expired", 2),
            ("pending", 1),
            ("intent", 1),
            ("cancelled", 3),
            ("rejected", 1),
            ("unknown", 1),
            ("halted_by_venue", 2),
        ]
        .into_iter()
        .map(|(s, n)| (s.to_owned(), n))
        .collect();
        let (total, parts) = order_breakdown(&counts);
        assert_eq!(total, 15);
        assert_eq!(parts.iter().map(|(_, n)| n).sum::<i64>(), total);
        assert!(parts.contains(&("expired", 2)), "{parts:?}");
        assert!(parts.contains(&("working", 2)), "{parts:?}");
        assert!(parts.contains(&("other", 2)), "{parts:?}");
    }

    #[test]
    fn the_shipped_strategies_and_example_config_load_for_the_demo() {
        let names: Vec<String> = builtin_strategies()
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            ["momentum", "sol_high_conviction", "eth_oversold_risk"]
        );
        let opts = DemoOptions {
            duration: None,
            signal_interval: Duration::from_millis(100),
            data_dir: None,
            seed: 1,
            faults: true,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let secrets = DemoSecrets {
            api_key: "k".into(),
            api_secret: "s".into(),
            webhook_secret: "whsec_0123456789abcdef".into(),
        };
        let c = bot_config(
            &opts,
            &secrets,
            SocketAddr::from(([127, 0, 0, 1], 9)),
            std::path::Path::new("/tmp/x.db"),
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Live);
        assert_eq!(c.venue.base_url, "http://127.0.0.1:9/api/v1");
        assert!(c.trading.limits.max_order_notional.is_some());
    }

    #[test]
    fn a_refusal_rule_drops_its_numbers() {
        assert_eq!(
            refusal_rule("cooldown 20s on BTC/USD: the last order was 3s ago"),
            "cooldown 20s on BTC/USD"
        );
        assert_eq!(refusal_rule("halted"), "halted");
    }
}
