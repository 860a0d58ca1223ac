//! Webhook delivery of the simulated venue: the outbox of signed event bodies, the registered
//! webhooks (`/webhooks` management API), the loop that POSTs events to them, the dead-letter list
//! and the delivery log.
//!
//! Guarantees:
//! - without injected faults, events are delivered one at a time in the order they were enqueued (one
//!   sequential loop), so an order's `order.created` always reaches a receiver before its
//!   `order.updated`; injected faults (see `faults`) may drop, duplicate, delay or reorder them;
//! - each body is serialized once, at enqueue time, and every retry and duplicate sends the same bytes;
//!   `X-Webhook-Signature` is the lowercase hex HMAC-SHA256 of the body under the target's secret (the
//!   simulator's webhook secret for the URL set with `set_webhook_url`, the registration's own secret
//!   for a webhook registered through the API);
//! - an event goes to the `set_webhook_url` target and to every active registered webhook whose
//!   `events` list names it (or is empty, or holds `*`);
//! - envelope timestamps are strictly increasing milliseconds, so no two bodies are byte-identical
//!   (receivers dedupe on the body hash, since the venue sends no event id);
//! - a failed delivery (non-2xx or transport error) is retried up to 5 times with exponential backoff
//!   from 100 ms, then parked in the dead-letter list and counted in `webhooks_failed`;
//! - every attempt, and every injected fault, is recorded in a bounded delivery log (newest 1000).

use std::collections::{BTreeMap, VecDeque};
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
use super::faults::{Injector, WebhookFate};

/// How many delivery records are kept.
const LOG_CAPACITY: usize = 1000;
/// How long a held-back (reordered) event waits for a successor before it is sent anyway.
const REORDER_WAIT: Duration = Duration::from_millis(200);

/// An event that could not be delivered after every retry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub event: String,
    pub url: String,
    pub body: String,
    pub attempts: u32,
    pub last_error: String,
}

/// One line of the delivery log.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    pub event: String,
    /// Empty when the event never got as far as a URL (dropped by fault injection).
    pub url: String,
    pub webhook_id: Option<String>,
    pub attempt: u32,
    /// `delivered`, `HTTP 500 ...`, a transport error, or `dropped (fault injection)`.
    pub outcome: String,
    pub at: String,
}

/// A webhook registered through `POST /webhooks`.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Registration {
    fn wants(&self, event: &str) -> bool {
        self.active
            && (self.events.is_empty() || self.events.iter().any(|e| e == "*" || e == event))
    }
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
    /// Only to this registered webhook (`POST /webhooks/test`); otherwise to every target.
    pub only: Option<String>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    event: &'a str,
    timestamp: String,
    data: &'a Value,
}

/// Where one delivery goes. Read again before every attempt: a test may point the venue at the bot
/// while an event is in retry, and a webhook may be deactivated meanwhile.
#[derive(Debug, Clone)]
enum Target {
    /// The URL set with `set_webhook_url`, signed with the simulator's webhook secret.
    Default,
    Registered(String),
}

/// Counts of injected webhook faults.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FaultCounts {
    pub webhooks_dropped: u64,
    pub webhooks_duplicated: u64,
    pub webhooks_delayed: u64,
    pub webhooks_reordered: u64,
}

