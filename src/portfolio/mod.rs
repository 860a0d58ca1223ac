//! Positions computed from our own fills: quantity (signed: long > 0, short < 0), average entry
//! price, realized PnL (gross of fees, and the fees apart) and the realized PnL of the position
//! since it was last opened from flat. Pure arithmetic on `Decimal`; the caller persists.

use crate::model::checked::{add, div, mul, sub};
use crate::model::Overflow;
use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    pub quantity: Decimal,
    pub average_price: Decimal,
    /// Realized PnL of every closed quantity, before fees.
    pub realized_pnl: Decimal,
    /// Fees paid on this symbol's fills.
    pub fees: Decimal,
    /// Realized PnL (before fees) since the position was last opened from flat: what the venue's
    /// `position.closed` reports when it goes flat again.
    pub episode_realized: Decimal,
}

/// A position that went flat (or reversed through flat) on a fill: ours to compare with the
/// venue's `position.closed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedPosition {
    /// `long` or `short`: the side that was closed.
    pub side: &'static str,
    /// Average entry price of the closed position.
    pub entry_price: Decimal,
    /// Realized PnL over the position's life, before fees.
    pub realized_pnl: Decimal,
}

impl Position {
    /// Books a fill of `signed_qty` (buys positive) at `price`; a fill that cannot be booked
    /// (overflow) leaves the position as it was. For replays of fills already booked once.
    pub fn apply_fill(&self, signed_qty: Decimal, price: Decimal) -> Position {
        self.book_fill(signed_qty, price)
            .map_or_else(|_| self.clone(), |(p, _)| p)
    }

    /// Books a fill and says whether it closed the position (going flat or reversing). The
    /// numbers come from the venue: a result a `Decimal` cannot hold is an [`Overflow`].
    pub fn book_fill(
        &self,
        signed_qty: Decimal,
        price: Decimal,
    ) -> Result<(Position, Option<ClosedPosition>), Overflow> {
        let q = self.quantity;
        if q.is_zero() || q.is_sign_positive() == signed_qty.is_sign_positive() {
            let new_q = add(q, signed_qty)?;
            let cost = add(
                mul(q.abs(), self.average_price)?,
                mul(signed_qty.abs(), price)?,
            )?;
            let avg = div(cost, new_q.abs())?;
            let episode_realized = if q.is_zero() {
                Decimal::ZERO
            } else {
                self.episode_realized
            };
            let p = Position {
                quantity: new_q,
                average_price: avg,
                episode_realized,
                ..self.clone()
            };
            return Ok((p, None));
        }
        // Reducing, closing or reversing.
        let closed = signed_qty.abs().min(q.abs());
        let direction = if q.is_sign_positive() {
            Decimal::ONE
        } else {
            Decimal::NEGATIVE_ONE
        };
        let pnl = mul(mul(closed, sub(price, self.average_price)?)?, direction)?;
        let new_q = add(q, signed_qty)?;
        let went_flat = new_q.is_zero() || new_q.is_sign_positive() != q.is_sign_positive();
        let average_price = if new_q.is_zero() {
            Decimal::ZERO
        } else if went_flat {
            price
        } else {
            self.average_price
        };
        let episode_realized = add(self.episode_realized, pnl)?;
        let closed_position = went_flat.then(|| ClosedPosition {
            side: if q.is_sign_positive() {
                "long"
            } else {
                "short"
            },
            entry_price: self.average_price,
            realized_pnl: episode_realized,
        });
        let p = Position {
            quantity: new_q,
            average_price,
            realized_pnl: add(self.realized_pnl, pnl)?,
            fees: self.fees,
            episode_realized: if went_flat {
                Decimal::ZERO
            } else {
                episode_realized
            },
        };
        Ok((p, closed_position))
    }

    /// Realized PnL after fees.
    pub fn net_realized(&self) -> Result<Decimal, Overflow> {
        sub(self.realized_pnl, self.fees)
    }
}

