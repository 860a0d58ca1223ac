//! The canceller: sends `DELETE /orders/{orderId}` for recorded cancel requests and records each
//! outcome under the same rules as order placement.
//!
//! Guarantees:
//! - a cancel is recorded (`Store::request_cancel`) before its `DELETE` is sent, so a restart
//!   resumes a cancel in flight instead of forgetting it;
//! - every `DELETE` ends in one [`OrderOutcome`], classified by the venue client exactly as a POST is
//!   (except that a 409 is a refusal there): *accepted* (2xx with the order now final, or the order
//!   was already final), *rejected* (a definite 4xx about an order the venue still reports working;
//!   code and message kept), or *unknown* (timeout, reset, 5xx, 429, unreadable answer);
//! - a definite 4xx ("not found", "not cancellable") is never taken at its word: the venue is asked
//!   (`GET /orders/{orderId}`) what became of the order;
//! - an unknown outcome is never treated as done or as failed: the next attempt first asks the venue
//!   and sends the `DELETE` again only while the venue still reports the order working;
//! - retries use the executor's capped exponential backoff with jitter, never sooner than a
//!   `Retry-After`, which also pauses every other cancel until it has passed;
//! - one order's cancel is driven by one caller at a time (the supervisor's loop and an operator's
//!   request may meet).

use super::backoff;
use crate::clock::SharedClock;
use crate::notify::Notifier;
use crate::order::OrderStatus;
use crate::reconcile::apply_answer;
use crate::store::{CancelState, CancelTask, Store, StoreError};
use crate::telemetry::metrics::Metrics;
use crate::venue::wire::OrderResponse;
use crate::venue::{OrderOutcome, VenueClient};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Cancels driven per round; the rest wait for the next round.
const CANCEL_BATCH: i64 = 100;
/// How long a cancel waits for an order that has no venue id yet (its POST outcome is unknown).
const NO_VENUE_ID_WAIT: Duration = Duration::from_secs(1);

/// Where one attempt left a cancel request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelResult {
    /// The order is no longer working at the venue; its final status.
    Accepted { status: String },
    /// The venue refused to cancel an order it still reports working.
    Rejected { code: String, message: String },
    /// No usable answer; looked at again later.
    Unknown { reason: String },
    /// Nothing was sent: no open request, the order has no venue id yet, another caller is on it,
    /// or the venue asked us to wait.
    Waiting,
}

#[derive(Clone)]
pub struct Canceller {
    pub store: Store,
    pub venue: VenueClient,
    pub clock: SharedClock,
    pub metrics: Metrics,
    /// Told about fills learned from the venue's answers.
    pub notifier: Notifier,
    /// Orders whose cancel a caller is driving right now: a second caller leaves them alone, so two
    /// `DELETE`s for one order are never in flight together.
    in_flight: Arc<Mutex<HashSet<String>>>,
    /// No `DELETE` before this instant (the venue's `Retry-After`).
    paused_until: Arc<Mutex<Option<Instant>>>,
}

/// Removes an order from the in-flight set when its attempt ends, however it ends.
struct InFlight<'a> {
    set: &'a Mutex<HashSet<String>>,
    client_order_id: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.client_order_id);
    }
}

fn is_final(status: &str) -> bool {
    OrderStatus::parse(status).is_some_and(OrderStatus::is_terminal)
}

impl Canceller {
    pub fn new(
        store: Store,
        venue: VenueClient,
        clock: SharedClock,
        metrics: Metrics,
        notifier: Notifier,
    ) -> Self {
        Self {
            store,
            venue,
            clock,
            metrics,
            notifier,
            in_flight: Arc::default(),
            paused_until: Arc::default(),
        }
    }

    /// Records that an order is to be cancelled (see [`Store::request_cancel`]) and logs it once.
    pub async fn request(
        &self,
        client_order_id: &str,
        reason: &str,
        reopen_rejected: bool,
    ) -> Result<bool, StoreError> {
        let recorded = self
            .store
            .request_cancel(client_order_id, reason, reopen_rejected, self.clock.now())
            .await?;
        if recorded {
            tracing::info!(client_order_id, reason, "cancel requested");
        }
        Ok(recorded)
    }

