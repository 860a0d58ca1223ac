//! The executor: sends committed order intents to the venue and records each outcome.
//!
//! Guarantees: an order is only ever sent under the `clientOrderId` it was written with; an
//! unknown outcome is resolved by asking the venue (`GET /orders?clientOrderId=`) and the order is
//! re-sent, with the same id, only when the venue says it has no such order; a definite refusal is
//! kept with the venue's code and message.
//!
//! At send time it applies the last check of `crate::risk::release` (trading state of the account
//! and the symbol, maintenance windows, the reducing state, the intent's age): a decision taken
//! before a halt does not go out after it. An order that may not go out is dropped (`cancelled`,
//! with the reason in `/api/orders` and the log) only once the venue has confirmed, by
//! `clientOrderId`, that it does not have it; a protective order waits instead.
//!
//! Pacing: order POSTs pass a token bucket (`[venue] max_orders_per_second`, a burst of one
//! second's worth) so the bot stays below the venue's own limit; a `Retry-After` from the venue
//! pauses every POST until it has passed, and the throttled order is looked at again no earlier.
//! Unknown outcomes are retried with capped exponential backoff and jitter, so many orders that
//! failed together do not come back together. Cancels (`cancel`) use the same backoff and the
//! same outcome classification.

pub mod cancel;

use crate::clock::SharedClock;
use crate::model::events::OrderNews;
use crate::model::Side;
use crate::notify::Notifier;
use crate::reconcile;
use crate::risk::maintenance::{self, MaintenanceSettings};
use crate::risk::release::{Outgoing, Release};
use crate::risk::{state, Gate, Role};
use crate::shutdown::Shutdown;
use crate::store::{OrderRow, SendView, Store, StoreError};
use crate::telemetry::metrics::Metrics;
use crate::venue::wire::{OrderResponse, PlaceOrderRequest};
use crate::venue::{SubmitOutcome, VenueClient};
use chrono::{DateTime, Utc};
use rand::Rng;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The first retry delay and the cap of the exponential backoff.
const RETRY_BASE_MS: i64 = 200;
const RETRY_CAP_MS: i64 = 30_000;

/// Backoff for resolving unknown outcomes: 200 ms doubling to at most 30 s, then "equal jitter"
/// (a random point in the upper half, `jitter_permille` of the way through it), and never sooner
/// than the venue's `Retry-After`. Pure: the caller draws the jitter.
pub fn retry_delay(
    attempts: i64,
    retry_after: Option<Duration>,
    jitter_permille: u16,
) -> chrono::Duration {
    let ceiling = (RETRY_BASE_MS << attempts.clamp(0, 8)).min(RETRY_CAP_MS);
    let half = ceiling / 2;
    let jittered = half + half * i64::from(jitter_permille.min(1000)) / 1000;
    let floor = retry_after.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    chrono::Duration::milliseconds(jittered.max(floor))
}

/// [`retry_delay`] with fresh jitter: the delay before an unknown outcome (of a POST or a
/// DELETE) is looked at again.
pub fn backoff(attempts: i64, retry_after: Option<Duration>) -> chrono::Duration {
    retry_delay(
        attempts,
        retry_after,
        rand::thread_rng().gen_range(0..=1000),
    )
}

/// What one submission attempt learned; recorded with the rest of its round.
#[derive(Clone)]
enum Attempt {
    Accepted(Box<OrderResponse>),
    Rejected {
        code: String,
        message: String,
    },
    Unknown {
        error: String,
        retry_at: DateTime<Utc>,
    },
    /// Not sent now; looked at again at `retry_at`.
    Wait {
        why: String,
        retry_at: DateTime<Utc>,
    },
    /// Never sent, and the venue confirmed it does not have it.
    Dropped {
        reason: String,
    },
}

/// How long the trading state read before sending is trusted within one round.
const VIEW_TTL: Duration = Duration::from_millis(50);