/// The queue between the simulator's state changes and the delivery loop, plus its counters.
pub(crate) struct Outbox {
    secret: String,
    url: RwLock<Option<String>>,
    registry: Mutex<BTreeMap<String, Registration>>,
    tx: mpsc::UnboundedSender<Outgoing>,
    /// Taken once by the delivery loop; a second `serve` finds it gone.
    rx: Mutex<Option<mpsc::UnboundedReceiver<Outgoing>>>,
    /// Last envelope timestamp in Unix milliseconds. Held while sending to the channel so channel order
    /// and timestamp order agree.
    last_millis: Mutex<i64>,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
    reordered: AtomicU64,
    registered: AtomicU64,
    dead: Mutex<Vec<DeadLetter>>,
    log: Mutex<VecDeque<DeliveryRecord>>,
    injector: Injector,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Outbox {
    pub(crate) fn new(secret: String, url: Option<String>, injector: Injector) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            secret,
            url: RwLock::new(url),
            registry: Mutex::new(BTreeMap::new()),
            tx,
            rx: Mutex::new(Some(rx)),
            last_millis: Mutex::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            duplicated: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            registered: AtomicU64::new(0),
            dead: Mutex::new(Vec::new()),
            log: Mutex::new(VecDeque::new()),
            injector,
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
        lock(&self.rx).take()
    }

    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub(crate) fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub(crate) fn fault_counts(&self) -> FaultCounts {
        FaultCounts {
            webhooks_dropped: self.dropped.load(Ordering::Relaxed),
            webhooks_duplicated: self.duplicated.load(Ordering::Relaxed),
            webhooks_delayed: self.delayed.load(Ordering::Relaxed),
            webhooks_reordered: self.reordered.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn injector(&self) -> &Injector {
        &self.injector
    }

    pub(crate) fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.dead).clone()
    }

    /// Newest first, at most `limit`.
    pub(crate) fn deliveries(&self, limit: usize) -> Vec<DeliveryRecord> {
        lock(&self.log).iter().rev().take(limit).cloned().collect()
    }

    fn record(
        &self,
        event: &str,
        url: &str,
        webhook_id: Option<&str>,
        attempt: u32,
        outcome: String,
    ) {
        let mut log = lock(&self.log);
        if log.len() == LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(DeliveryRecord {
            event: event.to_string(),
            url: url.to_string(),
            webhook_id: webhook_id.map(String::from),
            attempt,
            outcome,
            at: iso(Utc::now()),
        });
    }

    // ---- registered webhooks ---------------------------------------------------------------

    /// `wh_1`, `wh_2`, ...: ids follow registration order, so a seeded run names them the same.
    pub(crate) fn next_webhook_id(&self) -> String {
        let n = self.registered.fetch_add(1, Ordering::Relaxed) + 1;
        format!("wh_{n}")
    }

    pub(crate) fn register(&self, r: Registration) {
        lock(&self.registry).insert(r.id.clone(), r);
    }

    pub(crate) fn registrations(&self) -> Vec<Registration> {
        lock(&self.registry).values().cloned().collect()
    }

    pub(crate) fn registration(&self, id: &str) -> Option<Registration> {
        lock(&self.registry).get(id).cloned()
    }

    /// Applies `f` to the registration `id`; `None` when there is none.
    pub(crate) fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut Registration),
    ) -> Option<Registration> {
        let mut registry = lock(&self.registry);
        let r = registry.get_mut(id)?;
        f(r);
        Some(r.clone())
    }

    pub(crate) fn unregister(&self, id: &str) -> bool {
        lock(&self.registry).remove(id).is_some()
    }

    // ---- queueing ----------------------------------------------------------------------------

    /// Serializes `{"event", "timestamp", "data"}` and queues it for every target.
    pub(crate) fn enqueue(&self, event: &str, data: &Value) {
        self.enqueue_to(None, event, data);
    }

    /// Queues an event for one registered webhook only, or for every target when `only` is `None`.
    pub(crate) fn enqueue_to(&self, only: Option<String>, event: &str, data: &Value) {
        let mut last = lock(&self.last_millis);
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
            only,
        });
    }

    fn targets(&self, item: &Outgoing) -> Vec<Target> {
        if let Some(id) = &item.only {
            return vec![Target::Registered(id.clone())];
        }
        let mut targets = vec![Target::Default];
        targets.extend(
            lock(&self.registry)
                .values()
                .filter(|r| r.wants(&item.event))
                .map(|r| Target::Registered(r.id.clone())),
        );
        targets
    }

    /// The URL and secret of a target now; `None` when it is gone or inactive.
    fn resolve(&self, target: &Target, event: &str) -> Option<(String, String)> {
        match target {
            Target::Default => self.url().map(|u| (u, self.secret.clone())),
            Target::Registered(id) => lock(&self.registry)
                .get(id)
                .filter(|r| r.active || event == "test")
                .map(|r| (r.url.clone(), r.secret.clone())),
        }
    }
}

