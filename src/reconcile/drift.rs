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
            // A difference too large to compute is drift.
            let differs = o.checked_sub(v).is_none_or(|d| d.abs() > tolerance);
            differs.then(|| Drift {
                symbol: s.clone(),
                ours: o,
                venue: v,
            })
        })
        .collect()
}

/// Which of our closed positions a venue `position.closed` describes. `ours` are our unmatched
/// closed positions, oldest first, as (entry price, realized PnL before fees); the venue gives its
/// entry price (if any) and realized PnL. Candidates are ours at the same entry price (to a
/// millionth, the venue rounds), or all of ours when the venue gave no price. Among them the
/// oldest whose realized PnL agrees within `tolerance` is the match; failing that, the oldest.
///
/// Why not simply the oldest: two positions can be entered at the same price, and the venue's
/// `position.closed` events can arrive in another order than our closing fills (retries, delays).
/// Pairing by price alone then compares one position's PnL with the other's and reports drift
/// that does not exist. A real drift still surfaces: its venue report finds no agreeing candidate.
pub fn match_closed(
    ours: &[(Decimal, Decimal)],
    venue_entry: Option<Decimal>,
    venue_realized: Decimal,
    tolerance: Decimal,
) -> Option<usize> {
    let same_entry = |o: &Decimal| {
        venue_entry.is_none_or(|v| {
            o.checked_sub(v)
                .is_some_and(|d| d.abs() <= v.abs() * Decimal::new(1, 6))
        })
    };
    let agrees = |r: &Decimal| {
        r.checked_sub(venue_realized)
            .is_some_and(|d| d.abs() <= tolerance)
    };
    let candidates = || ours.iter().enumerate().filter(|(_, (e, _))| same_entry(e));
    candidates()
        .find(|(_, (_, r))| agrees(r))
        .or_else(|| candidates().next())
        .map(|(i, _)| i)
}

/// Our realized PnL of a closed position against the venue's, both before fees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PnlDrift {
    pub symbol: String,
    pub side: String,
    pub entry_price: Decimal,
    pub ours: Decimal,
    pub venue: Decimal,
}

impl PnlDrift {
    /// `Some` when the two differ by more than `tolerance`.
    pub fn check(self, tolerance: Decimal) -> Option<Self> {
        // A difference too large to compute is drift.
        let differs = self
            .ours
            .checked_sub(self.venue)
            .is_none_or(|d| d.abs() > tolerance);
        differs.then_some(self)
    }

    /// Both views, for the trading-state reason, the log and the notification.
    pub fn describe(&self) -> String {
        format!(
            "realized PnL drift on the closed {} entered at {}: ours {} (from our fills, before fees), venue {}",
            self.side,
            self.entry_price.normalize(),
            self.ours.normalize(),
            self.venue.normalize()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_venue_close_matches_our_oldest_close_at_the_same_entry_price_whose_pnl_agrees() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let tolerance = d("0.01");
        // Two longs entered at 100 (the first lost 0.2, the second made 0.57) and one at 50000.12.
        let ours = [
            (d("100"), d("-0.2")),
            (d("50000.123456789"), d("3")),
            (d("100"), d("0.57")),
        ];
        let cases = [
            (
                "same price and PnL: the first",
                Some(d("100")),
                d("-0.2"),
                Some(0),
            ),
            (
                "same price, the second's PnL: not the oldest (reports arrived out of order)",
                Some(d("100")),
                d("0.57"),
                Some(2),
            ),
            (
                "same price, no PnL agrees: the oldest",
                Some(d("100")),
                d("9"),
                Some(0),
            ),
            (
                "rounded by the venue",
                Some(d("50000.12345679")),
                d("3"),
                Some(1),
            ),
            ("no close at that price", Some(d("101")), d("3"), None),
            ("no price: the oldest that agrees", None, d("3"), Some(1)),
            (
                "no price, nothing agrees: the oldest",
                None,
                d("7"),
                Some(0),
            ),
        ];
        for (name, venue, realized, want) in cases {
            assert_eq!(
                match_closed(&ours, venue, realized, tolerance),
                want,
                "{name}"
            );
        }
        assert_eq!(match_closed(&[], None, d("0"), tolerance), None);
    }

    #[test]
    fn pnl_drift_is_beyond_the_tolerance_only() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let drift = |ours: &str, venue: &str| PnlDrift {
            symbol: "BTC/USD".into(),
            side: "long".into(),
            entry_price: d("100"),
            ours: d(ours),
            venue: d(venue),
        };
        assert!(drift("10", "10.01").check(d("0.01")).is_none());
        assert!(drift("10", "10.011").check(d("0.01")).is_some());
        assert_eq!(
            drift("10", "12").describe(),
            "realized PnL drift on the closed long entered at 100: ours 10 (from our fills, before fees), venue 12"
        );
    }

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

/// The property behind reconciliation: whatever the callbacks did (shuffled, duplicated,
/// dropped), once each order's REST snapshot is applied the book equals the clean sequence's.
#[cfg(test)]
mod convergence {
    use super::*;
    use crate::order::{apply, OrderStatus, Progress};
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    /// One venue report: order index, status, cumulative filled quantity, average price.
    type Report = (usize, OrderStatus, Decimal, Option<Decimal>);

