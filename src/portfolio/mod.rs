//! Positions computed from our own fills: quantity (signed: long > 0, short < 0), average entry
//! price and realized PnL. Pure arithmetic on `Decimal`; the caller persists.

use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Position {
    pub quantity: Decimal,
    pub average_price: Decimal,
    pub realized_pnl: Decimal,
}

impl Position {
    /// Books a fill of `signed_qty` (buys positive) at `price`.
    pub fn apply_fill(&self, signed_qty: Decimal, price: Decimal) -> Position {
        let q = self.quantity;
        if q.is_zero() || q.is_sign_positive() == signed_qty.is_sign_positive() {
            let new_q = q + signed_qty;
            let avg = (q.abs() * self.average_price + signed_qty.abs() * price) / new_q.abs();
            return Position {
                quantity: new_q,
                average_price: avg,
                realized_pnl: self.realized_pnl,
            };
        }
        // Reducing, closing or reversing.
        let closed = signed_qty.abs().min(q.abs());
        let direction = if q.is_sign_positive() {
            Decimal::ONE
        } else {
            Decimal::NEGATIVE_ONE
        };
        let realized = self.realized_pnl + closed * (price - self.average_price) * direction;
        let new_q = q + signed_qty;
        let average_price = if new_q.is_zero() {
            Decimal::ZERO
        } else if new_q.is_sign_positive() != q.is_sign_positive() {
            price
        } else {
            self.average_price
        };
        Position {
            quantity: new_q,
            average_price,
            realized_pnl: realized,
        }
    }

    pub fn unrealized_pnl(&self, mark: Decimal) -> Decimal {
        self.quantity * (mark - self.average_price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn fills_build_reduce_and_reverse_positions() {
        let cases = [
            (
                "open long",
                Position::default(),
                "1",
                "100",
                "1",
                "100",
                "0",
            ),
            (
                "add to long",
                pos("1", "100", "0"),
                "1",
                "110",
                "2",
                "105",
                "0",
            ),
            (
                "reduce long at a profit",
                pos("2", "105", "0"),
                "-1",
                "115",
                "1",
                "105",
                "10",
            ),
            (
                "close long at a loss",
                pos("1", "105", "10"),
                "-1",
                "100",
                "0",
                "0",
                "5",
            ),
            (
                "reverse long to short",
                pos("1", "100", "0"),
                "-3",
                "90",
                "-2",
                "90",
                "-10",
            ),
            (
                "cover short at a profit",
                pos("-2", "90", "0"),
                "2",
                "80",
                "0",
                "0",
                "20",
            ),
        ];
        for (name, start, qty, price, want_q, want_avg, want_pnl) in cases {
            let p = start.apply_fill(d(qty), d(price));
            assert_eq!(p, pos(want_q, want_avg, want_pnl), "{name}");
        }
    }

    fn pos(q: &str, avg: &str, pnl: &str) -> Position {
        Position {
            quantity: d(q),
            average_price: d(avg),
            realized_pnl: d(pnl),
        }
    }
}
