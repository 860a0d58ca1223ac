//! The admin endpoints that change trading state, behind a bearer token from the config
//! (`[admin] token`, from `SIGEX_ADMIN__TOKEN` or `token_file`). Without a token they do not
//! exist (404): nothing mutates trading state without authentication. Reading the state
//! (`GET /api/trading-state`) needs no token, like the other read endpoints.
//!
//! - `POST /api/admin/halt` `{"reason": "...", "symbol": "BTC/USD"?}` → halted
//! - `POST /api/admin/reduce` `{"reason": "...", "symbol"?}` → reducing
//! - `POST /api/admin/resume` `{"reason"?: "...", "symbol"?}` → active

use crate::clock::SharedClock;
use crate::config::Secret;
use crate::risk::state::{SetBy, StateEntry, TradingState};
use crate::store::Store;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

#[derive(Clone)]
struct Control {
    store: Store,
    token: Option<Secret>,
    clock: SharedClock,
}

pub fn router(store: Store, token: Option<Secret>, clock: SharedClock) -> Router {
    let control = Control {
        store,
        token,
        clock,
    };
    let mut r = Router::new()
        .route("/api/trading-state", get(trading_state))
        .route("/api/maintenance", get(maintenance));
    if control.token.is_some() {
        r = r
            .route("/api/admin/halt", post(halt))
            .route("/api/admin/reduce", post(reduce))
            .route("/api/admin/resume", post(resume));
    }
    r.with_state(control)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRequest {
    symbol: Option<String>,
    reason: Option<String>,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn authorized(control: &Control, headers: &HeaderMap) -> bool {
    let given = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    super::auth::check(control.token.as_ref(), given) == super::auth::Verdict::Allowed
}

async fn trading_state(State(c): State<Control>) -> Response {
    let states = c.store.list_trading_states().await;
    let windows = c.store.list_windows().await;
    match (states, windows) {
        (Ok(states), Ok(windows)) => {
            // `state` and `reasons` summarise for the dashboard and `sigex status`: the account's
            // own state, and every entry that is not active.
            let account = states
                .iter()
                .find(|s| s.symbol.is_none())
                .map_or(TradingState::Active, |s| s.state);
            let reasons: Vec<String> = states
                .iter()
                .filter(|s| s.state != TradingState::Active)
                .map(|s| {
                    format!(
                        "{}: {} since {} ({})",
                        s.symbol.as_deref().unwrap_or("account"),
                        s.state.as_str(),
                        s.since.format("%Y-%m-%d %H:%M:%SZ"),
                        s.reason
                    )
                })
                .collect();
            Json(serde_json::json!({
                "state": account.as_str(),
                "reasons": reasons,
                "states": states,
                "maintenanceWindows": windows,
            }))
            .into_response()
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "admin query failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store",
                "database query failed",
            )
        }
    }
}

/// Maintenance windows for the dashboard: `{"windows": [{start, end, status, message}]}`.
async fn maintenance(State(c): State<Control>) -> Response {
    match c.store.list_windows().await {
        Ok(windows) => {
            let now = c.clock.now();
            let windows: Vec<_> = windows
                .iter()
                .map(|w| {
                    let status = if w.reconciled_at.is_some() {
                        "over, reconciled"
                    } else if now < w.start {
                        "scheduled"
                    } else if now <= w.end {
                        "in progress"
                    } else {
                        "over, awaiting reconciliation"
                    };
                    serde_json::json!({
                        "start": w.start,
                        "end": w.end,
                        "status": status,
                        "message": format!("{} ({})", w.description, w.services.join(", ")),
                    })
                })
                .collect();
            Json(serde_json::json!({ "windows": windows })).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "admin query failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store",
                "database query failed",
            )
        }
    }
}

async fn halt(State(c): State<Control>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    change(c, headers, body, TradingState::Halted).await
}

async fn reduce(State(c): State<Control>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    change(c, headers, body, TradingState::Reducing).await
}

async fn resume(State(c): State<Control>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    change(c, headers, body, TradingState::Active).await
}

async fn change(
    c: Control,
    headers: HeaderMap,
    body: axum::body::Bytes,
    state: TradingState,
) -> Response {
    if !authorized(&c, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <[admin] token>",
        );
    }
    let req: ChangeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
    };
    let entry = match build_entry(req, state, c.clock.now()) {
        Ok(e) => e,
        Err(m) => return error(StatusCode::BAD_REQUEST, "invalid_request", &m),
    };
    match c.store.set_trading_state_now(&entry).await {
        Ok(()) => {
            tracing::warn!(symbol = ?entry.symbol, state = entry.state.as_str(), reason = %entry.reason, "trading state changed by the admin API");
            Json(entry).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store the trading state");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store",
                "database write failed",
            )
        }
    }
}

/// Shared by the admin API and the CLI: validates a requested state change.
pub fn build_entry_from(
    symbol: Option<String>,
    reason: Option<String>,
    state: TradingState,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<StateEntry, String> {
    build_entry(ChangeRequest { symbol, reason }, state, now)
}

fn build_entry(
    req: ChangeRequest,
    state: TradingState,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<StateEntry, String> {
    if let Some(s) = &req.symbol {
        crate::model::Symbol::parse(s).map_err(|e| e.to_string())?;
    }
    let reason = req.reason.unwrap_or_default().trim().to_owned();
    if reason.is_empty() && state != TradingState::Active {
        return Err("a reason is required (it is shown with every refused signal)".into());
    }
    Ok(StateEntry {
        symbol: req.symbol,
        state,
        reason: if reason.is_empty() {
            "resumed by the operator".into()
        } else {
            reason
        },
        since: now,
        set_by: SetBy::Operator,
    })
}
