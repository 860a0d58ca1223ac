//! The REST surface of the simulated venue under `/api/v1`, as `vibe-api.md` describes it.
//!
//! Owns routing, the signature gate in front of every route, the wire shapes of requests and responses,
//! and the mapping of every failure to `{"error":{"code","message"}}` with its HTTP status. Guarantees:
//! - no handler runs before the request's signature has been checked over the raw path-and-query (as
//!   received, percent-encoding kept) and the raw body bytes;
//! - numbers in a request must be JSON numbers and are read straight into `Decimal`; numbers in a
//!   response are exact JSON numbers;
//! - a repeated `clientOrderId` answers 409 with the existing order and never creates a second one;
//! - during a maintenance window every authenticated request answers 503; injected REST faults (5xx,
//!   429 with `Retry-After`, no answer, or an order request processed whose answer is lost or
//!   replaced by a 500) strike after the signature check, so they never hide a signing bug.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::Utc;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::{self, SignedRequest};
use super::book::{
    iso, CancelError, OrderFilter, OrderKind, OrderRequest, PlaceError, Quote, Side, SimOrder,
    TimeInForce,
};
use super::faults::RestFate;
use super::webhooks::Registration;
use super::{Inner, PlaceOutcome};

/// Orders are a few hundred bytes; anything far larger is a client bug or abuse.
const MAX_BODY: usize = 64 * 1024;
const DEFAULT_LIST_LIMIT: usize = 100;
const MAX_LIST_LIMIT: usize = 1000;

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/api/v1/orders", get(list_orders).post(create_order))
        .route(
            "/api/v1/orders/{order_id}",
            get(get_order).delete(cancel_order),
        )
        .route("/api/v1/positions", get(positions))
        .route("/api/v1/account/balances", get(balances))
        // `{symbol}` is one segment: a client that forgets to encode `/` as `%2F` gets a 404, not a pass.
        .route("/api/v1/market/price/{symbol}", get(price))
        .route("/api/v1/market/prices", get(prices))
        .route("/api/v1/market/candles/{symbol}", get(candles))
        .route("/api/v1/webhooks", get(list_webhooks).post(create_webhook))
        .route("/api/v1/webhooks/test", post(test_webhook))
        .route("/api/v1/webhooks/dead-letters", get(dead_letters))
        .route("/api/v1/webhooks/deliveries", get(deliveries))
        .route(
            "/api/v1/webhooks/{id}",
            put(update_webhook).delete(delete_webhook),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Layers run outermost last-added: the signature check first, then maintenance and faults.
        .layer(middleware::from_fn_with_state(inner.clone(), inject_faults))
        .layer(middleware::from_fn_with_state(inner.clone(), authenticate))
        .with_state(inner)
}

/// One error answer of the venue.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<PlaceError> for ApiError {
    fn from(e: PlaceError) -> Self {
        let code = match e {
            PlaceError::UnknownSymbol(_) => "unknown_symbol",
            PlaceError::InsufficientBalance { .. } => "insufficient_balance",
            PlaceError::PositionLimit { .. } => "position_limit_exceeded",
        };
        Self::new(StatusCode::BAD_REQUEST, code, e.to_string())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        Self::invalid(e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::invalid(e.body_text())
    }
}

/// The signature gate. Reads the whole body first, because the signature covers its exact bytes, then
/// hands the same bytes on to the handler.
async fn authenticate(State(inner): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request bodies are limited to {MAX_BODY} bytes"),
        )
        .into_response();
    };
    let verdict = {
        let header = |name: &str| parts.headers.get(name).map(|v| v.as_bytes());
        // The origin-form request target, exactly as the client sent it.
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
        let request = SignedRequest {
            method: parts.method.as_str(),
            path_and_query,
            body: &bytes,
            api_key: header("x-api-key"),
            timestamp: header("x-timestamp"),
            signature: header("x-signature"),
        };
        auth::verify(&inner.credentials(), &request, Utc::now().timestamp())
            .map_err(|e| (e, path_and_query.to_string()))
    };
    if let Err((e, path)) = verdict {
        inner.count_auth_failure();
        tracing::debug!(method = %parts.method, %path, error = %e, "sim refused a request");
        return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
            .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A body that fails at once: the connection drops before the client reads a complete answer.
struct LostBody;

impl futures_core::Stream for LostBody {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(Some(Err(std::io::Error::other(
            "response lost (fault injection)",
        ))))
    }
}

