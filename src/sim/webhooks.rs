//! Webhook delivery of the simulated venue: the outbox of signed event bodies and the loop that POSTs
//! them to the bot.
//!
//! Guarantees:
//! - events are delivered one at a time in the order they were enqueued (one sequential loop), so an
//!   order's `order.created` always reaches the receiver before its `order.updated`;
//! - each body is serialized once, at enqueue time, and every retry sends the same bytes with the same
//!   `X-Webhook-Signature` (lowercase hex HMAC-SHA256 of the body under the webhook secret);
//! - envelope timestamps are strictly increasing milliseconds, so no two bodies are byte-identical
//!   (receivers dedupe on the body hash, since the venue sends no event id);
//! - a failed delivery (non-2xx or transport error) is retried up to 5 times with exponential backoff
//!   from 100 ms, then parked in the dead-letter list and counted in `webhooks_failed`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::auth::webhook_signature;
use super::book::iso;

/// An event that could not be delivered after every retry.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub event: String,
    pub body: String,
    pub attempts: u32,
    pub last_error: String,
}

/// How hard delivery tries. The venue's policy is [`RetryPolicy::VENUE`]; tests shorten the backoff.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub retries: u32,
    pub first_backoff: Duration,
    pub request_timeout: Duration,
}

impl RetryPolicy {
    pub(crate) const VENUE: Self = Self {
        retries: 5,
        first_backoff: Duration::from_millis(100),
        request_timeout: Duration::from_secs(10),
    };
}

#[derive(Debug)]
pub(crate) struct Outgoing {
    pub event: String,
    pub body: Bytes,
}

#[derive(Serialize)]
struct Envelope<'a> {
    event: &'a str,
    timestamp: String,
    data: &'a Value,
}

/// The queue between the simulator's state changes and the delivery loop, plus its counters.
pub(crate) struct Outbox {
    secret: String,
    url: RwLock<Option<String>>,
    tx: mpsc::UnboundedSender<Outgoing>,
    /// Taken once by the delivery loop; a second `serve` finds it gone.
    rx: Mutex<Option<mpsc::UnboundedReceiver<Outgoing>>>,
    /// Last envelope timestamp in Unix milliseconds. Held while sending to the channel so channel order
    /// and timestamp order agree.
    last_millis: Mutex<i64>,
    sent: AtomicU64,
    failed: AtomicU64,
    dead: Mutex<Vec<DeadLetter>>,
}

impl Outbox {
    pub(crate) fn new(secret: String, url: Option<String>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            secret,
            url: RwLock::new(url),
            tx,
            rx: Mutex::new(Some(rx)),
            last_millis: Mutex::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dead: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn set_url(&self, url: Option<String>) {
        *self.url.write().unwrap_or_else(PoisonError::into_inner) = url;
    }

    fn url(&self) -> Option<String> {
        self.url
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn take_receiver(&self) -> Option<mpsc::UnboundedReceiver<Outgoing>> {
        self.rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub(crate) fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub(crate) fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Serializes `{"event", "timestamp", "data"}` and queues it for delivery.
    pub(crate) fn enqueue(&self, event: &str, data: &Value) {
        let mut last = self
            .last_millis
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let millis = Utc::now().timestamp_millis().max(*last + 1);
        *last = millis;
        let timestamp = DateTime::<Utc>::from_timestamp_millis(millis).unwrap_or_else(Utc::now);
        let envelope = Envelope {
            event,
            timestamp: iso(timestamp),
            data,
        };
        let body = match serde_json::to_vec(&envelope) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(event, error = %e, "cannot serialize webhook; dropped");
                return;
            }
        };
        // The receiver only goes away when the simulator has stopped serving; nothing is owed then.
        let _ = self.tx.send(Outgoing {
            event: event.to_string(),
            body: Bytes::from(body),
        });
    }
}

pub(crate) fn http_client(policy: &RetryPolicy) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(policy.request_timeout)
        .build()
}

/// Delivers queued events one after another until `stop` turns true or the queue closes.
pub(crate) async fn run_delivery(
    outbox: Arc<Outbox>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    client: reqwest::Client,
    policy: RetryPolicy,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let item = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            item = rx.recv() => match item {
                Some(item) => item,
                None => return,
            },
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = deliver(&outbox, &client, policy, item) => {}
        }
    }
}

