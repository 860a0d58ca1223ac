//! The read-only admin API: health and what the bot knows (orders, positions, balances, signal
//! decisions, inbox counts). Nothing here mutates trading state; `control` does, behind a token.

pub mod control;

use crate::store::Store;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

pub fn router(store: Store) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/orders", get(orders))
        .route("/api/positions", get(positions))
        .route("/api/balances", get(balances))
        .route("/api/signals", get(signals))
        .route("/api/events", get(events))
        .route("/api/events/recent", get(recent_events))
        .route("/api/event-types", get(event_types))
        .route("/api/transactions", get(transactions))
        .with_state(store)
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

async fn healthz() -> &'static str {
    "ok"
}

async fn orders(State(store): State<Store>, Query(page): Query<Page>) -> Response {
    json(store.list_orders(page.limit()).await)
}

async fn positions(State(store): State<Store>) -> Response {
    json(store.list_positions().await)
}

async fn balances(State(store): State<Store>) -> Response {
    json(store.list_balances().await)
}

async fn signals(State(store): State<Store>, Query(page): Query<Page>) -> Response {
    json(store.list_decisions(page.limit()).await)
}

async fn events(State(store): State<Store>) -> Response {
    json(store.event_counts().await.map(|counts| {
        counts
            .into_iter()
            .collect::<std::collections::BTreeMap<String, i64>>()
    }))
}

#[derive(Debug, Deserialize)]
struct EventFilter {
    status: Option<String>,
    limit: Option<i64>,
}

/// Recent events, newest first; `?status=dead` lists the dead letters.
async fn recent_events(State(store): State<Store>, Query(f): Query<EventFilter>) -> Response {
    let limit = f.limit.unwrap_or(100).clamp(1, 10_000);
    json(store.list_events(f.status.as_deref(), limit).await)
}

async fn event_types(State(store): State<Store>) -> Response {
    json(store.event_type_counts().await.map(|counts| {
        counts
            .into_iter()
            .collect::<std::collections::BTreeMap<String, i64>>()
    }))
}

async fn transactions(State(store): State<Store>) -> Response {
    json(store.list_transactions().await)
}

fn json<T: serde::Serialize>(result: Result<T, crate::store::StoreError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "admin query failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({"error": {"code": "store", "message": "database query failed"}})),
            )
                .into_response()
        }
    }
}
