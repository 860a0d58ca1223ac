//! The AI trading signal, as the strategy layer sees it.

use super::{InvalidValue, Symbol};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Recommendation {
    Buy,
    Sell,
    Hold,
}

impl Recommendation {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "buy" => Ok(Self::Buy),
            "sell" => Ok(Self::Sell),
            "hold" => Ok(Self::Hold),
            other => Err(InvalidValue::new(
                "recommendation",
                format!("{other:?} is not buy, sell or hold"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buy => "buy",
            Self::Sell => "sell",
            Self::Hold => "hold",
        }
    }
}

/// Indicators the venue attaches to a signal; each may be absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TechnicalAnalysis {
    pub rsi: Option<Decimal>,
    /// Kept as text: the venue sends either a word ("bullish") or a number.
    pub macd: Option<String>,
    pub support: Option<Decimal>,
    pub resistance: Option<Decimal>,
}

/// A validated `signal.generated` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signal {
    pub symbol: Symbol,
    pub recommendation: Recommendation,
    /// 0..=100, checked at construction.
    pub confidence: u8,
    /// Kept verbatim (`short_term`, `medium`, ...) so strategy files can match on new values.
    pub time_horizon: Option<String>,
    pub risk_level: Option<String>,
    pub reasoning: Vec<String>,
    pub technical: TechnicalAnalysis,
    /// When the venue says it generated the signal.
    pub generated_at: DateTime<Utc>,
}

impl Signal {
    pub fn confidence_checked(value: i64) -> Result<u8, InvalidValue> {
        u8::try_from(value)
            .ok()
            .filter(|c| *c <= 100)
            .ok_or_else(|| {
                InvalidValue::new("confidence", format!("{value} is not within 0..=100"))
            })
    }
}
