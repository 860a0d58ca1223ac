//! The snapshot diff: our positions, computed from our fills, against the venue's.
//!
//! Pure. Invariants: a symbol missing on one side counts as flat there; a difference at or within
//! the tolerance is not drift; the result is ordered by symbol, so the same inputs always give the
//! same report.

use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};

/// One symbol whose two views disagree by more than the tolerance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub symbol: String,
    /// Signed quantity by our fills.
    pub ours: Decimal,
    /// Signed quantity by the venue.
    pub venue: Decimal,
}

impl Drift {
    /// Both views, for the trading-state reason, the log and the notification.
    pub fn describe(&self) -> String {
        format!(
            "position drift: ours {} (from our fills), venue {}",
            self.ours.normalize(),
            self.venue.normalize()
        )
    }
}

/// Every symbol where `ours` and `venue` differ by more than `tolerance`.
pub fn position_drift(
    ours: &BTreeMap<String, Decimal>,
    venue: &BTreeMap<String, Decimal>,
    tolerance: Decimal,
) -> Vec<Drift> {
    let symbols: BTreeSet<&String> = ours.keys().chain(venue.keys()).collect();
    symbols
        .into_iter()
        .filter_map(|s| {
            let o = ours.get(s).copied().unwrap_or_default();
            let v = venue.get(s).copied().unwrap_or_default();
            ((o - v).abs() > tolerance).then(|| Drift {
                symbol: s.clone(),
                ours: o,
                venue: v,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(entries: &[(&str, i64)]) -> BTreeMap<String, Decimal> {
        entries
            .iter()
            .map(|(s, q)| (s.to_string(), Decimal::new(*q, 3)))
            .collect()
    }

    /// (name, ours, venue, symbols drifting)
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, i64)],
        &'a [(&'a str, i64)],
        &'a [&'a str],
    );

    #[test]
    fn drift_is_reported_only_beyond_the_tolerance_and_a_missing_symbol_is_flat() {
        let tolerance = Decimal::new(1, 3);
        let cases: [Case; 7] = [
            ("equal books", &[("BTC/USD", 500)], &[("BTC/USD", 500)], &[]),
            ("both empty", &[], &[], &[]),
            (
                "within tolerance",
                &[("BTC/USD", 500)],
                &[("BTC/USD", 501)],
                &[],
            ),
            (
                "beyond tolerance",
                &[("BTC/USD", 500)],
                &[("BTC/USD", 502)],
                &["BTC/USD"],
            ),
            (
                "venue has a position we lack",
                &[],
                &[("ETH/USD", 1000)],
                &["ETH/USD"],
            ),
            (
                "we hold one the venue lacks",
                &[("ETH/USD", -1000)],
                &[],
                &["ETH/USD"],
            ),
            (
                "flat on our side is no position",
                &[("ETH/USD", 0)],
                &[],
                &[],
            ),
        ];
        for (name, ours, venue, expected) in cases {
            let got: Vec<String> = position_drift(&book(ours), &book(venue), tolerance)
                .into_iter()
                .map(|d| d.symbol)
                .collect();
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn a_drift_report_shows_both_views() {
        let d = Drift {
            symbol: "BTC/USD".into(),
            ours: Decimal::new(5, 1),
            venue: Decimal::new(75, 2),
        };
        assert_eq!(
            d.describe(),
            "position drift: ours 0.5 (from our fills), venue 0.75"
        );
    }
}
