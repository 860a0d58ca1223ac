//! The `sigex` command line: the arguments of every command (`run`, `check`, `status`, `events`,
//! `webhooks`, `halt`, `resume`, `paper reset`, `sim`, `demo` and `backtest`), what each does, and
//! how an error at the top reaches the operator.
//!
//! Guarantees: every subcommand, argument and flag has help text (a test walks clap's tree); a
//! command that fails ends with its message and cause chain on stderr and a non-zero exit status,
//! never with a backtrace (even under `RUST_BACKTRACE=1`): the message is the fix, the frames
//! are noise to an operator. Logs go to stderr; stdout carries only command output.

mod backtest;
mod config_arg;
mod events;
mod paper;
mod run;
mod sim;
mod time_arg;
mod trading;
mod webhooks;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use config_arg::ConfigArg;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "sigex",
    version,
    about = "Unattended trading bot for the Vibe Trading venue"
)]
pub struct Cli {
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
        command: events::EventsCommand,
    },
    /// Manage the webhooks registered with the venue (signed REST calls).
    Webhooks {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
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
        venue: Box<sim::SimVenueArgs>,
    },
    /// Paper-mode housekeeping.
    Paper {
        #[command(subcommand)]
        action: paper::PaperAction,
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
    Backtest(Box<backtest::BacktestArgs>),
}

impl Cli {
    /// Runs the command: sets up logging and the async runtime, then does what it was asked.
    /// `Ok` carries the exit status of a command that has one of its own (`status`); an `Err` is
    /// for [`report`].
    pub fn dispatch(self) -> anyhow::Result<ExitCode> {
        let default_level = match self.command {
            // These print their own output; keep the log to problems.
            Command::Demo { .. } | Command::Status { .. } | Command::Backtest(_) => "warn",
            _ => "info",
        };
        init_logging(self.log_format, default_level);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(self.command.execute())
    }
}

impl Command {
    async fn execute(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Run { config } => run::run(config.config).await?,
            Command::Check { config } => {
                run::check(config.config)?;
            }
            Command::Events { config, command } => events::run(config.config, command).await?,
            Command::Webhooks { config, command } => webhooks::run(config.config, command).await?,
            Command::Halt {
                config,
                symbol,
                reason,
                reduce_only,
            } => trading::halt(config.config, symbol, reason, reduce_only).await?,
            Command::Resume {
                config,
                symbol,
                reason,
            } => trading::resume(config.config, symbol, reason).await?,
            Command::Status { admin_url, json } => {
                let code = crate::admin::status::run(&admin_url, json).await?;
                return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
            }
            Command::Sim {
                listen,
                webhook_url,
                signal_interval_ms,
                seed,
                venue,
            } => sim::run(listen, webhook_url, signal_interval_ms, seed, venue).await?,
            Command::Paper { action } => paper::run(action).await?,
            Command::Demo {
                duration,
                signal_interval_ms,
                data_dir,
                seed,
                no_faults,
                admin_listen,
            } => {
                crate::demo::run(crate::demo::DemoOptions {
                    duration: duration.map(Duration::from_secs),
                    signal_interval: Duration::from_millis(signal_interval_ms.max(10)),
                    data_dir,
                    seed,
                    faults: !no_faults,
                    admin_listen,
                })
                .await?
            }
            Command::Backtest(args) => backtest::run(*args).await?,
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// What the operator reads when a command fails: the error and each of its causes, one a line,
/// and no backtrace. (`anyhow`'s `Debug`, which `fn main() -> Result` prints, appends ~30 frames
/// of backtrace after the message whenever `RUST_BACKTRACE` is set.)
pub fn report(error: &anyhow::Error) -> String {
    let mut out = format!("Error: {error}");
    let mut causes = error.chain().skip(1).peekable();
    if causes.peek().is_some() {
        out.push_str("\n\nCaused by:");
        for cause in causes {
            out.push_str("\n    ");
            out.push_str(&cause.to_string());
        }
    }
    out
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

    #[test]
    fn an_error_is_reported_with_its_causes_and_never_a_backtrace() {
        let root = std::io::Error::other("permission denied");
        let error = anyhow::Error::new(root)
            .context("opening sqlite://bot.db")
            .context("starting the store");
        let text = report(&error);
        assert_eq!(
            text,
            "Error: starting the store\n\nCaused by:\n    opening sqlite://bot.db\n    permission denied"
        );
        assert_eq!(report(&anyhow::anyhow!("no event 7")), "Error: no event 7");
    }
}
