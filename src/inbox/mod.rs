//! The durable inbox: raw webhook bodies, deduplicated, committed before the venue hears 200.
//!
//! Ingress hands each verified event to one writer task, which commits whatever has queued up in a
//! single transaction (group commit) and only then answers each waiting request. Durability per
//! event is unchanged (nothing is acknowledged before its commit); the fsync is shared.
//!
//! An event's dedupe key ([`dedupe_key`]) comes from its signed bytes only, so a replay under
//! made-up headers, or a retry serialised differently, is a duplicate; every identity derived
//! from an event (a signal's `clientOrderId`s) comes from that key.

use crate::store::{NewEvent, Store};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Notify};

/// How many queued events one transaction may take.
const MAX_BATCH: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New(i64),
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
#[error("the inbox could not store the event")]
pub struct InboxUnavailable;

type Request = (
    NewEvent,
    oneshot::Sender<Result<Inserted, InboxUnavailable>>,
);

/// Handle to the writer task.
#[derive(Clone)]
pub struct Inbox {
    tx: mpsc::Sender<Request>,
}

impl Inbox {
    /// The handle and the writer task to run (supervised, by the caller). `stored` is notified
    /// after every commit that added events. The writer ends once every handle is dropped.
    pub fn new(
        store: Store,
        stored: Arc<Notify>,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        (Self { tx }, writer(store, rx, stored))
    }

    /// Stores one event durably; returns once it is committed (or known to be a duplicate).
    pub async fn store(&self, event: NewEvent) -> Result<Inserted, InboxUnavailable> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((event, reply))
            .await
            .map_err(|_| InboxUnavailable)?;
        answer.await.map_err(|_| InboxUnavailable)?
    }
}

async fn writer(store: Store, mut rx: mpsc::Receiver<Request>, stored: Arc<Notify>) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    let mut failing = false;
    // Ends when every `Inbox` handle is dropped, after the last batch is committed.
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let events: Vec<NewEvent> = batch.iter().map(|(e, _)| e.clone()).collect();
        match store.insert_events(&events).await {
            Ok(results) => {
                failing = false;
                let any_new = results.iter().any(Option::is_some);
                for ((_, reply), seq) in batch.drain(..).zip(results) {
                    let _ = reply.send(Ok(seq.map_or(Inserted::Duplicate, Inserted::New)));
                }
                if any_new {
                    stored.notify_one();
                }
            }
            Err(e) => {
                // Nothing of a batch whose commit is not confirmed is acknowledged. Logged loudly
                // once per run of failures (the store check tells the operator), then quietly.
                if failing {
                    tracing::debug!(error = %e, events = batch.len(), "inbox commit failed; the venue will retry");
                } else {
                    tracing::error!(error = %e, events = batch.len(), "inbox commit failed; the venue will retry (further failures are logged at debug level until a commit succeeds)");
                }
                failing = true;
                store.writable().noted(e);
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(InboxUnavailable));
                }
            }
        }
    }
}

/// Deletes processed events older than `retention`, in small batches, now and then every hour.
/// Dead, deferred and pending events are never pruned: they still need someone.
pub async fn prune_task(
    store: Store,
    retention: chrono::Duration,
    clock: crate::clock::SharedClock,
    mut shutdown: crate::shutdown::Shutdown,
) {
    const BATCH: i64 = 1000;
    loop {
        let cutoff = clock.now() - retention;
        let mut pruned = 0;
        let through = match store.last_seq_before(cutoff).await {
            Ok(seq) => seq,
            Err(e) => {
                tracing::error!(error = %e, "inbox pruning failed; will try again");
                None
            }
        };
        while let Some(through) = through {
            match store.prune_processed(through, BATCH).await {
                Ok(n) => {
                    pruned += n;
                    if n < BATCH as u64 {
                        break;
                    }
                    // Let queued webhook commits in between batches.
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "inbox pruning failed; will try again");
                    break;
                }
            }
        }
        if pruned > 0 {
            tracing::info!(pruned, "pruned processed events past retention");
        }
        if shutdown.sleep(std::time::Duration::from_secs(3600)).await {
            return;
        }
    }
}