/// Maintenance windows and injected REST faults, after the signature check.
async fn inject_faults(State(inner): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    if inner.in_maintenance() {
        inner.maintenance_refusals.fetch_add(1, Relaxed);
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "maintenance",
            "the venue is under scheduled maintenance",
        )
        .into_response();
    }
    inner.count_request(req.method().as_str(), req.uri().path());
    let faults = &inner.injector().faults;
    match inner
        .injector()
        .rest(req.method().as_str(), req.uri().path())
    {
        RestFate::Normal => next.run(req).await,
        RestFate::ServerError => {
            inner.rest_5xx.fetch_add(1, Relaxed);
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error (fault injection)",
            )
            .into_response()
        }
        RestFate::RateLimited => {
            inner.rest_429.fetch_add(1, Relaxed);
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests (fault injection)",
            )
            .into_response();
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(faults.rest_retry_after_secs),
            );
            resp
        }
        RestFate::TimedOut => {
            inner.rest_timeouts.fetch_add(1, Relaxed);
            tokio::time::sleep(faults.rest_timeout_after).await;
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "no answer in time (fault injection)",
            )
            .into_response()
        }
        RestFate::LoseResponse => {
            let resp = next.run(req).await;
            inner.lost_responses.fetch_add(1, Relaxed);
            let (parts, _) = resp.into_parts();
            Response::from_parts(parts, Body::from_stream(LostBody))
        }
        RestFate::ProcessedSlow => {
            let resp = next.run(req).await;
            inner.slow_responses.fetch_add(1, Relaxed);
            tokio::time::sleep(faults.rest_timeout_after).await;
            resp
        }
        RestFate::ProcessedServerError => {
            let resp = next.run(req).await;
            inner.processed_5xx.fetch_add(1, Relaxed);
            tracing::debug!(status = %resp.status(), "sim processed a request, answering 500 instead (fault injection)");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error after processing (fault injection)",
            )
            .into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// `POST /orders` as sent. Numbers are kept as JSON number text until converted to `Decimal`, so a
/// quantity sent as a string is refused instead of silently accepted.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOrder {
    symbol: String,
    side: String,
    #[serde(rename = "type")]
    order_type: String,
    quantity: serde_json::Number,
    price: Option<serde_json::Number>,
    stop_price: Option<serde_json::Number>,
    time_in_force: Option<String>,
    client_order_id: Option<String>,
}

fn decimal(field: &str, n: &serde_json::Number) -> Result<Decimal, ApiError> {
    let text = n.as_str();
    // `from_str_exact` refuses rather than rounds digits beyond Decimal's 28.
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| ApiError::invalid(format!("{field} {text} is not representable exactly")))
}

impl TryFrom<WireOrder> for OrderRequest {
    type Error = ApiError;

    fn try_from(w: WireOrder) -> Result<Self, ApiError> {
        let side = Side::parse(&w.side).ok_or_else(|| {
            ApiError::invalid(format!("side must be buy or sell, got {:?}", w.side))
        })?;
        let quantity = decimal("quantity", &w.quantity)?;
        let price = w.price.as_ref().map(|n| decimal("price", n)).transpose()?;
        let stop = w
            .stop_price
            .as_ref()
            .map(|n| decimal("stopPrice", n))
            .transpose()?;
        let need = |v: Option<Decimal>, what: &str| {
            v.ok_or_else(|| ApiError::invalid(format!("a {} order needs {what}", w.order_type)))
        };
        // Prices an order type does not use are ignored, as a venue would.
        let kind = match w.order_type.as_str() {
            "market" => OrderKind::Market,
            "limit" => OrderKind::Limit {
                price: need(price, "price")?,
            },
            "stop" => OrderKind::Stop {
                stop: need(stop, "stopPrice")?,
            },
            "stop_limit" => OrderKind::StopLimit {
                price: need(price, "price")?,
                stop: need(stop, "stopPrice")?,
            },
            other => {
                return Err(ApiError::invalid(format!(
                    "type must be market, limit, stop or stop_limit, got {other:?}"
                )))
            }
        };
        let time_in_force = match w.time_in_force.as_deref() {
            None => TimeInForce::Gtc,
            Some(s) => TimeInForce::parse(s).ok_or_else(|| {
                ApiError::invalid(format!("timeInForce must be GTC, IOC or FOK, got {s:?}"))
            })?,
        };
        OrderRequest::new(
            w.symbol,
            side,
            kind,
            quantity,
            time_in_force,
            w.client_order_id,
        )
        .map_err(ApiError::invalid)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrderJson {
    order_id: String,
    client_order_id: Option<String>,
    symbol: String,
    side: String,
    #[serde(rename = "type")]
    order_type: String,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    quantity: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision_option")]
    price: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::arbitrary_precision_option")]
    stop_price: Option<Decimal>,
    time_in_force: String,
    status: String,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    filled_quantity: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision_option")]
    average_price: Option<Decimal>,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fills: Option<Vec<FillJson>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FillJson {
    fill_id: String,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    quantity: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    price: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    fee: Decimal,
    liquidity: String,
    timestamp: String,
}

impl OrderJson {
    /// `fills` only on `GET /orders/{id}`, as the API describes.
    fn new(o: SimOrder, with_fills: bool) -> Self {
        let fills = with_fills.then(|| {
            o.fills
                .iter()
                .map(|f| FillJson {
                    fill_id: f.fill_id.clone(),
                    quantity: f.quantity,
                    price: f.price,
                    fee: f.fee,
                    liquidity: f.liquidity.clone(),
                    timestamp: iso(f.timestamp),
                })
                .collect()
        });
        Self {
            order_id: o.order_id,
            client_order_id: o.client_order_id,
            symbol: o.symbol,
            side: o.side,
            order_type: o.order_type,
            quantity: o.quantity,
            price: o.price,
            stop_price: o.stop_price,
            time_in_force: o.time_in_force,
            status: o.status,
            filled_quantity: o.filled_quantity,
            average_price: o.average_price,
            created_at: iso(o.created_at),
            updated_at: iso(o.updated_at),
            fills,
        }
    }
}

async fn create_order(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        ));
    }
    let wire: WireOrder = serde_json::from_slice(&body).map_err(|e| {
        let code = if e.is_data() {
            "invalid_request"
        } else {
            "invalid_json"
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
    })?;
    let request = OrderRequest::try_from(wire)?;
    Ok(match inner.place(request)? {
        PlaceOutcome::Created(order) => {
            (StatusCode::CREATED, Json(OrderJson::new(order, false))).into_response()
        }
        PlaceOutcome::Duplicate(order) => {
            (StatusCode::CONFLICT, Json(OrderJson::new(order, false))).into_response()
        }
    })
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    symbol: Option<String>,
    #[serde(rename = "clientOrderId")]
    client_order_id: Option<String>,
    limit: Option<String>,
}

async fn list_orders(
    State(inner): State<Arc<Inner>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<OrderJson>>, ApiError> {
    let Query(q) = query?;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIST_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(0) | Err(_) => {
                return Err(ApiError::invalid(format!(
                    "limit must be a whole number from 1 to {MAX_LIST_LIMIT}, got {text:?}"
                )))
            }
            Ok(n) => n.min(MAX_LIST_LIMIT),
        },
    };
    let filter = OrderFilter {
        status: q.status,
        symbol: q.symbol,
        client_order_id: q.client_order_id,
        limit,
    };
    let orders = inner.with_book(|b| b.list(&filter));
    Ok(Json(
        orders
            .into_iter()
            .map(|o| OrderJson::new(o, false))
            .collect(),
    ))
}

