//! Outbound notifications to the operator: fills, halts and resumes, drift, dead letters,
//! maintenance start and end, repeated venue errors, a store that cannot commit and its recovery. Delivered to a generic JSON webhook or in
//! Slack-, Discord- or Telegram-compatible bodies, per `[[notify]]` target.
//!
//! Guarantees: `Notifier::send` never blocks and never fails, so trading never waits on a
//! notifier. Each target has its own bounded queue (the oldest notification is dropped when it is
//! full, and counted) and its own sender task, which retries a failed delivery with exponential
//! backoff and then gives up (logged and counted). A target's URL may carry a token: it is a
//! `Secret` and is never logged.

pub mod watch;

use crate::clock::SharedClock;
use crate::config::{NotifyKind, NotifyTarget};
use crate::shutdown::Shutdown;
use crate::telemetry::metrics::Metrics;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Notifications waiting per target; beyond this the oldest is dropped.
pub const QUEUE_CAPACITY: usize = 256;
/// Delivery attempts per notification and target.
pub const MAX_ATTEMPTS: u32 = 5;
/// First retry delay; doubles each attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Something the operator should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    Fill {
        client_order_id: String,
        symbol: String,
        side: String,
        quantity: String,
        price: String,
    },
    Halted {
        reason: String,
    },
    Resumed {
        reason: String,
    },
    Drift {
        symbol: String,
        detail: String,
    },
    DeadLetter {
        seq: i64,
        event_type: String,
        reason: String,
    },
    MaintenanceStarted {
        detail: String,
    },
    MaintenanceEnded {
        detail: String,
    },
    VenueErrors {
        in_a_row: u32,
        last_error: String,
    },
    /// The database stopped taking writes (once per outage).
    StoreFailing {
        detail: String,
    },
    StoreRecovered {
        detail: String,
    },
}

impl Notification {
    /// The event name used in `[[notify]] events = [...]` and in the JSON body.
    pub fn event(&self) -> &'static str {
        match self {
            Self::Fill { .. } => "fill",
            Self::Halted { .. } => "halt",
            Self::Resumed { .. } => "resume",
            Self::Drift { .. } => "drift",
            Self::DeadLetter { .. } => "dead_letter",
            Self::MaintenanceStarted { .. } => "maintenance_start",
            Self::MaintenanceEnded { .. } => "maintenance_end",
            Self::VenueErrors { .. } => "venue_errors",
            Self::StoreFailing { .. } => "store_failing",
            Self::StoreRecovered { .. } => "store_recovered",
        }
    }

    /// One line for a human.
    pub fn text(&self) -> String {
        match self {
            Self::Fill {
                client_order_id,
                symbol,
                side,
                quantity,
                price,
            } => format!("sigex: filled {side} {quantity} {symbol} at {price} ({client_order_id})"),
            Self::Halted { reason } => format!("sigex: trading HALTED: {reason}"),
            Self::Resumed { reason } => format!("sigex: trading resumed: {reason}"),
            Self::Drift { symbol, detail } => {
                format!("sigex: position drift on {symbol}: {detail}")
            }
            Self::DeadLetter {
                seq,
                event_type,
                reason,
            } => format!("sigex: dead letter #{seq} ({event_type}): {reason}"),
            Self::MaintenanceStarted { detail } => {
                format!("sigex: venue maintenance started: {detail}")
            }
            Self::MaintenanceEnded { detail } => {
                format!("sigex: venue maintenance ended: {detail}")
            }
            Self::VenueErrors {
                in_a_row,
                last_error,
            } => format!("sigex: {in_a_row} venue errors in a row; last: {last_error}"),
            Self::StoreFailing { detail } => format!(
                "sigex: the database cannot commit ({detail}); webhooks get 503 and no order is sent until it recovers"
            ),
            Self::StoreRecovered { detail } => {
                format!("sigex: the database takes writes again: {detail}")
            }
        }
    }
}

#[derive(Serialize)]
struct GenericBody<'a> {
    event: &'a str,
    text: String,
    at: String,
}

/// The request body `kind` expects for `n`.
pub fn body(
    kind: NotifyKind,
    chat_id: Option<&str>,
    n: &Notification,
    at: DateTime<Utc>,
) -> serde_json::Value {
    let text = n.text();
    match kind {
        NotifyKind::Webhook => serde_json::to_value(GenericBody {
            event: n.event(),
            text,
            at: crate::clock::ts(at),
        })
        .unwrap_or_default(),
        NotifyKind::Slack => serde_json::json!({ "text": text }),
        NotifyKind::Discord => serde_json::json!({ "content": text }),
        NotifyKind::Telegram => {
            serde_json::json!({ "chat_id": chat_id.unwrap_or_default(), "text": text })
        }
    }
}

/// A bounded drop-oldest queue shared by `send` and one sender task.
struct Queue {
    items: Mutex<VecDeque<(Notification, DateTime<Utc>)>>,
    ready: Notify,
}

struct Target {
    config: NotifyTarget,
    queue: Arc<Queue>,
}

/// Handle to the notifiers; cheap to clone. With no targets, `send` does nothing.
#[derive(Clone, Default)]
pub struct Notifier {
    targets: Arc<Vec<Target>>,
    metrics: Option<Metrics>,
    /// Stamps each notification; `None` only when there are no targets.
    clock: Option<SharedClock>,
}

