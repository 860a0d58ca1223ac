//! The `sigex` command line: `run`, `check`, `status`, `events`, `webhooks`, `halt`, `resume`,
//! `paper reset`, `sim`, `demo` and `backtest`.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sigex::clock::{SharedClock, SystemClock};
use sigex::config::Config;
use sigex::risk::state::TradingState;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "sigex",
    version,
    about = "Unattended trading bot for the Vibe Trading venue"
)]
struct Cli {
    /// Log format on stderr; the level comes from RUST_LOG (default: info). Colours only when
    /// stderr is a terminal.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `--config FILE`, shared by every command that reads the config file.
#[derive(clap::Args)]
struct ConfigArg {
    /// The sigex config file (TOML; see sigex.example.toml). Any key can be overridden by an
    /// environment variable SIGEX_<SECTION>__<KEY>.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bot.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate the config and every strategy file, then exit.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Inspect the inbox: list events and dead letters, show one, replay one, export them.
    Events {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Manage the webhooks registered with the venue (signed REST calls).
    Webhooks {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Halt trading (no new orders; cancels still allowed), for the account or one symbol. Writes
    /// the state to the database; a running bot applies it from its next signal. Needs only the
    /// config's [storage] database_url, not the secrets.
    Halt {
        #[command(flatten)]
        config: ConfigArg,
        /// Halt only this symbol (e.g. BTC/USD); default: the whole account.
        #[arg(long)]
        symbol: Option<String>,
        /// Why; shown with every refused signal.
        #[arg(long)]
        reason: String,
        /// Only orders that reduce a position instead of none.
        #[arg(long)]
        reduce_only: bool,
    },
    /// Resume trading for the account or one symbol (like halt, it needs only the database).
    Resume {
        #[command(flatten)]
        config: ConfigArg,
        /// Resume only this symbol (e.g. BTC/USD); default: the whole account.
        #[arg(long)]
        symbol: Option<String>,
        /// Why; kept with the state.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Print a compact summary of a running bot, read from its admin API.
    Status {
        /// The admin API's base URL.
        #[arg(long, env = "SIGEX_ADMIN_URL", default_value = "http://127.0.0.1:8081")]
        admin_url: String,
        /// Print the raw JSON summary (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Run the Vibe API simulator. Credentials come from SIGEX_SIM_API_KEY, SIGEX_SIM_API_SECRET
    /// and SIGEX_SIM_WEBHOOK_SECRET.
    Sim {
        /// Where the simulated venue's REST API listens.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        /// Where to POST signed webhooks (the bot's webhook URL).
        #[arg(long)]
        webhook_url: Option<String>,
        /// Emit a synthetic signal.generated this often (milliseconds); 0 = never.
        #[arg(long, default_value_t = 0)]
        signal_interval_ms: u64,
        /// Seed of every random choice (prices, signals, faults, ids).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[command(flatten)]
        venue: Box<SimVenueArgs>,
    },
    /// Paper-mode housekeeping.
    Paper {
        #[command(subcommand)]
        action: PaperAction,
    },
    /// Start the simulator and the bot together and trade synthetic signals end to end: the bot
    /// runs in live mode against the built-in simulator; nothing to configure.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Milliseconds between synthetic signals.
        #[arg(long, default_value_t = 500)]
        signal_interval_ms: u64,
        /// Keep the demo database in this directory instead of a temporary one.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Seed of the simulator's prices, signals and faults.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Run the simulator without injected faults.
        #[arg(long)]
        no_faults: bool,
        /// Where the admin API and dashboard listen (default: a free loopback port).
        #[arg(long, default_value = "127.0.0.1:0")]
        admin_listen: SocketAddr,
    },
    /// Replay recorded signals through strategy files, the risk gate and the paper venue's
    /// matching engine; print a summary and write report.html and report.json.
    Backtest(Box<BacktestArgs>),
}

#[derive(clap::Args)]
struct BacktestArgs {
    /// The strategy files to test (a directory of *.toml, as `[strategies] dir`).
    #[arg(long)]
    strategies: PathBuf,
    /// Recorded events: a sigex database (its inbox), a `sigex events export` JSON Lines file,
    /// or a directory of webhook JSON files.
    #[arg(long)]
    signals: String,
    /// Prices: SYMBOL=FILE.csv (repeatable; the candles CSV of `[paper.candles]`), candles (the
    /// config's [paper.candles]), venue (the venue's 1m candles, fetched once and cached), or
    /// random-walk[:SEED].
    #[arg(long, required = true, num_args = 1..)]
    prices: Vec<String>,
    /// Limits, symbol specs, maintenance and alert policy, and the paper venue (fees, book,
    /// latency, starting balance, seed) from this config; no secret is needed.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Trade only signals from this time (RFC 3339, or a date for its 00:00 UTC).
    #[arg(long, value_parser = parse_time)]
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// Replay nothing after this time; open positions are marked at its prices.
    #[arg(long, value_parser = parse_time)]
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// A second strategy directory, run over the same signals and prices, side by side.
    #[arg(long, conflicts_with = "sweep")]
    compare: Option<PathBuf>,
    /// One run per value of a strategy number: KEY=FROM..TO:STEP, e.g. min_confidence=60..95:5
    /// (keys: min_confidence, cooldown_secs, max_signal_age_secs, max_position_notional,
    /// notional, quantity, percent).
    #[arg(long)]
    sweep: Option<String>,
    /// Where report.html and report.json are written.
    #[arg(long, default_value = "backtest-report")]
    out: PathBuf,
    /// Where --prices venue caches candles (default $XDG_CACHE_HOME/sigex/candles or
    /// ~/.cache/sigex/candles).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    sigex::venue::wire::parse_timestamp(s)
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        })
        .ok_or_else(|| format!("{s:?} is neither RFC 3339 nor a date (YYYY-MM-DD)"))
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Newest first.
    List {
        /// Only dead letters (signed but unusable, or failed too often).
        #[arg(long)]
        dead: bool,
        /// Only events with this status: pending, processed, deferred, dead.
        #[arg(long, conflicts_with = "dead")]
        status: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One event with its raw body.
    Show {
        /// The event's sequence number (first column of `events list`).
        seq: i64,
    },
    /// Process a dead (or processed) event again; its effects are idempotent.
    Replay {
        /// The event's sequence number (first column of `events list`).
        seq: i64,
    },
    /// Write the recorded events as JSON Lines (each with its sequence number, arrival time,
    /// type, dedupe key and signed body), for `sigex backtest --signals`. Needs only the
    /// config's [storage] database_url.
    Export {
        /// Only events received at or after this time (RFC 3339 or a date).
        #[arg(long, value_parser = parse_time)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Only events received at or before this time.
        #[arg(long, value_parser = parse_time)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// Only these event types, comma-separated (e.g. signal.generated,system.alert).
        #[arg(long = "type", value_delimiter = ',')]
        types: Vec<String>,
        /// Write here (atomically) instead of to standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Register this bot's webhook URL; the secret sent is the configured webhook secret.
    Register {
        /// The public HTTPS URL of this bot's webhook endpoint.
        #[arg(long)]
        url: String,
        /// Comma-separated event names, e.g. signal.generated,order.updated
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// Register it inactive.
        #[arg(long)]
        inactive: bool,
    },
    /// List the webhooks registered with the venue (secrets are never shown).
    List,
    /// Change a registered webhook; only the options given change.
    Update {
        /// The webhook's id (first column of `webhooks list`).
        id: String,
        /// New URL.
        #[arg(long)]
        url: Option<String>,
        /// New comma-separated event names.
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// true to enable deliveries, false to pause them.
        #[arg(long)]
        active: Option<bool>,
    },
    /// Delete a registered webhook; the venue stops sending to it.
    Delete {
        /// The webhook's id (first column of `webhooks list`).
        id: String,
    },
    /// Ask the venue to send a test event to the webhook.
    Test {
        /// The webhook's id (first column of `webhooks list`).
        id: String,
        /// The event name the test delivery carries.
        #[arg(long, default_value = "test")]
        event: String,
    },
}

#[derive(Subcommand)]
enum PaperAction {
    /// Forget the paper venue's orders, positions and balances (and the bot's view of them), so the
    /// next start begins again from `[paper] starting_balance`. Stop the bot first.
    Reset {
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// The simulated venue's engine, schedule and faults. Probabilities are decimals from 0 to 1.
#[derive(clap::Args)]
struct SimVenueArgs {
    /// USD the simulated account starts with.
    #[arg(long, default_value = "100000")]
    starting_balance: rust_decimal::Decimal,
    /// Fee of a fill that rested on the book, in basis points of its notional.
    #[arg(long, default_value = "2")]
    maker_fee_bps: rust_decimal::Decimal,
    /// Fee of a fill that took liquidity, in basis points of its notional.
    #[arg(long, default_value = "5")]
    taker_fee_bps: rust_decimal::Decimal,
    /// Per-tick price move, in bps of mid (uniform in plus or minus this).
    #[arg(long, default_value = "5")]
    volatility_bps: rust_decimal::Decimal,
    /// Per-tick drift, in bps of mid.
    #[arg(long, default_value = "0")]
    trend_bps: rust_decimal::Decimal,
    /// Largest |position| x price per symbol; none by default.
    #[arg(long)]
    position_limit_notional: Option<rust_decimal::Decimal>,
    /// Delay between accepting an order and matching it.
    #[arg(long, default_value_t = 5)]
    latency_ms: u64,
    /// Another signal.generated source: INTERVAL_MS[:SYMBOLS[:MIN-MAX[:BUY/SELL/HOLD]]], e.g.
    /// 1000:BTC/USD,ETH/USD:70-99:60/30/10 (repeatable).
    #[arg(long, value_parser = sigex::sim::SignalGenerator::parse)]
    signal_generator: Vec<sigex::sim::SignalGenerator>,
    /// Emit a system.alert this often (milliseconds); 0 = never.
    #[arg(long, default_value_t = 0)]
    alert_interval_ms: u64,
    /// A maintenance window starting this many seconds after start (announced 10 s before).
    #[arg(long)]
    maintenance_at_secs: Option<u64>,
    /// How long that maintenance window lasts, in seconds.
    #[arg(long, default_value_t = 60)]
    maintenance_secs: u64,
    /// A webhook delivery is dropped (never sent, never retried).
    #[arg(long, default_value = "0")]
    fault_webhook_drop: sigex::sim::Probability,
    /// A webhook is delivered twice.
    #[arg(long, default_value = "0")]
    fault_webhook_duplicate: sigex::sim::Probability,
    /// A webhook is delivered late (up to 500 ms).
    #[arg(long, default_value = "0")]
    fault_webhook_delay: sigex::sim::Probability,
    /// A webhook is held back and delivered after the next one.
    #[arg(long, default_value = "0")]
    fault_webhook_reorder: sigex::sim::Probability,
    /// A REST request is answered 500 without being processed.
    #[arg(long, default_value = "0")]
    fault_5xx: sigex::sim::Probability,
    /// A REST request is answered 429 with Retry-After: 1.
    #[arg(long, default_value = "0")]
    fault_429: sigex::sim::Probability,
    /// A REST request gets no answer for 30 s, then 504.
    #[arg(long, default_value = "0")]
    fault_timeout: sigex::sim::Probability,
    /// An order request (POST /orders, DELETE /orders/{id}) is processed, the answer lost.
    #[arg(long, default_value = "0")]
    fault_lost_response: sigex::sim::Probability,
    /// An order request is processed (order booked, or cancelled), then answered 500.
    #[arg(long, default_value = "0")]
    fault_processed_5xx: sigex::sim::Probability,
    /// An order request is processed, then answered only after the --fault-timeout delay (30 s).
    #[arg(long, default_value = "0")]
    fault_slow_response: sigex::sim::Probability,
    /// Which requests REST faults strike: orders (POST /orders), cancels (DELETE /orders/{id}),
    /// order-requests (both) or all.
    #[arg(long, default_value = "orders", conflicts_with = "fault_all_routes")]
    fault_routes: sigex::sim::RestRoutes,
    /// REST faults strike every route (the same as --fault-routes all).
    #[arg(long)]
    fault_all_routes: bool,
    /// Inject at most this many REST faults in all.
    #[arg(long)]
    fault_limit: Option<u64>,
    /// Faults strike only during this window, `FROM-UNTIL` in seconds after start (repeatable).
    #[arg(long, value_parser = parse_window)]
    fault_window: Vec<(Duration, Duration)>,
}

fn parse_window(s: &str) -> Result<(Duration, Duration), String> {
    let (from, until) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a window like 30-90 (seconds)"))?;
    let secs = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("{v:?} is not a whole number of seconds"))
    };
    let (from, until) = (secs(from)?, secs(until)?);
    if from >= until {
        return Err(format!("window {s:?} ends before it starts"));
    }
    Ok((from, until))
}

impl SimVenueArgs {
    fn apply(&self, cfg: &mut sigex::sim::SimConfig) -> anyhow::Result<()> {
        cfg.starting_balance = self.starting_balance;
        cfg.fill_latency = Duration::from_millis(self.latency_ms);
        cfg.engine.maker_fee_bps = self.maker_fee_bps;
        cfg.engine.taker_fee_bps = self.taker_fee_bps;
        cfg.engine.walk.volatility_bps = self.volatility_bps;
        cfg.engine.walk.trend_bps = self.trend_bps;
        cfg.engine.position_limit_notional = self.position_limit_notional;
        cfg.engine.check().map_err(anyhow::Error::msg)?;
        cfg.signal_generators = self.signal_generator.clone();
        cfg.alert_interval =
            (self.alert_interval_ms > 0).then(|| Duration::from_millis(self.alert_interval_ms));
        if let Some(at) = self.maintenance_at_secs {
            cfg.maintenance.push(sigex::sim::MaintenanceWindow {
                starts_after: Duration::from_secs(at),
                lasts: Duration::from_secs(self.maintenance_secs),
                notice: Duration::from_secs(10),
            });
        }
        cfg.faults = sigex::sim::Faults {
            webhook_drop: self.fault_webhook_drop,
            webhook_duplicate: self.fault_webhook_duplicate,
            webhook_delay: self.fault_webhook_delay,
            webhook_reorder: self.fault_webhook_reorder,
            rest_5xx: self.fault_5xx,
            rest_429: self.fault_429,
            rest_timeout: self.fault_timeout,
            order_lost_response: self.fault_lost_response,
            processed_5xx: self.fault_processed_5xx,
            order_slow_response: self.fault_slow_response,
            rest_routes: if self.fault_all_routes {
                sigex::sim::RestRoutes::All
            } else {
                self.fault_routes
            },
            rest_fault_limit: self.fault_limit,
            windows: self.fault_window.clone(),
            ..sigex::sim::Faults::default()
        };
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let default_level = match cli.command {
        // These print their own output; keep the log to problems.
        Command::Demo { .. } | Command::Status { .. } | Command::Backtest(_) => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run { config } => run(config.config).await,
            Command::Check { config } => check(config.config).map(|_| ()),
            Command::Events { config, command } => events(config.config, command).await,
            Command::Webhooks { config, command } => webhooks(config.config, command).await,
            Command::Halt {
                config,
                symbol,
                reason,
                reduce_only,
            } => {
                let state = if reduce_only {
                    TradingState::Reducing
                } else {
                    TradingState::Halted
                };
                set_state(config.config, symbol, Some(reason), state).await
            }
            Command::Resume {
                config,
                symbol,
                reason,
            } => set_state(config.config, symbol, reason, TradingState::Active).await,
            Command::Status { admin_url, json } => {
                let code = sigex::admin::status::run(&admin_url, json).await?;
                std::process::exit(code);
            }
            Command::Sim {
                listen,
                webhook_url,
                signal_interval_ms,
                seed,
                venue,
            } => sim(listen, webhook_url, signal_interval_ms, seed, venue).await,
            Command::Paper {
                action: PaperAction::Reset { config },
            } => paper_reset(config.config).await,
            Command::Demo {
                duration,
                signal_interval_ms,
                data_dir,
                seed,
                no_faults,
                admin_listen,
            } => {
                sigex::demo::run(sigex::demo::DemoOptions {
                    duration: duration.map(Duration::from_secs),
                    signal_interval: Duration::from_millis(signal_interval_ms.max(10)),
                    data_dir,
                    seed,
                    faults: !no_faults,
                    admin_listen,
                })
                .await
            }
            Command::Backtest(args) => backtest(*args).await,
        }
    })
}

async fn backtest(args: BacktestArgs) -> anyhow::Result<()> {
    let opts = sigex::backtest::Options {
        strategies: args.strategies,
        compare: args.compare,
        config: args.config,
        signals: args.signals,
        prices: args.prices,
        from: args.from,
        to: args.to,
        sweep: args.sweep,
        cache_dir: args.cache_dir,
    };
    let report = sigex::backtest::run(&opts, std::env::vars()).await?;
    let (json, html) = report.write(&args.out)?;
    print!("{}", report.text());
    println!("\nreport: {}\n        {}", html.display(), json.display());
    Ok(())
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Logs go to stderr, as the README says; stdout stays for command output (`status --json`).
    // Colour codes only for a person at a terminal: a journal, a file or a pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Loads the config file with the environment's overrides, and says which `SIGEX_*` variables it
/// ignored (neither a config key nor one sigex reads elsewhere: often a typo).
fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    let config = Config::load(path, std::env::vars())?;
    for name in Config::stray_variables(std::env::vars()) {
        tracing::warn!(
            variable = %name,
            "ignored: not a config key (overrides are SIGEX_<SECTION>__<KEY>, e.g. SIGEX_WEBHOOK__LISTEN)"
        );
    }
    Ok(config)
}

fn check(path: PathBuf) -> anyhow::Result<(Config, Vec<sigex::strategy::Strategy>)> {
    let config = load_config(&path)?;
    let strategies = sigex::strategy::load_dir(&config.strategies_dir)?;
    println!(
        "{}: ok ({:?} mode, {} strateg{}: {})",
        path.display(),
        config.mode,
        strategies.len(),
        if strategies.len() == 1 { "y" } else { "ies" },
        strategies
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok((config, strategies))
}

async fn set_state(
    path: PathBuf,
    symbol: Option<String>,
    reason: Option<String>,
    state: TradingState,
) -> anyhow::Result<()> {
    let url = sigex::config::database_url_only(&path, std::env::vars())?;
    let entry = sigex::admin::control::build_entry_from(symbol, reason, state, chrono::Utc::now())
        .map_err(anyhow::Error::msg)?;
    let store = sigex::store::Store::open(&url)
        .await
        .with_context(|| format!("opening {url}"))?;
    store.set_trading_state_now(&entry).await?;
    let states = store.list_trading_states().await?;
    store.close().await;
    println!(
        "{} is now {}",
        entry.symbol.as_deref().unwrap_or("the account"),
        entry.state.as_str()
    );
    for s in states {
        println!(
            "  {}: {} since {} ({}: {})",
            s.symbol.as_deref().unwrap_or("account"),
            s.state.as_str(),
            s.since,
            s.set_by.as_str(),
            s.reason
        );
    }
    Ok(())
}

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let (config, strategies) = check(path)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let bot = sigex::app::start(config, strategies, clock).await?;
    tokio::select! {
        _ = wait_for_signal() => tracing::info!("signal received: draining and shutting down"),
        death = bot.died() => tracing::error!(task = %death.task, why = %death.why, "a task died: draining and shutting down"),
    }
    match bot.stop().await {
        // A non-zero exit: the service manager restarts sigex.
        sigex::app::Stopped::AfterTaskDeath(dead) => {
            let dead: Vec<String> = dead
                .iter()
                .map(|d| format!("{} {}", d.task, d.why))
                .collect();
            anyhow::bail!("stopped because a task died: {}", dead.join("; "))
        }
        _ => Ok(()),
    }
}

async fn events(path: PathBuf, command: EventsCommand) -> anyhow::Result<()> {
    if let EventsCommand::Export {
        from,
        to,
        types,
        out,
    } = command
    {
        let url = sigex::config::database_url_only(&path, std::env::vars())?;
        let filter = sigex::store::RecordedFilter {
            types,
            from: from.map(sigex::clock::ts),
            to: to.map(sigex::clock::ts),
        };
        match out {
            Some(file) => {
                let mut sink = sigex::backtest::report::AtomicFile::create(&file)?;
                let n = sigex::backtest::source::export(&url, &filter, &mut sink).await?;
                sink.commit()?;
                eprintln!("{n} events written to {}", file.display());
            }
            None => {
                let mut sink = std::io::BufWriter::new(std::io::stdout().lock());
                sigex::backtest::source::export(&url, &filter, &mut sink).await?;
                std::io::Write::flush(&mut sink)?;
            }
        }
        return Ok(());
    }
    let config = load_config(&path)?;
    let store = sigex::store::Store::open(&config.storage.database_url).await?;
    match command {
        EventsCommand::List {
            dead,
            status,
            limit,
        } => {
            let status = if dead {
                Some("dead".to_owned())
            } else {
                status
            };
            let events = store.list_events(status.as_deref(), limit).await?;
            if events.is_empty() {
                println!("no events");
            }
            for e in events {
                println!(
                    "{:>8}  {:<10} {:<28} {}  attempts {}{}",
                    e.seq,
                    e.status,
                    e.event_type,
                    e.received_at,
                    e.attempts,
                    e.error.map(|m| format!("  error: {m}")).unwrap_or_default()
                );
            }
        }
        EventsCommand::Show { seq } => {
            let (e, body) = store
                .event(seq)
                .await?
                .with_context(|| format!("no event {seq}"))?;
            println!("{}", serde_json::to_string_pretty(&e)?);
            println!("body:\n{}", String::from_utf8_lossy(&body));
        }
        EventsCommand::Export { .. } => unreachable!("handled above"),
        EventsCommand::Replay { seq } => {
            if store.replay_event(seq).await? {
                println!("event {seq} queued again; a running bot processes it within a second");
            } else {
                anyhow::bail!("event {seq} does not exist or is already waiting to be processed");
            }
        }
    }
    store.close().await;
    Ok(())
}

async fn webhooks(path: PathBuf, command: WebhooksCommand) -> anyhow::Result<()> {
    use sigex::venue::wire::{WebhookRegistration, WebhookTestRequest};
    let config = load_config(&path)?;
    let credentials = config.venue.credentials.clone().context(
        "webhook management signs requests with the venue API key: set SIGEX_VENUE__API_KEY and \
         SIGEX_VENUE__API_SECRET",
    )?;
    let clock: SharedClock = Arc::new(SystemClock);
    let venue = sigex::venue::VenueClient::new(
        &config.venue.base_url,
        credentials,
        config.venue.request_timeout,
        clock,
    )
    .map_err(anyhow::Error::msg)?;
    match command {
        WebhooksCommand::Register {
            url,
            events,
            inactive,
        } => {
            let created = venue
                .create_webhook(&WebhookRegistration {
                    url: Some(url),
                    events: Some(events),
                    secret: Some(config.webhook.secret.expose().to_owned()),
                    active: Some(!inactive),
                })
                .await?;
            println!("{}", show_webhook(&created));
        }
        WebhooksCommand::List => {
            for w in venue.list_webhooks().await? {
                println!("{}", show_webhook(&w));
            }
        }
        WebhooksCommand::Update {
            id,
            url,
            events,
            active,
        } => {
            let updated = venue
                .update_webhook(
                    &id,
                    &WebhookRegistration {
                        url,
                        events,
                        secret: None,
                        active,
                    },
                )
                .await?;
            println!("{}", show_webhook(&updated));
        }
        WebhooksCommand::Delete { id } => {
            venue.delete_webhook(&id).await?;
            println!("deleted {id}");
        }
        WebhooksCommand::Test { id, event } => {
            let webhook_id = serde_json::from_str(&id).unwrap_or(serde_json::Value::String(id));
            let answer = venue
                .test_webhook(&WebhookTestRequest {
                    webhook_id,
                    test_event: event,
                })
                .await?;
            println!("{answer}");
        }
    }
    Ok(())
}

fn show_webhook(w: &sigex::venue::wire::WebhookInfo) -> String {
    format!(
        "{}  {}  active={}  events={}",
        w.id,
        w.url,
        w.active.map_or("?".to_owned(), |a| a.to_string()),
        w.events.join(",")
    )
}

async fn sim(
    listen: SocketAddr,
    webhook_url: Option<String>,
    signal_interval_ms: u64,
    seed: u64,
    venue: Box<SimVenueArgs>,
) -> anyhow::Result<()> {
    let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let mut cfg = sigex::sim::SimConfig::new(
        var("SIGEX_SIM_API_KEY")?,
        var("SIGEX_SIM_API_SECRET")?,
        var("SIGEX_SIM_WEBHOOK_SECRET")?,
    );
    cfg.webhook_url = webhook_url;
    cfg.seed = seed;
    cfg.signal_interval =
        (signal_interval_ms > 0).then(|| Duration::from_millis(signal_interval_ms));
    venue.apply(&mut cfg)?;
    tracing::info!(faults = %cfg.faults.describe(), "simulator faults");
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "simulator listening");
    sigex::sim::Simulator::new(cfg)
        .serve(listener, wait_for_signal())
        .await?;
    Ok(())
}

async fn paper_reset(path: PathBuf) -> anyhow::Result<()> {
    let config = load_config(&path)?;
    if config.mode != sigex::config::Mode::Paper {
        anyhow::bail!(
            "{}: mode is {:?}; `paper reset` only touches a paper-mode database",
            path.display(),
            config.mode
        );
    }
    let store = sigex::store::Store::open(&config.storage.database_url).await?;
    store.reset_paper().await?;
    store.close().await;
    println!(
        "{}: paper venue reset; the next start begins with {} USD",
        config.storage.database_url, config.paper.starting_balance
    );
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every subcommand, argument and flag a user can type, with the path that leads to it.
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                out.push(format!("{path} <{id}>"));
            }
        }
        for sub in cmd.get_subcommands() {
            let sub_path = format!("{path} {}", sub.get_name());
            if sub.get_name() != "help" && sub.get_about().is_none() {
                out.push(sub_path.clone());
            }
            undocumented(sub, &sub_path, out);
        }
    }

    #[test]
    fn every_subcommand_argument_and_flag_has_help_text() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        undocumented(&cmd, "sigex", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