async fn get_order(
    State(inner): State<Arc<Inner>>,
    order_id: Result<Path<String>, PathRejection>,
) -> Result<Json<OrderJson>, ApiError> {
    let Path(order_id) = order_id?;
    inner
        .with_book(|b| b.order(&order_id))
        .map(|o| Json(OrderJson::new(o, true)))
        .ok_or_else(|| ApiError::not_found(format!("no order {order_id}")))
}

async fn cancel_order(
    State(inner): State<Arc<Inner>>,
    order_id: Result<Path<String>, PathRejection>,
) -> Result<Json<OrderJson>, ApiError> {
    let Path(order_id) = order_id?;
    match inner.cancel(&order_id) {
        Ok(order) => Ok(Json(OrderJson::new(order, false))),
        Err(CancelError::NotFound) => Err(ApiError::not_found(format!("no order {order_id}"))),
        Err(CancelError::NotCancellable(order)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_cancellable",
            format!("order {order_id} is {}", order.status),
        )),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PositionJson {
    symbol: String,
    side: &'static str,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    quantity: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    average_price: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    unrealized_pnl: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    realized_pnl: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    margin_used: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    mark_price: Decimal,
}

async fn positions(State(inner): State<Arc<Inner>>) -> Json<Vec<PositionJson>> {
    let positions = inner.with_book(|b| b.positions());
    Json(
        positions
            .into_iter()
            .map(|p| PositionJson {
                symbol: p.symbol,
                side: p.side,
                quantity: p.quantity,
                average_price: p.average_price,
                unrealized_pnl: p.unrealized_pnl,
                realized_pnl: p.realized_pnl,
                margin_used: p.margin_used,
                mark_price: p.mark_price,
            })
            .collect(),
    )
}

/// `asset`, `available`, `locked`, `total` as in `account.balance_updated`; the margin and PnL fields
/// are the simulator's own additions.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BalanceJson {
    asset: &'static str,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    available: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    locked: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    total: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    margin_used: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    margin_ratio: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    realized_pnl: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    unrealized_pnl: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    fees_paid: Decimal,
}

async fn balances(State(inner): State<Arc<Inner>>) -> Json<Vec<BalanceJson>> {
    let b = inner.with_book(|b| b.balance());
    Json(vec![BalanceJson {
        asset: "USD",
        available: b.available,
        locked: b.locked,
        total: b.total,
        margin_used: b.locked,
        margin_ratio: b.margin_ratio,
        realized_pnl: b.realized_pnl,
        unrealized_pnl: b.unrealized_pnl,
        fees_paid: b.fees_paid,
    }])
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QuoteJson {
    symbol: String,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    price: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    bid: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    ask: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    bid_size: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    ask_size: Decimal,
    #[serde(
        rename = "volume24h",
        with = "rust_decimal::serde::arbitrary_precision"
    )]
    volume_24h: Decimal,
    timestamp: String,
}

impl QuoteJson {
    fn new(q: Quote, timestamp: &str) -> Self {
        Self {
            symbol: q.symbol,
            price: q.price,
            bid: q.bid,
            ask: q.ask,
            bid_size: q.bid_size,
            ask_size: q.ask_size,
            volume_24h: q.volume_24h,
            timestamp: timestamp.to_string(),
        }
    }
}

fn unknown_symbol(symbol: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "unknown_symbol",
        format!("unknown symbol {symbol}"),
    )
}

