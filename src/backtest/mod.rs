//! Replay and backtest: what would these strategy files have done with these signals?
//!
//! `sigex backtest` replays recorded events ([`source`]: a sigex database, `sigex events export`
//! JSON Lines, or a directory of webhook files) against prices ([`prices`]: candles CSV, the
//! venue's candles cached on disk, or the seeded random walk) through the live decision path and
//! the paper venue's matching engine ([`engine`], on in-memory [`books`]), and reports the result
//! ([`collect`], [`metrics`], [`report`]): a terminal summary, `report.json` and `report.html`.
//! `--compare` runs a second strategy directory over the same inputs; `--sweep` runs one variant
//! per value of a strategy number.
//!
//! Guarantees: no network (except `--prices venue` fetching what its cache lacks, before the
//! replay starts); the same inputs give byte-identical report files; an input that cannot be
//! used stops the run with an error naming the file and the line, and writes nothing.

pub mod books;
pub mod collect;
pub mod engine;
pub mod metrics;
pub mod prices;
pub mod report;
pub mod source;

use crate::config::BacktestSettings;
use crate::strategy::Strategy;
use chrono::{DateTime, Utc};
use prices::{Feed, PriceSource};
use report::{Report, RunReport};
use rust_decimal::Decimal;
use source::SignalSource;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Why a backtest could not run. Every variant names the input it is about.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// An input that cannot be used: `at` is the file and line (or database row).
    #[error("{at}: {message}")]
    Input { at: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl From<crate::model::Overflow> for BacktestError {
    /// A number of the replay (a price, a fill, a balance) too large for its arithmetic.
    fn from(e: crate::model::Overflow) -> Self {
        Self::Other(e.to_string())
    }
}

impl BacktestError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// What `sigex backtest` was asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub strategies: PathBuf,
    pub compare: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub signals: String,
    pub prices: Vec<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// `KEY=FROM..TO:STEP`.
    pub sweep: Option<String>,
    pub cache_dir: Option<PathBuf>,
}

/// A strategy number a sweep can vary.
const SWEEP_KEYS: [&str; 7] = [
    "min_confidence",
    "cooldown_secs",
    "max_signal_age_secs",
    "max_position_notional",
    "notional",
    "quantity",
    "percent",
];

/// `KEY=FROM..TO:STEP` → the key and its values (both ends included).
pub fn parse_sweep(spec: &str) -> Result<(String, Vec<Decimal>), String> {
    let bad = || {
        format!(
            "--sweep {spec:?} is not KEY=FROM..TO:STEP (e.g. min_confidence=60..95:5); keys: {}",
            SWEEP_KEYS.join(", ")
        )
    };
    let (key, range) = spec.split_once('=').ok_or_else(bad)?;
    let (span, step) = range.split_once(':').ok_or_else(bad)?;
    let (a, b) = span.split_once("..").ok_or_else(bad)?;
    let num = |s: &str| s.trim().parse::<Decimal>().map_err(|_| bad());
    let (a, b, step) = (num(a)?, num(b)?, num(step)?);
    if !SWEEP_KEYS.contains(&key.trim()) {
        return Err(bad());
    }
    if step <= Decimal::ZERO || b < a {
        return Err(format!(
            "--sweep {spec:?}: the step must be above 0 and TO at least FROM"
        ));
    }
    let mut values = Vec::new();
    let mut v = a;
    while v <= b {
        values.push(v);
        if values.len() > 200 {
            return Err(format!("--sweep {spec:?} has more than 200 values"));
        }
        v += step;
    }
    Ok((key.trim().to_owned(), values))
}

