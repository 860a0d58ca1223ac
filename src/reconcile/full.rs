//! The full reconciliation pass over REST, and the supervisor task that runs it after a
//! maintenance window and decides which orders to cancel (before a window, when unfilled for too
//! long, protective orders no longer needed). It records those as cancel requests; the executor's
//! [`Canceller`] sends them under the placement outcome rules, driven from this task's loop.
//!
//! `full_pass` asks the venue about every local order that was sent and is not terminal
//! (`GET /orders/{orderId}`, or by `clientOrderId` when the venue id is not known yet), applies each
//! answer through [`super::apply_report`], and refreshes the venue's view of positions and balances
//! (`GET /positions`, `GET /account/balances`). It fails as a whole if any request fails, so a
//! maintenance window is only marked reconciled after a pass that saw everything.
//!
//! A later issue extends this pass (drift alarms, periodic runs, start-up snapshots); the
//! maintenance gate only depends on `full_pass` returning `Ok`.

use super::PassError;
use crate::clock::SharedClock;
use crate::config::TradingConfig;
use crate::executor::cancel::Canceller;
use crate::model::{Price, Side, Symbol};
use crate::notify::Notifier;
use crate::risk::maintenance::{self, MaintenanceSettings};
use crate::risk::protect::{self, FilledEntry};
use crate::risk::{state, Gate, Protect, Role};
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::venue::VenueClient;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassSummary {
    pub orders_checked: usize,
    pub positions: usize,
    pub balances: usize,
}

pub async fn full_pass(
    store: &Store,
    venue: &VenueClient,
    clock: &SharedClock,
) -> Result<PassSummary, PassError> {
    let mut summary = PassSummary::default();
    for order in store.working_orders().await? {
        let answer = match &order.order_id {
            Some(id) => Some(venue.get_order(id).await?),
            None => {
                venue
                    .find_by_client_order_id(&order.client_order_id)
                    .await?
            }
        };
        let Some(answer) = answer else {
            // The venue has no such order: the executor's unknown-outcome path owns this case.
            continue;
        };
        super::apply_answer(store, &order.client_order_id, answer, clock.now()).await?;
        summary.orders_checked += 1;
    }
    let (positions, balances) = super::snapshot::record_venue_books(store, venue, clock).await?;
    summary.positions = positions.len();
    summary.balances = balances;
    Ok(summary)
}

/// The risk manager's background duties, each an I/O shell around pure rules:
/// - runs `full_pass` once a maintenance window's end + settle has passed, and marks the window
///   reconciled only when the pass succeeded (trading stays blocked until then);
/// - with `[maintenance] cancel_open_orders`, requests the cancel of working orders when a
///   window's lead time begins;
/// - requests the cancel of orders of strategies with `unfilled_timeout_secs` that have not filled
///   in time, and drives every due cancel request through the canceller;
/// - places the stop-loss / take-profit of entries that have filled, and cancels protective
///   orders whose sibling filled or whose position is gone (or smaller than they are);
pub struct Supervisor {
    pub store: Store,
    pub venue: VenueClient,
    pub clock: SharedClock,
    pub settings: MaintenanceSettings,
    /// Strategy name → unfilled-order timeout.
    pub timeouts: HashMap<String, chrono::Duration>,
    /// Symbol specs, for protective order quantities.
    pub trading: Arc<TradingConfig>,
    /// A sent, unfinished order with no news for this long is queried by REST.
    pub stale_after: chrono::Duration,
    /// Told about fills learned from REST answers.
    pub notifier: Notifier,
    /// Nothing runs before the start-up reconciliation has succeeded.
    pub health: crate::telemetry::health::Health,
    /// Sends the cancels this task decides on, under the placement outcome rules.
    pub canceller: Canceller,
}

/// How often the supervisor looks for stale orders.
const STALE_POLL_EVERY: Duration = Duration::from_secs(1);
/// Stale orders queried per round; the rest wait for the next round.
const STALE_POLL_BATCH: i64 = 200;