async fn price(
    State(inner): State<Arc<Inner>>,
    symbol: Result<Path<String>, PathRejection>,
) -> Result<Json<QuoteJson>, ApiError> {
    // Path extraction percent-decodes: `BTC%2FUSD` arrives here as `BTC/USD`.
    let Path(symbol) = symbol?;
    let quote = inner
        .with_book(|b| b.quote(&symbol))
        .ok_or_else(|| unknown_symbol(&symbol))?;
    Ok(Json(QuoteJson::new(quote, &iso(Utc::now()))))
}

#[derive(Deserialize)]
struct PricesQuery {
    symbols: Option<String>,
}

async fn prices(
    State(inner): State<Arc<Inner>>,
    query: Result<Query<PricesQuery>, QueryRejection>,
) -> Result<Json<Vec<QuoteJson>>, ApiError> {
    let Query(q) = query?;
    let now = iso(Utc::now());
    let quotes = inner.with_book(|b| -> Result<Vec<Quote>, ApiError> {
        match q
            .symbols
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            // Without a list, every symbol the venue trades.
            None => Ok(b.symbols().filter_map(|s| b.quote(s)).collect()),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .map(|s| b.quote(s).ok_or_else(|| unknown_symbol(s)))
                .collect(),
        }
    })?;
    Ok(Json(
        quotes
            .into_iter()
            .map(|q| QuoteJson::new(q, &now))
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CandlesQuery {
    interval: Option<String>,
    start_time: Option<String>,
    end_time: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
struct CandleJson {
    timestamp: String,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    open: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    high: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    low: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    close: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    volume: Decimal,
}

/// `startTime`/`endTime` as RFC 3339 or Unix milliseconds.
fn time_param(name: &str, v: Option<&str>) -> Result<Option<chrono::DateTime<Utc>>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            v.parse::<i64>()
                .ok()
                .and_then(chrono::DateTime::from_timestamp_millis)
        })
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{name} must be RFC 3339 or Unix milliseconds, got {v:?}"
            ))
        })
}

async fn candles(
    State(inner): State<Arc<Inner>>,
    symbol: Result<Path<String>, PathRejection>,
    query: Result<Query<CandlesQuery>, QueryRejection>,
) -> Result<Json<Vec<CandleJson>>, ApiError> {
    let Path(symbol) = symbol?;
    let Query(q) = query?;
    let interval = q.interval.as_deref().unwrap_or("1m");
    let secs = super::history::interval_secs(interval).ok_or_else(|| {
        ApiError::invalid(format!(
            "interval must be 1m, 5m, 15m, 1h, 4h or 1d, got {interval:?}"
        ))
    })?;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIST_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n @ 1..=MAX_LIST_LIMIT) => n,
            _ => {
                return Err(ApiError::invalid(format!(
                    "limit must be a whole number from 1 to {MAX_LIST_LIMIT}, got {text:?}"
                )))
            }
        },
    };
    let start = time_param("startTime", q.start_time.as_deref())?;
    let end = time_param("endTime", q.end_time.as_deref())?;
    if inner.with_book(|b| b.quote(&symbol)).is_none() {
        return Err(unknown_symbol(&symbol));
    }
    let bars = inner
        .history()
        .candles(&symbol, secs, start, end, limit)
        .unwrap_or_default();
    Ok(Json(
        bars.into_iter()
            .map(|b| CandleJson {
                timestamp: iso(b.start),
                open: b.open,
                high: b.high,
                low: b.low,
                close: b.close,
                volume: b.volume,
            })
            .collect(),
    ))
}

// ---- webhook management ----------------------------------------------------------------------

/// Event names a webhook may subscribe to; `*` means all.
const EVENT_NAMES: [&str; 13] = [
    "order.created",
    "order.updated",
    "order.cancelled",
    "position.opened",
    "position.updated",
    "position.closed",
    "account.balance_updated",
    "account.deposit_received",
    "account.withdrawal_processed",
    "signal.generated",
    "system.maintenance",
    "system.alert",
    "test",
];

/// `POST /webhooks` as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireWebhook {
    url: String,
    events: Vec<String>,
    secret: String,
    active: Option<bool>,
}

/// `PUT /webhooks/{id}`: every field optional, absent ones unchanged.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireWebhookUpdate {
    url: Option<String>,
    events: Option<Vec<String>>,
    secret: Option<String>,
    active: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireWebhookTest {
    webhook_id: String,
    test_event: Option<String>,
}

/// A registration as answered; the secret is never echoed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookJson {
    id: String,
    url: String,
    events: Vec<String>,
    active: bool,
    created_at: String,
    updated_at: String,
}

impl From<Registration> for WebhookJson {
    fn from(r: Registration) -> Self {
        Self {
            id: r.id,
            url: r.url,
            events: r.events,
            active: r.active,
            created_at: iso(r.created_at),
            updated_at: iso(r.updated_at),
        }
    }
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let code = if e.is_data() {
            "invalid_request"
        } else {
            "invalid_json"
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
    })
}

fn check_url(url: &str) -> Result<(), ApiError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(ApiError::invalid(format!(
            "url must be an http(s) URL, got {url:?}"
        ))),
    }
}

