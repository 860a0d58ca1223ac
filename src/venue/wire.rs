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
/// **[decided]** an explicit event id header, used for dedupe when present.
pub const HEADER_WEBHOOK_ID: &str = "X-Webhook-Id";
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
    #[serde(default)]
    pub data: serde_json::Value,
}

/// Just what ingress needs from a body: the event name and `data.id`. Everything else in `data`
/// is skipped without being built into values.
#[derive(Debug, Deserialize)]
pub struct EnvelopePeek {
    pub event: String,
    #[serde(default)]
    pub data: Option<DataIdPeek>,
}

/// `data.id` if `data` is an object holding one; any other `data` peeks as no id.
#[derive(Debug, Default)]
pub struct DataIdPeek {
    pub id: Option<serde_json::Value>,
}

impl<'de> Deserialize<'de> for DataIdPeek {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = DataIdPeek;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<DataIdPeek, A::Error> {
                let mut id = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "id" {
                        id = Some(map.next_value::<serde_json::Value>()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(DataIdPeek { id })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<DataIdPeek, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(DataIdPeek::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<DataIdPeek, E> {
                Ok(DataIdPeek::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<DataIdPeek, E> {
                Ok(DataIdPeek::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<DataIdPeek, E> {
                Ok(DataIdPeek::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<DataIdPeek, E> {
                Ok(DataIdPeek::default())
            }
            fn visit_unit<E>(self) -> Result<DataIdPeek, E> {
                Ok(DataIdPeek::default())
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl EnvelopePeek {
    /// **[decided]** `data.id`, when present, is the event's identity for dedupe.
    pub fn data_id(&self) -> Option<String> {
        id_text(self.data.as_ref()?.id.as_ref()?)
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
    fn the_ingress_peek_reads_the_event_and_data_id_only() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                r#"{"event":"a","data":{"id":"x1","big":[1,2,{"c":3}]}}"#,
                "a",
                Some("x1"),
            ),
            (r#"{"event":"b","data":{"id":42}}"#, "b", Some("42")),
            (r#"{"event":"c","data":{"other":1}}"#, "c", None),
            (r#"{"event":"d","data":[1,2]}"#, "d", None),
            (r#"{"event":"e","data":"text"}"#, "e", None),
            (r#"{"event":"f"}"#, "f", None),
            (r#"{"event":"g","data":{"id":""}}"#, "g", None),
            (r#"{"event":"h","data":3.5}"#, "h", None),
            (r#"{"event":"i","data":-7}"#, "i", None),
            (r#"{"event":"j","data":null}"#, "j", None),
        ];
        for (body, event, id) in cases {
            let peek: EnvelopePeek = serde_json::from_str(body).unwrap();
            assert_eq!(peek.event, *event);
            assert_eq!(peek.data_id().as_deref(), *id, "{body}");
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
