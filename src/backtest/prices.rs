//! Where a backtest's prices come from, as one stream of price ticks per symbol.
//!
//! Sources: candles CSV files (the paper venue's format, `timestamp,open,high,low,close,volume`),
//! the venue's `GET /market/candles/{symbol}` fetched once into an on-disk cache of the same
//! format (see [`venue`]), or the paper venue's seeded random walk.
//!
//! A bar is walked as the paper venue replays candles: open, the extreme nearer the open, the
//! other extreme, close ([`Candle::path`]), one tick at each quarter of the bar's interval; the
//! interval is the distance between a file's first two bars (one minute for a file of one bar).
//! A file is read as the replay advances, never held whole in memory. The random walk steps every
//! 200 ms, as the paper venue's does, with [`Walk::next_mid`], from the `[paper.symbols]` prices.
//!
//! Guarantees: ticks come in time order (a file whose bars do not is an error naming the line);
//! a feed knows the range it covers, so a signal outside it is an error naming both.

pub mod venue;

use super::BacktestError;
use crate::config::parse_candle_line;
use crate::sim::{Candle, Walk};
use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::io::BufRead;
use std::path::PathBuf;

/// `--prices` as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceSource {
    /// `SYMBOL=FILE`, once per symbol.
    Files(Vec<(String, PathBuf)>),
    /// `candles`: the config's `[paper.candles]`.
    ConfigCandles,
    /// `venue`: fetched from the venue's candles endpoint and cached.
    Venue,
    /// `random-walk[:SEED]`; without a seed, `[paper] seed`.
    RandomWalk { seed: Option<u64> },
}

impl PriceSource {
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let usage = "--prices takes SYMBOL=FILE.csv (repeatable), candles, venue or \
                     random-walk[:SEED]";
        match args {
            [] => Err(usage.into()),
            [one] if one == "venue" => Ok(Self::Venue),
            [one] if one == "candles" => Ok(Self::ConfigCandles),
            [one] if one == "random-walk" => Ok(Self::RandomWalk { seed: None }),
            [one] if one.starts_with("random-walk:") => {
                let seed = &one["random-walk:".len()..];
                seed.parse()
                    .map(|s| Self::RandomWalk { seed: Some(s) })
                    .map_err(|_| format!("random-walk:{seed}: the seed must be a whole number"))
            }
            many => {
                let mut files = Vec::new();
                for arg in many.iter().flat_map(|a| a.split(',')) {
                    let (symbol, file) = arg
                        .split_once('=')
                        .ok_or_else(|| format!("{arg:?} is not SYMBOL=FILE.csv; {usage}"))?;
                    crate::model::Symbol::parse(symbol.trim())
                        .map_err(|e| format!("--prices {arg}: {e}"))?;
                    if files.iter().any(|(s, _)| s == symbol.trim()) {
                        return Err(format!("--prices names {symbol} twice"));
                    }
                    files.push((symbol.trim().to_owned(), PathBuf::from(file.trim())));
                }
                Ok(Self::Files(files))
            }
        }
    }
}

/// The interval assumed for a candles file of a single bar.
const LONE_BAR: i64 = 60;
/// The paper venue's price tick.
const WALK_TICK_MS: i64 = 200;

/// One symbol's price ticks.
pub struct Feed {
    pub symbol: String,
    /// Where the prices come from, for messages and the report.
    pub origin: String,
    ticks: Ticks,
    next: Option<(DateTime<Utc>, Decimal)>,
    /// The first instant covered.
    pub start: DateTime<Utc>,
    /// The price at `start`.
    pub first_price: Decimal,
}

enum Ticks {
    Candles(Box<CandleReader>),
    Walk {
        walk: Walk,
        rng: Box<StdRng>,
        at: DateTime<Utc>,
        mid: Decimal,
    },
}

impl Feed {
    /// A feed over candles files read in order (bars must ascend across them too).
    pub fn candles(
        symbol: &str,
        origin: String,
        files: Vec<PathBuf>,
    ) -> Result<Feed, BacktestError> {
        let mut reader = CandleReader::new(files)?;
        let first = reader.next_tick()?.ok_or_else(|| BacktestError::Input {
            at: origin.clone(),
            message: format!("no candles for {symbol}"),
        })?;
        Ok(Feed {
            symbol: symbol.to_owned(),
            origin,
            ticks: Ticks::Candles(Box::new(reader)),
            next: Some(first),
            start: first.0,
            first_price: first.1,
        })
    }

