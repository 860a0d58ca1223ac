//! `sigex webhooks`: the webhooks registered with the venue, managed through its signed REST API.
//! The secret registered is the configured webhook secret; it is never printed.

use crate::clock::{SharedClock, SystemClock};
use crate::venue::wire::{WebhookInfo, WebhookRegistration, WebhookTestRequest};
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Subcommand)]
pub(super) enum WebhooksCommand {
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

pub(super) async fn run(path: PathBuf, command: WebhooksCommand) -> anyhow::Result<()> {
    let config = super::config_arg::load_config(&path)?;
    let credentials = config.venue.credentials.clone().context(
        "webhook management signs requests with the venue API key: set SIGEX_VENUE__API_KEY and \
         SIGEX_VENUE__API_SECRET",
    )?;
    let clock: SharedClock = Arc::new(SystemClock);
    let venue = crate::venue::VenueClient::new(
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
            println!("{}", show(&created));
        }
        WebhooksCommand::List => {
            for w in venue.list_webhooks().await? {
                println!("{}", show(&w));
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
            println!("{}", show(&updated));
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

fn show(w: &WebhookInfo) -> String {
    format!(
        "{}  {}  active={}  events={}",
        w.id,
        w.url,
        w.active.map_or("?".to_owned(), |a| a.to_string()),
        w.events.join(",")
    )
}
