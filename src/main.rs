//! The `sigex` command line: `run`, `check`, `status`, `sim` and `demo`.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sigex::clock::{SharedClock, SystemClock};
use sigex::config::Config;
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
    /// Log format; the level comes from RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bot.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the config and every strategy file, then exit.
    Check {
        #[arg(long, short)]
        config: PathBuf,
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
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        /// Where to POST signed webhooks (the bot's webhook URL).
        #[arg(long)]
        webhook_url: Option<String>,
        /// Emit a synthetic signal.generated this often (milliseconds); 0 = never.
        #[arg(long, default_value_t = 0)]
        signal_interval_ms: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Start the simulator and the bot together and trade synthetic signals end to end.
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
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Where the admin API and dashboard listen (default: a free loopback port).
        #[arg(long, default_value = "127.0.0.1:0")]
        admin_listen: SocketAddr,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let default_level = match cli.command {
        // These print their own output; keep the log to problems.
        Command::Demo { .. } | Command::Status { .. } => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run { config } => run(config).await,
            Command::Check { config } => check(config).map(|_| ()),
            Command::Status { admin_url, json } => {
                let code = sigex::admin::status::run(&admin_url, json).await?;
                std::process::exit(code);
            }
            Command::Sim {
                listen,
                webhook_url,
                signal_interval_ms,
                seed,
            } => sim(listen, webhook_url, signal_interval_ms, seed).await,
            Command::Demo {
                duration,
                signal_interval_ms,
                data_dir,
                seed,
                admin_listen,
            } => {
                sigex::demo::run(sigex::demo::DemoOptions {
                    duration: duration.map(Duration::from_secs),
                    signal_interval: Duration::from_millis(signal_interval_ms.max(10)),
                    data_dir,
                    seed,
                    admin_listen,
                })
                .await
            }
        }
    })
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Logs go to stderr, as the README says; stdout stays for command output (`status --json`).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn check(path: PathBuf) -> anyhow::Result<(Config, Vec<sigex::strategy::Strategy>)> {
    let config = Config::load(&path, std::env::vars())?;
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

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let (config, strategies) = check(path)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let bot = sigex::app::start(config, strategies, clock).await?;
    wait_for_signal().await;
    tracing::info!("signal received: draining and shutting down");
    bot.stop().await;
    Ok(())
}

async fn sim(
    listen: SocketAddr,
    webhook_url: Option<String>,
    signal_interval_ms: u64,
    seed: u64,
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
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "simulator listening");
    sigex::sim::Simulator::new(cfg)
        .serve(listener, wait_for_signal())
        .await?;
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
