//! The `[paper]` section: the paper venue's account, fees, latency, seed and prices.
//!
//! Numbers are exact: each is a TOML integer or a string (`taker_fee_bps = "2.5"`), never a TOML
//! float, which would pass through binary floating point. Every key is optional; unknown keys are
//! refused like everywhere else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::sim::{Candle, EngineConfig, Walk};

/// Where the paper venue's prices come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    /// The seeded random walk (`volatility_bps`, `trend_bps`).
    RandomWalk,
    /// Candle files replayed (`[paper.candles]`).
    Candles,
    /// The real venue's `GET /market/price/{symbol}` at `[venue] base_url`, polled every
    /// `interval`; the random walk moves the price between polls.
    Venue { interval: Duration },
}

/// The paper venue as configured.
#[derive(Debug, Clone)]
pub struct PaperConfig {
    pub price_source: PriceSource,
    pub starting_balance: Decimal,
    pub seed: u64,
    /// Delay between accepting an order and first matching it.
    pub latency: Duration,
    /// Traded symbols and their starting mid prices.
    pub symbols: Vec<(String, Decimal)>,
    pub engine: EngineConfig,
    /// `[paper.candles]` as written (resolved against the config's directory): what
    /// `sigex backtest --prices candles` reads.
    pub candle_files: Vec<(String, PathBuf)>,
}

impl Default for PaperConfig {
    /// 100 000 USD, seed 42, 5 ms latency, BTC/USD 50000, ETH/USD 3000, SOL/USD 150, and the
    /// engine's defaults (maker 2 bps, taker 5 bps, random walk ±5 bps per tick).
    fn default() -> Self {
        Self {
            price_source: PriceSource::RandomWalk,
            starting_balance: Decimal::new(100_000, 0),
            seed: 42,
            latency: Duration::from_millis(5),
            symbols: vec![
                ("BTC/USD".into(), Decimal::new(50_000, 0)),
                ("ETH/USD".into(), Decimal::new(3_000, 0)),
                ("SOL/USD".into(), Decimal::new(150, 0)),
            ],
            engine: EngineConfig::default(),
            candle_files: Vec::new(),
        }
    }
}

/// An exact number as written: a TOML integer or a string. Anything else is kept to say what is wrong.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Num {
    Int(i64),
    Text(String),
    Other(toml::Value),
}

impl Num {
    fn decimal(&self, key: &str) -> Result<Decimal, String> {
        match self {
            Num::Int(i) => Ok(Decimal::from(*i)),
            Num::Text(s) => Decimal::from_str_exact(s.trim())
                .map_err(|_| format!("[paper] {key} {s:?} is not a number")),
            Num::Other(v) => Err(format!(
                "[paper] {key} = {v}: write a fractional number as a string (\"{v}\") so it stays exact"
            )),
        }
    }

