//! The Vibe Trading REST client: signing, timeouts, and classifying every answer.
//!
//! It owns no business logic. What it guarantees: every request is signed per `wire`, has a timeout,
//! and every order submission and cancel ends in exactly one `OrderOutcome`, classified in one
//! place; an ambiguous failure is `Unknown`, never `Rejected`, so the caller resolves it by asking
//! rather than assuming.

pub mod sign;
pub mod wire;

use crate::clock::SharedClock;
use crate::config::Credentials;
use crate::notify::{Notification, Notifier};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;
use reqwest::{Method, StatusCode};
use std::time::Duration;
use wire::{ErrorResponse, Listed, OrderResponse, PlaceOrderRequest, PriceResponse};

#[derive(Debug, thiserror::Error)]
pub enum VenueError {
    /// The venue answered with a definite error status.
    #[error("venue answered {status}: {code}: {message}")]
    Status {
        status: u16,
        code: String,
        message: String,
        /// The venue's `Retry-After` (on 429 and 503), when it sent one.
        retry_after: Option<Duration>,
    },
    /// No usable answer: timeout, connection failure, unreadable body.
    #[error("no usable answer from the venue: {0}")]
    Transport(String),
}

impl VenueError {
    /// Whether trying again may succeed (the request may or may not have taken effect).
    pub fn is_retryable(&self) -> bool {
        match self {
            VenueError::Transport(_) => true,
            VenueError::Status { status, .. } => *status == 429 || *status == 408 || *status >= 500,
        }
    }

    /// How long the venue asked us to wait before the next request, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            VenueError::Status { retry_after, .. } => *retry_after,
            VenueError::Transport(_) => None,
        }
    }
}

/// The outcome of one order-changing request: `POST /orders` or `DELETE /orders/{orderId}`.
#[derive(Debug)]
pub enum OrderOutcome {
    /// 2xx with the order as the venue now reports it; for a POST also **[decided]** 409 for a
    /// `clientOrderId` the venue already has (the first attempt succeeded; this is not a new order).
    Accepted(Box<OrderResponse>),
    /// A definite refusal (4xx other than 408 and 429), with the venue's code and message. For a
    /// POST the order does not exist at the venue; for a DELETE (404, 409, 400: "not cancellable")
    /// the caller asks the venue what became of the order rather than guessing.
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    /// Timeout, reset, 5xx, 429 or an unreadable answer: the request may or may not have taken
    /// effect. `retry_after` is the venue's `Retry-After`, when it sent one (429, 503).
    Unknown {
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// The outcome of one `POST /orders`.
pub type SubmitOutcome = OrderOutcome;

impl OrderOutcome {
    /// The metrics label of the outcome.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Accepted(_) => "accepted",
            Self::Rejected { .. } => "rejected",
            Self::Unknown { .. } => "unknown",
        }
    }

    /// Classifies one answer (or the lack of one). `conflict_accepts`: a 409 carries the order
    /// and means success (a POST under a `clientOrderId` the venue already has).
    fn classify(reply: Result<Reply, String>, conflict_accepts: bool) -> Self {
        match reply {
            Ok(Reply { status, bytes, .. })
                if status.is_success() || (conflict_accepts && status == StatusCode::CONFLICT) =>
            {
                match serde_json::from_slice::<OrderResponse>(&bytes) {
                    Ok(o) => Self::Accepted(Box::new(o)),
                    Err(e) => Self::Unknown {
                        reason: format!("{status} with an unreadable order: {e}"),
                        retry_after: None,
                    },
                }
            }
            Ok(Reply {
                status,
                retry_after,
                bytes,
            }) => {
                let (code, message) = error_fields(&bytes);
                if is_definite_refusal(status) {
                    Self::Rejected {
                        status: status.as_u16(),
                        code,
                        message,
                    }
                } else {
                    Self::Unknown {
                        reason: format!("{status}: {code}: {message}"),
                        retry_after,
                    }
                }
            }
            Err(reason) => Self::Unknown {
                reason,
                retry_after: None,
            },
        }
    }
}

/// One complete answer from the venue.
struct Reply {
    status: StatusCode,
    retry_after: Option<Duration>,
    bytes: axum::body::Bytes,
}

#[derive(Clone)]
pub struct VenueClient {
    http: reqwest::Client,
    base_url: String,
    /// The path part of `base_url` (e.g. `/api/v1`): it is part of what gets signed.
    base_path: String,
    credentials: Credentials,
    clock: SharedClock,
    watch: Watch,
}

/// Venue failures in a row that trigger a `VenueErrors` notification (once per streak).
pub const VENUE_ERRORS_TO_NOTIFY: u32 = 5;

/// Where the client reports reachability (readiness), error classes (metrics) and error streaks
/// (notifications). The default reports nowhere that anyone reads.
#[derive(Clone, Default)]
pub struct Watch {
    pub health: Health,
    pub metrics: Metrics,
    pub notifier: Notifier,
}