    /// Drives every cancel request that is due. Stops early while the venue asks us to wait.
    pub async fn drive_due(&self) -> Result<usize, StoreError> {
        let due = self
            .store
            .cancels_due(self.clock.now(), CANCEL_BATCH)
            .await?;
        let mut driven = 0;
        for task in &due {
            if self.paused() {
                break;
            }
            self.drive(task).await?;
            driven += 1;
        }
        Ok(driven)
    }

    /// Drives one order's open cancel request now. When another caller is driving it, waits for
    /// that attempt to end and reports where it left the request.
    pub async fn drive_order(&self, client_order_id: &str) -> Result<CancelResult, StoreError> {
        let mut waited = false;
        loop {
            let Some(task) = self.store.cancel_task(client_order_id).await? else {
                return self.closed_result(client_order_id).await;
            };
            if waited {
                // The other caller's attempt left the request open: its retry time stands.
                return Ok(CancelResult::Waiting);
            }
            if let Some(result) = self.try_drive(&task).await? {
                return Ok(result);
            }
            waited = true;
            while self.is_in_flight(client_order_id) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Where a request that is no longer open was left.
    async fn closed_result(&self, client_order_id: &str) -> Result<CancelResult, StoreError> {
        let Some(order) = self.store.find_order(client_order_id).await? else {
            return Ok(CancelResult::Waiting);
        };
        Ok(match order.cancel {
            Some(c) if c.state == CancelState::Accepted => CancelResult::Accepted {
                status: order.status,
            },
            Some(c) if c.state == CancelState::Rejected => CancelResult::Rejected {
                code: "refused".into(),
                message: c.error.unwrap_or_default(),
            },
            _ => CancelResult::Waiting,
        })
    }

    fn is_in_flight(&self, client_order_id: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(client_order_id)
    }

    fn paused(&self) -> bool {
        self.paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| Instant::now() < until)
    }

    fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *paused = Some(paused.map_or(until, |p| p.max(until)));
    }

    /// One attempt at one cancel request, unless another caller is driving it.
    async fn drive(&self, task: &CancelTask) -> Result<CancelResult, StoreError> {
        Ok(self.try_drive(task).await?.unwrap_or(CancelResult::Waiting))
    }

