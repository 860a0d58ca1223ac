//! Start-up and periodic reconciliation against the venue's REST snapshot.
//!
//! Start-up (`StartupReconciler`), before any new order: every venue open order is matched with a
//! local order (by venue id, then `clientOrderId`) and applied, or adopted under strategy
//! `adopted` and reported when no local order knows it; every other sent, unfinished local order
//! is queried; then positions and balances are fetched, recorded, and positions compared with ours.
//! Until a whole pass succeeds readiness stays false, the dispatcher refuses signals and the
//! executor and supervisor send nothing; a failed pass is retried with capped backoff and jitter.
//!
//! Periodic (`periodic_snapshots`): the same positions comparison every
//! `[reconcile] snapshot_interval_secs`. Drift beyond `[reconcile] drift_tolerance` halts the
//! symbol (trading state set by `reconciliation`, its reason showing both views), is logged and
//! notified. A periodic drift must be seen in two consecutive snapshots, so a fill whose callback
//! is still in flight does not halt a symbol; at start-up nothing trades, so one is enough.
//! A drift halt is never lifted automatically: a person looks first.

use super::drift::{position_drift, Drift};
use super::full::PassError;
use crate::admin::health::Health;
use crate::app::Shutdown;
use crate::clock::SharedClock;
use crate::ingress::events::OrderNews;
use crate::notify::{Notification, Notifier};
use crate::store::{Store, StoreError, VenuePosition};
use crate::venue::VenueClient;
use chrono::{DateTime, Utc};
use rand::Rng;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

/// The statuses of an order still working at the venue.
const OPEN_STATUSES: [&str; 3] = ["pending", "open", "partially_filled"];
/// Most orders one listing returns (the venue has no paging).
const LIST_LIMIT: usize = 1000;

/// What a start-up pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StartupSummary {
    pub venue_open: usize,
    pub local_checked: usize,
    /// `clientOrderId`s given to venue orders no local order knew.
    pub adopted: Vec<String>,
    pub drift: Vec<Drift>,
}

/// One pass; fails as a whole if any request fails.
pub async fn startup_pass(
    store: &Store,
    venue: &VenueClient,
    clock: &SharedClock,
    tolerance: Decimal,
) -> Result<StartupSummary, PassError> {
    let mut summary = StartupSummary::default();
    let mut seen: HashSet<String> = HashSet::new();
    for status in OPEN_STATUSES {
        let listed = venue.orders_with_status(status, LIST_LIMIT).await?;
        if listed.len() >= LIST_LIMIT {
            tracing::warn!(
                status,
                limit = LIST_LIMIT,
                "the venue listed as many open orders as one listing holds; older ones cannot be adopted"
            );
        }
        summary.venue_open += listed.len();
        for answer in listed {
            let now = clock.now();
            let mut tx = store.begin().await?;
            let mut local = Store::order_by_venue_id(&mut tx, &answer.order_id).await?;
            if local.is_none() {
                if let Some(cid) = &answer.client_order_id {
                    local = Store::order_by_client_id(&mut tx, cid).await?;
                }
            }
            let local = match local {
                Some(l) => l,
                None => {
                    let cid = Store::insert_adopted(&mut tx, &answer, now).await?;
                    tracing::warn!(client_order_id = %cid, order_id = %answer.order_id, symbol = %answer.symbol, "adopted a venue open order unknown locally");
                    summary.adopted.push(cid.clone());
                    Store::order_by_client_id(&mut tx, &cid)
                        .await?
                        .ok_or(StoreError::Corrupt {
                            column: "client_order_id",
                            value: cid,
                        })?
                }
            };
            super::apply_report(&mut tx, &local, &OrderNews::from(answer), now).await?;
            tx.commit().await.map_err(StoreError::from)?;
            seen.insert(local.client_order_id);
        }
    }
    for order in store.working_orders().await? {
        if seen.contains(&order.client_order_id) {
            continue;
        }
        let answer = match &order.order_id {
            Some(id) => Some(venue.get_order(id).await?),
            None => {
                venue
                    .find_by_client_order_id(&order.client_order_id)
                    .await?
            }
        };
        summary.local_checked += 1;
        // None: the venue has no such order; the executor's unknown-outcome path owns it.
        if let Some(answer) = answer {
            super::full::apply_answer(store, &order.client_order_id, answer, clock.now()).await?;
        }
    }
    summary.drift = snapshot(store, venue, clock, tolerance).await?;
    Ok(summary)
}