impl VenueClient {
    pub fn new(
        base_url: &str,
        credentials: Credentials,
        timeout: Duration,
        clock: SharedClock,
    ) -> Result<Self, String> {
        wire::check_base_url(base_url)?;
        let url = reqwest::Url::parse(base_url).map_err(|e| format!("venue base_url: {e}"))?;
        let http = reqwest::Client::builder()
            // A redirect would carry X-API-Key and a signed request to another address.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            base_path: url.path().trim_end_matches('/').to_owned(),
            credentials,
            clock,
            watch: Watch::default(),
        })
    }

    /// Reports every answer and failure to `watch`.
    pub fn watched(mut self, watch: Watch) -> Self {
        self.watch = watch;
        self
    }

    /// A cheap signed request whose only purpose is to learn that the venue answers.
    pub async fn ping(&self) -> Result<(), VenueError> {
        self.get_json::<serde_json::Value>(wire::paths::BALANCES)
            .await
            .map(|_| ())
    }

    pub async fn place_order(&self, order: &PlaceOrderRequest) -> SubmitOutcome {
        let body = match serde_json::to_vec(order) {
            Ok(b) => b,
            Err(e) => {
                return SubmitOutcome::Rejected {
                    status: 0,
                    code: "unserializable".into(),
                    message: e.to_string(),
                }
            }
        };
        OrderOutcome::classify(
            self.send(Method::POST, wire::paths::ORDERS, body).await,
            true,
        )
    }

    /// Finds an order by our `clientOrderId`; `Ok(None)` means the venue says it has none.
    pub async fn find_by_client_order_id(
        &self,
        client_order_id: &str,
    ) -> Result<Option<OrderResponse>, VenueError> {
        let orders: Listed<OrderResponse> = self
            .get_json(&wire::paths::orders_by_client_id(client_order_id))
            .await?;
        Ok(orders
            .0
            .into_iter()
            .find(|o| o.client_order_id.as_deref() == Some(client_order_id)))
    }

    /// Orders with one status, newest first, at most `limit` (the venue has no paging).
    pub async fn orders_with_status(
        &self,
        status: &str,
        limit: usize,
    ) -> Result<Vec<OrderResponse>, VenueError> {
        self.get_json::<Listed<_>>(&wire::paths::orders_with_status(status, limit))
            .await
            .map(|l| l.0)
    }

    pub async fn get_order(&self, order_id: &str) -> Result<OrderResponse, VenueError> {
        self.get_json(&wire::paths::order(order_id)).await
    }

    /// `DELETE /orders/{orderId}`: on success, the order as the venue reports it after the
    /// cancel. Classified like a POST, except that a 409 is a refusal ("not cancellable").
    pub async fn cancel_order(&self, order_id: &str) -> OrderOutcome {
        let path = wire::paths::order(order_id);
        OrderOutcome::classify(self.send(Method::DELETE, &path, Vec::new()).await, false)
    }

    pub async fn positions(&self) -> Result<Vec<wire::PositionResponse>, VenueError> {
        self.get_json::<Listed<_>>(wire::paths::POSITIONS)
            .await
            .map(|l| l.0)
    }

    pub async fn balances(&self) -> Result<Vec<wire::BalanceResponse>, VenueError> {
        self.get_json::<Listed<_>>(wire::paths::BALANCES)
            .await
            .map(|l| l.0)
    }

    pub async fn price(&self, symbol: &str) -> Result<PriceResponse, VenueError> {
        self.get_json(&wire::paths::market_price(symbol)).await
    }

    /// Bars of `interval` (`1m`, `5m`, ... `1d`) starting from `start` up to `end` (Unix
    /// milliseconds), at most `limit` (the venue's maximum is 1000), oldest first.
    pub async fn candles(
        &self,
        symbol: &str,
        interval: &str,
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<wire::CandleResponse>, VenueError> {
        self.get_json(&wire::paths::market_candles(
            symbol, interval, start_ms, end_ms, limit,
        ))
        .await
    }

    pub async fn create_webhook(
        &self,
        registration: &wire::WebhookRegistration,
    ) -> Result<wire::WebhookInfo, VenueError> {
        self.call_json(Method::POST, wire::paths::WEBHOOKS, Some(registration))
            .await
    }

    pub async fn list_webhooks(&self) -> Result<Vec<wire::WebhookInfo>, VenueError> {
        self.get_json::<Listed<_>>(wire::paths::WEBHOOKS)
            .await
            .map(|l| l.0)
    }

    pub async fn update_webhook(
        &self,
        id: &str,
        changes: &wire::WebhookRegistration,
    ) -> Result<wire::WebhookInfo, VenueError> {
        self.call_json(Method::PUT, &wire::paths::webhook(id), Some(changes))
            .await
    }

    pub async fn delete_webhook(&self, id: &str) -> Result<(), VenueError> {
        self.call_json::<serde_json::Value, ()>(Method::DELETE, &wire::paths::webhook(id), None)
            .await
            .map(|_| ())
    }

    pub async fn test_webhook(
        &self,
        request: &wire::WebhookTestRequest,
    ) -> Result<serde_json::Value, VenueError> {
        self.call_json(Method::POST, wire::paths::WEBHOOKS_TEST, Some(request))
            .await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, VenueError> {
        self.call_json::<T, ()>(Method::GET, path, None).await
    }

    /// One signed request with an optional JSON body; an empty success body reads as `null`.
    async fn call_json<T: serde::de::DeserializeOwned, B: serde::Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, VenueError> {
        let body = match body {
            Some(b) => serde_json::to_vec(b)
                .map_err(|e| VenueError::Transport(format!("unserializable request: {e}")))?,
            None => Vec::new(),
        };
        let Reply {
            status,
            retry_after,
            bytes,
        } = self
            .send(method, path, body)
            .await
            .map_err(VenueError::Transport)?;
        if !status.is_success() {
            let (code, message) = error_fields(&bytes);
            return Err(VenueError::Status {
                status: status.as_u16(),
                code,
                message,
                retry_after,
            });
        }
        let bytes = if bytes.is_empty() {
            axum::body::Bytes::from_static(b"null")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| VenueError::Transport(format!("unreadable answer to {path}: {e}")))
    }

    /// Signs and sends one request, and reports the result to the watch.
    async fn send(&self, method: Method, path: &str, body: Vec<u8>) -> Result<Reply, String> {
        let result = self.send_unwatched(method, path, body).await;
        let failure = match &result {
            Ok(Reply { status, .. }) => match error_class(*status) {
                None => {
                    self.watch.health.venue_ok(self.clock.now());
                    None
                }
                Some(class) => {
                    self.watch.health.venue_reachable(self.clock.now());
                    Some((class, status.to_string()))
                }
            },
            Err((class, reason)) => Some((*class, reason.clone())),
        };
        if let Some((class, reason)) = failure {
            self.watch.metrics.venue_error(class);
            // A streak is what the operator must hear about: outages, overload, throttling.
            if class != "client_error" {
                let in_a_row = self.watch.health.venue_failed();
                if in_a_row == VENUE_ERRORS_TO_NOTIFY {
                    self.watch.notifier.send(Notification::VenueErrors {
                        in_a_row,
                        last_error: reason,
                    });
                }
            }
        }
        result.map_err(|(_, reason)| reason)
    }

    /// Signs and sends one request; `Err((class, reason))` only when no complete answer arrived.
    async fn send_unwatched(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Reply, (&'static str, String)> {
        let timestamp = self.clock.now().timestamp();
        let signed_path = format!("{}{}", self.base_path, path);
        let signature = sign::sign_request(
            self.credentials.api_secret.expose().as_bytes(),
            method.as_str(),
            &signed_path,
            &body,
            timestamp,
        );
        let response = self
            .http
            .request(method.clone(), format!("{}{}", self.base_url, path))
            .header(wire::HEADER_API_KEY, self.credentials.api_key.expose())
            .header(wire::HEADER_TIMESTAMP, timestamp.to_string())
            .header(wire::HEADER_SIGNATURE, signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| (transport_class(&e), describe_transport_error(&e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(wire::parse_retry_after);
        if status.is_redirection() {
            // Not followed (see `new`); said plainly, since it usually means a wrong base_url.
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(no location)")
                .to_owned();
            let error = serde_json::json!({"error": {
                "code": "redirect",
                "message": format!("the venue answered {status} with a redirect to {location}; redirects are not followed (the API key would go along): check [venue] base_url"),
            }});
            return Ok(Reply {
                status,
                retry_after,
                bytes: axum::body::Bytes::from(error.to_string()),
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| (transport_class(&e), describe_transport_error(&e)))?;
        Ok(Reply {
            status,
            retry_after,
            bytes,
        })
    }
}

/// 4xx other than 408 and 429 means the venue looked at the order and said no.
fn is_definite_refusal(status: StatusCode) -> bool {
    status.is_client_error()
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
}

fn error_fields(bytes: &[u8]) -> (String, String) {
    match serde_json::from_slice::<ErrorResponse>(bytes) {
        Ok(e) => (e.error.code, e.error.message),
        Err(_) => (
            "unknown".into(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        ),
    }
}

/// The metrics class of an answer that is an error; `None` for success and 404/409 (normal
/// answers to lookups and duplicate submissions).
fn error_class(status: StatusCode) -> Option<&'static str> {
    if status.is_success() || status == StatusCode::NOT_FOUND || status == StatusCode::CONFLICT {
        None
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        Some("rate_limited")
    } else if status.is_server_error() {
        Some("server_error")
    } else {
        Some("client_error")
    }
}

fn transport_class(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    }
}

/// Credentials travel in headers only, so the URL in reqwest's message is safe to show.
fn describe_transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "body interrupted"
    } else {
        "request failed"
    };
    format!("{kind}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use std::sync::{Arc, Mutex};

    /// A server that answers every request with `answer(uri)` and records each request's path
    /// and whether it carried `X-API-Key`.
    async fn stub(
        answer: impl Fn(&Uri) -> (StatusCode, HeaderMap, String) + Clone + Send + Sync + 'static,
    ) -> (String, Arc<Mutex<Vec<(String, bool)>>>) {
        let seen: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let answer = answer.clone();
            let log = log.clone();
            async move {
                let with_key = headers.contains_key(wire::HEADER_API_KEY);
                log.lock().unwrap().push((uri.to_string(), with_key));
                answer(&uri)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    fn client(url: &str) -> VenueClient {
        let credentials = Credentials {
            api_key: Secret::new("key-that-must-not-travel".to_owned()),
            api_secret: Secret::new("secret".to_owned()),
        };
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        VenueClient::new(url, credentials, Duration::from_secs(5), clock).unwrap()
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_so_the_api_key_stays_with_the_venue() {
        let (elsewhere, elsewhere_seen) =
            stub(|_| (StatusCode::OK, HeaderMap::new(), "[]".into())).await;
        let target = elsewhere.clone();
        let (venue, venue_seen) = stub(move |uri| {
            let mut headers = HeaderMap::new();
            let location = format!("{target}{}", uri.path().trim_start_matches("/api/v1"));
            headers.insert(axum::http::header::LOCATION, location.parse().unwrap());
            (StatusCode::TEMPORARY_REDIRECT, headers, String::new())
        })
        .await;
        let venue = client(&venue);
        let err = venue.positions().await.unwrap_err();
        assert!(
            matches!(&err, VenueError::Status { status: 307, message, .. } if message.contains("redirect")),
            "{err}"
        );
        let outcome = venue
            .place_order(&wire::PlaceOrderRequest {
                symbol: "BTC/USD".into(),
                side: "buy".into(),
                order_type: "market".into(),
                quantity: rust_decimal::Decimal::ONE,
                price: None,
                stop_price: None,
                time_in_force: "GTC".into(),
                client_order_id: "sx-redirect".into(),
            })
            .await;
        assert!(
            matches!(outcome, OrderOutcome::Unknown { .. }),
            "{outcome:?}"
        );
        assert_eq!(venue_seen.lock().unwrap().len(), 2);
        assert!(
            elsewhere_seen.lock().unwrap().is_empty(),
            "followed to {:?}",
            elsewhere_seen.lock().unwrap()
        );
    }

    #[tokio::test]
    async fn list_answers_are_read_bare_or_wrapped() {
        let (url, _) = stub(|uri| {
            let body = match uri.path() {
                "/api/v1/positions" => {
                    r#"{"data":[{"symbol":"BTC/USD","side":"long","quantity":0.5}],"page":1}"#
                }
                "/api/v1/account/balances" => {
                    r#"{"balances":[{"asset":"USD","available":10,"locked":0,"total":10}]}"#
                }
                _ if uri.query().is_some_and(|q| q.contains("clientOrderId")) => {
                    r#"{"orders":[{"orderId":"o-1","clientOrderId":"sx-1","symbol":"BTC/USD","side":"buy","type":"market","quantity":1,"status":"filled"}]}"#
                }
                _ => "[]",
            };
            (StatusCode::OK, HeaderMap::new(), body.to_owned())
        })
        .await;
        let venue = client(&url);
        let positions = venue.positions().await.unwrap();
        assert_eq!(positions[0].quantity, rust_decimal::Decimal::new(5, 1));
        assert_eq!(venue.balances().await.unwrap()[0].asset, "USD");
        let found = venue.find_by_client_order_id("sx-1").await.unwrap();
        assert_eq!(found.unwrap().order_id, "o-1");
        assert!(venue
            .orders_with_status("open", 10)
            .await
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_venue_url_is_https_unless_it_is_loopback() {
        for ok in [
            "https://api.vibetrading.tech/api/v1",
            "http://127.0.0.1:9/api/v1",
            "http://127.8.0.1/api/v1",
            "http://localhost:9/api/v1",
            "http://[::1]:9/api/v1",
        ] {
            assert!(wire::check_base_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://api.vibetrading.tech/api/v1",
            "http://192.168.1.10/api/v1",
            "http://localhost.example.com/api/v1",
            "ws://127.0.0.1/api/v1",
        ] {
            assert!(wire::check_base_url(bad).is_err(), "{bad}");
        }
    }
}
