//! The Vibe Trading wire format: every type deserialized from or serialized to the venue, and every
//! point where this project had to decide what the venue's docs leave open (each marked
//! **[decided]**, each listed in the README's "Vibe API assumptions"). Change a decision here, in one
//! edit, when the real venue disagrees.
//!
//! Numbers are `Decimal` read straight from the JSON text (serde_json's `arbitrary_precision`), never
//! through binary floating point, and written back as JSON numbers with the same digits.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Default REST base URL; the path prefix is part of what gets signed.
pub const DEFAULT_BASE_URL: &str = "https://api.vibetrading.tech/api/v1";
/// Header names of the signed REST API.
pub const HEADER_API_KEY: &str = "X-API-Key";
pub const HEADER_TIMESTAMP: &str = "X-Timestamp";
pub const HEADER_SIGNATURE: &str = "X-Signature";
/// Header carrying the webhook's HMAC.
pub const HEADER_WEBHOOK_SIGNATURE: &str = "X-Webhook-Signature";
/// An event id header a venue may send. **[decided, revised]** it is not signed, so it is stored
/// for display only and never used as a key (see `crate::inbox::dedupe_key`).
pub const HEADER_WEBHOOK_ID: &str = "X-Webhook-Id";
/// **[decided]** a webhook whose signed envelope `timestamp` is older than this when it arrives is
/// not applied (`[webhook] max_event_age_secs`; the venue's 5 retries fit inside).
pub const DEFAULT_MAX_EVENT_AGE_SECS: u64 = 3600;
/// **[decided]** nor is one dated more than this far ahead of our clock (clock skew).
pub const WEBHOOK_MAX_FUTURE_SKEW_SECS: i64 = 60;
/// **[decided]** the server accepts a request timestamp within this many seconds of its clock.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 30;

/// **[decided]** the REST signature is HMAC-SHA256 over `METHOD + PATH + BODY + TIMESTAMP`, where
/// METHOD is upper-case, PATH is the exact path sent including the `/api/v1` prefix and any `?query`,
/// BODY is the exact bytes sent (empty for GET/DELETE), TIMESTAMP is Unix seconds as sent.
pub fn rest_signing_payload(
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: i64,
) -> Vec<u8> {
    let ts = timestamp.to_string();
    let mut payload =
        Vec::with_capacity(method.len() + path_and_query.len() + body.len() + ts.len());
    payload.extend_from_slice(method.to_ascii_uppercase().as_bytes());
    payload.extend_from_slice(path_and_query.as_bytes());
    payload.extend_from_slice(body);
    payload.extend_from_slice(ts.as_bytes());
    payload
}

/// **[decided]** a symbol in a URL path is percent-encoded (`BTC%2FUSD`) and the signed PATH is the
/// encoded one.
pub fn encode_symbol_for_path(symbol: &str) -> String {
    urlencoding::encode(symbol).into_owned()
}

