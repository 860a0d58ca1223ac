//! The HTTP edge for venue webhooks. It decides nothing about trading; it makes sure that what
//! enters the inbox came from the venue, and that nothing the venue was told is stored gets lost.
//!
//! Checks, cheapest first: draining for shutdown (503), source allowlist (403), per-source rate
//! limit (429), content type (415), body size (413) and read time (408), then the HMAC over the raw
//! bytes (401). Only a signed body is stored, under a dedupe key from its signed bytes alone; it
//! gets 200 once committed (or when already stored: a duplicate), 503 if the inbox cannot commit
//! (the venue retries). A signed body that is not a
//! usable event is stored too and becomes a dead letter the operator can see. Every refusal is
//! counted by reason in the metrics.

pub mod guard;
pub mod server;
pub mod signature;

use crate::clock::SharedClock;
use crate::config::WebhookConfig;
use crate::inbox::{self, Inbox, Inserted};
use crate::store::NewEvent;
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;
use crate::venue::wire;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use guard::{LogThrottle, RateLimiter};
use ipnet::IpNet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest event name stored as is; longer ones are cut (the raw body keeps the original).
const MAX_EVENT_NAME: usize = 64;
/// The event type recorded for a signed body with no readable event name.
const UNREADABLE: &str = "(unreadable)";
/// Longest `X-Webhook-Id` kept for display.
const MAX_WEBHOOK_ID: usize = 128;
/// At most one log line this often per kind of refusal a flood can cause (bad signatures, sources
/// not allowed, connections shed); `sigex_webhooks_rejected_total` counts every one.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

struct IngressState {
    config: WebhookConfig,
    allowlist: Vec<IpNet>,
    trusted_proxies: Vec<IpNet>,
    rate_limiter: Option<RateLimiter>,
    inbox: Inbox,
    clock: SharedClock,
    health: Health,
    metrics: Metrics,
    bad_signature_log: LogThrottle,
    forbidden_log: LogThrottle,
}

/// What ingress reports into: draining (read) and counters (written).
pub struct Observers {
    pub health: Health,
    pub metrics: Metrics,
}

pub fn router(
    config: &WebhookConfig,
    inbox: Inbox,
    clock: SharedClock,
    observers: Observers,
) -> Router {
    let state = IngressState {
        allowlist: config.allow_sources.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        rate_limiter: RateLimiter::new(config.rate_limit_per_second, config.rate_limit_burst),
        config: config.clone(),
        inbox,
        clock,
        health: observers.health,
        metrics: observers.metrics,
        bad_signature_log: LogThrottle::new(REFUSAL_LOG_EVERY),
        forbidden_log: LogThrottle::new(REFUSAL_LOG_EVERY),
    };
    Router::new()
        .route(&config.path, post(receive))
        .with_state(Arc::new(state))
}

async fn receive(State(state): State<Arc<IngressState>>, request: Request) -> Response {
    if state.health.is_draining() {
        state.metrics.webhook_rejected("draining");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "shutting down; retry later",
        );
    }
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let forwarded = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let client = guard::client_addr(peer, forwarded, &state.trusted_proxies);
    if !guard::allowed(client, &state.allowlist) {
        if let Some(held_back) = state.forbidden_log.allow(Instant::now()) {
            tracing::warn!(%client, held_back, "webhook refused: source not in the allowlist");
        }
        state.metrics.webhook_rejected("forbidden_source");
        return reply(
            StatusCode::FORBIDDEN,
            "forbidden",
            "source address not allowed",
        );
    }
    if let Some(rl) = &state.rate_limiter {
        if !rl.allow(client, Instant::now()) {
            state.metrics.webhook_rejected("rate_limited");
            return reply(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this source",
            );
        }
    }
    if !is_json(&parts.headers) {
        state.metrics.webhook_rejected("content_type");
        return reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        );
    }
    let body = match read_body(body, state.config.max_body_bytes, state.config.read_timeout).await {
        Ok(b) => b,
        Err(refusal) => {
            state.metrics.webhook_rejected(refusal.reason());
            return refusal.response();
        }
    };
    let signature = parts
        .headers
        .get(wire::HEADER_WEBHOOK_SIGNATURE)
        .map(|v| v.as_bytes());
    if let Err(e) = signature::verify(state.config.secret.expose().as_bytes(), &body, signature) {
        if let Some(held_back) = state.bad_signature_log.allow(Instant::now()) {
            tracing::warn!(%client, reason = e.label(), bytes = body.len(), held_back, "webhook refused: bad signature");
        }
        state.metrics.webhook_rejected(e.label());
        return reply(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string());
    }
    // One parse: the event name for the metrics, and the dedupe key from the signed bytes.
    let (event_type, dedupe_key) = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(value) => (
            value
                .get("event")
                .and_then(serde_json::Value::as_str)
                .map(|e| e.chars().take(MAX_EVENT_NAME).collect())
                .unwrap_or_else(|| UNREADABLE.to_owned()),
            inbox::dedupe_key_of(&value),
        ),
        // Signed but unreadable: stored anyway, so the operator sees it as a dead letter.
        Err(_) => (UNREADABLE.to_owned(), inbox::dedupe_key(&body)),
    };
    let event = NewEvent {
        dedupe_key,
        event_type: event_type.clone(),
        received_at: state.clock.now(),
        body,
        webhook_id: webhook_id(&parts.headers),
    };
    match state.inbox.store(event).await {
        Ok(Inserted::New(seq)) => {
            tracing::debug!(seq, "webhook stored");
            state.metrics.webhook_received(&event_type);
            reply(StatusCode::OK, "accepted", "")
        }
        Ok(Inserted::Duplicate) => {
            state.metrics.webhook_duplicate(&event_type);
            reply(StatusCode::OK, "duplicate", "")
        }
        Err(e) => {
            state.metrics.webhook_rejected("inbox_unavailable");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                &e.to_string(),
            )
        }
    }
}

/// The unsigned `X-Webhook-Id` header, printable and cut to a display length: shown with the
/// event, never used as a key.
fn webhook_id(headers: &HeaderMap) -> Option<String> {
    let id = headers.get(wire::HEADER_WEBHOOK_ID)?.to_str().ok()?.trim();
    (!id.is_empty()).then(|| id.chars().take(MAX_WEBHOOK_ID).collect())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Why a webhook body was not read. Small on purpose: the `Response` is built only when the
/// refusal is answered, so the `Result` carrying it stays cheap to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyRefusal {
    Timeout,
    TooLarge,
    Unreadable,
}

impl BodyRefusal {
    /// The `sigex_webhooks_rejected_total` reason.
    fn reason(self) -> &'static str {
        match self {
            Self::Timeout => "body_timeout",
            Self::TooLarge => "too_large",
            Self::Unreadable => "unreadable_body",
        }
    }

    fn response(self) -> Response {
        match self {
            Self::Timeout => reply(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "request body not received in time",
            ),
            Self::TooLarge => reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "request body too large",
            ),
            Self::Unreadable => reply(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "request body could not be read",
            ),
        }
    }
}

/// Reads the whole body within `limit` bytes and `timeout`.
async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, BodyRefusal> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(BodyRefusal::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyRefusal::TooLarge),
        Ok(Err(_)) => Err(BodyRefusal::Unreadable),
    }
}

fn reply(status: StatusCode, word: &str, message: &str) -> Response {
    let body = if status.is_success() {
        serde_json::json!({ "status": word })
    } else {
        serde_json::json!({ "error": { "code": word, "message": message } })
    };
    (status, Json(body)).into_response()
}