    struct Order {
        symbol: &'static str,
        sign: Decimal,
        reports: Vec<Report>,
    }

    fn lifecycle(rng: &mut StdRng, index: usize) -> Order {
        let symbol = ["BTC/USD", "ETH/USD"][rng.gen_range(0..2)];
        let sign = if rng.gen_bool(0.5) {
            Decimal::ONE
        } else {
            -Decimal::ONE
        };
        let mut reports = vec![
            (index, OrderStatus::Pending, Decimal::ZERO, None),
            (index, OrderStatus::Open, Decimal::ZERO, None),
        ];
        let (mut filled, mut notional) = (Decimal::ZERO, Decimal::ZERO);
        for _ in 0..rng.gen_range(0..4) {
            let qty = Decimal::new(rng.gen_range(1..100), 3);
            let price = Decimal::new(rng.gen_range(90_000..110_000), 2);
            filled += qty;
            notional += qty * price;
            reports.push((
                index,
                OrderStatus::PartiallyFilled,
                filled,
                Some(notional / filled),
            ));
        }
        let avg = (!filled.is_zero()).then(|| notional / filled);
        let last = if rng.gen_bool(0.5) {
            let qty = Decimal::new(rng.gen_range(1..100), 3);
            let price = Decimal::new(rng.gen_range(90_000..110_000), 2);
            filled += qty;
            notional += qty * price;
            (index, OrderStatus::Filled, filled, Some(notional / filled))
        } else {
            (index, OrderStatus::Cancelled, filled, avg)
        };
        reports.push(last);
        Order {
            symbol,
            sign,
            reports,
        }
    }

    /// Applies reports; returns each order's progress and the positions booked from new fills.
    fn run(
        orders: &[Order],
        reports: &[Report],
    ) -> (Vec<Progress>, BTreeMap<String, Decimal>, Vec<Decimal>) {
        let mut progress = vec![
            Progress {
                status: OrderStatus::Pending,
                filled_quantity: Decimal::ZERO,
                average_price: None,
            };
            orders.len()
        ];
        let mut positions: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut notional = vec![Decimal::ZERO; orders.len()];
        for (i, status, filled, avg) in reports {
            let applied = apply(&progress[*i], *status, Some(*filled), *avg).unwrap();
            if let Some((qty, price)) = applied.new_fill {
                *positions.entry(orders[*i].symbol.to_owned()).or_default() +=
                    orders[*i].sign * qty;
                notional[*i] += qty * price;
            }
            progress[*i] = applied.progress;
        }
        (progress, positions, notional)
    }

    #[test]
    fn shuffled_duplicated_and_dropped_callbacks_converge_once_the_snapshot_is_applied() {
        let base: u64 = std::env::var("SIGEX_PROP_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| rand::thread_rng().gen());
        let cases: u64 = std::env::var("SIGEX_PROP_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(500);
        println!("reconciliation property: SIGEX_PROP_SEED={base} SIGEX_PROP_CASES={cases}");
        for case in 0..cases {
            let seed = base.wrapping_add(case);
            let mut rng = StdRng::seed_from_u64(seed);
            let orders: Vec<Order> = (0..rng.gen_range(1..6))
                .map(|i| lifecycle(&mut rng, i))
                .collect();
            let clean: Vec<Report> = orders.iter().flat_map(|o| o.reports.clone()).collect();
            let mut chaos: Vec<Report> = Vec::new();
            for r in &clean {
                if rng.gen_bool(0.3) {
                    continue;
                }
                chaos.push(*r);
                if rng.gen_bool(0.3) {
                    chaos.push(*r);
                }
            }
            chaos.shuffle(&mut rng);
            // The REST snapshot: each order as the venue reports it now.
            chaos.extend(orders.iter().map(|o| *o.reports.last().unwrap()));
            let (want, want_positions, _) = run(&orders, &clean);
            let (got, got_positions, got_notional) = run(&orders, &chaos);
            assert_eq!(got, want, "seed {seed}: order states differ");
            assert!(
                position_drift(&got_positions, &want_positions, Decimal::ZERO).is_empty(),
                "seed {seed}: positions {got_positions:?} vs {want_positions:?}"
            );
            for (i, p) in got.iter().enumerate() {
                // Fills booked once each: their notional is the order's filled × average.
                let expected = p.filled_quantity * p.average_price.unwrap_or_default();
                assert!(
                    (got_notional[i] - expected).abs() < Decimal::new(1, 12),
                    "seed {seed}: order {i} booked {} for {expected}",
                    got_notional[i]
                );
            }
        }
    }
}
