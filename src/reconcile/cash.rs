//! The cash check: the venue's quote-asset balance against what our own books say it should be.
//!
//! From a baseline (the venue's total and our numbers at one snapshot), the venue's total should
//! move exactly by our realized PnL after fees plus the completed deposits and withdrawals we were
//! told about. **[decided]** (see `venue::wire`) the venue's `total` is cash: unrealized PnL is
//! not in it. Fees still estimated (orders whose fill list has not been read) widen the tolerance
//! by their own amount. A difference beyond that is *suspect*; two suspect snapshots in a row are
//! drift: reported with both views, and the baseline's venue total is shifted by the difference
//! so the same difference is not reported again. A baseline is only taken when no fee is an
//! estimate (an estimate's error would stay in it). Pure; the caller reads and stores.

use crate::model::checked::{add, sub};
use crate::model::Overflow;
use crate::store::CashView;
use rust_decimal::Decimal;

/// The numbers a later snapshot is compared from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Baseline {
    pub venue_total: Decimal,
    /// Our realized PnL after fees plus transfers, at the baseline.
    pub ours: Decimal,
}

impl Baseline {
    pub fn of(view: &CashView, venue_total: Decimal) -> Result<Self, Overflow> {
        Ok(Self {
            venue_total,
            ours: add(view.net_realized, view.transfers)?,
        })
    }
}

/// The venue's balance against the one our books expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CashDrift {
    pub expected: Decimal,
    pub venue: Decimal,
}

impl CashDrift {
    pub fn describe(&self, asset: &str) -> String {
        format!(
            "balance drift: ours {} {asset} (the baseline moved by our realized PnL after fees and \
             transfers), venue {} {asset}",
            self.expected.normalize(),
            self.venue.normalize()
        )
    }
}

/// Compares `view` with `baseline`: `Some` when the venue's total is off by more than the
/// tolerance plus the fees not yet settled. The numbers are the venue's: one that does not fit a
/// `Decimal` is an [`Overflow`] for the caller to report.
pub fn compare(
    baseline: Baseline,
    view: &CashView,
    tolerance: Decimal,
) -> Result<Option<CashDrift>, Overflow> {
    let Some(venue) = view.venue_total else {
        return Ok(None);
    };
    let moved = sub(add(view.net_realized, view.transfers)?, baseline.ours)?;
    let expected = add(baseline.venue_total, moved)?;
    let off = sub(venue, expected)?.abs();
    Ok((off > add(tolerance, view.unsettled_fees.abs())?).then_some(CashDrift { expected, venue }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn view(total: &str, net: &str, transfers: &str, unsettled: &str) -> CashView {
        CashView {
            venue_total: Some(d(total)),
            net_realized: d(net),
            transfers: d(transfers),
            unsettled_fees: d(unsettled),
        }
    }

    #[test]
    fn the_venue_total_must_move_by_our_pnl_and_transfers() {
        // Baseline: venue 10000 when our net realized was 50 and transfers 0.
        let baseline = Baseline::of(&view("10000", "50", "0", "0"), d("10000")).unwrap();
        let tolerance = d("0.01");
        // (name, view, drift expected: Some(expected balance))
        let cases = [
            ("nothing happened", view("10000", "50", "0", "0"), None),
            (
                "a profit of 25 after fees",
                view("10025", "75", "0", "0"),
                None,
            ),
            ("a withdrawal of 500", view("9500", "50", "-500", "0"), None),
            (
                "within the tolerance",
                view("10000.01", "50", "0", "0"),
                None,
            ),
            (
                "a fee we never booked",
                view("9999", "50", "0", "0"),
                Some("10000"),
            ),
            (
                "a withdrawal we never heard of",
                view("9500", "50", "0", "0"),
                Some("10000"),
            ),
            (
                "estimated fees widen the tolerance",
                view("9999.5", "50", "0", "0.6"),
                None,
            ),
            (
                "but not beyond them",
                view("9999", "50", "0", "0.6"),
                Some("10000"),
            ),
        ];
        for (name, v, want) in cases {
            let got = compare(baseline, &v, tolerance)
                .unwrap()
                .map(|c| c.expected);
            assert_eq!(got, want.map(d), "{name}");
        }
        let no_balance = CashView::default();
        assert_eq!(compare(baseline, &no_balance, tolerance), Ok(None));
        let absurd = view(
            "79228162514264337593543950335",
            "0",
            "-50000000000000000000000000000",
            "0",
        );
        assert!(
            compare(baseline, &absurd, tolerance).is_err(),
            "too large to compare is an error, not a panic"
        );
    }

    #[test]
    fn a_cash_drift_shows_both_views() {
        let c = CashDrift {
            expected: d("10000.50"),
            venue: d("9999"),
        };
        assert_eq!(
            c.describe("USD"),
            "balance drift: ours 10000.5 USD (the baseline moved by our realized PnL after fees and transfers), venue 9999 USD"
        );
    }
}