    fn unsigned(&self, key: &str) -> Result<u64, String> {
        let d = self.decimal(key)?;
        if d.fract().is_zero() && d >= Decimal::ZERO {
            u64::try_from(d).map_err(|_| format!("[paper] {key} {d} is too large"))
        } else {
            Err(format!(
                "[paper] {key} must be a whole number >= 0, got {d}"
            ))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPaper {
    starting_balance: Option<Num>,
    seed: Option<Num>,
    latency_ms: Option<Num>,
    maker_fee_bps: Option<Num>,
    taker_fee_bps: Option<Num>,
    spread_bps: Option<Num>,
    depth_levels: Option<Num>,
    level_step_bps: Option<Num>,
    level_notional: Option<Num>,
    position_limit_notional: Option<Num>,
    volatility_bps: Option<Num>,
    trend_bps: Option<Num>,
    /// `random_walk` (default), `candles` or `venue`.
    price_source: Option<String>,
    /// With `price_source = "venue"`: how often the venue's prices are fetched (default 2000).
    venue_price_interval_ms: Option<Num>,
    /// Starting mid price per symbol; replaces the default symbols.
    symbols: Option<BTreeMap<String, Num>>,
    /// Per-symbol walk: `[paper.walks."BTC/USD"] volatility_bps = 8, trend_bps = "0.5"`.
    #[serde(default)]
    walks: BTreeMap<String, RawWalk>,
    /// With `price_source = "candles"`: one CSV file per symbol
    /// (`timestamp,open,high,low,close,volume`), relative to the config file.
    #[serde(default)]
    candles: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWalk {
    volatility_bps: Option<Num>,
    trend_bps: Option<Num>,
}

pub(super) fn resolve(raw: RawPaper, base_dir: &Path) -> Result<PaperConfig, String> {
    let defaults = PaperConfig::default();
    let dec = |v: &Option<Num>, key: &str, default: Decimal| -> Result<Decimal, String> {
        v.as_ref().map_or(Ok(default), |n| n.decimal(key))
    };
    let e = EngineConfig::default();
    let walk = Walk {
        volatility_bps: dec(&raw.volatility_bps, "volatility_bps", e.walk.volatility_bps)?,
        trend_bps: dec(&raw.trend_bps, "trend_bps", e.walk.trend_bps)?,
    };
    let mut walks = BTreeMap::new();
    for (symbol, w) in &raw.walks {
        walks.insert(
            symbol.clone(),
            Walk {
                volatility_bps: dec(
                    &w.volatility_bps,
                    "walks.volatility_bps",
                    walk.volatility_bps,
                )?,
                trend_bps: dec(&w.trend_bps, "walks.trend_bps", walk.trend_bps)?,
            },
        );
    }
    let symbols = match &raw.symbols {
        None => defaults.symbols,
        Some(map) if map.is_empty() => return Err("[paper] symbols must not be empty".into()),
        Some(map) => map
            .iter()
            .map(|(s, p)| {
                let price = p.decimal(&format!("symbols.\"{s}\""))?;
                if price <= Decimal::ZERO {
                    return Err(format!("[paper] symbols.\"{s}\" must be a positive price"));
                }
                Ok((s.clone(), price))
            })
            .collect::<Result<Vec<_>, String>>()?,
    };
    let source = raw.price_source.as_deref().unwrap_or("random_walk");
    if raw.venue_price_interval_ms.is_some() && source != "venue" {
        return Err(
            "[paper] venue_price_interval_ms is set but price_source is not \"venue\"".into(),
        );
    }
    let mut price_source = PriceSource::RandomWalk;
    let mut candle_files = Vec::new();
    let candles = match source {
        "random_walk" | "venue" => {
            if !raw.candles.is_empty() {
                return Err("[paper] candles are set but price_source is not \"candles\"".into());
            }
            if source == "venue" {
                let ms = raw
                    .venue_price_interval_ms
                    .as_ref()
                    .map_or(Ok(2_000), |n| n.unsigned("venue_price_interval_ms"))?;
                if ms < 200 {
                    return Err("[paper] venue_price_interval_ms must be at least 200".into());
                }
                price_source = PriceSource::Venue {
                    interval: Duration::from_millis(ms),
                };
            }
            BTreeMap::new()
        }
        "candles" => {
            if raw.candles.is_empty() {
                return Err("[paper] price_source = \"candles\" needs [paper.candles] \
                            \"BTC/USD\" = \"btc.csv\" for at least one symbol"
                    .into());
            }
            let mut out = BTreeMap::new();
            for (symbol, file) in &raw.candles {
                let path = if file.is_relative() {
                    base_dir.join(file)
                } else {
                    file.clone()
                };
                candle_files.push((symbol.clone(), path.clone()));
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!(
                        "[paper] candles for {symbol}: cannot read {} ({e})",
                        path.display()
                    )
                })?;
                let bars = parse_candles(&text)
                    .map_err(|e| format!("[paper] candles {}: {e}", path.display()))?;
                out.insert(symbol.clone(), bars);
            }
            price_source = PriceSource::Candles;
            out
        }
        other => {
            return Err(format!(
            "[paper] price_source {other:?} is not one of \"random_walk\", \"candles\", \"venue\""
        ))
        }
    };
    let engine = EngineConfig {
        maker_fee_bps: dec(&raw.maker_fee_bps, "maker_fee_bps", e.maker_fee_bps)?,
        taker_fee_bps: dec(&raw.taker_fee_bps, "taker_fee_bps", e.taker_fee_bps)?,
        spread_bps: dec(&raw.spread_bps, "spread_bps", e.spread_bps)?,
        depth_levels: match &raw.depth_levels {
            None => e.depth_levels,
            Some(n) => u32::try_from(n.unsigned("depth_levels")?)
                .map_err(|_| "[paper] depth_levels is too large".to_string())?,
        },
        level_step_bps: dec(&raw.level_step_bps, "level_step_bps", e.level_step_bps)?,
        level_notional: dec(&raw.level_notional, "level_notional", e.level_notional)?,
        position_limit_notional: raw
            .position_limit_notional
            .as_ref()
            .map(|n| n.decimal("position_limit_notional"))
            .transpose()?,
        walk,
        walks,
        candles,
    };
    engine.check().map_err(|m| format!("[paper] {m}"))?;
    let starting_balance = dec(
        &raw.starting_balance,
        "starting_balance",
        defaults.starting_balance,
    )?;
    if starting_balance <= Decimal::ZERO {
        return Err("[paper] starting_balance must be positive".into());
    }
    Ok(PaperConfig {
        price_source,
        starting_balance,
        seed: raw
            .seed
            .as_ref()
            .map_or(Ok(defaults.seed), |n| n.unsigned("seed"))?,
        latency: raw.latency_ms.as_ref().map_or(Ok(defaults.latency), |n| {
            n.unsigned("latency_ms").map(Duration::from_millis)
        })?,
        symbols,
        engine,
        candle_files,
    })
}

/// `timestamp,open,high,low,close,volume` per line (RFC 3339 or Unix seconds); a header line and
/// blank lines are skipped.
pub fn parse_candles(text: &str) -> Result<Vec<Candle>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(candle) = parse_candle_line(line).map_err(|e| format!("line {}: {e}", n + 1))? {
            out.push(candle);
        }
    }
    if out.is_empty() {
        return Err("no candles".into());
    }
    Ok(out)
}

/// One line of a candles file: `Ok(None)` for a blank line, the header or a `#` comment.
pub fn parse_candle_line(line: &str) -> Result<Option<Candle>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with("timestamp") || line.starts_with('#') {
        return Ok(None);
    }
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    if f.len() != 6 {
        return Err("expected timestamp,open,high,low,close,volume".into());
    }
    let timestamp = chrono::DateTime::parse_from_rfc3339(f[0])
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok()
        .or_else(|| {
            f[0].parse::<i64>()
                .ok()
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        })
        .ok_or("timestamp is neither RFC 3339 nor Unix seconds")?;
    let d = |i: usize, name: &str| {
        Decimal::from_str_exact(f[i]).map_err(|_| format!("{name} is not a number"))
    };
    let candle = Candle {
        timestamp,
        open: d(1, "open")?,
        high: d(2, "high")?,
        low: d(3, "low")?,
        close: d(4, "close")?,
        volume: d(5, "volume")?,
    };
    let prices = [candle.open, candle.high, candle.low, candle.close];
    if prices.iter().any(|p| *p <= Decimal::ZERO)
        || candle.low > candle.high
        || prices.iter().any(|p| *p < candle.low || *p > candle.high)
    {
        return Err("prices must be positive with low <= open, close <= high".into());
    }
    Ok(Some(candle))
}
