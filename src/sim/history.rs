//! Price history of the simulated market, for `GET /market/candles/{symbol}`.
//!
//! Every price tick records one sample per symbol (time, mid, volume traded since the previous
//! sample); candles are built on request by bucketing samples into the interval asked for.
//! Guarantees: at most [`CAPACITY`] samples per symbol are kept (the oldest go first); a candle's
//! open and close are its first and last samples, high and low the extremes, volume the sum; buckets
//! start at multiples of the interval since the Unix epoch; candles come oldest first.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// About 2.7 hours at the simulator's 200 ms tick.
pub(crate) const CAPACITY: usize = 50_000;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: DateTime<Utc>,
    price: Decimal,
    volume: Decimal,
}

/// One candle as served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bar {
    pub start: DateTime<Utc>,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
}

/// The intervals the venue documents.
pub(crate) fn interval_secs(interval: &str) -> Option<i64> {
    Some(match interval {
        "1m" => 60,
        "5m" => 300,
        "15m" => 900,
        "1h" => 3_600,
        "4h" => 14_400,
        "1d" => 86_400,
        _ => return None,
    })
}

#[derive(Default)]
pub(crate) struct History {
    samples: BTreeMap<String, VecDeque<Sample>>,
    /// Cumulative traded volume at the previous sample, to turn totals into per-sample volume.
    last_total: BTreeMap<String, Decimal>,
}

impl History {
    /// Records `symbol` at `price`, with `total_volume` the market's running traded volume.
    pub(crate) fn record(
        &mut self,
        symbol: &str,
        at: DateTime<Utc>,
        price: Decimal,
        total_volume: Decimal,
    ) {
        let previous = self
            .last_total
            .insert(symbol.to_string(), total_volume)
            .unwrap_or(total_volume);
        let samples = self.samples.entry(symbol.to_string()).or_default();
        if samples.len() == CAPACITY {
            samples.pop_front();
        }
        samples.push_back(Sample {
            at,
            price,
            volume: (total_volume - previous).max(Decimal::ZERO),
        });
    }

    /// The last `limit` candles of `interval_secs` between `start` and `end` (inclusive bounds on
    /// sample times), oldest first. `None` when the symbol has no history.
    pub(crate) fn candles(
        &self,
        symbol: &str,
        interval_secs: i64,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Option<Vec<Bar>> {
        let samples = self.samples.get(symbol)?;
        let mut bars: Vec<Bar> = Vec::new();
        for s in samples
            .iter()
            .filter(|s| start.is_none_or(|t| s.at >= t) && end.is_none_or(|t| s.at <= t))
        {
            let bucket = s.at.timestamp().div_euclid(interval_secs) * interval_secs;
            let bucket_start = DateTime::from_timestamp(bucket, 0).unwrap_or(s.at);
            match bars.last_mut() {
                Some(bar) if bar.start == bucket_start => {
                    bar.high = bar.high.max(s.price);
                    bar.low = bar.low.min(s.price);
                    bar.close = s.price;
                    bar.volume += s.volume;
                }
                _ => bars.push(Bar {
                    start: bucket_start,
                    open: s.price,
                    high: s.price,
                    low: s.price,
                    close: s.price,
                    volume: s.volume,
                }),
            }
        }
        let skip = bars.len().saturating_sub(limit);
        Some(bars.split_off(skip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("time")
    }

    fn dec(n: i64) -> Decimal {
        Decimal::from(n)
    }

    #[test]
    fn samples_become_candles_per_interval() {
        let mut h = History::default();
        // 1_800_000_000 is a multiple of 60: minute buckets start at +0, +60, +120.
        let ticks = [
            (0, 100, 0),
            (20, 104, 1),
            (40, 98, 3),
            (59, 101, 3),
            (60, 101, 5),
            (130, 90, 6),
        ];
        for (t, price, total) in ticks {
            h.record("BTC/USD", at(t), dec(price), dec(total));
        }
        let bars = h.candles("BTC/USD", 60, None, None, 100).expect("history");
        assert_eq!(bars.len(), 3);
        assert_eq!(
            bars[0],
            Bar {
                start: at(0),
                open: dec(100),
                high: dec(104),
                low: dec(98),
                close: dec(101),
                volume: dec(3)
            }
        );
        assert_eq!((bars[1].open, bars[1].volume), (dec(101), dec(2)));
        assert_eq!(bars[2].start, at(120));
        // The limit keeps the newest; the time filter bounds the samples.
        let last = h.candles("BTC/USD", 60, None, None, 1).expect("history");
        assert_eq!(last[0].start, at(120));
        let early = h
            .candles("BTC/USD", 60, None, Some(at(30)), 100)
            .expect("history");
        assert_eq!((early.len(), early[0].close), (1, dec(104)));
        assert!(h.candles("ETH/USD", 60, None, None, 100).is_none());
        assert_eq!(interval_secs("4h"), Some(14_400));
        assert_eq!(interval_secs("2m"), None);
    }
}