/// Fetches the venue's positions and balances, records them as the venue's view (both in one
/// transaction) and returns its signed position per symbol and how many balances it reported.
pub async fn record_venue_books(
    store: &Store,
    venue: &VenueClient,
    clock: &SharedClock,
) -> Result<(BTreeMap<String, Decimal>, usize), PassError> {
    let positions = venue.positions().await?;
    let balances = venue.balances().await?;
    let now = clock.now();
    let mut theirs = BTreeMap::new();
    let mut tx = store.begin().await?;
    for p in &positions {
        // The venue reports size unsigned with a side; ours is signed.
        let signed = match p.side.as_deref() {
            Some("short") => -p.quantity.abs(),
            _ => p.quantity,
        };
        *theirs.entry(p.symbol.clone()).or_default() += signed;
        let v = VenuePosition {
            symbol: p.symbol.clone(),
            side: p.side.clone(),
            quantity: signed,
            average_price: p.average_price,
            unrealized_pnl: p.unrealized_pnl,
            mark_price: p.mark_price,
            realized_pnl: None,
            margin_ratio: None,
            closed: false,
            reported_at: now,
        };
        Store::save_venue_position(&mut tx, &v, now).await?;
    }
    for b in &balances {
        Store::save_balance(&mut tx, &b.asset, b.available, b.locked, b.total, now).await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok((theirs, balances.len()))
}

/// Fetches and records the venue's positions and balances and returns where positions differ
/// from ours beyond `tolerance`.
pub async fn snapshot(
    store: &Store,
    venue: &VenueClient,
    clock: &SharedClock,
    tolerance: Decimal,
) -> Result<Vec<Drift>, PassError> {
    let (theirs, _) = record_venue_books(store, venue, clock).await?;
    let ours = store.positions_now().await?;
    Ok(position_drift(&ours, &theirs, tolerance))
}

/// Halts each drifting symbol (unless it is halted already), logs and notifies both views.
pub async fn halt_on_drift(
    store: &Store,
    notifier: &Notifier,
    drift: &[Drift],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if drift.is_empty() {
        return Ok(());
    }
    let mut tx = store.begin().await?;
    for d in drift {
        let reason = d.describe();
        tracing::error!(symbol = %d.symbol, ours = %d.ours, venue = %d.venue, "position drift: halting the symbol");
        super::halt_symbol(&mut tx, &d.symbol, &reason, now).await?;
        notifier.send(Notification::Drift {
            symbol: d.symbol.clone(),
            detail: reason,
        });
    }
    tx.commit().await?;
    Ok(())
}

/// Capped exponential backoff with jitter for retrying a failed pass.
fn pass_backoff(failures: u32) -> Duration {
    let ceiling: u64 = (500u64 << failures.min(6)).min(30_000);
    let ms = ceiling / 2 + rand::thread_rng().gen_range(0..=ceiling / 2);
    Duration::from_millis(ms)
}

/// Runs the start-up pass until it succeeds (or shutdown), then marks the bot reconciled.
pub struct StartupReconciler {
    pub store: Store,
    pub venue: VenueClient,
    pub clock: SharedClock,
    pub health: Health,
    pub notifier: Notifier,
    pub tolerance: Decimal,
}

impl StartupReconciler {
    pub async fn run(self, mut shutdown: Shutdown) {
        let mut failures: u32 = 0;
        loop {
            match startup_pass(&self.store, &self.venue, &self.clock, self.tolerance).await {
                Ok(summary) => {
                    if let Err(e) = halt_on_drift(
                        &self.store,
                        &self.notifier,
                        &summary.drift,
                        self.clock.now(),
                    )
                    .await
                    {
                        tracing::error!(error = %e, "cannot record drift found at start; retrying the pass");
                    } else {
                        for cid in &summary.adopted {
                            self.notifier.send(Notification::Drift {
                                symbol: "-".into(),
                                detail: format!("adopted venue open order {cid}, unknown locally"),
                            });
                        }
                        tracing::info!(
                            venue_open = summary.venue_open,
                            local_checked = summary.local_checked,
                            adopted = summary.adopted.len(),
                            drift = summary.drift.len(),
                            "start-up reconciliation done; trading may begin"
                        );
                        self.health.mark_reconciled();
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt = failures + 1, "start-up reconciliation failed; no new orders until it succeeds");
                }
            }
            failures += 1;
            if shutdown.sleep(pass_backoff(failures)).await {
                return;
            }
        }
    }
}

/// Compares positions with the venue's every `interval` once reconciled; see the module doc.
pub struct PeriodicSnapshots {
    pub store: Store,
    pub venue: VenueClient,
    pub clock: SharedClock,
    pub health: Health,
    pub notifier: Notifier,
    pub interval: Duration,
    pub tolerance: Decimal,
    /// The quote-asset balance may differ from our books' by this much (see `super::cash`).
    pub cash_tolerance: Decimal,
}

/// The asset the cash check follows.
const QUOTE_ASSET: &str = "USD";
const CASH_BASELINE_VENUE: &str = "cash_baseline_venue";
const CASH_BASELINE_OURS: &str = "cash_baseline_ours";
const CASH_DRIFT_OURS: &str = "cash_drift_ours";
const CASH_DRIFT_VENUE: &str = "cash_drift_venue";

impl PeriodicSnapshots {
    /// Compares the venue's balance just recorded with our books'; `suspect` carries a
    /// difference seen in the previous snapshot (see `super::cash`).
    async fn check_cash(&self, suspect: &mut bool) -> Result<(), StoreError> {
        let view = self.store.cash_view(QUOTE_ASSET).await?;
        let Some(total) = view.venue_total else {
            return Ok(());
        };
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let baseline = match (
            Store::risk_value(&mut tx, CASH_BASELINE_VENUE).await?,
            Store::risk_value(&mut tx, CASH_BASELINE_OURS).await?,
        ) {
            (Some(venue_total), Some(ours)) => super::cash::Baseline { venue_total, ours },
            // A baseline holding estimated fees would carry their error for ever: it waits for
            // a snapshot with every fee settled.
            _ if !view.unsettled_fees.is_zero() => return Ok(()),
            _ => {
                let b = super::cash::Baseline::of(&view, total);
                Store::set_risk_value(&mut tx, CASH_BASELINE_VENUE, b.venue_total, now).await?;
                Store::set_risk_value(&mut tx, CASH_BASELINE_OURS, b.ours, now).await?;
                return Ok(tx.commit().await?);
            }
        };
        let Some(drift) = super::cash::compare(baseline, &view, self.cash_tolerance) else {
            *suspect = false;
            return Ok(());
        };
        if !*suspect {
            *suspect = true;
            tracing::warn!(expected = %drift.expected, venue = %drift.venue, "the venue's balance differs from our books; checking again at the next snapshot");
            return Ok(());
        }
        *suspect = false;
        let detail = drift.describe(QUOTE_ASSET);
        tracing::error!(expected = %drift.expected, venue = %drift.venue, "{detail}");
        // Both views are kept; the baseline absorbs the difference, so it is reported once.
        Store::set_risk_value(&mut tx, CASH_DRIFT_OURS, drift.expected, now).await?;
        Store::set_risk_value(&mut tx, CASH_DRIFT_VENUE, drift.venue, now).await?;
        let shifted = baseline.venue_total + (drift.venue - drift.expected);
        Store::set_risk_value(&mut tx, CASH_BASELINE_VENUE, shifted, now).await?;
        tx.commit().await?;
        self.notifier.send(Notification::Drift {
            symbol: QUOTE_ASSET.into(),
            detail,
        });
        Ok(())
    }

    pub async fn run(self, mut shutdown: Shutdown) {
        let mut suspect: BTreeSet<String> = BTreeSet::new();
        let mut cash_suspect = false;
        loop {
            if shutdown.sleep(self.interval).await {
                return;
            }
            if !self.health.is_reconciled() {
                continue;
            }
            match snapshot(&self.store, &self.venue, &self.clock, self.tolerance).await {
                Ok(drift) => {
                    let confirmed: Vec<Drift> = drift
                        .iter()
                        .filter(|d| suspect.contains(&d.symbol))
                        .cloned()
                        .collect();
                    suspect = drift.into_iter().map(|d| d.symbol).collect();
                    if let Err(e) =
                        halt_on_drift(&self.store, &self.notifier, &confirmed, self.clock.now())
                            .await
                    {
                        tracing::error!(error = %e, "cannot record position drift");
                    }
                    if let Err(e) = self.check_cash(&mut cash_suspect).await {
                        tracing::error!(error = %e, "cannot compare the venue's balance with ours");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "periodic snapshot comparison failed; will retry")
                }
            }
        }
    }
}
