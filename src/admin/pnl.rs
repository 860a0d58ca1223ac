//! PnL as the operator sees it: one definition of unrealized PnL for the console, the admin API
//! and the dashboard, and the sampler that records PnL at regular times for the dashboard's curve.
//!
//! The definition: a position's unrealized PnL is `quantity x (mark - average price)`, where the
//! mark is the market price the sampler last read from the venue (`GET /market/price/{symbol}`,
//! every `[admin] pnl_sample_secs`), else the mark price of the venue's last position report,
//! else our last fill price. Realized PnL and fees are our own books (from our fills). Totals
//! count every symbol, closed ones included; the position list shows open positions only.

use crate::clock::SharedClock;
use crate::shutdown::Shutdown;
use crate::store::{PnlTotals, PositionView, Store, StoreError};
use crate::venue::VenueClient;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// A position with its PnL at the one mark.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PositionPnl {
    #[serde(flatten)]
    pub position: PositionView,
    pub mark_price: Option<Decimal>,
    pub unrealized_pnl: Decimal,
    /// The venue's quantity, signed like ours.
    pub venue_signed_quantity: Option<Decimal>,
    /// Our position disagrees with the venue's last report about it.
    pub drift: bool,
}

/// The venue's last reported quantity, signed like ours (short < 0).
pub(crate) fn venue_signed_quantity(p: &PositionView) -> Option<Decimal> {
    let q = p.venue_quantity?;
    Some(match p.venue_side.as_deref() {
        Some("short") => -q.abs(),
        Some("long") => q.abs(),
        _ => q,
    })
}

/// Our position disagrees with the venue's last report about it.
pub(crate) fn drifts(p: &PositionView) -> bool {
    venue_signed_quantity(p).is_some_and(|v| v != p.quantity)
}

/// `p` marked at `market` (the sampler's last read), else the venue's mark, else our last fill.
pub fn marked(p: PositionView, market: Option<Decimal>) -> PositionPnl {
    let mark = market.or(p.venue_mark_price).or(p.last_price);
    let unrealized = match mark {
        Some(m) if !p.quantity.is_zero() => {
            crate::portfolio::unrealized_pnl(p.quantity, p.average_price, m)
        }
        _ => Decimal::ZERO,
    };
    PositionPnl {
        drift: drifts(&p),
        venue_signed_quantity: venue_signed_quantity(&p),
        mark_price: mark,
        unrealized_pnl: unrealized.round_dp(8),
        position: p,
    }
}

/// Totals over `positions` (every symbol, open or not).
pub fn totals(positions: &[PositionPnl]) -> PnlTotals {
    positions
        .iter()
        .fold(PnlTotals::default(), |t, p| PnlTotals {
            realized_pnl: t.realized_pnl + p.position.realized_pnl,
            unrealized_pnl: t.unrealized_pnl + p.unrealized_pnl,
            fees: t.fees + p.position.fees,
        })
}

/// Every position marked, and the totals over them.
pub async fn positions(store: &Store) -> Result<(Vec<PositionPnl>, PnlTotals), StoreError> {
    let marks = store.marks().await?;
    let positions: Vec<PositionPnl> = store
        .list_positions()
        .await?
        .into_iter()
        .map(|p| {
            let market = marks.get(&p.symbol).copied();
            marked(p, market)
        })
        .collect();
    let totals = totals(&positions);
    Ok((positions, totals))
}

/// The sampler task: every `interval`, the market price of every symbol held, then the PnL totals.
pub struct PnlSampler {
    pub store: Store,
    pub venue: VenueClient,
    pub clock: SharedClock,
    pub interval: Duration,
    /// Samples older than this are deleted.
    pub retention: chrono::Duration,
}

impl PnlSampler {
    pub async fn run(self, mut shutdown: Shutdown) {
        loop {
            if let Err(e) = self.sample().await {
                tracing::warn!(error = %e, "PnL sample not taken");
            }
            if shutdown.sleep(self.interval).await {
                return;
            }
        }
    }

