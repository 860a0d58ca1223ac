//! Checked arithmetic for numbers that come from the venue. A `Decimal` holds about ±7.9e28; a
//! signed webhook can carry anything up to that, and the sum or product of two such values does
//! not fit. Every operation here says so as an [`Overflow`] (which makes the event a dead letter
//! with the reason) instead of panicking.

use rust_decimal::Decimal;

/// A computation on venue-supplied numbers whose result a `Decimal` cannot hold (or a division by
/// zero); the text shows the operands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("arithmetic overflow: {0}")]
pub struct Overflow(pub String);

pub fn add(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_add(b)
        .ok_or_else(|| Overflow(format!("{a} + {b}")))
}

pub fn sub(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_sub(b)
        .ok_or_else(|| Overflow(format!("{a} - {b}")))
}

pub fn mul(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_mul(b)
        .ok_or_else(|| Overflow(format!("{a} x {b}")))
}

pub fn div(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_div(b)
        .ok_or_else(|| Overflow(format!("{a} / {b}")))
}

/// The sum of `values`, or the first overflow.
pub fn sum(values: impl IntoIterator<Item = Decimal>) -> Result<Decimal, Overflow> {
    values.into_iter().try_fold(Decimal::ZERO, add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_deposits_of_5e28_overflow_as_a_value_not_a_panic() {
        let five = Decimal::from_scientific("5e28").unwrap();
        let e = add(five, five).unwrap_err();
        assert!(
            e.to_string().starts_with("arithmetic overflow: 50000"),
            "{e}"
        );
        assert_eq!(sum([five, -five, five]), Ok(five));
        assert!(sum([five, five, -five]).is_err(), "no reordering hides it");
        assert!(mul(five, Decimal::TWO).is_err());
        assert!(sub(-five, five).is_err());
        assert!(div(Decimal::ONE, Decimal::ZERO).is_err());
        assert_eq!(div(Decimal::TEN, Decimal::TWO), Ok(Decimal::from(5)));
    }
}
