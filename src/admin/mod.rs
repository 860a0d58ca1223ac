//! The admin listener: health and readiness, Prometheus metrics, the dashboard page, what the bot
//! knows (orders, positions, balances, signal decisions, events, dead letters, a PnL curve), and
//! the few operator mutations (halt, reduce and resume are in `control`).
//!
//! Guarantees: every read endpoint is side-effect free. Every mutation sits behind `auth::protect`
//! (a bearer token from config; without one, mutations are disabled, not open) and goes through
//! the same paths the bot itself uses: a cancel is a signed `DELETE /orders/{id}` whose answer is
//! reconciled like any venue report; a replay only puts a dead letter back in the inbox queue.

pub mod control;

pub mod auth;
pub mod pnl;
pub mod status;
pub mod store_check;

use crate::clock::SharedClock;
use crate::config::Secret;
use crate::executor::cancel::CancelResult;
use crate::notify::Notifier;
use crate::store::{OrderRow, Store, StoreError};
use crate::telemetry::health::{self, Health};
use crate::telemetry::metrics::{self, Metrics};
use crate::venue::VenueClient;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// The dashboard: one static page, no build step; it polls the JSON endpoints below.
const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// Everything the admin handlers read from or act through.
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub health: Health,
    pub metrics: Metrics,
    pub venue: VenueClient,
    pub clock: SharedClock,
    /// Notified after a replay, so the dispatcher picks the event up at once.
    pub inbox_ready: Arc<Notify>,
    pub notifier: Notifier,
    pub mode: &'static str,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Operator cancels go through the same canceller (and rules) as the bot's own.
    pub canceller: crate::executor::cancel::Canceller,
}

/// The admin router. `token` guards the mutations (`None` disables them).
pub fn router(state: AdminState, token: Option<Secret>) -> Router {
    let mutations = Router::new()
        .route("/api/orders/{client_order_id}/cancel", post(cancel_order))
        .route("/api/events/{seq}/replay", post(replay_event));
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/summary", get(summary))
        .route("/api/orders", get(orders))
        .route("/api/orders/open", get(open_orders))
        .route("/api/positions", get(positions))
        .route("/api/closed-positions", get(closed_positions))
        .route("/api/cash-check", get(cash_check))
        .route("/api/balances", get(balances))
        .route("/api/signals", get(signals))
        .route("/api/events", get(events))
        .route("/api/events/recent", get(recent_events))
        .route("/api/event-types", get(event_types))
        .route("/api/transactions", get(transactions))
        .route("/api/events/dead", get(dead_letters))
        .route("/api/equity", get(equity))
        .merge(auth::protect(mutations, token))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct Page {
    limit: Option<i64>,
}

impl Page {
    fn limit(&self) -> i64 {
        self.limit.unwrap_or(500).clamp(1, 10_000)
    }
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD_HTML)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn observe(s: &AdminState) -> health::Observed {
    let now = s.clock.now();
    health::Observed {
        now,
        store: match s.store.ping().await {
            Ok(()) => store_check::verdict(&s.store, now),
            Err(e) => Err(format!("a reader does not answer: {e}")),
        },
        inbox_lag: inbox_lag(s, now).await,
    }
}

async fn inbox_lag(s: &AdminState, now: chrono::DateTime<chrono::Utc>) -> Option<chrono::Duration> {
    let oldest = s.store.oldest_pending_event().await.ok().flatten()?;
    let at = crate::venue::wire::parse_timestamp(&oldest)?;
    Some((now - at).max(chrono::Duration::zero()))
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    failing: Vec<health::FailedCheck>,
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let failing = health::failing_checks(&s.health, &observe(&s).await);
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready: failing.is_empty(),
            failing,
        }),
    )
        .into_response()
}