    async fn sample(&self) -> Result<(), StoreError> {
        let held: Vec<String> = self
            .store
            .list_positions()
            .await?
            .into_iter()
            .filter(|p| !p.quantity.is_zero())
            .map(|p| p.symbol)
            .collect();
        let mut read: HashMap<String, Decimal> = HashMap::new();
        for symbol in held {
            match self.venue.price(&symbol).await {
                Ok(quote) => {
                    read.insert(symbol, quote.price);
                }
                // The previous mark stays; the venue client reports the failure to readiness.
                Err(e) => tracing::debug!(%symbol, error = %e, "no market price for the PnL mark"),
            }
        }
        let now = self.clock.now();
        for (symbol, price) in &read {
            self.store.save_mark(symbol, *price, now).await?;
        }
        let (_, totals) = positions(&self.store).await?;
        self.store
            .save_pnl_sample(now, &totals, now - self.retention)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn position(quantity: &str, venue_mark: Option<&str>, last_fill: Option<&str>) -> PositionView {
        PositionView {
            symbol: "BTC/USD".into(),
            quantity: d(quantity),
            average_price: d("100"),
            realized_pnl: d("5"),
            fees: d("1"),
            net_realized_pnl: d("4"),
            last_price: last_fill.map(d),
            venue_quantity: None,
            venue_side: None,
            venue_mark_price: venue_mark.map(d),
            venue_unrealized_pnl: None,
            updated_at: String::new(),
        }
    }

    #[test]
    fn the_mark_is_the_market_price_read_else_the_venue_mark_else_the_last_fill() {
        let cases = [
            (
                "market price read",
                Some("110"),
                Some("90"),
                Some("80"),
                "20",
            ),
            ("venue mark", None, Some("90"), Some("80"), "-20"),
            ("last fill", None, None, Some("104"), "8"),
            ("nothing known", None, None, None, "0"),
        ];
        for (name, market, venue, fill, unrealized) in cases {
            let p = marked(position("2", venue, fill), market.map(d));
            assert_eq!(p.unrealized_pnl, d(unrealized), "{name}");
        }
        let short = marked(position("-2", None, None), Some(d("110")));
        assert_eq!(
            short.unrealized_pnl,
            d("-20"),
            "a short loses as the price rises"
        );
    }

    #[test]
    fn totals_count_closed_symbols_and_the_net_is_after_fees() {
        let open = marked(position("2", None, None), Some(d("103")));
        let closed = marked(position("0", Some("120"), Some("120")), None);
        assert_eq!(closed.unrealized_pnl, Decimal::ZERO);
        let t = totals(&[open, closed]);
        assert_eq!(
            (t.realized_pnl, t.unrealized_pnl, t.fees, t.net()),
            (d("10"), d("6"), d("2"), d("14"))
        );
    }

    #[test]
    fn drift_compares_the_venue_quantity_signed_by_its_side() {
        let cases = [
            ("agreeing long", "1.5", Some("1.5"), Some("long"), false),
            (
                "short reported unsigned",
                "-1.5",
                Some("1.5"),
                Some("short"),
                false,
            ),
            (
                "short reported signed",
                "-1.5",
                Some("-1.5"),
                Some("short"),
                false,
            ),
            ("no side, signed", "-1.5", Some("-1.5"), None, false),
            ("venue has less", "2", Some("1.5"), Some("long"), true),
            (
                "venue says short, we are long",
                "1.5",
                Some("1.5"),
                Some("short"),
                true,
            ),
            ("no venue report", "1", None, None, false),
        ];
        for (name, ours, venue, side, drift) in cases {
            let mut p = position(ours, None, None);
            p.venue_quantity = venue.map(d);
            p.venue_side = side.map(str::to_owned);
            assert_eq!(drifts(&p), drift, "{name}");
        }
    }
}