impl Supervisor {
    pub async fn run(self, mut shutdown: Shutdown) {
        while !self.health.is_reconciled() {
            if shutdown.sleep(Duration::from_millis(50)).await {
                return;
            }
        }
        let mut failures: u32 = 0;
        let mut cancelled_for: HashSet<String> = HashSet::new();
        let mut last_stale_poll: Option<Instant> = None;
        loop {
            let now = self.clock.now();
            let windows = match self
                .store
                .windows_now(now - chrono::Duration::days(30))
                .await
            {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read maintenance windows");
                    vec![]
                }
            };
            let due: Vec<_> = windows
                .iter()
                .filter(|w| w.awaits_reconciliation(&self.settings, now))
                .cloned()
                .collect();
            let mut wait = Duration::from_millis(250);
            if !due.is_empty() {
                match full_pass(&self.store, &self.venue, &self.clock).await {
                    Ok(summary) => {
                        failures = 0;
                        let done = self.clock.now();
                        match self.store.mark_reconciled(&due, done).await {
                            Ok(()) => tracing::info!(
                                ?summary,
                                windows = due.len(),
                                "reconciled after maintenance; trading may resume"
                            ),
                            Err(e) => tracing::error!(error = %e, "cannot mark windows reconciled"),
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        wait = Duration::from_millis(500u64 << failures.min(6));
                        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "reconciliation after maintenance failed; trading stays blocked");
                    }
                }
            }
            if self.settings.cancel_open_orders {
                let starting: Vec<_> = windows
                    .iter()
                    .filter(|w| {
                        w.cancels_open_orders(&self.settings, now)
                            && !cancelled_for.contains(&w.key)
                    })
                    .collect();
                for w in starting {
                    match self.cancel_all_working().await {
                        Ok(n) => {
                            tracing::warn!(window = %w.key, requested = n, "cancelling open orders before maintenance");
                            cancelled_for.insert(w.key.clone());
                        }
                        Err(e) => {
                            tracing::warn!(window = %w.key, error = %e, "cancelling before maintenance failed; will retry")
                        }
                    }
                }
            }
            if !self.timeouts.is_empty() {
                if let Err(e) = self.cancel_timed_out().await {
                    tracing::warn!(error = %e, "cancelling unfilled orders failed; will retry");
                }
            }
            if let Err(e) = self.enforce_protection().await {
                tracing::warn!(error = %e, "cancelling stale protective orders failed; will retry");
            }
            if let Err(e) = self.canceller.drive_due().await {
                tracing::warn!(error = %e, "recording a cancel outcome failed; will retry");
            }
            if let Err(e) = self.place_protection().await {
                tracing::warn!(error = %e, "placing protective orders failed; will retry");
            }
            if last_stale_poll.is_none_or(|at| at.elapsed() >= STALE_POLL_EVERY) {
                last_stale_poll = Some(Instant::now());
                if let Err(e) = self.poll_stale().await {
                    tracing::warn!(error = %e, "polling stale orders failed; will retry");
                }
            }
            if shutdown.sleep(wait).await {
                return;
            }
        }
    }

    /// Asks the venue about every sent, unfinished order with no news for `stale_after` (a lost
    /// callback must not leave a fill unbooked) and applies the answers. Stops at the first
    /// request the venue does not answer: the rest are asked next round.
    async fn poll_stale(&self) -> Result<usize, PassError> {
        let cutoff = self.clock.now() - self.stale_after;
        let stale = self.store.stale_orders(cutoff, STALE_POLL_BATCH).await?;
        let mut polled = 0;
        for order in &stale {
            let Some(id) = &order.order_id else { continue };
            match self.venue.get_order(id).await {
                Ok(answer) => {
                    let before = (order.status.clone(), order.filled_quantity);
                    let booked = super::apply_answer(
                        &self.store,
                        &order.client_order_id,
                        answer,
                        self.clock.now(),
                    )
                    .await?;
                    if let Some(fill) = &booked {
                        self.notifier.send(fill.notification());
                    }
                    if let Ok(Some(after)) = self.store.find_order(&order.client_order_id).await {
                        if (after.status.clone(), after.filled_quantity) != before {
                            tracing::info!(client_order_id = %order.client_order_id, from = %before.0, to = %after.status, filled = %after.filled_quantity, "stale order: the venue had news we missed");
                        }
                    }
                    polled += 1;
                }
                Err(crate::venue::VenueError::Status { status: 404, .. }) => {
                    tracing::warn!(client_order_id = %order.client_order_id, order_id = %id, "stale order: the venue does not know this order id; asking again later");
                    self.store
                        .touch_order(&order.client_order_id, self.clock.now())
                        .await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(polled)
    }

    /// Records a cancel request for every working order the venue knows; the canceller sends
    /// them. Returns how many were newly requested.
    async fn cancel_all_working(&self) -> Result<usize, PassError> {
        let mut n = 0;
        for order in self.store.working_orders().await? {
            if order.order_id.is_some()
                && self
                    .canceller
                    .request(&order.client_order_id, "maintenance", false)
                    .await?
            {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn cancel_timed_out(&self) -> Result<(), PassError> {
        let now = self.clock.now();
        for order in self.store.working_orders().await? {
            let Some(timeout) = self.timeouts.get(&order.strategy) else {
                continue;
            };
            let Some(created) = crate::venue::wire::parse_timestamp(&order.created_at) else {
                continue;
            };
            let role = crate::risk::Role::parse(&order.role).unwrap_or(crate::risk::Role::Entry);
            if order.order_id.is_none()
                || order.cancel.is_some()
                || !crate::risk::unfilled_timed_out(role, created, *timeout, now)
            {
                continue;
            }
            tracing::info!(client_order_id = %order.client_order_id, timeout_secs = timeout.num_seconds(), "unfilled order timed out; cancelling");
            self.canceller
                .request(&order.client_order_id, "unfilled_timeout", false)
                .await?;
        }
        Ok(())
    }

    /// Stop-loss and take-profit intents for entries that have filled; the executor sends them.
    async fn place_protection(&self) -> Result<(), PassError> {
        for row in self.store.entries_needing_protection().await? {
            let (Ok(symbol), Ok(side)) = (Symbol::parse(&row.symbol), Side::parse(&row.side))
            else {
                continue;
            };
            let entry = FilledEntry {
                client_order_id: row.client_order_id.clone(),
                strategy: row.strategy.clone(),
                symbol,
                side,
                filled: row.filled,
                protect: Protect {
                    stop: row.stop.and_then(|p| Price::new(p).ok()),
                    target: row.target.and_then(|p| Price::new(p).ok()),
                },
            };
            let now = self.clock.now();
            let mut tx = self.store.begin().await?;
            let position = Store::position(&mut tx, &row.symbol).await?.quantity;
            let windows = Store::open_windows(&mut tx, now - chrono::Duration::days(1)).await?;
            let states = Store::trading_states(&mut tx).await?;
            let gate = Gate {
                maintenance: maintenance::blocking(&windows, &self.settings, now),
                state: state::effective(
                    states.iter().find(|s| s.symbol.is_none()),
                    states
                        .iter()
                        .find(|s| s.symbol.as_deref() == Some(&row.symbol)),
                )
                .cloned(),
                size_scale: None,
            };
            match protect::protective_orders(
                &entry,
                position,
                &self.trading.spec(&row.symbol),
                &gate,
            ) {
                Err(reason) => {
                    tracing::debug!(client_order_id = %row.client_order_id, %reason, "protective orders wait");
                    tx.rollback().await?;
                    continue;
                }
                Ok(plans) => {
                    for plan in &plans {
                        let role = plan.get().role.as_str();
                        let cid = crate::order::client_order_id(
                            &row.strategy,
                            &row.client_order_id,
                            role,
                        );
                        Store::insert_intent(&mut tx, plan, &cid, None, now).await?;
                        tracing::info!(client_order_id = %cid, parent = %row.client_order_id, role, "protective order intent");
                    }
                    Store::mark_protection_done(&mut tx, &row.client_order_id).await?;
                }
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Cancels protective orders that could now open a position instead of closing one: their
    /// sibling filled, their position is gone or points the other way, or together they exceed it.
    async fn enforce_protection(&self) -> Result<(), PassError> {
        let working = self.store.working_protective().await?;
        if working.is_empty() {
            return Ok(());
        }
        let positions = self.store.positions_now().await?;
        let mut judged = Vec::with_capacity(working.len());
        for order in &working {
            judged.push(protect::WorkingProtective {
                symbol: &order.symbol,
                role: Role::parse(&order.role).unwrap_or(Role::StopLoss),
                side: Side::parse(&order.side).unwrap_or(Side::Buy),
                remaining: order.quantity - order.filled_quantity,
                sibling_filled: self.store.sibling_filled(order).await?,
            });
        }
        let verdicts =
            protect::stale_protection(&judged, |s| positions.get(s).copied().unwrap_or_default());
        for (order, why) in working.iter().zip(verdicts) {
            let Some(why) = why else { continue };
            if order.order_id.is_none() || order.cancel.is_some() {
                // Not at the venue yet (or its POST outcome is unknown): look again next round.
                // Already being cancelled (or refused): the canceller owns it.
                continue;
            }
            tracing::info!(client_order_id = %order.client_order_id, role = %order.role, reason = why, "cancelling protective order");
            self.canceller
                .request(&order.client_order_id, "protection", false)
                .await?;
        }
        Ok(())
    }
}