/// **[decided]** REST paths relative to the base URL.
pub mod paths {
    pub const ORDERS: &str = "/orders";
    pub fn order(order_id: &str) -> String {
        format!("/orders/{}", urlencoding::encode(order_id))
    }
    /// Used to find an order whose POST outcome is unknown.
    /// **[decided]** open orders are listed one status at a time, newest first, at most `limit`.
    pub fn orders_with_status(status: &str, limit: usize) -> String {
        format!(
            "/orders?status={}&limit={limit}",
            urlencoding::encode(status)
        )
    }
    pub fn orders_by_client_id(client_order_id: &str) -> String {
        format!(
            "/orders?clientOrderId={}",
            urlencoding::encode(client_order_id)
        )
    }
    pub const POSITIONS: &str = "/positions";
    pub const BALANCES: &str = "/account/balances";
    pub const WEBHOOKS: &str = "/webhooks";
    pub const WEBHOOKS_TEST: &str = "/webhooks/test";
    pub fn webhook(id: &str) -> String {
        format!("/webhooks/{}", urlencoding::encode(id))
    }
    pub fn market_price(symbol: &str) -> String {
        format!("/market/price/{}", super::encode_symbol_for_path(symbol))
    }
    /// **[decided]** `startTime` and `endTime` are sent as Unix milliseconds (the docs name the
    /// parameters, not their format; the simulator takes RFC 3339 too).
    pub fn market_candles(
        symbol: &str,
        interval: &str,
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> String {
        format!(
            "/market/candles/{}?interval={}&startTime={start_ms}&endTime={end_ms}&limit={limit}",
            super::encode_symbol_for_path(symbol),
            urlencoding::encode(interval)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

/// The envelope of every webhook: `{"event": NAME, "timestamp": ISO-8601, "data": {...}}`.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub event: String,
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Kept as its text and read straight into each event's typed data: a detour through
    /// `serde_json::Value` cannot hand a `Decimal` an integer beyond 64 bits.
    #[serde(default)]
    pub data: Option<Box<serde_json::value::RawValue>>,
}

impl Envelope {
    /// The `data` object's JSON text (`null` when absent).
    pub fn data_text(&self) -> &str {
        self.data
            .as_deref()
            .map_or("null", serde_json::value::RawValue::get)
    }
}

/// An `id` as text: a non-empty string, or a number's digits; anything else is no id.
pub fn id_text(id: &serde_json::Value) -> Option<String> {
    match id {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalData {
    pub symbol: String,
    pub recommendation: String,
    pub confidence: serde_json::Number,
    #[serde(default)]
    pub time_horizon: Option<String>,
    #[serde(default)]
    pub risk_level: Option<String>,
    #[serde(default)]
    pub reasoning: Vec<String>,
    #[serde(default)]
    pub technical_analysis: Option<TechnicalAnalysisData>,
}

#[derive(Debug, Deserialize)]
pub struct TechnicalAnalysisData {
    #[serde(default)]
    pub rsi: Option<Decimal>,
    #[serde(default)]
    pub macd: Option<serde_json::Value>,
    #[serde(default)]
    pub support: Option<Decimal>,
    #[serde(default)]
    pub resistance: Option<Decimal>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreatedData {
    pub order_id: String,
    #[serde(default)]
    pub client_order_id: Option<String>,
    pub symbol: String,
    pub side: String,
    #[serde(rename = "type")]
    pub order_type: String,
    pub quantity: Decimal,
    #[serde(default)]
    pub price: Option<Decimal>,
    pub status: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderUpdatedData {
    pub order_id: String,
    #[serde(default)]
    pub client_order_id: Option<String>,
    pub status: String,
    #[serde(default)]
    pub filled_quantity: Option<Decimal>,
    #[serde(default)]
    pub average_price: Option<Decimal>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelledData {
    pub order_id: String,
    #[serde(default)]
    pub client_order_id: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `position.opened`, `position.updated` and `position.closed` share these fields (some absent).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PositionData {
    pub symbol: String,
    #[serde(default)]
    pub side: Option<String>,
    pub quantity: Decimal,
    #[serde(default)]
    pub average_price: Option<Decimal>,
    #[serde(default)]
    pub unrealized_pnl: Option<Decimal>,
    #[serde(default)]
    pub mark_price: Option<Decimal>,
    /// **[decided]** on `position.closed`: the closed position's realized PnL over its whole
    /// life (from opening out of flat to closing), before fees; `averagePrice` is its entry price.
    #[serde(default)]
    pub realized_pnl: Option<Decimal>,
    #[serde(default)]
    pub close_price: Option<Decimal>,
    #[serde(default)]
    pub margin_ratio: Option<Decimal>,
}

/// `account.deposit_received` and `account.withdrawal_processed`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionData {
    pub transaction_id: String,
    pub asset: String,
    pub amount: Decimal,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub received_at: Option<String>,
    #[serde(default)]
    pub processed_at: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct BalanceData {
    pub asset: String,
    pub available: Decimal,
    pub locked: Decimal,
    pub total: Decimal,
}

/// `system.maintenance`. Times are kept as text so an unreadable one is reported, not guessed.
/// **[decided]** `data.id`, when present, identifies a window across updates; otherwise its
/// `startTime` does.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceData {
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub affected_services: Vec<String>,
}

/// `system.alert`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertData {
    pub level: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub affected_symbols: Vec<String>,
}

/// **[decided]** the keys an object answer of a list endpoint (`GET /orders`, `/positions`,
/// `/account/balances`, `/webhooks`) may hold its array under. The docs show no shape: a bare
/// array is what we expect, a wrapped one is read too rather than leaving the bot unready.
pub const LIST_WRAPPERS: [&str; 7] = [
    "data",
    "items",
    "results",
    "orders",
    "positions",
    "balances",
    "webhooks",
];

/// The answer of a list endpoint: a bare JSON array, or an object holding it under one of
/// [`LIST_WRAPPERS`] (other keys, such as paging fields, are ignored; the array may itself be
/// wrapped once more, as in `{"data": {"orders": [...]}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Listed<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Listed<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = Listed<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(
                    f,
                    "a JSON array, or an object holding one under any of {LIST_WRAPPERS:?}"
                )
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Listed<T>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Listed(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Listed<T>, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<String>()? {
                    if found.is_none() && LIST_WRAPPERS.contains(&key.as_str()) {
                        found = Some(map.next_value::<Listed<T>>()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                found.ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "an object with no list under any of {LIST_WRAPPERS:?}"
                    ))
                })
            }
        }
        d.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// One entry of `GET /positions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PositionResponse {
    pub symbol: String,
    #[serde(default)]
    pub side: Option<String>,
    pub quantity: Decimal,
    #[serde(default)]
    pub average_price: Option<Decimal>,
    #[serde(default)]
    pub unrealized_pnl: Option<Decimal>,
    #[serde(default)]
    pub mark_price: Option<Decimal>,
}

/// One entry of `GET /account/balances`.
///
/// **[decided]** `total` is cash: deposits minus withdrawals plus realized PnL minus fees;
/// unrealized PnL is not in it (the cash check in `reconcile::cash` relies on this).
#[derive(Debug, Clone, Deserialize)]
pub struct BalanceResponse {
    pub asset: String,
    pub available: Decimal,
    pub locked: Decimal,
    pub total: Decimal,
}

// ---------------------------------------------------------------------------------------------
// REST
// ---------------------------------------------------------------------------------------------

/// Body of `POST /orders`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrderRequest {
    pub symbol: String,
    pub side: String,
    #[serde(rename = "type")]
    pub order_type: String,
    pub quantity: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_price: Option<Decimal>,
    pub time_in_force: String,
    pub client_order_id: String,
}

/// An order as the venue reports it (`POST /orders`, `GET /orders/{id}`, `GET /orders`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderResponse {
    pub order_id: String,
    #[serde(default)]
    pub client_order_id: Option<String>,
    pub symbol: String,
    pub side: String,
    pub status: String,
    #[serde(default)]
    pub quantity: Option<Decimal>,
    #[serde(default)]
    pub filled_quantity: Option<Decimal>,
    #[serde(default)]
    pub average_price: Option<Decimal>,
    /// Needed to adopt an order the bot did not place.
    #[serde(default, rename = "type")]
    pub order_type: Option<String>,
    #[serde(default)]
    pub price: Option<Decimal>,
    #[serde(default)]
    pub stop_price: Option<Decimal>,
    #[serde(default)]
    pub time_in_force: Option<String>,
    /// The fills, on `GET /orders/{orderId}` only.
    #[serde(default)]
    pub fills: Vec<FillData>,
}

/// One entry of an order's `fills[]`.
///
/// **[decided]** a fill may carry `fee` (USD); when it does not, the fee is estimated at the
/// symbol's configured `fee_bps` of the fill's notional. `fillId` is a string or a number.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FillData {
    #[serde(deserialize_with = "fill_id")]
    pub fill_id: String,
    pub quantity: Decimal,
    pub price: Decimal,
    #[serde(default)]
    pub fee: Option<Decimal>,
    #[serde(default)]
    pub timestamp: Option<String>,
}