/// **[decided]** the dedupe key, and every identity derived from it (a signal's key, its
/// `clientOrderId`s), comes only from the signed bytes: `json:` + SHA-256 of the body's canonical
/// JSON ([`canonical_json`]), so a retry that re-serialises the same event is still a duplicate;
/// a signed body that is not JSON gets `raw:` + SHA-256 of its bytes. Unsigned headers
/// (`X-Webhook-Id`) and entity ids (`data.id`) are never part of it: a replayed body under a
/// made-up header is a duplicate, and a moved `system.maintenance` (same `data.id`, new times) is
/// news.
pub fn dedupe_key(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => dedupe_key_of(&value),
        Err(_) => format!("raw:{}", hex::encode(Sha256::digest(body))),
    }
}

/// [`dedupe_key`] of a body already parsed as JSON.
pub fn dedupe_key_of(value: &serde_json::Value) -> String {
    format!(
        "json:{}",
        hex::encode(Sha256::digest(canonical_json(value)))
    )
}

/// The canonical form of a JSON value: object keys sorted (by their UTF-8 bytes), no whitespace,
/// strings escaped minimally, numbers as written (serde_json keeps their digits:
/// `arbitrary_precision`; only an exponent is spelled one way, `1E2` as `1e+2`). The keys are sorted here rather than trusting the map's order, so a
/// dependency switching on serde_json's `preserve_order` cannot change a key.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &serde_json::Value, out: &mut Vec<u8>) {
    // Writing a string, number, bool or null into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dedupe_key_is_the_same_for_any_serialisation_of_the_same_event() {
        let compact = br#"{"event":"signal.generated","timestamp":"2026-11-29T12:00:00Z","data":{"symbol":"BTC/USD","confidence":87,"support":48500.0,"tags":["a","b"]}}"#;
        let reordered = br#"{
            "data": {"tags": ["a", "b"], "support": 48500.0, "confidence": 87, "symbol": "BTC\/USD"},
            "timestamp": "2026-11-29T12:00:00Z",
            "event": "signal.generated"
        }"#;
        assert_eq!(dedupe_key(compact), dedupe_key(reordered));
        assert!(dedupe_key(compact).starts_with("json:"));
    }

    #[test]
    fn anything_signed_that_differs_is_a_different_key() {
        let base = br#"{"event":"x","data":{"price":48500.0,"ids":[1,2]}}"#;
        let cases: &[(&str, &[u8])] = &[
            (
                "a number written differently",
                br#"{"event":"x","data":{"price":48500.00,"ids":[1,2]}}"#,
            ),
            (
                "array order",
                br#"{"event":"x","data":{"price":48500.0,"ids":[2,1]}}"#,
            ),
            (
                "a string for a number",
                br#"{"event":"x","data":{"price":"48500.0","ids":[1,2]}}"#,
            ),
            (
                "one more field",
                br#"{"event":"x","data":{"price":48500.0,"ids":[1,2],"id":"m1"}}"#,
            ),
        ];
        for (name, other) in cases {
            assert_ne!(dedupe_key(base), dedupe_key(other), "{name}");
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_keeps_numbers_as_written() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{ "b": {"z": 1e2, "a": -0}, "a": [ {"y": 0.10, "x": "\u00e9"} ] }"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            // serde_json keeps a number's digits and writes its exponent one way (`1e+2`).
            r#"{"a":[{"x":"é","y":0.10}],"b":{"a":-0,"z":1e+2}}"#
        );
    }

    #[test]
    fn an_unreadable_signed_body_is_keyed_by_its_raw_bytes() {
        assert!(dedupe_key(b"{not json").starts_with("raw:"));
        assert_ne!(dedupe_key(b"{not json"), dedupe_key(b"{not json "));
    }
}