/// The strategies with `key` set to `value` wherever it applies.
pub fn vary(strategies: &[Strategy], key: &str, value: Decimal) -> Result<Vec<Strategy>, String> {
    use crate::risk::sizing::SizingMethod;
    let whole = |min: i64, max: i64| -> Result<i64, String> {
        i64::try_from(value)
            .ok()
            .filter(|v| value.fract().is_zero() && (min..=max).contains(v))
            .ok_or_else(|| {
                format!("{key} = {value}: a whole number from {min} to {max} is expected")
            })
    };
    let positive = || {
        (value > Decimal::ZERO)
            .then_some(value)
            .ok_or_else(|| format!("{key} = {value} must be above zero"))
    };
    let mut out = strategies.to_vec();
    let mut applied = false;
    for s in &mut out {
        match key {
            "min_confidence" => {
                s.min_confidence = whole(0, 100)? as u8;
                applied = true;
            }
            "cooldown_secs" => {
                s.cooldown = Some(chrono::Duration::seconds(whole(0, 86_400 * 365)?));
                applied = true;
            }
            "max_signal_age_secs" => {
                s.max_signal_age = Some(chrono::Duration::seconds(whole(0, 86_400 * 365)?));
                applied = true;
            }
            "max_position_notional" => {
                s.max_position_notional = Some(positive()?);
                applied = true;
            }
            _ => {
                let v = positive()?;
                match (&mut s.sizing.method, key) {
                    (SizingMethod::FixedNotional(n), "notional")
                    | (SizingMethod::FixedQuantity(n), "quantity")
                    | (SizingMethod::PercentOfBalance(n), "percent")
                    | (SizingMethod::RiskPerTrade(n), "percent") => {
                        *n = v;
                        applied = true;
                    }
                    _ => {}
                }
            }
        }
    }
    if !applied {
        return Err(format!("--sweep {key}: no strategy sizes by {key}"));
    }
    Ok(out)
}

/// How to build one symbol's feed for each run.
#[derive(Debug, Clone)]
enum FeedPlan {
    Candles {
        symbol: String,
        origin: String,
        files: Vec<PathBuf>,
    },
    Walk {
        symbol: String,
        mid: Decimal,
        walk: crate::sim::Walk,
        seed: u64,
        start: DateTime<Utc>,
    },
}

impl FeedPlan {
    fn open(&self) -> Result<Feed, BacktestError> {
        match self {
            Self::Candles {
                symbol,
                origin,
                files,
            } => Feed::candles(symbol, origin.clone(), files.clone()),
            Self::Walk {
                symbol,
                mid,
                walk,
                seed,
                start,
            } => Ok(Feed::random_walk(symbol, *mid, *walk, *seed, *start)),
        }
    }
}

/// The first and last event times and the signals' symbols, from a first pass over the source.
struct Scan {
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    symbols: BTreeSet<String>,
}

fn scan(
    source: &SignalSource,
    to: Option<DateTime<Utc>>,
    freshness: crate::model::events::Freshness,
    runtime: &tokio::runtime::Handle,
) -> Result<Scan, BacktestError> {
    let mut s = Scan {
        first: None,
        last: None,
        symbols: BTreeSet::new(),
    };
    for r in source.stream(to, freshness, runtime)? {
        let r = r?;
        s.first.get_or_insert(r.at);
        s.last = Some(r.at);
        if let Ok(crate::model::events::Event::Signal(sig)) = &r.event {
            s.symbols.insert(sig.symbol.as_str().to_owned());
        }
    }
    Ok(s)
}

fn traded_symbols(strategies: &[Strategy]) -> BTreeSet<String> {
    strategies
        .iter()
        .flat_map(|s| s.symbols.iter().map(|x| x.as_str().to_owned()))
        .collect()
}