    /// The paper venue's random walk from `mid` at `start`, seeded from `seed` and the symbol
    /// (so a symbol's path does not depend on which others are traded).
    pub fn random_walk(
        symbol: &str,
        mid: Decimal,
        walk: Walk,
        seed: u64,
        start: DateTime<Utc>,
    ) -> Feed {
        let digest = Sha256::digest(symbol.as_bytes());
        let mut salt = [0u8; 8];
        salt.copy_from_slice(&digest[..8]);
        let rng = StdRng::seed_from_u64(seed ^ u64::from_be_bytes(salt));
        let mid = crate::sim::book::round_price(mid);
        Feed {
            symbol: symbol.to_owned(),
            origin: format!("random walk (seed {seed})"),
            ticks: Ticks::Walk {
                walk,
                rng: Box::new(rng),
                at: start,
                mid,
            },
            next: Some((start, mid)),
            start,
            first_price: mid,
        }
    }

    /// When the next tick is, if there is one.
    pub fn peek(&self) -> Option<DateTime<Utc>> {
        self.next.map(|n| n.0)
    }

    /// Takes the next tick.
    pub fn pop(&mut self) -> Result<Option<(DateTime<Utc>, Decimal)>, BacktestError> {
        let Some(tick) = self.next else {
            return Ok(None);
        };
        self.next = match &mut self.ticks {
            Ticks::Candles(reader) => reader.next_tick()?,
            Ticks::Walk { walk, rng, at, mid } => {
                *at += Duration::milliseconds(WALK_TICK_MS);
                *mid = walk.next_mid(*mid, rng.as_mut());
                Some((*at, *mid))
            }
        };
        Ok(Some(tick))
    }

    /// Whether prices reach `at`: at or after the first bar, and not past the end of the last
    /// (known once the feed is exhausted). `Err` says which range the feed covers.
    pub fn covers(&self, at: DateTime<Utc>) -> Result<(), String> {
        let end = match &self.ticks {
            Ticks::Candles(r) if self.next.is_none() => r.end,
            _ => None,
        };
        let range = |end: Option<DateTime<Utc>>| {
            format!(
                "{} from {}{}",
                self.origin,
                crate::clock::ts(self.start),
                end.map(|e| format!(" to {}", crate::clock::ts(e)))
                    .unwrap_or_default()
            )
        };
        if at < self.start || end.is_some_and(|e| at > e) {
            return Err(range(end));
        }
        Ok(())
    }
}

/// Reads bars from candles files as the replay needs them.
struct CandleReader {
    files: VecDeque<PathBuf>,
    current: Option<(String, std::io::BufReader<std::fs::File>, usize)>,
    /// The line being read, reused from line to line.
    line: String,
    /// The bar read ahead (the interval is only known from the next bar's time).
    ahead: Option<Candle>,
    interval: Option<Duration>,
    pending: VecDeque<(DateTime<Utc>, Decimal)>,
    /// The end of the last bar, once the files are exhausted.
    end: Option<DateTime<Utc>>,
    /// The last bar's start and line (of the file being read).
    last_start: Option<(DateTime<Utc>, usize)>,
}

impl CandleReader {
    fn new(files: Vec<PathBuf>) -> Result<Self, BacktestError> {
        let mut r = Self {
            files: files.into(),
            current: None,
            line: String::new(),
            ahead: None,
            interval: None,
            pending: VecDeque::new(),
            end: None,
            last_start: None,
        };
        r.ahead = r.read_bar()?;
        Ok(r)
    }