fn check_events(events: &[String]) -> Result<(), ApiError> {
    match events
        .iter()
        .find(|e| *e != "*" && !EVENT_NAMES.contains(&e.as_str()))
    {
        Some(bad) => Err(ApiError::invalid(format!(
            "unknown event {bad:?}; known: {}, or *",
            EVENT_NAMES.join(", ")
        ))),
        None => Ok(()),
    }
}

fn check_secret(secret: &str) -> Result<(), ApiError> {
    if secret.is_empty() {
        Err(ApiError::invalid("secret must not be empty"))
    } else {
        Ok(())
    }
}

fn no_webhook(id: &str) -> ApiError {
    ApiError::not_found(format!("no webhook {id}"))
}

async fn create_webhook(
    State(inner): State<Arc<Inner>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let w: WireWebhook = json_body(&body)?;
    check_url(&w.url)?;
    check_events(&w.events)?;
    check_secret(&w.secret)?;
    let now = Utc::now();
    let registration = Registration {
        id: inner.outbox().next_webhook_id(),
        url: w.url,
        events: w.events,
        secret: w.secret,
        active: w.active.unwrap_or(true),
        created_at: now,
        updated_at: now,
    };
    inner.outbox().register(registration.clone());
    Ok((StatusCode::CREATED, Json(WebhookJson::from(registration))).into_response())
}

async fn list_webhooks(State(inner): State<Arc<Inner>>) -> Json<Vec<WebhookJson>> {
    Json(
        inner
            .outbox()
            .registrations()
            .into_iter()
            .map(WebhookJson::from)
            .collect(),
    )
}

async fn update_webhook(
    State(inner): State<Arc<Inner>>,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<WebhookJson>, ApiError> {
    let Path(id) = id?;
    let w: WireWebhookUpdate = json_body(&body)?;
    if let Some(url) = &w.url {
        check_url(url)?;
    }
    if let Some(events) = &w.events {
        check_events(events)?;
    }
    if let Some(secret) = &w.secret {
        check_secret(secret)?;
    }
    let now = Utc::now();
    inner
        .outbox()
        .update(&id, |r| {
            if let Some(url) = w.url {
                r.url = url;
            }
            if let Some(events) = w.events {
                r.events = events;
            }
            if let Some(secret) = w.secret {
                r.secret = secret;
            }
            if let Some(active) = w.active {
                r.active = active;
            }
            r.updated_at = now;
        })
        .map(|r| Json(WebhookJson::from(r)))
        .ok_or_else(|| no_webhook(&id))
}

async fn delete_webhook(
    State(inner): State<Arc<Inner>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
    if inner.outbox().unregister(&id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_webhook(&id))
    }
}

async fn test_webhook(
    State(inner): State<Arc<Inner>>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let t: WireWebhookTest = json_body(&body)?;
    let test_event = t.test_event.unwrap_or_else(|| "test".into());
    check_events(std::slice::from_ref(&test_event))?;
    if inner.outbox().registration(&t.webhook_id).is_none() {
        return Err(no_webhook(&t.webhook_id));
    }
    inner.outbox().enqueue_to(
        Some(t.webhook_id.clone()),
        "test",
        &json!({
            "message": "Test webhook from the sigex simulator",
            "testEvent": test_event,
        }),
    );
    Ok(Json(json!({
        "webhookId": t.webhook_id,
        "testEvent": test_event,
        "queued": true,
    })))
}

async fn dead_letters(State(inner): State<Arc<Inner>>) -> Json<Vec<super::DeadLetter>> {
    Json(inner.outbox().dead_letters())
}

#[derive(Deserialize)]
struct DeliveriesQuery {
    limit: Option<usize>,
}