/// Runs the backtest `opts` asks for and writes nothing: the caller renders or writes the report.
pub async fn run(
    opts: &Options,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Report, BacktestError> {
    let settings = BacktestSettings::load(opts.config.as_deref(), env)
        .map_err(|e| BacktestError::Other(e.to_string()))?;
    let load = |dir: &Path| {
        crate::strategy::load_dir(dir).map_err(|e| BacktestError::Other(e.to_string()))
    };
    let main = load(&opts.strategies)?;
    let compare = opts.compare.as_deref().map(load).transpose()?;
    let sweep = opts
        .sweep
        .as_deref()
        .map(parse_sweep)
        .transpose()
        .map_err(BacktestError::Other)?;
    if let (Some(from), Some(to)) = (opts.from, opts.to) {
        if from > to {
            return Err(BacktestError::Other(format!(
                "--from {} is after --to {}",
                crate::clock::ts(from),
                crate::clock::ts(to)
            )));
        }
    }
    let source = SignalSource::detect(&opts.signals)?;
    let price_source = PriceSource::parse(&opts.prices).map_err(BacktestError::Other)?;
    let runtime = tokio::runtime::Handle::current();

    let mut symbols = traded_symbols(&main);
    if let Some(c) = &compare {
        symbols.extend(traded_symbols(c));
    }
    let plans = {
        let source = source.clone();
        let settings = settings.clone();
        let price_source = price_source.clone();
        let (from, to, cache) = (opts.from, opts.to, opts.cache_dir.clone());
        let runtime = runtime.clone();
        tokio::task::spawn_blocking(move || {
            plan_feeds(
                &price_source,
                &settings,
                &source,
                symbols,
                from,
                to,
                cache,
                &runtime,
            )
        })
        .await
        .map_err(|e| BacktestError::Other(format!("the price planner failed: {e}")))??
    };

    let mut runs: Vec<(String, Vec<Strategy>)> = Vec::new();
    let mut sweep_report = None;
    match (&sweep, compare) {
        (Some((key, values)), _) => {
            for v in values {
                runs.push((
                    format!("{key}={}", v.normalize()),
                    vary(&main, key, *v).map_err(BacktestError::Other)?,
                ));
            }
            sweep_report = Some(key.clone());
        }
        (None, Some(other)) => {
            runs.push((opts.strategies.display().to_string(), main));
            runs.push((
                opts.compare
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                other,
            ));
        }
        (None, None) => runs.push((opts.strategies.display().to_string(), main)),
    }
    let kind = match (&sweep_report, runs.len()) {
        (Some(_), _) => "sweep",
        (None, 2) => "compare",
        _ => "single",
    };
    let mut reports = Vec::new();
    for (label, strategies) in runs {
        let job = Job {
            label,
            strategies,
            settings: settings.clone(),
            source: source.clone(),
            plans: plans.clone(),
            from: opts.from,
            to: opts.to,
            runtime: runtime.clone(),
            full: sweep_report.is_none(),
        };
        let report = tokio::task::spawn_blocking(move || job.run())
            .await
            .map_err(|e| BacktestError::Other(format!("the replay failed: {e}")))??;
        reports.push(report);
    }
    let sweep = sweep_report.map(|key| report::SweepReport {
        key,
        rows: reports
            .iter()
            .map(|r| report::SweepRow {
                value: r
                    .label
                    .split_once('=')
                    .map(|x| x.1)
                    .unwrap_or("")
                    .to_owned(),
                trades: r.summary.trades,
                win_rate_pct: r.summary.win_rate_pct,
                net_pnl: r.summary.net_pnl,
                total_return_pct: r.summary.total_return_pct,
                max_drawdown_pct: r.summary.max_drawdown.percent,
                sharpe: r.summary.sharpe,
                profit_factor: r.summary.profit_factor,
                signals_ordered: r.signals.ordered,
            })
            .collect(),
    });
    Ok(Report {
        kind,
        signals_source: opts.signals.clone(),
        prices_source: opts.prices.join(" "),
        config: opts.config.as_ref().map(|p| p.display().to_string()),
        sweep,
        runs: reports,
    })
}

#[allow(clippy::too_many_arguments)]
fn plan_feeds(
    prices: &PriceSource,
    settings: &BacktestSettings,
    source: &SignalSource,
    traded: BTreeSet<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    cache: Option<PathBuf>,
    runtime: &tokio::runtime::Handle,
) -> Result<Vec<FeedPlan>, BacktestError> {
    let candles = |files: Vec<(String, PathBuf)>| {
        files
            .into_iter()
            .map(|(symbol, path)| FeedPlan::Candles {
                origin: path.display().to_string(),
                files: vec![path],
                symbol,
            })
            .collect()
    };
    match prices {
        PriceSource::Files(files) => Ok(candles(files.clone())),
        PriceSource::ConfigCandles => {
            if settings.paper.candle_files.is_empty() {
                return Err(BacktestError::Other(
                    "--prices candles reads [paper.candles] of --config, and there is none".into(),
                ));
            }
            Ok(candles(settings.paper.candle_files.clone()))
        }
        PriceSource::RandomWalk { seed } => {
            let scanned = scan(source, to, settings.freshness, runtime)?;
            let Some(start) = from.or(scanned.first) else {
                return Ok(Vec::new());
            };
            Ok(settings
                .paper
                .symbols
                .iter()
                .filter(|(s, _)| traded.contains(s))
                .map(|(symbol, mid)| FeedPlan::Walk {
                    symbol: symbol.clone(),
                    mid: *mid,
                    walk: settings
                        .paper
                        .engine
                        .walks
                        .get(symbol)
                        .copied()
                        .unwrap_or(settings.paper.engine.walk),
                    seed: seed.unwrap_or(settings.paper.seed),
                    start,
                })
                .collect())
        }
        PriceSource::Venue => {
            let credentials = settings.credentials.clone().ok_or_else(|| {
                BacktestError::Other(
                    "--prices venue signs its requests with the venue API key: set \
                     SIGEX_VENUE__API_KEY and SIGEX_VENUE__API_SECRET (and --config for \
                     [venue] base_url)"
                        .into(),
                )
            })?;
            let scanned = scan(source, to, settings.freshness, runtime)?;
            let (Some(first), Some(last)) = (from.or(scanned.first), to.or(scanned.last)) else {
                return Ok(Vec::new());
            };
            let clock: crate::clock::SharedClock = std::sync::Arc::new(crate::clock::SystemClock);
            let venue = crate::venue::VenueClient::new(
                &settings.venue_base_url,
                credentials,
                settings.request_timeout,
                clock,
            )
            .map_err(BacktestError::Other)?;
            let dir = cache.unwrap_or_else(prices::venue::default_cache_dir);
            let mut plans = Vec::new();
            for symbol in traded.intersection(&scanned.symbols) {
                let files = runtime.block_on(prices::venue::cached_candles(
                    &venue,
                    &settings.venue_base_url,
                    &dir,
                    symbol,
                    first,
                    last,
                ))?;
                plans.push(FeedPlan::Candles {
                    symbol: symbol.clone(),
                    origin: format!(
                        "venue candles cached in {}",
                        files
                            .first()
                            .and_then(|f| f.parent())
                            .unwrap_or(&dir)
                            .display()
                    ),
                    files,
                });
            }
            Ok(plans)
        }
    }
}

/// One replay, run on a blocking thread.
struct Job {
    label: String,
    strategies: Vec<Strategy>,
    settings: BacktestSettings,
    source: SignalSource,
    plans: Vec<FeedPlan>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    runtime: tokio::runtime::Handle,
    /// Keep trades, decisions and orders (a sweep keeps only the figures).
    full: bool,
}

impl Job {
    fn run(self) -> Result<RunReport, BacktestError> {
        let feeds = self
            .plans
            .iter()
            .map(FeedPlan::open)
            .collect::<Result<Vec<_>, _>>()?;
        let origins: BTreeMap<String, String> = feeds
            .iter()
            .map(|f| (f.symbol.clone(), f.origin.clone()))
            .collect();
        let setup = engine::Setup {
            strategies: &self.strategies,
            trading: &self.settings.trading,
            paper: &self.settings.paper,
            from: self.from,
            to: self.to,
        };
        let mut engine = engine::Engine::new(&setup, feeds);
        let mut stream = self
            .source
            .stream(self.to, self.settings.freshness, &self.runtime)?;
        let mut last = None;
        for r in &mut stream {
            let r = r?;
            if self.to.is_some_and(|t| r.at > t) {
                break;
            }
            last = Some(r.at);
            engine.replay(r)?;
        }
        let skipped = stream.skipped();
        drop(stream);
        let end = self.to.or(last).or(self.from).ok_or_else(|| {
            BacktestError::Other(format!(
                "{}: no signal, alert or maintenance event to replay{}",
                self.source_name(),
                if self.to.is_some() || self.from.is_some() {
                    " in the --from/--to range"
                } else {
                    ""
                }
            ))
        })?;
        engine.finish(end)?;
        let start = engine.start.unwrap_or(end);
        let c = &engine.collect;
        let open = c.open_trades(engine.now(), |s| engine.mid(s), |s| engine.position(s));
        let market: BTreeMap<String, (Decimal, Decimal)> = engine
            .first_mids
            .iter()
            .filter_map(|(s, first)| engine.mid(s).map(|last| (s.clone(), (*first, last))))
            .collect();
        let summary = metrics::summary(c, start, end, engine.starting_balance, &open, &market);
        let breakdowns = metrics::breakdowns(&c.dimensions, &c.trades);
        let monthly = metrics::monthly(c, start, engine.starting_balance);
        let refused: u64 = c.refused.values().sum();
        let ignored: u64 = c.ignored.values().sum();
        let prices = engine
            .symbols()
            .into_iter()
            .map(|s| report::PriceReport {
                source: origins.get(&s).cloned().unwrap_or_default(),
                first: engine.first_mids.get(&s).copied(),
                last: engine.mid(&s),
                symbol: s,
            })
            .collect();
        Ok(RunReport {
            label: self.label,
            strategies: self.strategies.iter().map(|s| s.name.clone()).collect(),
            summary,
            signals: report::SignalsReport {
                total: c.signals,
                ordered: c.ordered,
                refused,
                ignored,
                refused_by: c.refused.clone(),
                ignored_by: c.ignored.clone(),
                before_from: c.before_from,
            },
            orders: report::OrdersReport {
                total: c.orders_total,
                by_status: c.order_status.clone(),
                by_role: c.order_roles.clone(),
                venue_rejections: c.venue_rejections.clone(),
            },
            breakdowns,
            monthly,
            state_changes: c.state_changes.clone(),
            trades: if self.full {
                c.trades.clone()
            } else {
                Vec::new()
            },
            open_positions: open,
            equity: report::downsample(&c.equity, 600),
            decisions: (self.full && !c.decisions_overflow).then(|| c.decisions.clone()),
            order_list: (self.full && !c.orders_overflow).then(|| c.orders.clone()),
            recorded: report::RecordedReport {
                replayed: c.replayed.clone(),
                skipped,
                dead_letters: c.dead_letters.clone(),
            },
            prices,
        })
    }

    fn source_name(&self) -> String {
        match &self.source {
            SignalSource::Database { shown, .. } => shown.clone(),
            SignalSource::Lines(p) | SignalSource::Directory(p) => p.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_spec_gives_every_value_of_its_range() {
        let (key, values) = parse_sweep("min_confidence=60..95:5").unwrap();
        assert_eq!(key, "min_confidence");
        assert_eq!(values.len(), 8);
        assert_eq!(values[7], Decimal::from(95));
        let (_, notional) = parse_sweep("notional=100..200:33.3").unwrap();
        assert_eq!(notional.last().copied(), Some("199.9".parse().unwrap()));
        for bad in [
            "min_confidence=60..95",
            "colour=1..2:1",
            "min_confidence=95..60:5",
            "min_confidence=60..95:0",
            "min_confidence=0..1000:1",
        ] {
            assert!(parse_sweep(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_swept_value_must_fit_the_key() {
        let strategies = crate::strategy::load_sources(&[(
            "t.toml".into(),
            "t".into(),
            "symbols = [\"BTC/USD\"]\nrecommendations = [\"buy\"]\nmin_confidence = 70\n\
             [sizing]\nmethod = \"fixed_notional\"\nnotional = 500\n"
                .into(),
        )])
        .unwrap();
        let v = |key: &str, value: &str| vary(&strategies, key, value.parse().unwrap());
        assert_eq!(v("min_confidence", "85").unwrap()[0].min_confidence, 85);
        assert!(v("min_confidence", "85.5")
            .unwrap_err()
            .contains("whole number"));
        assert!(v("min_confidence", "101").is_err());
        assert_eq!(
            v("notional", "750").unwrap()[0].sizing.method,
            crate::risk::sizing::SizingMethod::FixedNotional("750".parse().unwrap())
        );
        assert!(v("quantity", "1")
            .unwrap_err()
            .contains("no strategy sizes by quantity"));
        assert!(v("cooldown_secs", "-1").is_err());
    }
}