pub(crate) fn http_client(policy: &RetryPolicy) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(policy.request_timeout)
        .build()
}

/// Delivers queued events until `stop` turns true or the queue closes. With `concurrency` 1 one
/// event at a time, in order, each with its retries before the next; with more, up to that many
/// at once (each still with its own retries), so they can arrive out of order, as the venue's
/// docs say they may, and one slow answer does not hold up the rest. The reorder fault holds an
/// event back until its successor has been handed out, either way.
pub(crate) async fn run_delivery(
    outbox: Arc<Outbox>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    client: reqwest::Client,
    policy: RetryPolicy,
    mut stop: watch::Receiver<bool>,
    concurrency: usize,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    // Dropped on return, which aborts the deliveries still running.
    let mut running = tokio::task::JoinSet::new();
    // An event held back by the reorder fault, sent right after its successor.
    let mut held: Option<(Outgoing, WebhookFate)> = None;
    loop {
        // The next event, and whether the queue has closed. A held event waits for a successor
        // at most REORDER_WAIT, then goes alone.
        let (next, closed) = if held.is_some() {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                r = tokio::time::timeout(REORDER_WAIT, rx.recv()) => match r {
                    Ok(Some(item)) => (Some(item), false),
                    Ok(None) => (None, true),
                    Err(_) => (None, false),
                },
            }
        } else {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                item = rx.recv() => {
                    let closed = item.is_none();
                    (item, closed)
                }
            }
        };
        let mut due = Vec::with_capacity(2);
        if let Some(item) = next {
            let fate = outbox.injector().webhook();
            if fate.reorder && held.is_none() {
                outbox.reordered.fetch_add(1, Ordering::Relaxed);
                held = Some((item, fate));
                continue;
            }
            due.push((item, fate));
        }
        due.extend(held.take());
        for (item, fate) in due {
            // One permit per delivery in flight: with one, the next waits for this one to end.
            let permit = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                p = Arc::clone(&permits).acquire_owned() => p.expect("never closed"),
            };
            while running.try_join_next().is_some() {}
            let (outbox, client) = (Arc::clone(&outbox), client.clone());
            running.spawn(async move {
                process(&outbox, &client, policy, item, fate).await;
                drop(permit);
            });
        }
        if closed {
            break;
        }
    }
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        _ = async { while running.join_next().await.is_some() {} } => {}
    }
}

/// One event under its injected fate: dropped, or (after any delay) delivered once or twice.
async fn process(
    outbox: &Outbox,
    client: &reqwest::Client,
    policy: RetryPolicy,
    item: Outgoing,
    fate: WebhookFate,
) {
    if fate.drop {
        outbox.dropped.fetch_add(1, Ordering::Relaxed);
        outbox.record(&item.event, "", None, 0, "dropped (fault injection)".into());
        tracing::debug!(event = %item.event, "webhook dropped by fault injection");
        return;
    }
    if let Some(delay) = fate.delay {
        outbox.delayed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
    }
    let copies = if fate.duplicate {
        outbox.duplicated.fetch_add(1, Ordering::Relaxed);
        2
    } else {
        1
    };
    for _ in 0..copies {
        for target in outbox.targets(&item) {
            deliver(outbox, client, policy, &item, &target).await;
        }
    }
}