async fn deliver(outbox: &Outbox, client: &reqwest::Client, policy: RetryPolicy, item: Outgoing) {
    let signature = webhook_signature(&outbox.secret, &item.body);
    let mut last_error = String::new();
    let mut attempts = 0;
    for attempt in 0..=policy.retries {
        if attempt > 0 {
            tokio::time::sleep(policy.first_backoff * 2u32.saturating_pow(attempt - 1)).await;
        }
        // Read on every attempt: a test may point the venue at the bot while an event is in retry.
        let Some(url) = outbox.url() else {
            tracing::debug!(event = %item.event, "no webhook_url set; event not delivered");
            return;
        };
        attempts += 1;
        let result = client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Webhook-Signature", &signature)
            .body(item.body.clone())
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => {
                outbox.sent.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(resp) => last_error = format!("HTTP {}", resp.status()),
            Err(e) => last_error = e.to_string(),
        }
        tracing::debug!(event = %item.event, attempt, error = %last_error, "webhook delivery failed");
    }
    tracing::warn!(event = %item.event, attempts, error = %last_error, "webhook dead-lettered");
    outbox.failed.fetch_add(1, Ordering::Relaxed);
    outbox
        .dead
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(DeadLetter {
            event: item.event,
            body: String::from_utf8_lossy(&item.body).into_owned(),
            attempts,
            last_error,
        });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use serde_json::json;

    use super::*;
    use crate::sim::testkit::{eventually, hmac_hex, within, Received, TestVenue, WEBHOOK_SECRET};

    fn fast() -> RetryPolicy {
        RetryPolicy {
            retries: 5,
            first_backoff: Duration::from_millis(1),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// A receiver that answers 500 to the first `failures` requests, then 200.
    async fn flaky_receiver(failures: usize) -> (String, mpsc::UnboundedReceiver<Received>) {
        let seen = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(Received::new(&headers, body));
                async move {
                    if n < failures {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, rx)
    }

    fn start(outbox: &Arc<Outbox>) -> watch::Sender<bool> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let rx = outbox.take_receiver().expect("receiver");
        let client = http_client(&fast()).expect("client");
        tokio::spawn(run_delivery(outbox.clone(), rx, client, fast(), stop_rx));
        stop_tx
    }

    #[tokio::test]
    async fn failed_delivery_is_retried_with_the_same_signed_body() {
        let (url, mut hook) = flaky_receiver(2).await;
        let outbox = Arc::new(Outbox::new("whsec".into(), Some(url)));
        let _stop = start(&outbox);
        outbox.enqueue("test", &json!({"message": "hi"}));

        let mut attempts = Vec::new();
        for _ in 0..3 {
            attempts.push(within(hook.recv()).await.expect("delivery attempt"));
        }
        eventually(|| std::future::ready((outbox.sent() > 0).then_some(()))).await;
        assert!(attempts.iter().all(|a| a.body == attempts[0].body));
        let expected = hmac_hex("whsec", &attempts[0].body);
        assert!(attempts
            .iter()
            .all(|a| a.signature.as_deref() == Some(expected.as_str())));
        let body: Value = serde_json::from_slice(&attempts[0].body).expect("json body");
        assert_eq!(body["event"], "test");
        assert_eq!(body["data"]["message"], "hi");
        assert_eq!((outbox.sent(), outbox.failed()), (1, 0));
    }

    #[tokio::test]
    async fn delivery_that_never_succeeds_is_dead_lettered_after_five_retries() {
        let (url, mut hook) = flaky_receiver(usize::MAX).await;
        let outbox = Arc::new(Outbox::new("whsec".into(), Some(url)));
        let _stop = start(&outbox);
        outbox.enqueue("test", &json!({"message": "lost"}));

        for _ in 0..6 {
            within(hook.recv()).await.expect("delivery attempt");
        }
        eventually(|| std::future::ready((outbox.failed() > 0).then_some(()))).await;
        let dead = outbox.dead_letters();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].attempts, 6);
        assert_eq!(dead[0].last_error, "HTTP 500 Internal Server Error");
        assert_eq!(outbox.sent(), 0);
    }

    #[test]
    fn identical_events_get_distinct_bodies() {
        let outbox = Outbox::new("whsec".into(), None);
        let mut rx = outbox.take_receiver().expect("receiver");
        for _ in 0..50 {
            outbox.enqueue("test", &json!({"message": "same"}));
        }
        let mut bodies = std::collections::HashSet::new();
        while let Ok(item) = rx.try_recv() {
            assert!(bodies.insert(item.body));
        }
        assert_eq!(bodies.len(), 50);
    }

    /// The full path: an order placed over signed REST produces signed webhooks in order.
    #[tokio::test]
    async fn order_webhooks_are_signed_and_created_precedes_updated() {
        let (url, mut hook) = flaky_receiver(0).await;
        let venue = TestVenue::start(|_| {}).await;
        venue.sim.set_webhook_url(Some(url));

        let (status, order) = venue
            .send(
                "POST",
                "/api/v1/orders",
                r#"{"symbol":"ETH/USD","side":"buy","type":"market","quantity":0.5,"clientOrderId":"wh-1"}"#,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let order_id = order["orderId"].as_str().expect("orderId").to_string();

        let mut events: Vec<(String, Value)> = Vec::new();
        while !events.iter().any(|(e, _)| e == "account.balance_updated") {
            let got = within(hook.recv()).await.expect("webhook");
            assert_eq!(
                got.signature.as_deref(),
                Some(hmac_hex(WEBHOOK_SECRET, &got.body).as_str()),
                "signature over the raw body"
            );
            assert_eq!(got.content_type.as_deref(), Some("application/json"));
            let body: Value = serde_json::from_slice(&got.body).expect("json");
            let name = body["event"].as_str().expect("event").to_string();
            events.push((name, body["data"].clone()));
        }
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "order.created",
                "order.updated",
                "position.opened",
                "account.balance_updated"
            ]
        );
        assert_eq!(events[0].1["orderId"], order_id.as_str());
        assert_eq!(events[0].1["clientOrderId"], "wh-1");
        assert_eq!(events[1].1["orderId"], order_id.as_str());
        assert_eq!(events[1].1["status"], "filled");
        assert_eq!(events[2].1["side"], "long");
        // The counter moves once the receiver's 200 is read, just after the body arrived here.
        eventually(|| std::future::ready((venue.sim.stats().webhooks_sent == 4).then_some(())))
            .await;
    }
}