/// How long an order that may not be sent now (a protective order while trading is stopped)
/// waits before it is looked at again.
const WAIT_RETRY: chrono::Duration = chrono::Duration::seconds(2);

/// A token bucket for order submissions: `rate` tokens a second, at most `rate` banked. Pure: the
/// caller passes the instant.
#[derive(Debug)]
pub struct OrderPacer {
    /// Orders per second; 0 turns pacing off.
    rate: u32,
    /// Banked tokens, in millionths of a token.
    micro_tokens: u64,
    last: Instant,
    /// No POST before this instant (the venue's `Retry-After`).
    paused_until: Option<Instant>,
}

const MICRO: u64 = 1_000_000;

impl OrderPacer {
    pub fn new(rate: u32, now: Instant) -> Self {
        Self {
            rate,
            micro_tokens: u64::from(rate) * MICRO,
            last: now,
            paused_until: None,
        }
    }

    /// Takes a token if one is available (`None`), or says how long to wait before asking again.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Some(until - now);
            }
            self.paused_until = None;
        }
        if self.rate == 0 {
            return None;
        }
        let rate = u64::from(self.rate);
        let elapsed =
            u64::try_from(now.saturating_duration_since(self.last).as_micros()).unwrap_or(u64::MAX);
        self.last = now;
        self.micro_tokens = self
            .micro_tokens
            .saturating_add(elapsed.saturating_mul(rate))
            .min(rate * MICRO);
        if self.micro_tokens >= MICRO {
            self.micro_tokens -= MICRO;
            return None;
        }
        let missing = MICRO - self.micro_tokens;
        Some(Duration::from_micros(missing.div_ceil(rate)))
    }

    /// The venue asked us to slow down: no POST until `until`.
    pub fn pause_until(&mut self, until: Instant) {
        self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
    }
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
    /// Paces order POSTs; see the module doc.
    pub pacer: Mutex<OrderPacer>,
    /// Nothing is sent before the start-up reconciliation has succeeded.
    pub health: crate::telemetry::health::Health,
    /// Maintenance lead and settle times, for the check at send time.
    pub maintenance: MaintenanceSettings,
    /// An opening order decided longer ago than this is dropped, not sent late.
    pub max_intent_age: chrono::Duration,
}

