//! The store check: proves, every few seconds, that a write reaches the database (written through
//! the writer connection, read back through a reader), so `/readyz` can name a store that stopped
//! committing, and tells the operator once per outage.
//!
//! Guarantees: a write anywhere that could not be made durable marks the store failing at once
//! (`store::Writable`); this task then retries the round trip every second and the store is
//! writable again only when one succeeds, so recovery after space comes back needs nobody. One
//! `store_failing` notification per outage: an outage ends (with `store_recovered`) only after
//! the store has stayed writable for [`RECOVERED_AFTER`], so a store that flaps does not flood the
//! operator.

use crate::clock::SharedClock;
use crate::notify::{Notification, Notifier};
use crate::shutdown::Shutdown;
use crate::store::Store;
use std::time::Duration;

/// Between round trips while the store is writable.
pub const EVERY: Duration = Duration::from_secs(5);
/// Between round trips while it is failing.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Readiness fails when no round trip has succeeded for this long (a writer stuck behind a hung
/// transaction is a failing store too).
pub const STALE_AFTER: chrono::Duration = chrono::Duration::seconds(20);
/// Bytes a round trip must also write before a failing store counts as writable again: proof of
/// room for real work, not just for one small row.
pub const RECOVERY_HEADROOM: u32 = 1024 * 1024;
/// How long the store must stay writable before an outage counts as over.
pub const RECOVERED_AFTER: chrono::Duration = chrono::Duration::seconds(30);

/// The readiness verdict on the store: `Err` with the reason when it is not known to commit.
pub fn verdict(store: &Store, now: chrono::DateTime<chrono::Utc>) -> Result<(), String> {
    if let Some(f) = store.writable().failure() {
        return Err(format!(
            "cannot commit since {}: {}",
            crate::clock::ts(f.since),
            f.error
        ));
    }
    match store.writable().last_round_trip() {
        None => Err("no write round trip has succeeded yet".into()),
        Some(at) if now - at > STALE_AFTER => Err(format!(
            "last successful write round trip {} s ago (bound {} s)",
            (now - at).num_seconds(),
            STALE_AFTER.num_seconds()
        )),
        Some(_) => Ok(()),
    }
}

pub async fn run(store: Store, notifier: Notifier, clock: SharedClock, mut shutdown: Shutdown) {
    // The start of the outage the operator has been told about, if one is going on.
    let mut told: Option<chrono::DateTime<chrono::Utc>> = None;
    loop {
        let now = clock.now();
        let headroom = if store.writable().is_writable() {
            0
        } else {
            RECOVERY_HEADROOM
        };
        if let Err(e) = store.round_trip(now, headroom).await {
            tracing::debug!(error = %e, "store round trip failed");
        }
        let writable = store.writable();
        match (writable.failure(), told) {
            (Some(f), None) => {
                tracing::error!(since = %crate::clock::ts(f.since), error = %f.error, "the database cannot commit: webhooks get 503 and no order is sent until it recovers");
                notifier.send(Notification::StoreFailing {
                    detail: f.error.clone(),
                });
                told = Some(f.since);
            }
            (None, Some(since)) => {
                let ok_since = writable.recovered_at().unwrap_or(now);
                if writable.is_steady(now, RECOVERED_AFTER) {
                    let detail = format!(
                        "writes failed from {} to {}",
                        crate::clock::ts(since),
                        crate::clock::ts(ok_since)
                    );
                    tracing::warn!(%detail, "the database takes writes again");
                    notifier.send(Notification::StoreRecovered { detail });
                    told = None;
                }
            }
            _ => {}
        }
        let wait = if writable.is_writable() {
            EVERY
        } else {
            RETRY_EVERY
        };
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(wait) => {}
            // A failed write elsewhere: look now, so readiness and the operator hear at once.
            _ = writable.wait_failing(), if writable.is_writable() => {}
        }
    }
}
