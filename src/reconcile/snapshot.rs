//! Start-up and periodic reconciliation against the venue's REST snapshot.
//!
//! Start-up (`StartupReconciler`), before any new order: every venue open order is matched with a
//! local order (by venue id, then `clientOrderId`) and applied, or adopted under strategy
//! `adopted` and reported when no local order knows it; every other unfinished local order is
//! queried (up to 32 requests in flight, answers applied a batch to a transaction), `intent` and
//! `unknown` rows by `clientOrderId` (a crash mid-POST leaves an `intent` the venue may have
//! booked and filled); then positions and balances are fetched, recorded, and positions compared
//! with ours, except on symbols with an order still unresolved.
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
use super::PassError;
use crate::clock::SharedClock;
use crate::model::events::OrderNews;
use crate::model::events::VenuePosition;
use crate::notify::{Notification, Notifier};
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};
use crate::telemetry::health::Health;
use crate::venue::VenueClient;
use chrono::{DateTime, Utc};
use rand::Rng;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The statuses of an order still working at the venue.
const OPEN_STATUSES: [&str; 3] = ["pending", "open", "partially_filled"];
/// Most orders one listing returns (the venue has no paging).
const LIST_LIMIT: usize = 1000;
/// Orders queried one by one (`GET /orders/{id}`) that may be in flight at once at start-up.
const QUERY_CONCURRENCY: usize = 32;
/// Answers applied per transaction (one fsync each) at start-up.
const APPLY_BATCH: usize = 256;

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
    startup_pass_with(store, venue, clock, tolerance, LIST_LIMIT).await
}

/// `startup_pass` with the listing size as a parameter, so a test can exceed it with few orders.
///
/// The venue's open-order listings (one per status) cover most working orders in a few requests;
/// each listing is applied in one transaction. Local orders the listings did not show (beyond
/// the listing size, or no longer open: filled or cancelled while their callbacks were lost) are
/// queried one by one, `QUERY_CONCURRENCY` at a time, and their answers applied `APPLY_BATCH` to a
/// transaction; every answer is applied to the order as re-read inside that transaction, through
/// the same monotonic `apply_report`, so batching changes how often we fsync, not what is written.
async fn startup_pass_with(
    store: &Store,
    venue: &VenueClient,
    clock: &SharedClock,
    tolerance: Decimal,
    list_limit: usize,
) -> Result<StartupSummary, PassError> {
    let mut summary = StartupSummary::default();
    let mut seen: HashSet<String> = HashSet::new();
    for status in OPEN_STATUSES {
        let listed = venue.orders_with_status(status, list_limit).await?;
        if listed.len() >= list_limit {
            tracing::warn!(
                status,
                limit = list_limit,
                "the venue listed as many open orders as one listing holds; the rest are queried one by one, and venue orders beyond it cannot be adopted"
            );
        }
        summary.venue_open += listed.len();
        let now = clock.now();
        let mut tx = store.begin().await?;
        for answer in listed {
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
            seen.insert(local.client_order_id);
        }
        tx.commit().await?;
    }
    let unseen: Vec<_> = store
        .working_orders()
        .await?
        .into_iter()
        .filter(|o| !seen.contains(&o.client_order_id))
        .collect();
    summary.local_checked = unseen.len();
    query_and_apply(store, venue, clock, unseen).await?;
    summary.drift = snapshot(store, venue, clock, tolerance).await?;
    Ok(summary)
}

/// Asks the venue about each order (by venue id, or by `clientOrderId` when the venue id is not
/// known), at most `QUERY_CONCURRENCY` requests in flight, and applies the answers in batches.
/// Fails on the first failed request (the in-flight ones are dropped); what was applied before
/// stays applied, which is harmless: applying a report again changes nothing.
async fn query_and_apply(
    store: &Store,
    venue: &VenueClient,
    clock: &SharedClock,
    orders: Vec<crate::store::OrderRow>,
) -> Result<(), PassError> {
    let limit = Arc::new(Semaphore::new(QUERY_CONCURRENCY));
    let mut queries = JoinSet::new();
    for order in orders {
        let (venue, limit) = (venue.clone(), limit.clone());
        queries.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            let answer = match &order.order_id {
                Some(id) => Some(venue.get_order(id).await?),
                None => {
                    venue
                        .find_by_client_order_id(&order.client_order_id)
                        .await?
                }
            };
            Ok::<_, crate::venue::VenueError>((order.client_order_id, answer))
        });
    }
    let mut ready: Vec<(String, crate::venue::wire::OrderResponse)> = Vec::new();
    while let Some(joined) = queries.join_next().await {
        let (cid, answer) = joined.expect("an order query panicked")?;
        // None: the venue has no such order; the executor's unknown-outcome path owns it.
        if let Some(answer) = answer {
            ready.push((cid, answer));
        }
        if ready.len() >= APPLY_BATCH || (queries.is_empty() && !ready.is_empty()) {
            apply_answers(store, std::mem::take(&mut ready), clock.now()).await?;
        }
    }
    Ok(())
}

/// Applies REST answers in one transaction, each to its order as re-read inside it (a callback
/// may have moved the order since it was asked about).
async fn apply_answers(
    store: &Store,
    answers: Vec<(String, crate::venue::wire::OrderResponse)>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    for (cid, answer) in answers {
        if let Some(current) = Store::order_by_client_id(&mut tx, &cid).await? {
            super::apply_report(&mut tx, &current, &OrderNews::from(answer), now).await?;
        }
    }
    tx.commit().await?;
    Ok(())
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
        let report = crate::store::BalanceReport {
            asset: &b.asset,
            available: b.available,
            locked: b.locked,
            total: b.total,
            as_of: now,
        };
        Store::save_balance(&mut tx, &report, now).await?;
    }
    tx.commit().await?;
    Ok((theirs, balances.len()))
}