impl Executor {
    /// Sends orders until `shutdown`; then sends what is already due (the dispatcher has stopped
    /// by then), runs a final reconciliation of open orders and returns. The caller bounds this
    /// with a deadline.
    pub async fn run(self, mut shutdown: Shutdown) {
        while !self.health.is_reconciled() {
            // Intents wait, durable, until the book agrees with the venue's.
            if shutdown.sleep(Duration::from_millis(50)).await {
                return;
            }
        }
        // Outcomes learned from the venue that could not be recorded because the database could
        // not commit: recorded before anything else is sent, and their orders are never sent
        // again meanwhile.
        let mut unrecorded: Vec<(OrderRow, Attempt)> = Vec::new();
        loop {
            if !self.store.writable().is_writable() {
                // An outcome that cannot be recorded must not be sought: nothing is sent while
                // the database cannot commit (the intents stay durable and go out afterwards).
                tracing::warn!("the store cannot commit; no order is sent until it recovers");
                tokio::select! {
                    _ = self.store.writable().wait_writable() => {}
                    _ = shutdown.wait() => return,
                }
                continue;
            }
            if !unrecorded.is_empty() {
                let outcomes = std::mem::take(&mut unrecorded);
                if let Err(e) = self.record(&outcomes).await {
                    if self
                        .after_record_failure(e, outcomes, &mut unrecorded, &mut shutdown)
                        .await
                    {
                        return;
                    }
                    continue;
                }
            }
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
            // Every due order is checked and sent (an in-flight request is allowed to finish),
            // then the round's outcomes are recorded in one transaction. A crash in between
            // leaves the orders `intent`/`unknown`: the next start asks the venue by
            // clientOrderId before sending any again.
            let mut attempts = Vec::with_capacity(due.len());
            let mut view: Option<(SendView, Instant)> = None;
            let mut stalled = false;
            for order in &due {
                if !self.store.writable().is_writable() {
                    // The rest stay due and go out once outcomes can be recorded again.
                    break;
                }
                // The state is read again during a long round (pacing, a slow venue), so a halt
                // stops the rest of it.
                if view.as_ref().is_none_or(|(_, at)| at.elapsed() > VIEW_TTL) {
                    match self.store.send_view(now - chrono::Duration::days(1)).await {
                        Ok(v) => view = Some((v, Instant::now())),
                        Err(e) => {
                            // Nothing goes out unchecked: this order and the rest of the round
                            // wait for the next one.
                            tracing::error!(error = %e, "cannot read the trading state; sending nothing");
                            stalled = true;
                            break;
                        }
                    }
                }
                let Some((view, _)) = &view else { break };
                let verdict = self.release(order, view);
                let attempt = self.attempt(order, verdict).await;
                attempts.push((order.clone(), attempt));
            }
            if let Err(e) = self.record(&attempts).await {
                if self
                    .after_record_failure(e, attempts, &mut unrecorded, &mut shutdown)
                    .await
                {
                    return;
                }
                continue;
            }
            if stalled && shutdown.sleep(Duration::from_secs(1)).await {
                return;
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

    /// After `outcomes` could not be recorded: while the store cannot commit they are kept in
    /// `unrecorded` (the next round waits for the store, then records them first). Any other
    /// failure (a venue number that overflows) drops them, so one bad answer cannot hold back
    /// every other order: their orders stay `intent`/`unknown` and the venue is asked again,
    /// after a second. True when shutdown came first (the next start asks the venue).
    async fn after_record_failure(
        &self,
        e: StoreError,
        outcomes: Vec<(OrderRow, Attempt)>,
        unrecorded: &mut Vec<(OrderRow, Attempt)>,
        shutdown: &mut Shutdown,
    ) -> bool {
        let e = self.store.writable().noted(e);
        let kept = e.is_unavailable();
        tracing::error!(error = %e, orders = outcomes.len(), kept, "recording order outcomes failed");
        if kept {
            *unrecorded = outcomes;
            return false;
        }
        shutdown.sleep(Duration::from_secs(1)).await
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

    /// The check at send time (`crate::risk::release`) for one due order, against `view`.
    fn release(&self, order: &OrderRow, view: &SendView) -> Release {
        let now = self.clock.now();
        let (Some(role), Ok(side), Some(created_at)) = (
            Role::parse(&order.role),
            Side::parse(&order.side),
            crate::venue::wire::parse_timestamp(&order.created_at),
        ) else {
            return Release::Drop(format!(
                "not sent: unreadable stored order (role {:?}, side {:?}, created {:?})",
                order.role, order.side, order.created_at
            ));
        };
        let key = (&order.created_at, &order.client_order_id);
        let ahead = view
            .working
            .iter()
            .filter(|w| w.symbol == order.symbol && w.side == order.side)
            .filter(|w| (&w.created_at, &w.client_order_id) < key)
            .map(|w| w.remaining)
            .sum();
        let outgoing = Outgoing {
            role,
            side,
            quantity: order.quantity - order.filled_quantity,
            created_at,
            position: view
                .positions
                .get(&order.symbol)
                .copied()
                .unwrap_or_default(),
            ahead,
        };
        let gate = Gate {
            maintenance: maintenance::blocking(&view.windows, &self.maintenance, now),
            state: state::effective(
                view.states.iter().find(|s| s.symbol.is_none()),
                view.states
                    .iter()
                    .find(|s| s.symbol.as_deref() == Some(order.symbol.as_str())),
            )
            .cloned(),
            size_scale: None,
        };
        crate::risk::release::release(&outgoing, &gate, self.max_intent_age, now)
    }

    /// Sends one order (after asking the venue about it when an earlier outcome is unknown, or
    /// before dropping it) and says what became of it; records nothing.
    async fn attempt(&self, order: &OrderRow, verdict: Release) -> Attempt {
        let cid = &order.client_order_id;
        if order.status == "unknown" || matches!(verdict, Release::Drop(_)) {
            // Ask first: an earlier attempt (or one cut short by a crash) may have reached the
            // venue, and an order the venue has is neither sent again nor dropped.
            match self.venue.find_by_client_order_id(cid).await {
                Ok(Some(found)) => {
                    tracing::info!(client_order_id = %cid, "the venue has the order");
                    return Attempt::Accepted(Box::new(found));
                }
                Ok(None) => {
                    tracing::debug!(client_order_id = %cid, "the venue has no such order");
                }
                Err(e) => {
                    let retry_at =
                        self.clock.now() + backoff(order.submit_attempts, e.retry_after());
                    let error = format!("lookup failed: {e}");
                    return if order.status == "unknown" {
                        Attempt::Unknown { error, retry_at }
                    } else {
                        Attempt::Wait {
                            why: error,
                            retry_at,
                        }
                    };
                }
            }
        }
        match verdict {
            Release::Send => {}
            Release::Wait(why) => {
                tracing::debug!(client_order_id = %cid, %why, "order waits");
                return Attempt::Wait {
                    why,
                    retry_at: self.clock.now() + WAIT_RETRY,
                };
            }
            Release::Drop(reason) => {
                tracing::warn!(client_order_id = %cid, symbol = %order.symbol, %reason, "order dropped");
                return Attempt::Dropped { reason };
            }
        }
        if order.status == "unknown" {
            tracing::info!(client_order_id = %cid, "unknown outcome resolved: the venue has no such order; sending again with the same id");
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
        self.paced().await;
        let started = std::time::Instant::now();
        let outcome = self.venue.place_order(&request).await;
        self.metrics.submit_latency(started.elapsed());
        self.metrics.order_request("place", outcome.label());
        match outcome {
            SubmitOutcome::Accepted(resp) => {
                tracing::info!(client_order_id = %order.client_order_id, order_id = %resp.order_id, status = %resp.status, latency_ms = started.elapsed().as_millis() as u64, "order accepted");
                Attempt::Accepted(resp)
            }
            SubmitOutcome::Rejected { code, message, .. } => {
                tracing::warn!(client_order_id = %order.client_order_id, %code, %message, "order rejected by the venue");
                Attempt::Rejected { code, message }
            }
            SubmitOutcome::Unknown {
                reason,
                retry_after,
            } => {
                if let Some(wait) = retry_after {
                    tracing::warn!(client_order_id = %order.client_order_id, retry_after_ms = wait.as_millis() as u64, "the venue asks us to slow down; pausing order submissions");
                    self.pacer
                        .lock()
                        .expect("pacer lock")
                        .pause_until(Instant::now() + wait);
                }
                let retry_at = self.clock.now() + backoff(order.submit_attempts, retry_after);
                tracing::warn!(client_order_id = %order.client_order_id, %reason, retry_at = %retry_at, "order outcome unknown; will ask the venue");
                Attempt::Unknown {
                    error: reason,
                    retry_at,
                }
            }
        }
    }

    /// Records a round's outcomes in one transaction; tells about fills once it has committed.
    async fn record(&self, attempts: &[(OrderRow, Attempt)]) -> Result<(), StoreError> {
        if attempts.is_empty() {
            return Ok(());
        }
        let now: DateTime<Utc> = self.clock.now();
        let mut tx = self.store.begin().await?;
        let mut fills = Vec::new();
        let mut linked = false;
        for (order, attempt) in attempts {
            let cid = &order.client_order_id;
            match attempt {
                Attempt::Accepted(resp) => {
                    // Re-read inside the transaction: a callback may have moved the order.
                    let Some(current) = Store::order_by_client_id(&mut tx, cid).await? else {
                        continue;
                    };
                    linked |= current.order_id.is_none();
                    let news = OrderNews::from((**resp).clone());
                    fills.extend(reconcile::apply_report(&mut tx, &current, &news, now).await?);
                }
                Attempt::Rejected { code, message } => {
                    Store::mark_rejected(&mut tx, cid, code, message, now).await?;
                }
                Attempt::Unknown { error, retry_at } => {
                    Store::mark_unknown(&mut tx, cid, error, *retry_at, now).await?;
                }
                Attempt::Wait { why, retry_at } => {
                    Store::mark_waiting(&mut tx, cid, why, *retry_at, now).await?;
                }
                Attempt::Dropped { reason } => {
                    Store::mark_dropped(&mut tx, cid, reason, now).await?;
                }
            }
        }
        // Callbacks that came before their order's venue id was known can be matched now.
        let requeued = if linked {
            Store::requeue_deferred(&mut tx).await?
        } else {
            0
        };
        tx.commit().await?;
        for fill in fills {
            self.notifier.send(fill.notification());
        }
        if requeued > 0 {
            self.inbox_ready.notify_one();
        }
        Ok(())
    }

    /// Waits until the pacer lets one more order POST through.
    async fn paced(&self) {
        loop {
            let wait = self.pacer.lock().expect("pacer lock").take(Instant::now());
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    async fn accepted(&self, order: &OrderRow, resp: OrderResponse) -> Result<(), StoreError> {
        self.record(&[(order.clone(), Attempt::Accepted(Box::new(resp)))])
            .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_with_jitter_stay_capped_and_honour_retry_after() {
        // (attempts, retry_after, jitter ‰, expected ms)
        let cases: [(i64, Option<u64>, u16, i64); 9] = [
            (0, None, 0, 100),
            (0, None, 1000, 200),
            (0, None, 500, 150),
            (1, None, 1000, 400),
            (3, None, 0, 800),
            (20, None, 1000, 30_000),
            (20, None, 0, 15_000),
            (0, Some(1_000), 1000, 1_000),
            (8, Some(1_000), 0, 15_000),
        ];
        for (attempts, retry_after, jitter, expected) in cases {
            let got = retry_delay(attempts, retry_after.map(Duration::from_millis), jitter);
            assert_eq!(
                got.num_milliseconds(),
                expected,
                "attempts {attempts}, retry_after {retry_after:?}, jitter {jitter}"
            );
        }
    }

    #[test]
    fn the_pacer_lets_a_burst_through_then_one_order_per_interval() {
        let start = Instant::now();
        let mut pacer = OrderPacer::new(4, start);
        for n in 0..4 {
            assert_eq!(pacer.take(start), None, "burst order {n}");
        }
        assert_eq!(pacer.take(start), Some(Duration::from_millis(250)));
        assert_eq!(pacer.take(start + Duration::from_millis(250)), None);
        assert!(pacer.take(start + Duration::from_millis(250)).is_some());
    }

    #[test]
    fn a_pacer_at_zero_never_waits_unless_the_venue_asked() {
        let start = Instant::now();
        let mut pacer = OrderPacer::new(0, start);
        for _ in 0..1000 {
            assert_eq!(pacer.take(start), None);
        }
        pacer.pause_until(start + Duration::from_secs(1));
        assert_eq!(pacer.take(start), Some(Duration::from_secs(1)));
        assert_eq!(pacer.take(start + Duration::from_secs(1)), None);
    }

    #[test]
    fn a_retry_after_pause_is_never_shortened_by_a_later_smaller_one() {
        let start = Instant::now();
        let mut pacer = OrderPacer::new(10, start);
        pacer.pause_until(start + Duration::from_secs(5));
        pacer.pause_until(start + Duration::from_secs(1));
        assert_eq!(pacer.take(start), Some(Duration::from_secs(5)));
    }
}
