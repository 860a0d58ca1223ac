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
pub mod health;
pub mod metrics;
pub mod status;
pub mod store_check;

use crate::clock::SharedClock;
use crate::config::Secret;
use crate::executor::cancel::CancelResult;
use crate::notify::Notifier;
use crate::store::{OrderRow, Store, StoreError};
use crate::venue::VenueClient;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use health::Health;
use metrics::Metrics;
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
            .map(|p| p.iter().filter(|p| drifts(p)).count() as i64)
            .unwrap_or(0),
    };
    s.metrics.observe_store(&snapshot);
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        s.metrics.encode(),
    )
        .into_response()
}

/// The venue's last reported quantity, signed like ours (short < 0).
fn venue_signed_quantity(p: &crate::store::PositionView) -> Option<Decimal> {
    let q = p.venue_quantity?;
    Some(match p.venue_side.as_deref() {
        Some("short") => -q.abs(),
        Some("long") => q.abs(),
        _ => q,
    })
}

/// Our position disagrees with the venue's last report about it.
fn drifts(p: &crate::store::PositionView) -> bool {
    venue_signed_quantity(p).is_some_and(|v| v != p.quantity)
}

/// A position with its PnL, marked at the venue's mark price, else our last fill price.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PositionWithPnl {
    #[serde(flatten)]
    position: crate::store::PositionView,
    mark_price: Option<Decimal>,
    unrealized_pnl: Decimal,
    /// The venue's quantity, signed like ours.
    venue_signed_quantity: Option<Decimal>,
    drift: bool,
}

fn with_pnl(p: crate::store::PositionView) -> PositionWithPnl {
    let mark = p.venue_mark_price.or(p.last_price);
    let unrealized = mark.map_or(Decimal::ZERO, |m| p.quantity * (m - p.average_price));
    PositionWithPnl {
        drift: drifts(&p),
        venue_signed_quantity: venue_signed_quantity(&p),
        mark_price: mark,
        unrealized_pnl: unrealized.round_dp(8),
        position: p,
    }
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
    positions: Vec<PositionWithPnl>,
    /// Before fees.
    realized_pnl: Decimal,
    unrealized_pnl: Decimal,
    fees: Decimal,
    recent_events: Vec<crate::store::EventView>,
}

async fn summary(State(s): State<AdminState>) -> Response {
    let result: Result<Summary, StoreError> = async {
        let seen = observe(&s).await;
        let failing = health::failing_checks(&s.health, &seen);
        let positions: Vec<_> = s
            .store
            .list_positions()
            .await?
            .into_iter()
            .map(with_pnl)
            .collect();
        Ok(Summary {
            mode: s.mode,
            started_at: crate::store::ts(s.started_at),
            now: crate::store::ts(seen.now),
            ready: failing.is_empty(),
            failing,
            venue_last_ok_at: s.health.venue_ok_at().map(crate::store::ts),
            inbox: s.store.event_counts().await?.into_iter().collect(),
            inbox_lag_ms: seen.inbox_lag.map(|d| d.num_milliseconds()),
            orders: s.store.order_counts().await?.into_iter().collect(),
            decisions: s.store.decision_counts().await?.into_iter().collect(),
            open_orders: s.store.open_orders().await?,
            realized_pnl: positions.iter().map(|p| p.position.realized_pnl).sum(),
            unrealized_pnl: positions.iter().map(|p| p.unrealized_pnl).sum(),
            fees: positions.iter().map(|p| p.position.fees).sum(),
            positions,
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

async fn positions(State(s): State<AdminState>) -> Response {
    json(s.store.list_positions().await)
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

/// The PnL curve from every fill, oldest first.
async fn equity(State(s): State<AdminState>) -> Response {
    json(s.store.filled_orders_by_time().await.map(|orders| {
        let fills: Vec<_> = orders
            .into_iter()
            .filter_map(|o| {
                let sign = if o.side == "sell" {
                    Decimal::NEGATIVE_ONE
                } else {
                    Decimal::ONE
                };
                Some(crate::portfolio::FillPoint {
                    at: o.updated_at,
                    symbol: o.symbol,
                    signed_quantity: sign * o.filled_quantity,
                    price: o.average_price?,
                })
            })
            .collect();
        crate::portfolio::pnl_curve(&fills)
    }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_compares_the_venue_quantity_signed_by_its_side() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let cases = [
            ("agreeing long", "1.5", Some("1.5"), Some("long"), false),
            (
                "short reported unsigned",
                "-1.5",
                Some("1.5"),
                Some("short"),
                false,
            ),
            (
                "short reported signed",
                "-1.5",
                Some("-1.5"),
                Some("short"),
                false,
            ),
            ("no side, signed", "-1.5", Some("-1.5"), None, false),
            ("venue has less", "2", Some("1.5"), Some("long"), true),
            (
                "venue says short, we are long",
                "1.5",
                Some("1.5"),
                Some("short"),
                true,
            ),
            ("no venue report", "1", None, None, false),
        ];
        for (name, ours, venue, side, drift) in cases {
            let p = crate::store::PositionView {
                symbol: "BTC/USD".into(),
                quantity: d(ours),
                average_price: d("100"),
                realized_pnl: Decimal::ZERO,
                fees: Decimal::ZERO,
                net_realized_pnl: Decimal::ZERO,
                last_price: None,
                venue_quantity: venue.map(d),
                venue_side: side.map(str::to_owned),
                venue_mark_price: None,
                venue_unrealized_pnl: None,
                updated_at: String::new(),
            };
            assert_eq!(drifts(&p), drift, "{name}");
        }
    }
}