    /// The next bar of the files, checked to come after the one before.
    fn read_bar(&mut self) -> Result<Option<Candle>, BacktestError> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.files.pop_front() else {
                    return Ok(None);
                };
                let file = std::fs::File::open(&path).map_err(|e| BacktestError::io(&path, e))?;
                let reader = std::io::BufReader::with_capacity(1 << 16, file);
                self.current = Some((path.display().to_string(), reader, 0));
            }
            let (shown, reader, n) = self.current.as_mut().expect("a file is open");
            self.line.clear();
            *n += 1;
            let at = |n: usize| format!("{shown}:{n}");
            match reader.read_line(&mut self.line) {
                Ok(0) => {
                    self.current = None;
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(BacktestError::Input {
                        at: at(*n),
                        message: format!("cannot read the line: {e}"),
                    })
                }
            }
            let Some(candle) =
                parse_candle_line(&self.line).map_err(|message| BacktestError::Input {
                    at: at(*n),
                    message,
                })?
            else {
                continue;
            };
            if let Some((last, last_line)) = self.last_start {
                if candle.timestamp <= last {
                    return Err(BacktestError::Input {
                        at: at(*n),
                        message: format!(
                            "bar at {} does not come after the bar at {} (line {last_line}): \
                             bars must be in time order, one per timestamp",
                            crate::clock::ts(candle.timestamp),
                            crate::clock::ts(last)
                        ),
                    });
                }
            }
            self.last_start = Some((candle.timestamp, *n));
            return Ok(Some(candle));
        }
    }

    fn next_tick(&mut self) -> Result<Option<(DateTime<Utc>, Decimal)>, BacktestError> {
        if let Some(t) = self.pending.pop_front() {
            return Ok(Some(t));
        }
        let Some(bar) = self.ahead.take() else {
            return Ok(None);
        };
        self.ahead = self.read_bar()?;
        let interval = match (self.interval, &self.ahead) {
            (Some(i), _) => i,
            (None, Some(next)) => next.timestamp - bar.timestamp,
            (None, None) => Duration::seconds(LONE_BAR),
        };
        self.interval = Some(interval);
        let quarter = interval / 4;
        for (k, price) in bar.path().into_iter().enumerate() {
            let at = bar.timestamp + quarter * k as i32;
            // A bar longer than the gap to the next is cut short there.
            if self.ahead.as_ref().is_none_or(|n| at < n.timestamp) {
                self.pending
                    .push_back((at, crate::sim::book::round_price(price)));
            }
        }
        if self.ahead.is_none() {
            self.end = Some(bar.timestamp + interval);
        }
        Ok(self.pending.pop_front())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn price_sources_are_read_from_the_command_line() {
        let s = |args: &[&str]| {
            PriceSource::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(s(&["venue"]), Ok(PriceSource::Venue));
        assert_eq!(s(&["candles"]), Ok(PriceSource::ConfigCandles));
        assert_eq!(
            s(&["random-walk"]),
            Ok(PriceSource::RandomWalk { seed: None })
        );
        assert_eq!(
            s(&["random-walk:9"]),
            Ok(PriceSource::RandomWalk { seed: Some(9) })
        );
        assert_eq!(
            s(&["BTC/USD=a.csv,ETH/USD=b.csv"]),
            Ok(PriceSource::Files(vec![
                ("BTC/USD".into(), "a.csv".into()),
                ("ETH/USD".into(), "b.csv".into())
            ]))
        );
        assert!(s(&["a.csv"])
            .unwrap_err()
            .contains("is not SYMBOL=FILE.csv"));
        assert!(s(&["btc=a.csv"]).unwrap_err().contains("BASE/QUOTE"));
        assert!(s(&["BTC/USD=a", "BTC/USD=b"])
            .unwrap_err()
            .contains("twice"));
        assert!(s(&["random-walk:x"]).is_err());
    }

    #[test]
    fn a_bar_is_walked_open_nearer_extreme_other_extreme_close_a_quarter_apart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.csv");
        std::fs::write(
            &file,
            "timestamp,open,high,low,close,volume\n\
             2026-01-01T00:00:00Z,100,110,90,105,1\n\
             # a comment\n\
             2026-01-01T00:04:00Z,105,106,95,96,1\n\
             2026-01-01T00:06:00Z,96,96,96,96,1\n",
        )
        .unwrap();
        let mut feed = Feed::candles("X/USD", "c.csv".into(), vec![file]).unwrap();
        let mut ticks = Vec::new();
        while let Some(tick) = feed.pop().unwrap() {
            ticks.push((crate::clock::ts(tick.0), tick.1.to_string()));
        }
        let want = [
            // Rising: low first. The interval (4 min) is the first two bars' distance.
            ("2026-01-01T00:00:00.000Z", "100"),
            ("2026-01-01T00:01:00.000Z", "90"),
            ("2026-01-01T00:02:00.000Z", "110"),
            ("2026-01-01T00:03:00.000Z", "105"),
            // Falling: high first; cut short where the next bar starts.
            ("2026-01-01T00:04:00.000Z", "105"),
            ("2026-01-01T00:05:00.000Z", "106"),
            ("2026-01-01T00:06:00.000Z", "96"),
            ("2026-01-01T00:07:00.000Z", "96"),
            ("2026-01-01T00:08:00.000Z", "96"),
            ("2026-01-01T00:09:00.000Z", "96"),
        ];
        let got: Vec<(&str, &str)> = ticks
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(got, want);
        assert!(feed.covers(t("2026-01-01T00:10:00Z")).is_ok());
        let err = feed.covers(t("2026-01-01T00:10:01Z")).unwrap_err();
        assert_eq!(
            err,
            "c.csv from 2026-01-01T00:00:00.000Z to 2026-01-01T00:10:00.000Z"
        );
        assert!(feed.covers(t("2025-12-31T23:59:59Z")).is_err());
    }

    #[test]
    fn the_random_walk_is_the_same_for_a_seed_and_its_own_per_symbol() {
        let walk = Walk {
            volatility_bps: d("5"),
            trend_bps: Decimal::ZERO,
        };
        let at = t("2026-01-01T00:00:00Z");
        let path = |symbol: &str, seed| {
            let mut f = Feed::random_walk(symbol, d("50000"), walk, seed, at);
            (0..50)
                .map(|_| f.pop().unwrap().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(path("BTC/USD", 7), path("BTC/USD", 7));
        assert_ne!(path("BTC/USD", 7), path("BTC/USD", 8));
        assert_ne!(path("BTC/USD", 7), path("ETH/USD", 7));
        let p = path("BTC/USD", 7);
        assert_eq!(p[1].0 - p[0].0, Duration::milliseconds(200));
        assert!(p.iter().any(|x| x.1 != d("50000")), "it moves");
    }
}