/// Fetches and records the venue's positions and balances and returns where positions differ
/// from ours beyond `tolerance`. A symbol with an unresolved order (`intent`/`unknown`: it may
/// already have filled at the venue without our knowing) is not compared until it is resolved.
pub async fn snapshot(
    store: &Store,
    venue: &VenueClient,
    clock: &SharedClock,
    tolerance: Decimal,
) -> Result<Vec<Drift>, PassError> {
    let (theirs, _) = record_venue_books(store, venue, clock).await?;
    let ours = store.positions_now().await?;
    let unresolved = store.symbols_with_unresolved_orders().await?;
    let (skipped, drift): (Vec<Drift>, Vec<Drift>) = position_drift(&ours, &theirs, tolerance)
        .into_iter()
        .partition(|d| unresolved.contains(&d.symbol));
    for d in &skipped {
        tracing::info!(symbol = %d.symbol, ours = %d.ours, venue = %d.venue, "position not compared: an order on this symbol is not resolved with the venue yet");
    }
    Ok(drift)
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
                let b = super::cash::Baseline::of(&view, total)?;
                Store::set_risk_value(&mut tx, CASH_BASELINE_VENUE, b.venue_total, now).await?;
                Store::set_risk_value(&mut tx, CASH_BASELINE_OURS, b.ours, now).await?;
                return tx.commit().await;
            }
        };
        let Some(drift) = super::cash::compare(baseline, &view, self.cash_tolerance)? else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::testkit::{eventually, TestVenue, API_KEY, API_SECRET};
    use crate::venue::wire::{OrderResponse, PlaceOrderRequest};
    use crate::venue::SubmitOutcome;

    fn request(cid: &str, order_type: &str, price: Option<Decimal>) -> PlaceOrderRequest {
        PlaceOrderRequest {
            symbol: "BTC/USD".into(),
            side: "buy".into(),
            order_type: order_type.into(),
            quantity: Decimal::new(1, 3),
            price,
            stop_price: None,
            time_in_force: "GTC".into(),
            client_order_id: cid.into(),
        }
    }

    async fn place(venue: &VenueClient, req: &PlaceOrderRequest) -> OrderResponse {
        match venue.place_order(req).await {
            SubmitOutcome::Accepted(o) => *o,
            other => panic!("placing {} failed: {other:?}", req.client_order_id),
        }
    }

    /// Records `o` locally as an order the venue acknowledged as open with nothing filled: what
    /// the bot knows of an order whose later callbacks were lost.
    async fn known_as_open(store: &Store, o: &OrderResponse, now: DateTime<Utc>) {
        let mut tx = store.begin().await.unwrap();
        let cid = Store::insert_adopted(&mut tx, o, now).await.unwrap();
        let local = Store::order_by_client_id(&mut tx, &cid)
            .await
            .unwrap()
            .unwrap();
        let mut news = OrderNews::from(o.clone());
        news.status = "open".into();
        news.filled_quantity = Some(Decimal::ZERO);
        news.average_price = None;
        super::super::apply_report(&mut tx, &local, &news, now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn more_working_orders_than_a_listing_holds_are_all_reconciled_lost_fills_booked_and_strangers_adopted(
    ) {
        let venue_host = TestVenue::start(|c| c.fill_latency = Duration::ZERO).await;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        let venue = VenueClient::new(
            &venue_host.url("/api/v1"),
            crate::config::Credentials {
                api_key: crate::config::Secret::new(API_KEY.to_owned()),
                api_secret: crate::config::Secret::new(API_SECRET.to_owned()),
            },
            Duration::from_secs(10),
            clock.clone(),
        )
        .unwrap();
        let now = clock.now();
        // 12 market orders that filled while the bot heard nothing (it still has them as open),
        // then 40 resting orders far below the market, all known locally, then one resting order
        // nobody told the bot about. The listing (5 here) shows only the newest few.
        for i in 0..12 {
            let o = place(&venue, &request(&format!("sx-lost-{i}"), "market", None)).await;
            known_as_open(&store, &o, now).await;
        }
        for i in 0..40 {
            let price = Some(Decimal::new(1000, 0));
            let o = place(&venue, &request(&format!("sx-rest-{i}"), "limit", price)).await;
            known_as_open(&store, &o, now).await;
        }
        place(
            &venue,
            &request("manual-1", "limit", Some(Decimal::new(1000, 0))),
        )
        .await;
        // The venue's first look at each order (fill or rest) is asynchronous: wait for all.
        eventually(|| async {
            let sim = venue_host.sim.orders();
            let filled = sim.iter().filter(|o| o.status == "filled").count();
            let open = sim.iter().filter(|o| o.status == "open").count();
            (filled == 12 && open == 41).then_some(())
        })
        .await;

        let summary = startup_pass_with(&store, &venue, &clock, Decimal::ZERO, 5)
            .await
            .unwrap();

        assert_eq!(summary.adopted, vec!["manual-1".to_owned()]);
        assert_eq!(summary.venue_open, 5, "one listing of 5 open orders");
        assert_eq!(summary.local_checked, 12 + 40 - 4, "the rest, one by one");
        for o in venue_host.sim.orders() {
            let cid = o.client_order_id.clone().unwrap();
            let local = store.find_order(&cid).await.unwrap().unwrap();
            assert_eq!(local.status, o.status, "{cid}");
            assert_eq!(local.filled_quantity, o.filled_quantity, "{cid}");
        }
        let ours = store.positions_now().await.unwrap();
        assert_eq!(
            ours.get("BTC/USD"),
            Some(&Decimal::new(12, 3)),
            "lost fills booked"
        );
        assert!(summary.drift.is_empty(), "{:?}", summary.drift);
    }
}