/// What a position of signed `quantity` entered at `average_price` would gain or lose if closed
/// at `mark` (a short gains as the price falls). Where the mark comes from is `admin::pnl`'s rule.
pub fn unrealized_pnl(quantity: Decimal, average_price: Decimal, mark: Decimal) -> Decimal {
    quantity * (mark - average_price)
}

/// The fees of an order whose fills total `filled_notional`: the fees the venue reported for the
/// fills it listed (`reported_notional` of them), and `fee_bps` basis points of the notional
/// they do not cover (fills only known from cumulative news, or listed without a fee).
pub fn order_fees(
    filled_notional: Decimal,
    reported_notional: Decimal,
    reported_fees: Decimal,
    fee_bps: Decimal,
) -> Result<Decimal, Overflow> {
    let uncovered = sub(filled_notional, reported_notional)?.max(Decimal::ZERO);
    add(
        reported_fees,
        div(mul(uncovered, fee_bps)?, Decimal::from(10_000))?,
    )
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
            let want = pos(want_q, want_avg, want_pnl);
            assert_eq!(
                (p.quantity, p.average_price, p.realized_pnl),
                (want.quantity, want.average_price, want.realized_pnl),
                "{name}"
            );
        }
    }

    #[test]
    fn order_fees_are_reported_fees_plus_the_rate_on_what_they_do_not_cover() {
        // (filled notional, reported notional, reported fees, bps, fees)
        let cases = [
            (
                "nothing reported: all estimated",
                "10000",
                "0",
                "0",
                "5",
                "5",
            ),
            (
                "all reported: the rate is unused",
                "10000",
                "10000",
                "2",
                "5",
                "2",
            ),
            ("half reported", "10000", "5000", "1", "5", "3.5"),
            ("no fee rate", "10000", "0", "0", "0", "0"),
            (
                "listed beyond the cumulative news",
                "5000",
                "6000",
                "1.2",
                "5",
                "1.2",
            ),
        ];
        for (name, filled, reported, fees, bps, want) in cases {
            assert_eq!(
                order_fees(d(filled), d(reported), d(fees), d(bps)).unwrap(),
                d(want),
                "{name}"
            );
        }
    }

    fn pos(q: &str, avg: &str, pnl: &str) -> Position {
        Position {
            quantity: d(q),
            average_price: d(avg),
            realized_pnl: d(pnl),
            ..Position::default()
        }
    }

    #[test]
    fn a_position_closing_through_flat_reports_its_whole_life() {
        // Open long 2 @ 100, take 1 off at 110 (+10), close the last 1 at 90 (-10): the closed
        // position realized 0 over its life; then a reversal closes a short with its own PnL.
        let p = Position::default();
        let (p, c) = p.book_fill(d("2"), d("100")).unwrap();
        assert_eq!(c, None);
        let (p, c) = p.book_fill(d("-1"), d("110")).unwrap();
        assert_eq!((c, p.episode_realized), (None, d("10")));
        let (p, c) = p.book_fill(d("-1"), d("90")).unwrap();
        assert_eq!(
            c,
            Some(ClosedPosition {
                side: "long",
                entry_price: d("100"),
                realized_pnl: d("0"),
            })
        );
        assert_eq!(
            (p.quantity, p.realized_pnl, p.episode_realized),
            (d("0"), d("0"), d("0"))
        );
        let (p, _) = p.book_fill(d("-1"), d("50")).unwrap();
        let (p, c) = p.book_fill(d("3"), d("40")).unwrap();
        assert_eq!(
            c,
            Some(ClosedPosition {
                side: "short",
                entry_price: d("50"),
                realized_pnl: d("10"),
            })
        );
        // The reversal opens a long of 2 at 40 with nothing realized yet.
        assert_eq!(
            (
                p.quantity,
                p.average_price,
                p.episode_realized,
                p.realized_pnl
            ),
            (d("2"), d("40"), d("0"), d("10"))
        );
    }
}