async fn metrics_text(State(s): State<AdminState>) -> Response {
    let now = s.clock.now();
    let snapshot = metrics::StoreSnapshot {
        orders: s.store.order_counts().await.unwrap_or_default(),
        inbox: s.store.event_counts().await.unwrap_or_default(),
        inbox_lag: inbox_lag(&s, now).await,
        drift_symbols: s
            .store
            .list_positions()
            .await
            .map(|p| p.iter().filter(|p| pnl::drifts(p)).count() as i64)
            .unwrap_or(0),
    };
    s.metrics.observe_store(&snapshot);
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        s.metrics.encode(),
    )
        .into_response()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    mode: &'static str,
    started_at: String,
    now: String,
    ready: bool,
    failing: Vec<health::FailedCheck>,
    venue_last_ok_at: Option<String>,
    inbox: BTreeMap<String, i64>,
    /// Age of the oldest unprocessed event, in milliseconds.
    inbox_lag_ms: Option<i64>,
    orders: BTreeMap<String, i64>,
    decisions: BTreeMap<String, i64>,
    open_orders: Vec<OrderRow>,
    /// Open positions only; the totals below count closed ones too.
    positions: Vec<pnl::PositionPnl>,
    /// Before fees.
    realized_pnl: Decimal,
    unrealized_pnl: Decimal,
    fees: Decimal,
    /// Realized plus unrealized, after fees.
    net_pnl: Decimal,
    recent_events: Vec<crate::store::EventView>,
}

async fn summary(State(s): State<AdminState>) -> Response {
    let result: Result<Summary, StoreError> = async {
        let seen = observe(&s).await;
        let failing = health::failing_checks(&s.health, &seen);
        let (positions, totals) = pnl::positions(&s.store).await?;
        Ok(Summary {
            mode: s.mode,
            started_at: crate::clock::ts(s.started_at),
            now: crate::clock::ts(seen.now),
            ready: failing.is_empty(),
            failing,
            venue_last_ok_at: s.health.venue_ok_at().map(crate::clock::ts),
            inbox: s.store.event_counts().await?.into_iter().collect(),
            inbox_lag_ms: seen.inbox_lag.map(|d| d.num_milliseconds()),
            orders: s.store.order_counts().await?.into_iter().collect(),
            decisions: s.store.decision_counts().await?.into_iter().collect(),
            open_orders: s.store.open_orders().await?,
            realized_pnl: totals.realized_pnl,
            unrealized_pnl: totals.unrealized_pnl,
            fees: totals.fees,
            net_pnl: totals.net(),
            positions: positions
                .into_iter()
                .filter(|p| !p.position.quantity.is_zero())
                .collect(),
            recent_events: s.store.recent_events(None, 10).await?,
        })
    }
    .await;
    json(result)
}

async fn orders(State(s): State<AdminState>, Query(page): Query<Page>) -> Response {
    json(s.store.list_orders(page.limit()).await)
}

async fn open_orders(State(s): State<AdminState>) -> Response {
    json(s.store.open_orders().await)
}

/// Every position our fills made, open or closed, marked as `pnl` defines.
async fn positions(State(s): State<AdminState>) -> Response {
    json(
        pnl::positions(&s.store)
            .await
            .map(|(positions, _)| positions),
    )
}

/// Closed positions, newest first: our realized PnL beside the venue's `position.closed`.
async fn closed_positions(State(s): State<AdminState>, Query(page): Query<Page>) -> Response {
    json(s.store.list_closed_positions(page.limit()).await)
}

/// The cash check's baseline and the last balance drift it reported, both views.
async fn cash_check(State(s): State<AdminState>) -> Response {
    json(s.store.cash_check_values().await.map(|values| {
        values
            .into_iter()
            .map(|(name, (value, at))| {
                let key = name.trim_start_matches("cash_").to_owned();
                (key, serde_json::json!({"value": value, "updatedAt": at}))
            })
            .collect::<BTreeMap<String, serde_json::Value>>()
    }))
}

async fn balances(State(s): State<AdminState>) -> Response {
    json(s.store.list_balances().await)
}

async fn signals(State(s): State<AdminState>, Query(page): Query<Page>) -> Response {
    json(s.store.list_decisions(page.limit()).await)
}

async fn events(State(s): State<AdminState>) -> Response {
    json(
        s.store
            .event_counts()
            .await
            .map(|counts| counts.into_iter().collect::<BTreeMap<String, i64>>()),
    )
}

#[derive(Debug, Deserialize)]
struct EventFilter {
    limit: Option<i64>,
    status: Option<String>,
}

async fn recent_events(State(s): State<AdminState>, Query(f): Query<EventFilter>) -> Response {
    let limit = f.limit.unwrap_or(100).clamp(1, 10_000);
    json(s.store.list_events(f.status.as_deref(), limit).await)
}

