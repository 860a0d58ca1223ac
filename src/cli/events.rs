//! `sigex events`: the inbox from the command line (list, show, replay, export), read and written
//! through the store the bot uses, so a replay is picked up by a running bot.

use super::time_arg::parse_time;
use anyhow::Context;
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub(super) enum EventsCommand {
    #[command(flatten)]
    Inbox(InboxCommand),
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

/// The commands that work on the store the config names (and so need the config to load).
#[derive(Subcommand)]
pub(super) enum InboxCommand {
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
}

pub(super) async fn run(path: PathBuf, command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::Export {
            from,
            to,
            types,
            out,
        } => export(&path, from, to, types, out).await,
        EventsCommand::Inbox(command) => inbox(&path, command).await,
    }
}

/// `list`, `show` and `replay`, on the store the config names.
async fn inbox(path: &Path, command: InboxCommand) -> anyhow::Result<()> {
    let config = super::config_arg::load_config(path)?;
    let store = crate::store::Store::open(&config.storage.database_url).await?;
    match command {
        InboxCommand::List {
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
        InboxCommand::Show { seq } => {
            let (e, body) = store
                .event(seq)
                .await?
                .with_context(|| format!("no event {seq}"))?;
            println!("{}", serde_json::to_string_pretty(&e)?);
            println!("body:\n{}", String::from_utf8_lossy(&body));
        }
        InboxCommand::Replay { seq } => {
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

/// `export`: needs only `[storage] database_url`, not the secrets.
async fn export(
    path: &Path,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
    types: Vec<String>,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let url = crate::config::database_url_only(path, std::env::vars())?;
    let filter = crate::store::RecordedFilter {
        types,
        from: from.map(crate::clock::ts),
        to: to.map(crate::clock::ts),
    };
    match out {
        Some(file) => {
            let mut sink = crate::backtest::report::AtomicFile::create(&file)?;
            let n = crate::backtest::source::export(&url, &filter, &mut sink).await?;
            sink.commit()?;
            eprintln!("{n} events written to {}", file.display());
        }
        None => {
            let mut sink = std::io::BufWriter::new(std::io::stdout().lock());
            crate::backtest::source::export(&url, &filter, &mut sink).await?;
            std::io::Write::flush(&mut sink)?;
        }
    }
    Ok(())
}