async fn deliver(
    outbox: &Outbox,
    client: &reqwest::Client,
    policy: RetryPolicy,
    item: &Outgoing,
    target: &Target,
) {
    let webhook_id = match target {
        Target::Default => None,
        Target::Registered(id) => Some(id.as_str()),
    };
    let mut last_error = String::new();
    let mut last_url = String::new();
    let mut attempts = 0;
    for attempt in 0..=policy.retries {
        if attempt > 0 {
            tokio::time::sleep(policy.first_backoff * 2u32.saturating_pow(attempt - 1)).await;
        }
        let Some((url, secret)) = outbox.resolve(target, &item.event) else {
            tracing::debug!(event = %item.event, "no webhook URL for this target; event not delivered");
            return;
        };
        attempts += 1;
        let result = client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                "X-Webhook-Signature",
                webhook_signature(&secret, &item.body),
            )
            .body(item.body.clone())
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => {
                outbox.sent.fetch_add(1, Ordering::Relaxed);
                outbox.record(&item.event, &url, webhook_id, attempts, "delivered".into());
                return;
            }
            Ok(resp) => last_error = format!("HTTP {}", resp.status()),
            Err(e) => last_error = e.to_string(),
        }
        outbox.record(&item.event, &url, webhook_id, attempts, last_error.clone());
        last_url = url;
        tracing::debug!(event = %item.event, attempt, error = %last_error, "webhook delivery failed");
    }
    tracing::warn!(event = %item.event, attempts, error = %last_error, "webhook dead-lettered");
    outbox.failed.fetch_add(1, Ordering::Relaxed);
    lock(&outbox.dead).push(DeadLetter {
        event: item.event.clone(),
        url: last_url,
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
    use crate::sim::faults::{Faults, Probability};
    use crate::sim::testkit::{eventually, hmac_hex, within, Received, TestVenue, WEBHOOK_SECRET};

    fn no_faults() -> Injector {
        Injector::new(Faults::default(), 0)
    }

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
        (serve_hook(app).await, rx)
    }

    /// Serves `app` on a loopback port; its `/hook` URL.
    async fn serve_hook(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn start(outbox: &Arc<Outbox>) -> watch::Sender<bool> {
        start_with(outbox, 1)
    }

    /// Delivers `outbox` with up to `concurrency` webhooks in flight until the sender says stop.
    fn start_with(outbox: &Arc<Outbox>, concurrency: usize) -> watch::Sender<bool> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let rx = outbox.take_receiver().expect("receiver");
        let client = http_client(&fast()).expect("client");
        tokio::spawn(run_delivery(
            outbox.clone(),
            rx,
            client,
            fast(),
            stop_rx,
            concurrency,
        ));
        stop_tx
    }

    #[tokio::test]
    async fn failed_delivery_is_retried_with_the_same_signed_body() {
        let (url, mut hook) = flaky_receiver(2).await;
        let outbox = Arc::new(Outbox::new("whsec".into(), Some(url), no_faults()));
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
        let outbox = Arc::new(Outbox::new("whsec".into(), Some(url), no_faults()));
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
        assert_eq!(dead[0].url, url_of(&outbox));
        assert_eq!(outbox.sent(), 0);
        assert_eq!(outbox.deliveries(100).len(), 6, "every attempt is logged");
    }

    /// With several deliveries in flight, an event whose receiver hangs does not hold up the
    /// next one; one at a time, it does (the second would wait out the first's timeout).
    #[tokio::test]
    async fn parallel_delivery_lets_an_event_overtake_one_whose_answer_hangs() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let _ = tx.send(Received::new(&headers, body.clone()));
                async move {
                    if String::from_utf8_lossy(&body).contains("hang") {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    StatusCode::OK
                }
            }),
        );
        let url = serve_hook(app).await;
        let outbox = Arc::new(Outbox::new("whsec".into(), Some(url), no_faults()));
        let stop = start_with(&outbox, 4);

        outbox.enqueue("test", &json!({"message": "hang"}));
        outbox.enqueue("test", &json!({"message": "quick"}));
        let mut bodies = Vec::new();
        for _ in 0..2 {
            let r = within(rx.recv()).await.expect("both reach the receiver");
            bodies.push(String::from_utf8_lossy(&r.body).into_owned());
        }
        assert!(bodies.iter().any(|b| b.contains("hang")));
        assert!(bodies.iter().any(|b| b.contains("quick")));
        eventually(|| std::future::ready((outbox.sent() == 1).then_some(()))).await;
        let _ = stop.send(true);
    }

    #[test]
    fn identical_events_get_distinct_bodies() {
        let outbox = Outbox::new("whsec".into(), None, no_faults());
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

    fn url_of(outbox: &Outbox) -> String {
        outbox.url().expect("url")
    }

    fn with_faults(url: String, faults: Faults) -> Arc<Outbox> {
        Arc::new(Outbox::new(
            "whsec".into(),
            Some(url),
            Injector::new(faults, 9),
        ))
    }

    fn message(r: &Received) -> String {
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        body["data"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[tokio::test]
    async fn injected_duplicates_send_the_same_bytes_twice() {
        let (url, mut hook) = flaky_receiver(0).await;
        let outbox = with_faults(
            url,
            Faults {
                webhook_duplicate: Probability::ALWAYS,
                ..Faults::default()
            },
        );
        let _stop = start(&outbox);
        outbox.enqueue("test", &json!({"message": "twice"}));
        let a = within(hook.recv()).await.expect("first copy");
        let b = within(hook.recv()).await.expect("second copy");
        assert_eq!(a.body, b.body);
        assert_eq!(a.signature, b.signature);
        assert_eq!(outbox.fault_counts().webhooks_duplicated, 1);
    }

    #[tokio::test]
    async fn injected_reordering_delivers_an_event_after_its_successor() {
        let (url, mut hook) = flaky_receiver(0).await;
        let outbox = with_faults(
            url,
            Faults {
                webhook_reorder: Probability::ALWAYS,
                ..Faults::default()
            },
        );
        outbox.enqueue("test", &json!({"message": "first"}));
        outbox.enqueue("test", &json!({"message": "second"}));
        let _stop = start(&outbox);
        let a = within(hook.recv()).await.expect("a webhook");
        let b = within(hook.recv()).await.expect("a webhook");
        assert_eq!(
            (message(&a), message(&b)),
            ("second".into(), "first".into())
        );
    }

    #[tokio::test]
    async fn injected_drops_never_reach_the_receiver_and_are_logged() {
        let (url, mut hook) = flaky_receiver(0).await;
        let outbox = with_faults(
            url,
            Faults {
                webhook_drop: Probability::ALWAYS,
                ..Faults::default()
            },
        );
        let _stop = start(&outbox);
        outbox.enqueue("test", &json!({"message": "lost"}));
        eventually(|| {
            std::future::ready((outbox.fault_counts().webhooks_dropped == 1).then_some(()))
        })
        .await;
        assert!(hook.try_recv().is_err());
        assert_eq!(
            outbox.deliveries(10)[0].outcome,
            "dropped (fault injection)"
        );
        assert_eq!(outbox.sent(), 0);
    }

    #[tokio::test]
    async fn registered_webhooks_get_the_events_they_asked_for_signed_with_their_secret() {
        let (url, mut hook) = flaky_receiver(0).await;
        let outbox = Arc::new(Outbox::new("whsec".into(), None, no_faults()));
        let now = Utc::now();
        for (id, events, active) in [
            ("wh-orders", vec!["order.created".to_string()], true),
            ("wh-off", vec![], false),
        ] {
            outbox.register(Registration {
                id: id.into(),
                url: url.clone(),
                events,
                secret: format!("secret-{id}"),
                active,
                created_at: now,
                updated_at: now,
            });
        }
        let _stop = start(&outbox);
        outbox.enqueue("signal.generated", &json!({"message": "not subscribed"}));
        outbox.enqueue("order.created", &json!({"message": "subscribed"}));
        let got = within(hook.recv()).await.expect("webhook");
        assert_eq!(message(&got), "subscribed");
        assert_eq!(
            got.signature.as_deref(),
            Some(hmac_hex("secret-wh-orders", &got.body).as_str())
        );
        // A test event reaches the one webhook named, even an inactive one.
        outbox.enqueue_to(Some("wh-off".into()), "test", &json!({"message": "ping"}));
        let got = within(hook.recv()).await.expect("test webhook");
        assert_eq!(message(&got), "ping");
        assert_eq!(
            got.signature.as_deref(),
            Some(hmac_hex("secret-wh-off", &got.body).as_str())
        );
        assert!(hook.try_recv().is_err());
    }
}