impl Notifier {
    /// A notifier that drops everything (no targets configured).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Starts one sender task per target; they stop at `shutdown` (after the delivery in hand).
    pub fn start(
        targets: Vec<NotifyTarget>,
        metrics: Metrics,
        clock: SharedClock,
        shutdown: Shutdown,
    ) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let mut tasks = Vec::new();
        let mut built = Vec::new();
        for config in targets {
            let queue = Arc::new(Queue {
                items: Mutex::new(VecDeque::with_capacity(QUEUE_CAPACITY)),
                ready: Notify::new(),
            });
            tasks.push(tokio::spawn(deliver(
                config.clone(),
                queue.clone(),
                http.clone(),
                metrics.clone(),
                shutdown.clone(),
            )));
            built.push(Target { config, queue });
        }
        (
            Self {
                targets: Arc::new(built),
                metrics: Some(metrics),
                clock: Some(clock),
            },
            tasks,
        )
    }

    /// Queues `n` for every target subscribed to its event. Never blocks.
    pub fn send(&self, n: Notification) {
        let Some(clock) = &self.clock else { return };
        let now = clock.now();
        for t in self.targets.iter() {
            if !t.config.wants(n.event()) {
                continue;
            }
            let dropped = {
                let mut q = t.queue.items.lock().expect("notify queue poisoned");
                let dropped = if q.len() >= QUEUE_CAPACITY {
                    q.pop_front().is_some()
                } else {
                    false
                };
                q.push_back((n.clone(), now));
                dropped
            };
            if dropped {
                tracing::warn!(target_kind = ?t.config.kind, "notification queue full; dropped the oldest");
                if let Some(m) = &self.metrics {
                    m.notification_dropped();
                }
            }
            t.queue.ready.notify_one();
        }
    }
}

async fn deliver(
    target: NotifyTarget,
    queue: Arc<Queue>,
    http: reqwest::Client,
    metrics: Metrics,
    mut shutdown: Shutdown,
) {
    loop {
        let next = queue
            .items
            .lock()
            .expect("notify queue poisoned")
            .pop_front();
        let Some((n, at)) = next else {
            tokio::select! {
                _ = queue.ready.notified() => continue,
                _ = shutdown.wait() => return,
            }
        };
        let body = body(target.kind, target.chat_id.as_deref(), &n, at);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = http
                .post(target.url.expose())
                .json(&body)
                .send()
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        "timeout"
                    } else {
                        "request failed"
                    }
                    .to_owned()
                })
                .and_then(|r| {
                    if r.status().is_success() {
                        Ok(())
                    } else {
                        Err(format!("HTTP {}", r.status().as_u16()))
                    }
                });
            match result {
                Ok(()) => {
                    metrics.notification_sent();
                    break;
                }
                Err(reason) if attempt >= MAX_ATTEMPTS => {
                    // The URL may hold a token: name the kind and event, never the URL.
                    tracing::error!(target_kind = ?target.kind, event = n.event(), %reason, attempts = attempt, "notification given up");
                    metrics.notification_failed();
                    break;
                }
                Err(reason) => {
                    tracing::debug!(target_kind = ?target.kind, event = n.event(), %reason, attempt, "notification failed; retrying");
                    if shutdown.sleep(FIRST_BACKOFF * 2u32.pow(attempt - 1)).await {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_gets_the_body_its_service_expects() {
        let n = Notification::Halted {
            reason: "daily loss limit".into(),
        };
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let text = "sigex: trading HALTED: daily loss limit";
        let cases = [
            (
                NotifyKind::Webhook,
                serde_json::json!({"event": "halt", "text": text, "at": "2027-01-15T08:00:00.000Z"}),
            ),
            (NotifyKind::Slack, serde_json::json!({ "text": text })),
            (NotifyKind::Discord, serde_json::json!({ "content": text })),
            (
                NotifyKind::Telegram,
                serde_json::json!({ "chat_id": "-100123", "text": text }),
            ),
        ];
        for (kind, expected) in cases {
            assert_eq!(body(kind, Some("-100123"), &n, at), expected, "{kind:?}");
        }
    }

    #[test]
    fn every_notification_has_a_subscribable_event_name() {
        let all = [
            Notification::Fill {
                client_order_id: "sx-1".into(),
                symbol: "BTC/USD".into(),
                side: "buy".into(),
                quantity: "0.1".into(),
                price: "50000".into(),
            },
            Notification::Halted { reason: "r".into() },
            Notification::Resumed { reason: "r".into() },
            Notification::Drift {
                symbol: "BTC/USD".into(),
                detail: "d".into(),
            },
            Notification::DeadLetter {
                seq: 1,
                event_type: "x".into(),
                reason: "r".into(),
            },
            Notification::MaintenanceStarted { detail: "d".into() },
            Notification::MaintenanceEnded { detail: "d".into() },
            Notification::VenueErrors {
                in_a_row: 5,
                last_error: "timeout".into(),
            },
            Notification::StoreFailing { detail: "d".into() },
            Notification::StoreRecovered { detail: "d".into() },
        ];
        for n in &all {
            assert!(crate::config::NOTIFY_EVENTS.contains(&n.event()), "{n:?}");
        }
        assert_eq!(all.len(), crate::config::NOTIFY_EVENTS.len());
    }
}