async fn deliveries(
    State(inner): State<Arc<Inner>>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<Vec<super::DeliveryRecord>>, ApiError> {
    let Query(q) = query?;
    let limit = q
        .limit
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT);
    Ok(Json(inner.outbox().deliveries(limit)))
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use rust_decimal::Decimal;
    use serde_json::Value;

    use crate::sim::testkit::{eventually, TestVenue, API_KEY};

    fn dec(v: &Value) -> Decimal {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
            .parse()
            .unwrap_or_else(|_| panic!("not a decimal: {v}"))
    }

    const MARKET_BUY: &str =
        r#"{"symbol":"BTC/USD","side":"buy","type":"market","quantity":0.1,"clientOrderId":"c-1"}"#;

    #[tokio::test]
    async fn signed_market_order_fills_and_a_retry_returns_the_same_order() {
        let venue = TestVenue::start(|_| {}).await;

        let (status, order) = venue.send("POST", "/api/v1/orders", MARKET_BUY).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        assert_eq!(order["status"], "pending");
        assert_eq!(order["clientOrderId"], "c-1");
        assert_eq!(order["averagePrice"], Value::Null);
        assert!(order["quantity"].is_number());
        assert_eq!(dec(&order["quantity"]), Decimal::new(1, 1));
        let id = order["orderId"].as_str().expect("orderId").to_string();
        assert!(uuid::Uuid::parse_str(&id).is_ok_and(|u| u.get_version_num() == 4));

        let path = format!("/api/v1/orders/{id}");
        let filled = eventually(|| async {
            let (status, order) = venue.send("GET", &path, "").await;
            assert_eq!(status, StatusCode::OK);
            (order["status"] == "filled").then_some(order)
        })
        .await;
        assert_eq!(dec(&filled["filledQuantity"]), Decimal::new(1, 1));
        let fills = filled["fills"].as_array().expect("fills");
        assert_eq!(fills.len(), 1);
        assert_eq!(dec(&fills[0]["price"]), dec(&filled["averagePrice"]));

        let (status, again) = venue.send("POST", "/api/v1/orders", MARKET_BUY).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(again["orderId"], id.as_str());
        assert_eq!(again["status"], "filled");
        assert_eq!(venue.sim.orders().len(), 1);
        let stats = venue.sim.stats();
        assert_eq!(
            (stats.orders_accepted, stats.duplicate_client_order_ids),
            (1, 1)
        );

        let (_, positions) = venue.send("GET", "/api/v1/positions", "").await;
        assert_eq!(positions[0]["side"], "long");
        let (_, balances) = venue.send("GET", "/api/v1/account/balances", "").await;
        assert_eq!(balances[0]["asset"], "USD");
        assert_eq!(
            dec(&balances[0]["locked"]),
            Decimal::new(1, 1) * dec(&filled["averagePrice"])
        );
    }

    #[tokio::test]
    async fn badly_signed_requests_get_401_and_are_counted() {
        let venue = TestVenue::start(|_| {}).await;
        let now = chrono::Utc::now().timestamp().to_string();
        let good = venue.signature("GET", "/api/v1/positions", "", &now);
        let stale = (chrono::Utc::now().timestamp() - 120).to_string();
        let cases = [
            ("wrong key", "other", now.as_str(), good.clone()),
            (
                "stale",
                API_KEY,
                stale.as_str(),
                venue.signature("GET", "/api/v1/positions", "", &stale),
            ),
            (
                "signed another path",
                API_KEY,
                now.as_str(),
                venue.signature("GET", "/api/v1/orders", "", &now),
            ),
            ("upper-case hex", API_KEY, now.as_str(), good.to_uppercase()),
        ];
        for (name, key, ts, sig) in &cases {
            let (status, body) = venue
                .send_raw(
                    "GET",
                    "/api/v1/positions",
                    "",
                    Some(key),
                    Some(ts),
                    Some(sig),
                )
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
            assert_eq!(body["error"]["code"], "unauthorized", "{name}");
        }
        let (status, _) = venue
            .send_raw(
                "GET",
                "/api/v1/positions",
                "",
                Some(API_KEY),
                Some(&now),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(venue.sim.stats().auth_failures, 5);
        let (status, _) = venue
            .send_raw(
                "GET",
                "/api/v1/positions",
                "",
                Some(API_KEY),
                Some(&now),
                Some(&good),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn invalid_orders_are_refused_with_a_json_error() {
        let venue = TestVenue::start(|_| {}).await;
        let cases = [
            (
                r#"{"symbol":"DOGE/USD","side":"buy","type":"market","quantity":1}"#,
                "unknown_symbol",
            ),
            (
                r#"{"symbol":"BTC/USD","side":"buy","type":"market","quantity":0}"#,
                "invalid_request",
            ),
            (
                r#"{"symbol":"BTC/USD","side":"buy","type":"market","quantity":"0.1"}"#,
                "invalid_request",
            ),
            (
                r#"{"symbol":"BTC/USD","side":"buy","type":"limit","quantity":0.1}"#,
                "invalid_request",
            ),
            (
                r#"{"symbol":"BTC/USD","side":"hold","type":"market","quantity":0.1}"#,
                "invalid_request",
            ),
            (
                r#"{"symbol":"BTC/USD","side":"buy","type":"market","quantity":0.1,"timeInForce":"DAY"}"#,
                "invalid_request",
            ),
            (
                r#"{"symbol":"BTC/USD","side":"buy","type":"market","quantity":100}"#,
                "insufficient_balance",
            ),
            (r#"{"symbol":"BTC/USD""#, "invalid_json"),
        ];
        for (body, code) in cases {
            let (status, err) = venue.send("POST", "/api/v1/orders", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(err["error"]["code"], code, "{body}");
        }
        assert!(venue.sim.orders().is_empty());
    }

    #[tokio::test]
    async fn limit_orders_rest_and_can_be_cancelled_once() {
        let venue = TestVenue::start(|_| {}).await;
        let body = r#"{"symbol":"SOL/USD","side":"buy","type":"limit","quantity":2,"price":100.5,"clientOrderId":"lim-1"}"#;
        let (status, order) = venue.send("POST", "/api/v1/orders", body).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(order["price"].to_string(), "100.5");
        let id = order["orderId"].as_str().expect("orderId").to_string();
        eventually(|| async {
            let (_, o) = venue
                .send("GET", "/api/v1/orders?status=open&symbol=SOL/USD", "")
                .await;
            (o.as_array().map_or(0, Vec::len) == 1).then_some(())
        })
        .await;

        let path = format!("/api/v1/orders/{id}");
        let (status, cancelled) = venue.send("DELETE", &path, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cancelled["status"], "cancelled");
        let (status, err) = venue.send("DELETE", &path, "").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(err["error"]["code"], "not_cancellable");
        let (status, _) = venue
            .send(
                "DELETE",
                "/api/v1/orders/00000000-0000-4000-8000-000000000000",
                "",
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (_, found) = venue
            .send("GET", "/api/v1/orders?clientOrderId=lim-1&limit=5", "")
            .await;
        assert_eq!(found[0]["orderId"], id.as_str());
        let (status, _) = venue.send("GET", "/api/v1/orders?limit=0", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn market_data_is_signed_over_the_encoded_path() {
        let venue = TestVenue::start(|_| {}).await;
        let (status, quote) = venue
            .send("GET", "/api/v1/market/price/BTC%2FUSD", "")
            .await;
        assert_eq!(status, StatusCode::OK, "{quote}");
        assert_eq!(quote["symbol"], "BTC/USD");
        assert!(dec(&quote["bid"]) < dec(&quote["ask"]));
        assert!(quote["volume24h"].is_number());

        let (status, _) = venue.send("GET", "/api/v1/market/price/BTC/USD", "").await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "an unencoded slash is another route"
        );

        let (status, quotes) = venue
            .send(
                "GET",
                "/api/v1/market/prices?symbols=BTC%2FUSD,ETH%2FUSD",
                "",
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{quotes}");
        let symbols: Vec<&str> = quotes
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|q| q["symbol"].as_str())
            .collect();
        assert_eq!(symbols, ["BTC/USD", "ETH/USD"]);
    }

    #[tokio::test]
    async fn unknown_routes_get_a_json_404() {
        let venue = TestVenue::start(|_| {}).await;
        let (status, body) = venue.send("GET", "/api/v1/nothing-here", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
    }

    /// A receiver on an ephemeral port; every request it gets comes out of the channel.
    async fn receiver() -> (
        String,
        tokio::sync::mpsc::UnboundedReceiver<crate::sim::testkit::Received>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let _ = tx.send(crate::sim::testkit::Received::new(&headers, body));
                    async { axum::http::StatusCode::OK }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, rx)
    }

    #[tokio::test]
    async fn webhooks_are_registered_listed_updated_tested_and_deleted() {
        use crate::sim::testkit::{hmac_hex, within};
        let venue = TestVenue::start(|_| {}).await;
        let (url, mut hook) = receiver().await;
        let body = format!(
            r#"{{"url":"{url}","events":["order.created","order.updated"],"secret":"wh-secret-1","active":true}}"#
        );
        let (status, created) = venue.send("POST", "/api/v1/webhooks", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().expect("id").to_string();
        assert_eq!(created["url"], url.as_str());
        assert_eq!(created["events"][1], "order.updated");
        assert_eq!(created["active"], true);
        assert!(
            created.get("secret").is_none(),
            "the secret is never echoed"
        );

        let (_, list) = venue.send("GET", "/api/v1/webhooks", "").await;
        assert_eq!(list.as_array().map(Vec::len), Some(1));

        let path = format!("/api/v1/webhooks/{id}");
        let (status, updated) = venue
            .send("PUT", &path, r#"{"active":false,"events":["*"]}"#)
            .await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(
            (updated["active"].clone(), updated["events"][0].clone()),
            (false.into(), "*".into())
        );

        let test = format!(r#"{{"webhookId":"{id}","testEvent":"order.created"}}"#);
        let (status, queued) = venue.send("POST", "/api/v1/webhooks/test", &test).await;
        assert_eq!(status, StatusCode::OK, "{queued}");
        let got = within(hook.recv()).await.expect("the test webhook");
        assert_eq!(
            got.signature.as_deref(),
            Some(hmac_hex("wh-secret-1", &got.body).as_str())
        );
        let sent: Value = serde_json::from_slice(&got.body).expect("json");
        assert_eq!(sent["event"], "test");
        assert_eq!(sent["data"]["testEvent"], "order.created");
        let log = eventually(|| async {
            let (_, log) = venue.send("GET", "/api/v1/webhooks/deliveries", "").await;
            (log.as_array().map_or(0, Vec::len) == 1).then_some(log)
        })
        .await;
        assert_eq!(log[0]["outcome"], "delivered");
        assert_eq!(log[0]["webhookId"], id.as_str());
        let (status, dead) = venue.send("GET", "/api/v1/webhooks/dead-letters", "").await;
        assert_eq!((status, dead), (StatusCode::OK, serde_json::json!([])));

        let (status, _) = venue.send("DELETE", &path, "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = venue.send("DELETE", &path, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, list) = venue.send("GET", "/api/v1/webhooks", "").await;
        assert_eq!(list, serde_json::json!([]));
    }

    #[tokio::test]
    async fn bad_webhook_registrations_are_refused() {
        let venue = TestVenue::start(|_| {}).await;
        let cases = [
            (
                r#"{"url":"ftp://x/y","events":[],"secret":"s","active":true}"#,
                "invalid_request",
            ),
            (
                r#"{"url":"http://x/y","events":["order.exploded"],"secret":"s"}"#,
                "invalid_request",
            ),
            (
                r#"{"url":"http://x/y","events":[],"secret":""}"#,
                "invalid_request",
            ),
            (
                r#"{"url":"http://x/y","events":[],"secret":"s","color":"red"}"#,
                "invalid_request",
            ),
            (r#"{"url":"#, "invalid_json"),
        ];
        for (body, code) in cases {
            let (status, err) = venue.send("POST", "/api/v1/webhooks", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(err["error"]["code"], code, "{body}");
        }
        let (status, _) = venue
            .send("POST", "/api/v1/webhooks/test", r#"{"webhookId":"wh_404"}"#)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn during_maintenance_every_request_answers_503_after_a_notice() {
        let (url, mut hook) = receiver().await;
        let venue = TestVenue::start(|cfg| {
            cfg.webhook_url = Some(url);
            cfg.maintenance.push(crate::sim::MaintenanceWindow {
                starts_after: std::time::Duration::ZERO,
                lasts: std::time::Duration::from_secs(3600),
                notice: std::time::Duration::from_secs(60),
            });
        })
        .await;
        let got = crate::sim::testkit::within(hook.recv())
            .await
            .expect("notice");
        let notice: Value = serde_json::from_slice(&got.body).expect("json");
        assert_eq!(notice["event"], "system.maintenance");
        assert!(notice["data"]["startTime"].is_string());
        for (method, path, body) in [
            ("GET", "/api/v1/positions", ""),
            ("POST", "/api/v1/orders", MARKET_BUY),
        ] {
            let (status, err) = venue.send(method, path, body).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert_eq!(err["error"]["code"], "maintenance");
        }
        assert!(venue.sim.orders().is_empty());
        assert_eq!(venue.sim.stats().maintenance_refusals, 2);
    }

    #[tokio::test]
    async fn injected_rest_faults_refuse_or_lose_an_order_as_configured() {
        use crate::sim::{Faults, Probability};
        let cases = [
            (
                "5xx",
                Faults {
                    rest_5xx: Probability::ALWAYS,
                    ..Faults::default()
                },
                Some(500),
                0,
            ),
            (
                "429",
                Faults {
                    rest_429: Probability::ALWAYS,
                    rest_retry_after_secs: 7,
                    ..Faults::default()
                },
                Some(429),
                0,
            ),
            (
                "lost response",
                Faults {
                    order_lost_response: Probability::ALWAYS,
                    ..Faults::default()
                },
                None,
                1,
            ),
            (
                "500 after acceptance",
                Faults {
                    processed_5xx: Probability::ALWAYS,
                    ..Faults::default()
                },
                Some(500),
                1,
            ),
        ];
        for (name, faults, want_status, orders) in cases {
            let venue = TestVenue::start(|cfg| cfg.faults = faults).await;
            let ts = chrono::Utc::now().timestamp().to_string();
            let sig = venue.signature("POST", "/api/v1/orders", MARKET_BUY, &ts);
            let answer = async {
                let resp = reqwest::Client::new()
                    .post(venue.url("/api/v1/orders"))
                    .header("Content-Type", "application/json")
                    .header("X-API-Key", API_KEY)
                    .header("X-Timestamp", &ts)
                    .header("X-Signature", sig)
                    .body(MARKET_BUY)
                    .send()
                    .await?;
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                resp.bytes().await?;
                Ok::<_, reqwest::Error>((status.as_u16(), retry_after))
            };
            let got = crate::sim::testkit::within(answer).await;
            match want_status {
                Some(code) => {
                    let (status, retry_after) = got.expect(name);
                    assert_eq!(status, code, "{name}");
                    if code == 429 {
                        assert_eq!(retry_after.as_deref(), Some("7"));
                    }
                }
                None => assert!(got.is_err(), "{name}: the answer must not arrive"),
            }
            assert_eq!(venue.sim.orders().len(), orders, "{name}");
            // Reads are not struck unless every route is asked for.
            let (status, _) = venue.send("GET", "/api/v1/positions", "").await;
            assert_eq!(status, StatusCode::OK, "{name}");
        }
    }

    #[tokio::test]
    async fn candles_are_built_from_the_prices_the_venue_quoted() {
        let venue = TestVenue::start(|_| {}).await;
        let path = "/api/v1/market/candles/BTC%2FUSD?interval=1m&limit=5";
        let bars = eventually(|| async {
            let (status, bars) = venue.send("GET", path, "").await;
            assert_eq!(status, StatusCode::OK, "{bars}");
            (bars.as_array().map_or(0, Vec::len) > 0).then_some(bars)
        })
        .await;
        let bar = &bars[0];
        assert!(dec(&bar["low"]) <= dec(&bar["open"]) && dec(&bar["open"]) <= dec(&bar["high"]));
        assert!(bar["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with(":00.000Z")));
        for bad in [
            "/api/v1/market/candles/BTC%2FUSD?interval=2m",
            "/api/v1/market/candles/BTC%2FUSD?limit=1001",
            "/api/v1/market/candles/DOGE%2FUSD",
        ] {
            let (status, _) = venue.send("GET", bad, "").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
