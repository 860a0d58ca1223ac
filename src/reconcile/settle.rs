//! Fill settlement: once an order with fills has ended, its fill list is read once
//! (`GET /orders/{orderId}`), so every fill is recorded by its fill id and the order's fees become
//! the venue's reported fees instead of the configured estimate.
//!
//! Guarantees: an order is marked settled only in the transaction that applied its answer; a
//! failed request leaves it (and the rest of the round) for the next round, with backoff;
//! requests are spaced so settlement never competes with order placement for the venue's rate
//! limit, and a round's answers share one transaction.

use crate::clock::SharedClock;
use crate::model::events::OrderNews;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};
use crate::venue::VenueClient;
use std::time::Duration;

/// Orders settled per round.
const BATCH: i64 = 50;
/// Between rounds when there is nothing to settle.
const IDLE: Duration = Duration::from_secs(2);
/// Between two requests: at most 20 settlement queries a second.
const SPACING: Duration = Duration::from_millis(50);

pub struct FillSettler {
    pub store: Store,
    pub venue: VenueClient,
    pub clock: SharedClock,
    /// Nothing runs before the start-up reconciliation has succeeded.
    pub health: crate::telemetry::health::Health,
}

impl FillSettler {
    pub async fn run(self, mut shutdown: Shutdown) {
        while !self.health.is_reconciled() {
            if shutdown.sleep(Duration::from_millis(50)).await {
                return;
            }
        }
        let mut failures: u32 = 0;
        loop {
            let wait = match self.round(&mut shutdown).await {
                Ok(0) => {
                    failures = 0;
                    IDLE
                }
                Ok(n) if n < BATCH as usize => {
                    failures = 0;
                    IDLE
                }
                Ok(_) => {
                    failures = 0;
                    SPACING
                }
                Err(e) => {
                    failures += 1;
                    let wait = Duration::from_millis(500 << failures.min(6));
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "fill settlement failed; will retry");
                    wait
                }
            };
            if shutdown.sleep(wait).await {
                return;
            }
        }
    }

    /// Settles up to one batch: asks the venue about each order, then applies every answer in
    /// one transaction (one fsync for the batch). Returns how many orders it settled.
    async fn round(&self, shutdown: &mut Shutdown) -> Result<usize, SettleError> {
        let due = self.store.orders_to_settle(BATCH).await?;
        let mut answers = Vec::with_capacity(due.len());
        for (client_order_id, order_id) in due {
            if shutdown.is_triggered() {
                break;
            }
            let news = match self.venue.get_order(&order_id).await {
                Ok(answer) => Some(OrderNews::from(answer)),
                // A definite "no" (the venue no longer knows the order): its fees stay estimated
                // rather than blocking every later order.
                Err(e) if !e.is_retryable() => {
                    tracing::warn!(client_order_id = %client_order_id, error = %e, "the venue will not list this order's fills; its fees stay estimated");
                    None
                }
                // What was fetched so far is still applied below.
                Err(e) if answers.is_empty() => return Err(e.into()),
                Err(e) => {
                    tracing::debug!(error = %e, "fill settlement stops this round early");
                    break;
                }
            };
            answers.push((client_order_id, news));
            tokio::time::sleep(SPACING).await;
        }
        if answers.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        for (client_order_id, news) in &answers {
            // Re-read inside the transaction: a callback may have moved the order meanwhile.
            if let (Some(news), Some(current)) = (
                news,
                Store::order_by_client_id(&mut tx, client_order_id).await?,
            ) {
                super::apply_report(&mut tx, &current, news, now).await?;
            }
            Store::mark_fills_settled(&mut tx, client_order_id, now).await?;
        }
        tx.commit().await?;
        tracing::debug!(orders = answers.len(), "fills settled");
        Ok(answers.len())
    }
}

#[derive(Debug, thiserror::Error)]
enum SettleError {
    #[error("venue: {0}")]
    Venue(#[from] crate::venue::VenueError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
