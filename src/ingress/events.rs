//! Stored webhook bodies → typed domain events. This is where a signed but unusable event is
//! recognised (and becomes a dead letter with the reason), and where venue values are validated.

use crate::model::{InvalidValue, Recommendation, Signal, Symbol, TechnicalAnalysis};
use crate::store::VenuePosition;
use crate::venue::wire::{self, Envelope};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// What a webhook means to the bot.
#[derive(Debug, Clone)]
pub enum Event {
    Signal(Signal),
    /// `order.created`, `order.updated` and `order.cancelled`.
    Order(OrderNews),
    /// `position.opened`, `position.updated` and `position.closed`.
    Position(VenuePosition),
    Balance {
        asset: String,
        available: Decimal,
        locked: Decimal,
        total: Decimal,
    },
    /// Known events the skeleton records without acting on yet, the venue's `test` event, and
    /// unknown event types: stored and acknowledged, never fatal.
    Recorded {
        event: String,
    },
}

/// News about one order from the venue.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderNews {
    pub order_id: String,
    pub client_order_id: Option<String>,
    /// Verbatim, so an unknown status is kept rather than guessed.
    pub status: String,
    pub filled_quantity: Option<Decimal>,
    pub average_price: Option<Decimal>,
}

impl From<crate::venue::wire::OrderResponse> for OrderNews {
    /// A REST answer about an order is news like a callback.
    fn from(r: crate::venue::wire::OrderResponse) -> Self {
        Self {
            order_id: r.order_id,
            client_order_id: r.client_order_id,
            status: r.status,
            filled_quantity: r.filled_quantity,
            average_price: r.average_price,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not a webhook envelope: {0}")]
    Envelope(String),
    #[error("{event}: {message}")]
    Data { event: String, message: String },
}

pub fn parse(body: &[u8], received_at: DateTime<Utc>) -> Result<Event, ParseError> {
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| ParseError::Envelope(e.to_string()))?;
    let event = env.event.clone();
    let data_err = |message: String| ParseError::Data {
        event: event.clone(),
        message,
    };
    let invalid = |e: InvalidValue| data_err(e.to_string());
    let timestamp = env
        .timestamp
        .as_deref()
        .and_then(wire::parse_timestamp)
        .unwrap_or(received_at);
    macro_rules! data {
        ($t:ty) => {
            serde_json::from_value::<$t>(env.data.clone()).map_err(|e| data_err(e.to_string()))?
        };
    }
    Ok(match env.event.as_str() {
        "signal.generated" => {
            let d = data!(wire::SignalData);
            let confidence = d.confidence.as_i64().ok_or_else(|| {
                data_err(format!("confidence {} is not a whole number", d.confidence))
            })?;
            let ta = d.technical_analysis.map(|t| TechnicalAnalysis {
                rsi: t.rsi,
                macd: t.macd.map(|m| match m {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                }),
                support: t.support,
                resistance: t.resistance,
            });
            Event::Signal(Signal {
                symbol: Symbol::parse(&d.symbol).map_err(invalid)?,
                recommendation: Recommendation::parse(&d.recommendation).map_err(invalid)?,
                confidence: Signal::confidence_checked(confidence).map_err(invalid)?,
                time_horizon: d.time_horizon,
                risk_level: d.risk_level,
                reasoning: d.reasoning,
                technical: ta.unwrap_or_default(),
                generated_at: timestamp,
            })
        }
        "order.created" => {
            let d = data!(wire::OrderCreatedData);
            Symbol::parse(&d.symbol).map_err(invalid)?;
            crate::model::Side::parse(&d.side).map_err(invalid)?;
            Event::Order(OrderNews {
                order_id: non_empty("orderId", d.order_id).map_err(invalid)?,
                client_order_id: d.client_order_id,
                status: d.status,
                filled_quantity: None,
                average_price: None,
            })
        }
        "order.updated" => {
            let d = data!(wire::OrderUpdatedData);
            if d.filled_quantity.is_some_and(|q| q < Decimal::ZERO) {
                return Err(data_err("filledQuantity is negative".into()));
            }
            Event::Order(OrderNews {
                order_id: non_empty("orderId", d.order_id).map_err(invalid)?,
                client_order_id: d.client_order_id,
                status: d.status,
                filled_quantity: d.filled_quantity,
                average_price: d.average_price,
            })
        }
        "order.cancelled" => {
            let d = data!(wire::OrderCancelledData);
            Event::Order(OrderNews {
                order_id: non_empty("orderId", d.order_id).map_err(invalid)?,
                client_order_id: d.client_order_id,
                status: "cancelled".into(),
                filled_quantity: None,
                average_price: None,
            })
        }
        "position.opened" | "position.updated" | "position.closed" => {
            let d = data!(wire::PositionData);
            let symbol = Symbol::parse(&d.symbol).map_err(invalid)?;
            let closed = env.event == "position.closed";
            // The venue reports size unsigned with a side; store it signed like ours.
            let signed = match d.side.as_deref() {
                Some("short") => -d.quantity.abs(),
                _ => d.quantity,
            };
            Event::Position(VenuePosition {
                symbol: symbol.as_str().to_owned(),
                side: d.side,
                quantity: if closed { Decimal::ZERO } else { signed },
                average_price: d.average_price,
                unrealized_pnl: d.unrealized_pnl,
                mark_price: d.mark_price.or(d.close_price),
                realized_pnl: d.realized_pnl,
            })
        }
        "account.balance_updated" => {
            let d = data!(wire::BalanceData);
            Event::Balance {
                asset: d.asset,
                available: d.available,
                locked: d.locked,
                total: d.total,
            }
        }
        _ => Event::Recorded { event: env.event },
    })
}

fn non_empty(field: &'static str, s: String) -> Result<String, InvalidValue> {
    if s.is_empty() {
        Err(InvalidValue::new(field, "is empty"))
    } else {
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/seed-events/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn every_seed_fixture_parses() {
        for name in [
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
        ] {
            parse(&fixture(name), Utc::now()).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn the_seed_signal_becomes_a_domain_signal() {
        let Event::Signal(s) = parse(&fixture("signal.generated"), Utc::now()).unwrap() else {
            panic!("not a signal")
        };
        assert_eq!(s.symbol.as_str(), "BTC/USD");
        assert_eq!(s.confidence, 87);
        assert_eq!(s.technical.support, Some("48500.0".parse().unwrap()));
        assert_eq!(s.technical.macd.as_deref(), Some("bullish"));
    }

    #[test]
    fn unusable_signed_events_are_errors_not_panics() {
        let cases: &[(&str, &str)] = &[
            ("not json", "{"),
            ("no event", r#"{"data":{}}"#),
            (
                "confidence 140",
                r#"{"event":"signal.generated","data":{"symbol":"BTC/USD","recommendation":"buy","confidence":140}}"#,
            ),
            (
                "confidence fraction",
                r#"{"event":"signal.generated","data":{"symbol":"BTC/USD","recommendation":"buy","confidence":80.5}}"#,
            ),
            (
                "bad recommendation",
                r#"{"event":"signal.generated","data":{"symbol":"BTC/USD","recommendation":"moon","confidence":80}}"#,
            ),
            (
                "empty symbol",
                r#"{"event":"signal.generated","data":{"symbol":"","recommendation":"buy","confidence":80}}"#,
            ),
            (
                "quantity as text NaN",
                r#"{"event":"order.updated","data":{"orderId":"a","status":"filled","filledQuantity":"NaN"}}"#,
            ),
            (
                "huge number",
                r#"{"event":"order.updated","data":{"orderId":"a","status":"filled","filledQuantity":1e400}}"#,
            ),
            (
                "missing order id",
                r#"{"event":"order.updated","data":{"status":"filled"}}"#,
            ),
        ];
        for (name, body) in cases {
            assert!(
                parse(body.as_bytes(), Utc::now()).is_err(),
                "{name} was accepted"
            );
        }
    }

    #[test]
    fn unknown_events_are_recorded() {
        let e = parse(br#"{"event":"shiny.new","data":{}}"#, Utc::now()).unwrap();
        assert!(matches!(e, Event::Recorded { event } if event == "shiny.new"));
    }
}
