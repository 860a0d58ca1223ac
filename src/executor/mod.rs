//! The executor: sends committed order intents to the venue and records each outcome.
//!
//! Guarantees: an order is only ever sent under the `clientOrderId` it was written with; an
//! unknown outcome is resolved by asking the venue (`GET /orders?clientOrderId=`) and the order is
//! re-sent, with the same id, only when the venue says it has no such order; a definite refusal is
//! kept with the venue's code and message. It never changes a risk decision.

use crate::admin::metrics::Metrics;
use crate::app::Shutdown;
use crate::clock::SharedClock;
use crate::ingress::events::OrderNews;
use crate::notify::Notifier;
use crate::reconcile;
use crate::store::{OrderRow, Store, StoreError};
use crate::venue::wire::{OrderResponse, PlaceOrderRequest};
use crate::venue::{SubmitOutcome, VenueClient};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Backoff for resolving unknown outcomes: 200 ms doubling to at most 30 s.
fn retry_delay(attempts: i64) -> chrono::Duration {
    let ms = 200i64 << attempts.clamp(0, 8);
    chrono::Duration::milliseconds(ms.min(30_000))
}

pub struct Executor {
    pub store: Store,
    pub venue: VenueClient,
    pub clock: SharedClock,
    pub orders_ready: Arc<Notify>,
    /// Notified when an order learns its venue id, so deferred callbacks are retried.
    pub inbox_ready: Arc<Notify>,
    pub metrics: Metrics,
    /// Told about fills learned from REST answers.
    pub notifier: Notifier,
}

impl Executor {
    /// Sends orders until `shutdown`; then sends what is already due (the dispatcher has stopped
    /// by then), runs a final reconciliation of open orders and returns. The caller bounds this
    /// with a deadline.
    pub async fn run(self, mut shutdown: Shutdown) {
        loop {
            let now = self.clock.now();
            let due = match self.store.orders_to_submit(now, 64).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read orders to submit");
                    if shutdown.sleep(Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            for order in &due {
                // An in-flight request is allowed to finish: its outcome must be recorded.
                if let Err(e) = self.submit(order).await {
                    tracing::error!(client_order_id = %order.client_order_id, error = %e, "recording an order outcome failed");
                }
            }
            if !due.is_empty() {
                continue;
            }
            if shutdown.is_triggered() {
                self.final_reconciliation().await;
                return;
            }
            let wait = self.until_next_retry().await;
            tokio::select! {
                _ = self.orders_ready.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait() => {}
            }
        }
    }

    async fn until_next_retry(&self) -> Duration {
        let fallback = Duration::from_secs(1);
        let Ok(Some(at)) = self.store.next_retry_at().await else {
            return fallback;
        };
        let Some(at) = crate::venue::wire::parse_timestamp(&at) else {
            return fallback;
        };
        (at - self.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(fallback)
    }

    async fn submit(&self, order: &OrderRow) -> Result<(), StoreError> {
        if order.status == "unknown" {
            // Ask before sending again: the first attempt may have reached the venue.
            match self
                .venue
                .find_by_client_order_id(&order.client_order_id)
                .await
            {
                Ok(Some(found)) => {
                    tracing::info!(client_order_id = %order.client_order_id, "unknown outcome resolved: the venue has the order");
                    return self.accepted(order, found).await;
                }
                Ok(None) => {
                    tracing::info!(client_order_id = %order.client_order_id, "unknown outcome resolved: the venue has no such order; sending again with the same id");
                }
                Err(e) => {
                    let now = self.clock.now();
                    let retry_at = now + retry_delay(order.submit_attempts);
                    return self
                        .store
                        .mark_unknown(
                            &order.client_order_id,
                            &format!("lookup failed: {e}"),
                            retry_at,
                            now,
                        )
                        .await;
                }
            }
        }
        let request = PlaceOrderRequest {
            symbol: order.symbol.clone(),
            side: order.side.clone(),
            order_type: order.order_type.clone(),
            quantity: order.quantity,
            price: order.price,
            stop_price: order.stop_price,
            time_in_force: order.time_in_force.clone(),
            client_order_id: order.client_order_id.clone(),
        };
        let started = std::time::Instant::now();
        let outcome = self.venue.place_order(&request).await;
        self.metrics.submit_latency(started.elapsed());
        let now = self.clock.now();
        match outcome {
            SubmitOutcome::Accepted(resp) => {
                tracing::info!(client_order_id = %order.client_order_id, order_id = %resp.order_id, status = %resp.status, latency_ms = started.elapsed().as_millis() as u64, "order accepted");
                self.accepted(order, resp).await
            }
            SubmitOutcome::Rejected { code, message } => {
                tracing::warn!(client_order_id = %order.client_order_id, %code, %message, "order rejected by the venue");
                self.store
                    .mark_rejected(&order.client_order_id, &code, &message, now)
                    .await
            }
            SubmitOutcome::Unknown { reason } => {
                let retry_at = now + retry_delay(order.submit_attempts);
                tracing::warn!(client_order_id = %order.client_order_id, %reason, retry_at = %retry_at, "order outcome unknown; will ask the venue");
                self.store
                    .mark_unknown(&order.client_order_id, &reason, retry_at, now)
                    .await
            }
        }
    }

    async fn accepted(&self, order: &OrderRow, resp: OrderResponse) -> Result<(), StoreError> {
        let now: DateTime<Utc> = self.clock.now();
        let mut tx = self.store.begin().await?;
        // Re-read inside the transaction: a callback may have moved the order meanwhile.
        let Some(current) = Store::order_by_client_id(&mut tx, &order.client_order_id).await?
        else {
            return Ok(());
        };
        let news = OrderNews::from(resp);
        let fill = reconcile::apply_report(&mut tx, &current, &news, now).await?;
        let requeued = if current.order_id.is_none() {
            Store::requeue_deferred(&mut tx).await?
        } else {
            0
        };
        tx.commit().await?;
        if let Some(fill) = fill {
            self.notifier.send(fill.notification());
        }
        if requeued > 0 {
            self.inbox_ready.notify_one();
        }
        Ok(())
    }

    /// Asks the venue about every order not yet final and records what it says, so the database
    /// closes agreeing with the venue. Failures are logged; the next start resolves them.
    pub async fn final_reconciliation(&self) {
        let open = match self.store.open_orders().await {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "final reconciliation: cannot read open orders");
                return;
            }
        };
        let (mut checked, mut failed) = (0, 0);
        for order in &open {
            let answer = match (&order.order_id, order.status.as_str()) {
                (Some(id), _) => self.venue.get_order(id).await.map(Some),
                (None, "unknown") => {
                    self.venue
                        .find_by_client_order_id(&order.client_order_id)
                        .await
                }
                // An intent never sent: nothing to ask.
                (None, _) => continue,
            };
            checked += 1;
            match answer {
                Ok(Some(resp)) => {
                    if let Err(e) = self.accepted(order, resp).await {
                        failed += 1;
                        tracing::warn!(client_order_id = %order.client_order_id, error = %e, "final reconciliation: cannot record the venue's answer");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    failed += 1;
                    tracing::warn!(client_order_id = %order.client_order_id, error = %e, "final reconciliation: the venue did not answer");
                }
            }
        }
        tracing::info!(
            open = open.len(),
            checked,
            failed,
            "final reconciliation done"
        );
    }
}
