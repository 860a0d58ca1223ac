//! The HTTP edge for venue webhooks: body limit, signature check over the raw bytes, dedupe key,
//! durable insert into the inbox, then 200. It decides nothing about trading.
//!
//! Answers: 401 when the signature is missing or wrong (nothing is stored), 413 over the body limit,
//! 503 when the inbox cannot commit or the bot is draining for shutdown (the venue retries), 200
//! once the event is committed or was already stored.

pub mod events;
pub mod signature;

use crate::admin::health::Health;
use crate::admin::metrics::Metrics;
use crate::clock::SharedClock;
use crate::config::Secret;
use crate::inbox::{dedupe_key, Inbox, Inserted};
use crate::store::NewEvent;
use crate::venue::wire;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use std::sync::Arc;

/// Longest event name stored as is; longer ones are cut (the raw body keeps the original).
const MAX_EVENT_NAME: usize = 64;

#[derive(Clone)]
struct IngressState {
    secret: Secret,
    inbox: Inbox,
    clock: SharedClock,
    health: Health,
    metrics: Metrics,
}

/// What ingress reports into: draining (read) and counters (written).
pub struct Observers {
    pub health: Health,
    pub metrics: Metrics,
}

pub fn router(
    path: &str,
    secret: Secret,
    inbox: Inbox,
    clock: SharedClock,
    max_body_bytes: usize,
    observers: Observers,
) -> Router {
    Router::new()
        .route(path, post(receive))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(Arc::new(IngressState {
            secret,
            inbox,
            clock,
            health: observers.health,
            metrics: observers.metrics,
        }))
}

async fn receive(
    State(state): State<Arc<IngressState>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    if state.health.is_draining() {
        state.metrics.webhook_rejected("draining");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "shutting down; retry later".into(),
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let reason = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "unreadable_body"
            };
            state.metrics.webhook_rejected(reason);
            return rejection.into_response();
        }
    };
    let signature = headers
        .get(wire::HEADER_WEBHOOK_SIGNATURE)
        .map(|v| v.as_bytes());
    if let Err(e) = signature::verify(state.secret.expose().as_bytes(), &body, signature) {
        tracing::warn!(
            reason = e.label(),
            bytes = body.len(),
            "webhook refused: bad signature"
        );
        state.metrics.webhook_rejected(e.label());
        return reply(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string());
    }
    let (event_type, data_id) = match serde_json::from_slice::<wire::Envelope>(&body) {
        Ok(env) => {
            let name = env.event.chars().take(MAX_EVENT_NAME).collect();
            (name, wire::data_id(&env.data))
        }
        // Signed but unreadable: stored anyway, so the operator sees it as a dead letter.
        Err(_) => ("(unreadable)".to_owned(), None),
    };
    let header_id = headers
        .get(wire::HEADER_WEBHOOK_ID)
        .and_then(|v| v.to_str().ok());
    let event = NewEvent {
        dedupe_key: dedupe_key(header_id, data_id.as_deref(), &body),
        event_type: event_type.clone(),
        received_at: state.clock.now(),
        body,
    };
    match state.inbox.store(event).await {
        Ok(Inserted::New(seq)) => {
            tracing::debug!(seq, "webhook stored");
            state.metrics.webhook_received(&event_type);
            reply(StatusCode::OK, "accepted", String::new())
        }
        Ok(Inserted::Duplicate) => {
            state.metrics.webhook_duplicate(&event_type);
            reply(StatusCode::OK, "duplicate", String::new())
        }
        Err(e) => {
            state.metrics.webhook_rejected("inbox_unavailable");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            )
        }
    }
}

fn reply(status: StatusCode, word: &str, message: String) -> Response {
    let body = if status.is_success() {
        serde_json::json!({ "status": word })
    } else {
        serde_json::json!({ "error": { "code": word, "message": message } })
    };
    (status, Json(body)).into_response()
}
