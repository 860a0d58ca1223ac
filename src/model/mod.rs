//! Domain types shared by every part: symbols, sides, prices, quantities and signals.
//!
//! These are the types decision code works with. They can only be built through `parse`/`TryFrom`,
//! which is where bad input is refused: a `Quantity` is never zero or negative, a `Symbol` is never
//! empty, a `Signal` never has a confidence above 100. Money and quantities are `Decimal`, never floats.

pub mod checked;
pub mod events;
mod signal;

pub use checked::Overflow;
pub use signal::{Recommendation, Signal, TechnicalAnalysis};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a value from outside could not become a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub problem: String,
}

impl InvalidValue {
    pub fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

/// A tradable instrument such as `BTC/USD`: `BASE/QUOTE`, upper-case letters and digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Symbol(String);

impl Symbol {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let valid_part = |p: &str| {
            !p.is_empty()
                && p.len() <= 16
                && p.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        };
        match s.split_once('/') {
            Some((base, quote)) if valid_part(base) && valid_part(quote) => Ok(Self(s.to_owned())),
            _ => Err(InvalidValue::new(
                "symbol",
                format!("{s:?} is not of the form BASE/QUOTE (e.g. \"BTC/USD\")"),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Symbol::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    /// +1 for buys, -1 for sells: the sign a fill of this side gives a position.
    pub fn sign(self) -> Decimal {
        match self {
            Side::Buy => Decimal::ONE,
            Side::Sell => Decimal::NEGATIVE_ONE,
        }
    }

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "buy" => Ok(Side::Buy),
            "sell" => Ok(Side::Sell),
            other => Err(InvalidValue::new(
                "side",
                format!("{other:?} is not buy or sell"),
            )),
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A strictly positive order quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quantity(Decimal);

impl Quantity {
    pub fn new(value: Decimal) -> Result<Self, InvalidValue> {
        if value > Decimal::ZERO {
            Ok(Self(value.normalize()))
        } else {
            Err(InvalidValue::new(
                "quantity",
                format!("{value} is not above zero"),
            ))
        }
    }

    pub fn get(self) -> Decimal {
        self.0
    }
}

/// A strictly positive price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Price(Decimal);

impl Price {
    pub fn new(value: Decimal) -> Result<Self, InvalidValue> {
        if value > Decimal::ZERO {
            Ok(Self(value.normalize()))
        } else {
            Err(InvalidValue::new(
                "price",
                format!("{value} is not above zero"),
            ))
        }
    }

    pub fn get(self) -> Decimal {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_must_be_base_slash_quote() {
        assert!(Symbol::parse("BTC/USD").is_ok());
        for bad in ["", "BTC", "btc/usd", "/USD", "BTC/", "BTC/USD/X", "BTC USD"] {
            assert!(Symbol::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn zero_and_negative_quantities_cannot_exist() {
        assert!(Quantity::new(Decimal::ZERO).is_err());
        assert!(Quantity::new(Decimal::NEGATIVE_ONE).is_err());
        assert_eq!(
            Quantity::new(Decimal::new(1000, 4)).unwrap().get(),
            Decimal::new(1, 1)
        );
    }
}