fn fill_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    id_text(&v).ok_or_else(|| serde::de::Error::custom("fillId is neither a string nor a number"))
}

/// Body of `POST /webhooks` (and, with only the fields to change, `PUT /webhooks/{id}`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WebhookRegistration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

/// A registered webhook as the venue lists it. **[decided]** the secret is never echoed back.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WebhookInfo {
    /// A string or a number, depending on the venue.
    pub id: serde_json::Value,
    pub url: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub active: Option<bool>,
}

/// Body of `POST /webhooks/test`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookTestRequest {
    pub webhook_id: serde_json::Value,
    pub test_event: String,
}

/// One bar of `GET /market/candles/{symbol}`. **[decided]** the answer is an array of these,
/// oldest first, `timestamp` (RFC 3339) being the bar's start.
#[derive(Debug, Clone, Deserialize)]
pub struct CandleResponse {
    pub timestamp: String,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    #[serde(default)]
    pub volume: Decimal,
}

/// `GET /market/price/{symbol}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceResponse {
    pub symbol: String,
    pub price: Decimal,
    #[serde(default)]
    pub bid: Option<Decimal>,
    #[serde(default)]
    pub ask: Option<Decimal>,
}

/// **[decided]** errors are `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// **[decided]** ISO-8601 timestamps are RFC 3339 in UTC.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The longest `Retry-After` honoured: a larger value is read as this, so one odd header cannot
/// park the executor for hours.
pub const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// `Retry-After` as delta-seconds (the form 429 answers use). **[decided]** the HTTP-date form is
/// not expected from the venue and is ignored (the caller's own backoff applies).
pub fn parse_retry_after(value: &str) -> Option<std::time::Duration> {
    let secs: u64 = value.trim().parse().ok()?;
    Some(std::time::Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// The venue's address must be `https://`: every request carries the API key and a signed
/// order. Plain `http://` is accepted only for a loopback address (the simulator, in tests and
/// `sigex demo`, where nothing crosses a network).
pub fn check_base_url(base_url: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(base_url)
        .map_err(|e| format!("[venue] base_url {base_url:?} is not a URL ({e})"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "[venue] base_url {base_url:?} must start with https://: the API key and signed \
             orders must not cross a network in clear text (http:// is accepted only for a \
             loopback address such as the simulator's)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn retry_after_is_read_as_seconds_and_capped() {
        use std::time::Duration;
        let cases = [
            ("1", Some(Duration::from_secs(1))),
            (" 7 ", Some(Duration::from_secs(7))),
            ("0", Some(Duration::ZERO)),
            ("86400", Some(MAX_RETRY_AFTER)),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
            ("-3", None),
            ("", None),
        ];
        for (header, expected) in cases {
            assert_eq!(parse_retry_after(header), expected, "{header:?}");
        }
    }

    #[test]
    fn numbers_are_read_exactly_as_sent() {
        let body = r#"{"orderId":"x","status":"filled","filledQuantity":0.1,"averagePrice":49850.250000000000000001}"#;
        let d: OrderUpdatedData = serde_json::from_str(body).unwrap();
        assert_eq!(d.filled_quantity, Some(Decimal::from_str("0.1").unwrap()));
        assert_eq!(
            d.average_price,
            Some(Decimal::from_str("49850.250000000000000001").unwrap())
        );
    }

    #[test]
    fn order_quantities_are_sent_as_exact_json_numbers() {
        let req = PlaceOrderRequest {
            symbol: "BTC/USD".into(),
            side: "buy".into(),
            order_type: "market".into(),
            quantity: Decimal::from_str("0.10000001").unwrap(),
            price: None,
            stop_price: None,
            time_in_force: "GTC".into(),
            client_order_id: "sx-1".into(),
        };
        let json = serde_json::to_string(&req).unwrap();
        assert!(json.contains(r#""quantity":0.10000001"#), "{json}");
        assert!(!json.contains("price"), "{json}");
    }

    #[test]
    fn a_list_is_read_bare_or_wrapped_and_anything_else_is_an_error() {
        let ok: &[(&str, &[u32])] = &[
            ("[1,2]", &[1, 2]),
            ("[]", &[]),
            (r#"{"data":[1,2],"page":1,"next":null}"#, &[1, 2]),
            (r#"{"orders":[3]}"#, &[3]),
            (r#"{"total":2,"results":[4,5]}"#, &[4, 5]),
            (r#"{"data":{"orders":[6]}}"#, &[6]),
        ];
        for (text, want) in ok {
            let got: Listed<u32> = serde_json::from_str(text).unwrap();
            assert_eq!(got.0, *want, "{text}");
        }
        for text in [r#"{"page":1}"#, r#"{"data":null}"#, "7", r#""[1]""#] {
            let err = serde_json::from_str::<Listed<u32>>(text).unwrap_err();
            assert!(!err.to_string().is_empty(), "{text}");
        }
    }

    #[test]
    fn signing_payload_is_plain_concatenation() {
        let p = rest_signing_payload("post", "/api/v1/orders", b"{}", 1700000000);
        assert_eq!(p, b"POST/api/v1/orders{}1700000000");
    }

    #[test]
    fn symbols_in_paths_are_percent_encoded() {
        assert_eq!(paths::market_price("BTC/USD"), "/market/price/BTC%2FUSD");
    }
}
