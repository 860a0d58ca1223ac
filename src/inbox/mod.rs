//! The durable inbox: raw webhook bodies, deduplicated, committed before the venue hears 200.
//!
//! Ingress hands each verified event to one writer task, which commits whatever has queued up in a
//! single transaction (group commit) and only then answers each waiting request. Durability per
//! event is unchanged (nothing is acknowledged before its commit); the fsync is shared.

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
    mut shutdown: crate::app::Shutdown,
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

/// **[decided]** dedupe key: the `X-Webhook-Id` header, else `data.id`, else SHA-256 of the body.
pub fn dedupe_key(header_id: Option<&str>, data_id: Option<&str>, body: &[u8]) -> String {
    match (header_id, data_id) {
        (Some(h), _) if !h.is_empty() => format!("hdr:{h}"),
        (_, Some(d)) => format!("id:{d}"),
        _ => format!("sha256:{}", hex::encode(Sha256::digest(body))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_key_prefers_header_then_data_id_then_body_hash() {
        assert_eq!(dedupe_key(Some("w1"), Some("d1"), b"x"), "hdr:w1");
        assert_eq!(dedupe_key(None, Some("d1"), b"x"), "id:d1");
        assert_eq!(
            dedupe_key(Some(""), None, b"x"),
            dedupe_key(None, None, b"x")
        );
        assert_ne!(dedupe_key(None, None, b"x"), dedupe_key(None, None, b"y"));
    }
}