async fn dead_letters(State(s): State<AdminState>, Query(page): Query<Page>) -> Response {
    json(s.store.recent_events(Some("dead"), page.limit()).await)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Equity {
    /// PnL taken every `[admin] pnl_sample_secs`, oldest first.
    samples: Vec<crate::store::PnlSample>,
    /// Orders with fills since the first sample, to mark on the curve.
    fills: Vec<crate::store::FillMark>,
}

/// The PnL curve: the newest samples (`?limit=N`, default 600) and the fills among them.
async fn equity(State(s): State<AdminState>, Query(page): Query<EquityPage>) -> Response {
    let result: Result<Equity, StoreError> = async {
        let samples = s
            .store
            .recent_pnl_samples(page.limit.unwrap_or(600).clamp(2, 10_000))
            .await?;
        let fills = match samples.first() {
            Some(first) => s.store.fill_marks_since(&first.at).await?,
            None => Vec::new(),
        };
        Ok(Equity { samples, fills })
    }
    .await;
    json(result)
}

#[derive(Debug, Deserialize)]
struct EquityPage {
    limit: Option<i64>,
}

/// Inbox counts by event type: unknown event types show up here.
async fn event_types(State(s): State<AdminState>) -> Response {
    json(s.store.event_type_counts().await.map(|counts| {
        counts
            .into_iter()
            .collect::<std::collections::BTreeMap<String, i64>>()
    }))
}

/// Deposits and withdrawals from `account.*` events, newest first.
async fn transactions(State(s): State<AdminState>) -> Response {
    json(s.store.list_transactions().await)
}

fn is_final(status: &str) -> bool {
    matches!(status, "filled" | "cancelled" | "rejected" | "expired")
}

/// `POST /api/orders/{clientOrderId}/cancel`: records a cancel request and drives it at once
/// through the canceller (a signed `DELETE /orders/{orderId}` under the placement outcome rules).
/// 200 with the order when it is no longer working; 409 when the venue refused; 202 with the order
/// when the outcome is not known yet (the bot keeps resolving it; the order's `cancel` shows how).
async fn cancel_order(
    State(s): State<AdminState>,
    Path(client_order_id): Path<String>,
) -> Response {
    let order = match s.store.find_order(&client_order_id).await {
        Ok(Some(o)) => o,
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", "no such order".into()),
        Err(e) => return store_error(e),
    };
    if is_final(&order.status) {
        return error(
            StatusCode::CONFLICT,
            "not_cancellable",
            format!("the order is {}; nothing to cancel", order.status),
        );
    }
    if order.order_id.is_none() {
        return error(
            StatusCode::CONFLICT,
            "not_acknowledged",
            "the venue has not acknowledged this order yet (no orderId); try again shortly".into(),
        );
    }
    tracing::info!(client_order_id = %client_order_id, "cancel requested by the operator");
    let driven = async {
        s.canceller
            .request(&client_order_id, "operator", true)
            .await?;
        s.canceller.drive_order(&client_order_id).await
    }
    .await;
    let status = match driven {
        Ok(CancelResult::Accepted { .. }) => StatusCode::OK,
        Ok(CancelResult::Rejected { code, message }) => {
            return error(
                StatusCode::CONFLICT,
                "venue_refused",
                format!("the venue refused the cancel ({code}: {message})"),
            )
        }
        Ok(CancelResult::Unknown { .. } | CancelResult::Waiting) => StatusCode::ACCEPTED,
        Err(e) => return store_error(e),
    };
    match s.store.find_order(&client_order_id).await {
        Ok(Some(order)) => (status, Json(order)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such order".into()),
        Err(e) => store_error(e),
    }
}

/// `POST /api/events/{seq}/replay`: puts a dead letter back in the inbox queue.
async fn replay_event(State(s): State<AdminState>, Path(seq): Path<i64>) -> Response {
    match s.store.replay_dead_letter(seq).await {
        Ok(true) => {
            tracing::info!(seq, "dead letter replayed by the operator");
            s.inbox_ready.notify_one();
            Json(serde_json::json!({"seq": seq, "status": "pending"})).into_response()
        }
        Ok(false) => error(
            StatusCode::CONFLICT,
            "not_dead",
            format!("event {seq} does not exist or is not a dead letter"),
        ),
        Err(e) => store_error(e),
    }
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn store_error(e: StoreError) -> Response {
    tracing::error!(error = %e, "admin query failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "store",
        "database query failed".into(),
    )
}

fn json<T: serde::Serialize>(result: Result<T, StoreError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => store_error(e),
    }
}
