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

/// One booked fill, as input to the PnL curve.
#[derive(Debug, Clone)]
pub struct FillPoint {
    pub at: String,
    pub symbol: String,
    /// Buys positive, sells negative.
    pub signed_quantity: Decimal,
    pub price: Decimal,
}

/// Realized and unrealized PnL just after one fill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PnlPoint {
    pub at: String,
    pub realized_pnl: Decimal,
    pub unrealized_pnl: Decimal,
    pub pnl: Decimal,
}

/// The PnL curve over time: fills replayed in order, every open position marked at the last
/// price seen for its symbol (its latest fill).
pub fn pnl_curve(fills: &[FillPoint]) -> Vec<PnlPoint> {
    let mut positions: std::collections::BTreeMap<&str, (Position, Decimal)> =
        std::collections::BTreeMap::new();
    let mut out = Vec::with_capacity(fills.len());
    for f in fills {
        let entry = positions
            .entry(f.symbol.as_str())
            .or_insert((Position::default(), f.price));
        entry.0 = entry.0.apply_fill(f.signed_quantity, f.price);
        entry.1 = f.price;
        let (realized, unrealized) = totals(positions.values());
        out.push(PnlPoint {
            at: f.at.clone(),
            realized_pnl: realized,
            unrealized_pnl: unrealized,
            pnl: realized + unrealized,
        });
    }
    out
}

fn totals<'a>(it: impl Iterator<Item = &'a (Position, Decimal)>) -> (Decimal, Decimal) {
    it.fold((Decimal::ZERO, Decimal::ZERO), |(r, u), (p, mark)| {
        (r + p.realized_pnl, u + p.unrealized_pnl(*mark))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pnl_curve_replays_fills_and_marks_open_positions_at_the_last_fill_price() {
        let fill = |at: &str, symbol: &str, q: &str, p: &str| FillPoint {
            at: at.into(),
            symbol: symbol.into(),
            signed_quantity: d(q),
            price: d(p),
        };
        let curve = pnl_curve(&[
            fill("t1", "BTC/USD", "1", "100"),
            fill("t2", "ETH/USD", "2", "10"),
            fill("t3", "BTC/USD", "1", "110"),
            fill("t4", "BTC/USD", "-2", "120"),
        ]);
        let got: Vec<_> = curve
            .iter()
            .map(|p| (p.at.as_str(), p.realized_pnl, p.unrealized_pnl, p.pnl))
            .collect();
        assert_eq!(
            got,
            vec![
                ("t1", d("0"), d("0"), d("0")),
                ("t2", d("0"), d("0"), d("0")),
                // BTC 2 @ 105 marked at 110.
                ("t3", d("0"), d("10"), d("10")),
                // Closed at 120: 2 x 15 realized.
                ("t4", d("30"), d("0"), d("30")),
            ]
        );
    }

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
