//! `sigex events`: the inbox from the command line (list, show, replay), read and written through
//! the store the bot uses, so a replay is picked up by a running bot.

use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum EventsCommand {
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
    let config = super::config_arg::load_config(&path)?;
    let store = crate::store::Store::open(&config.storage.database_url).await?;
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
