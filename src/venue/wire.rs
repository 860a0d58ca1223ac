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
    pub fn orders_by_client_id(client_order_id: &str) -> String {
        format!(
            "/orders?clientOrderId={}",
            urlencoding::encode(client_order_id)
        )
    }
    pub const POSITIONS: &str = "/positions";
    pub const BALANCES: &str = "/account/balances";
    pub fn market_price(symbol: &str) -> String {
        format!("/market/price/{}", super::encode_symbol_for_path(symbol))
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

/// **[decided]** `data.id`, when present, is the event's identity for dedupe.
pub fn data_id(data: &serde_json::Value) -> Option<String> {
    match data.get("id")? {
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
    #[serde(default)]
    pub realized_pnl: Option<Decimal>,
    #[serde(default)]
    pub close_price: Option<Decimal>,
    #[serde(default)]
    pub margin_ratio: Option<Decimal>,
}

#[derive(Debug, Deserialize)]
pub struct BalanceData {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

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
    fn signing_payload_is_plain_concatenation() {
        let p = rest_signing_payload("post", "/api/v1/orders", b"{}", 1700000000);
        assert_eq!(p, b"POST/api/v1/orders{}1700000000");
    }

    #[test]
    fn symbols_in_paths_are_percent_encoded() {
        assert_eq!(paths::market_price("BTC/USD"), "/market/price/BTC%2FUSD");
    }
}