    /// One attempt at one cancel request; `None` when another caller is driving it.
    async fn try_drive(&self, task: &CancelTask) -> Result<Option<CancelResult>, StoreError> {
        let cid = task.client_order_id.as_str();
        if !self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cid.to_owned())
        {
            return Ok(None);
        }
        let _guard = InFlight {
            set: &self.in_flight,
            client_order_id: cid.to_owned(),
        };
        if self.paused() {
            return Ok(Some(CancelResult::Waiting));
        }
        // Re-read under the guard: another caller may have moved the request since `task` was read
        // (an unknown outcome must be asked about before any second DELETE).
        match self.store.cancel_task(cid).await? {
            Some(current) => self.attempt(cid, &current).await.map(Some),
            None => self.closed_result(cid).await.map(Some),
        }
    }

    async fn attempt(&self, cid: &str, task: &CancelTask) -> Result<CancelResult, StoreError> {
        if !self.store.writable().is_writable() {
            // An answer that cannot be recorded must not be sought: no DELETE while the
            // database cannot commit; the request stays recorded and is driven afterwards.
            return Ok(CancelResult::Waiting);
        }
        let Some(order) = self.store.find_order(cid).await? else {
            return Ok(CancelResult::Waiting);
        };
        if is_final(&order.status) {
            // A callback or a reconciliation got there first: the venue's own word.
            return self.accepted(cid, &order.status, None).await;
        }
        let Some(order_id) = order.order_id.as_deref() else {
            // Its POST outcome is still being resolved by the executor; nothing to DELETE yet.
            let retry_at =
                self.clock.now() + chrono::Duration::from_std(NO_VENUE_ID_WAIT).unwrap_or_default();
            self.store.cancel_later(cid, retry_at).await?;
            return Ok(CancelResult::Waiting);
        };
        if task.state == CancelState::Unknown {
            // The last DELETE may have worked: ask before sending it again.
            match self.venue.get_order(order_id).await {
                Ok(answer) => {
                    let status = answer.status.clone();
                    self.record(cid, answer).await?;
                    if is_final(&status) {
                        tracing::info!(client_order_id = cid, order_id, %status, "cancel outcome resolved: the order is no longer working");
                        return self.accepted(cid, &status, None).await;
                    }
                    tracing::info!(client_order_id = cid, order_id, %status, "cancel outcome resolved: the order is still working; sending the cancel again");
                }
                Err(e) => {
                    return self
                        .unknown(cid, task, format!("lookup failed: {e}"), e.retry_after())
                        .await
                }
            }
        }
        let outcome = self.venue.cancel_order(order_id).await;
        match outcome {
            OrderOutcome::Accepted(answer) => {
                let status = answer.status.clone();
                self.record(cid, *answer).await?;
                if is_final(&status) {
                    self.metrics.order_request("cancel", "accepted");
                    tracing::info!(client_order_id = cid, order_id, %status, "cancel accepted");
                    self.accepted(cid, &status, None).await
                } else {
                    // The venue took the request but still reports the order working: verify.
                    self.metrics.order_request("cancel", "unknown");
                    let reason = format!("the venue answered the cancel with status {status}");
                    self.unknown(cid, task, reason, None).await
                }
            }
            OrderOutcome::Rejected {
                status,
                code,
                message,
            } => {
                self.resolve_refusal(cid, order_id, task, status, code, message)
                    .await
            }
            OrderOutcome::Unknown {
                reason,
                retry_after,
            } => {
                self.metrics.order_request("cancel", "unknown");
                if let Some(wait) = retry_after {
                    tracing::warn!(
                        client_order_id = cid,
                        retry_after_ms = wait.as_millis() as u64,
                        "the venue asks us to slow down; pausing cancels"
                    );
                    self.pause(wait);
                }
                self.unknown(cid, task, reason, retry_after).await
            }
        }
    }

    /// A definite 4xx to a DELETE: asks the venue what became of the order instead of guessing.
    async fn resolve_refusal(
        &self,
        cid: &str,
        order_id: &str,
        task: &CancelTask,
        http_status: u16,
        code: String,
        message: String,
    ) -> Result<CancelResult, StoreError> {
        let refusal = format!("{http_status} {code}: {message}");
        match self.venue.get_order(order_id).await {
            Ok(answer) => {
                let status = answer.status.clone();
                self.record(cid, answer).await?;
                if is_final(&status) {
                    self.metrics.order_request("cancel", "accepted");
                    tracing::info!(client_order_id = cid, order_id, %status, refusal = %refusal, "cancel not needed: the order is already final at the venue");
                    self.accepted(cid, &status, Some(&refusal)).await
                } else {
                    self.metrics.order_request("cancel", "rejected");
                    tracing::warn!(client_order_id = cid, order_id, %status, %code, %message, "cancel refused by the venue; the order is still working");
                    self.store
                        .cancel_closed(cid, CancelState::Rejected, Some(&refusal), self.clock.now())
                        .await?;
                    Ok(CancelResult::Rejected { code, message })
                }
            }
            Err(e) => {
                self.metrics.order_request("cancel", "unknown");
                let reason = format!("cancel refused ({refusal}) and the lookup failed: {e}");
                self.unknown(cid, task, reason, e.retry_after()).await
            }
        }
    }

    /// Applies the venue's report about the order, and passes on any fill it booked.
    async fn record(&self, cid: &str, answer: OrderResponse) -> Result<(), StoreError> {
        if let Some(fill) = apply_answer(&self.store, cid, answer, self.clock.now()).await? {
            self.notifier.send(fill.notification());
        }
        Ok(())
    }

    async fn accepted(
        &self,
        cid: &str,
        status: &str,
        note: Option<&str>,
    ) -> Result<CancelResult, StoreError> {
        self.store
            .cancel_closed(cid, CancelState::Accepted, note, self.clock.now())
            .await?;
        Ok(CancelResult::Accepted {
            status: status.to_owned(),
        })
    }

    async fn unknown(
        &self,
        cid: &str,
        task: &CancelTask,
        reason: String,
        retry_after: Option<Duration>,
    ) -> Result<CancelResult, StoreError> {
        let retry_at = self.clock.now() + backoff(task.attempts, retry_after);
        tracing::warn!(client_order_id = cid, %reason, retry_at = %retry_at, "cancel outcome unknown; will ask the venue");
        self.store.cancel_unknown(cid, &reason, retry_at).await?;
        Ok(CancelResult::Unknown { reason })
    }
}
