//! The report of one backtest (one run, two compared, or a sweep), and its three renderings: the
//! terminal summary, `report.json` for machines and `report.html`, a self-contained page (inline
//! CSS and SVG charts of equity and drawdown; no script, nothing fetched).
//!
//! Guarantees: the same runs give the same bytes (every map is ordered, no clock is read, every
//! number is an exact decimal rounded where it is computed); the files are written to temporary
//! names and renamed into place, so a failed run leaves no half-written report.

mod html;
mod text;

use super::collect::{DecisionRecord, OrderSummary, StateChange, Trade};
use super::metrics::{Breakdowns, MonthRow, Summary};
use super::BacktestError;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use text::summary as text_summary;

/// What the signals became.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalsReport {
    pub total: u64,
    pub ordered: u64,
    pub refused: u64,
    pub ignored: u64,
    /// Refusals by the risk rule that decided.
    pub refused_by: BTreeMap<&'static str, u64>,
    /// Ignored signals by the strategy filter that set them aside.
    pub ignored_by: BTreeMap<&'static str, u64>,
    /// Signals recorded before `--from` (not traded).
    pub before_from: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrdersReport {
    pub total: u64,
    pub by_status: BTreeMap<&'static str, u64>,
    pub by_role: BTreeMap<&'static str, u64>,
    /// Orders the venue refused (margin, position limit), by its reason.
    pub venue_rejections: BTreeMap<String, u64>,
}

/// What was read from the recording.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedReport {
    /// Events replayed, by type (`dead_letter`: signed but unusable, no effect, as live).
    pub replayed: BTreeMap<&'static str, u64>,
    /// Events not replayed, by type: the recorded account's own orders, positions and balances
    /// (the simulated account replaces them), and duplicates.
    pub skipped: BTreeMap<String, u64>,
    /// Each dead letter with its source and reason (at most 100).
    pub dead_letters: Vec<String>,
}

/// One symbol's prices over the period.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceReport {
    pub symbol: String,
    pub source: String,
    #[serde(with = "rust_decimal::serde::arbitrary_precision_option")]
    pub first: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::arbitrary_precision_option")]
    pub last: Option<Decimal>,
}

/// A point of the equity curve.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EquityPoint {
    pub at: String,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub equity: Decimal,
    /// Below the running peak, in percent.
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub drawdown_pct: Decimal,
    #[serde(skip)]
    pub time: DateTime<Utc>,
}

/// Everything about one run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// The strategies directory, or the swept value.
    pub label: String,
    pub strategies: Vec<String>,
    pub summary: Summary,
    pub signals: SignalsReport,
    pub orders: OrdersReport,
    pub breakdowns: Breakdowns,
    pub monthly: Vec<MonthRow>,
    pub state_changes: Vec<StateChange>,
    pub trades: Vec<Trade>,
    pub open_positions: Vec<Trade>,
    /// The equity curve, at most about 2,400 points (each bucket keeps its first, lowest,
    /// highest and last point, so no drawdown disappears).
    pub equity: Vec<EquityPoint>,
    /// Every signal's outcome, when the run had at most 10,000 signals.
    pub decisions: Option<Vec<DecisionRecord>>,
    /// Every order, when the run had at most 10,000.
    pub order_list: Option<Vec<OrderSummary>>,
    pub recorded: RecordedReport,
    pub prices: Vec<PriceReport>,
}

/// One line of a sweep.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepRow {
    pub value: String,
    pub trades: u64,
    #[serde(with = "rust_decimal::serde::arbitrary_precision_option")]
    pub win_rate_pct: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub net_pnl: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub total_return_pct: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub max_drawdown_pct: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision_option")]
    pub sharpe: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::arbitrary_precision_option")]
    pub profit_factor: Option<Decimal>,
    pub signals_ordered: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub key: String,
    pub rows: Vec<SweepRow>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `single`, `compare` or `sweep`.
    pub kind: &'static str,
    pub signals_source: String,
    pub prices_source: String,
    pub config: Option<String>,
    pub sweep: Option<SweepReport>,
    pub runs: Vec<RunReport>,
}

impl Report {
    pub fn json(&self) -> Result<Vec<u8>, BacktestError> {
        let mut out = serde_json::to_vec_pretty(self)
            .map_err(|e| BacktestError::Other(format!("rendering the JSON report: {e}")))?;
        out.push(b'\n');
        Ok(out)
    }

    pub fn html(&self) -> String {
        html::render(self)
    }

    pub fn text(&self) -> String {
        text::summary(self)
    }

    /// Writes `report.json` and `report.html` into `dir` (created if missing); each is written
    /// whole to a temporary file first, then renamed. Returns the two paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), BacktestError> {
        std::fs::create_dir_all(dir).map_err(|e| BacktestError::io(dir, e))?;
        let json = dir.join("report.json");
        let html = dir.join("report.html");
        let json_bytes = self.json()?;
        let html_bytes = self.html().into_bytes();
        write_atomically(&json, &json_bytes)?;
        write_atomically(&html, &html_bytes)?;
        Ok((json, html))
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so the
/// file is either the old one or the whole new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BacktestError> {
    let mut file = AtomicFile::create(path)?;
    std::io::Write::write_all(&mut file, bytes).map_err(|e| BacktestError::io(path, e))?;
    file.commit()
}

/// A file written under a temporary name beside its final one and renamed into place by
/// [`AtomicFile::commit`]; dropped without a commit, it leaves nothing behind.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<Self, BacktestError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "report".into());
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(|e| BacktestError::io(path, e))?;
        Ok(Self {
            path: path.to_owned(),
            tmp,
            out: Some(std::io::BufWriter::new(file)),
        })
    }

    pub fn commit(mut self) -> Result<(), BacktestError> {
        let out = self.out.take().expect("committed once");
        let result = out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&self.tmp, &self.path));
        result.map_err(|e| BacktestError::io(&self.path, e))
    }
}

impl std::io::Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.as_mut().expect("not committed").write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.as_mut().expect("not committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The equity curve reduced to at most `buckets` x 4 points, keeping each bucket's first,
/// lowest, highest and last point in time order.
pub fn downsample(curve: &[(DateTime<Utc>, Decimal)], buckets: usize) -> Vec<EquityPoint> {
    let mut peak = Decimal::MIN;
    let with_dd: Vec<EquityPoint> = curve
        .iter()
        .map(|&(t, e)| {
            peak = peak.max(e);
            let dd = if peak > Decimal::ZERO && e < peak {
                ((peak - e) / peak * Decimal::ONE_HUNDRED)
                    .round_dp(4)
                    .normalize()
            } else {
                Decimal::ZERO
            };
            EquityPoint {
                at: crate::clock::ts(t),
                equity: e.round_dp(4).normalize(),
                drawdown_pct: dd,
                time: t,
            }
        })
        .collect();
    if with_dd.len() <= buckets * 4 {
        return with_dd;
    }
    let (first, last) = (with_dd[0].time, with_dd[with_dd.len() - 1].time);
    let span = (last - first).num_milliseconds().max(1);
    let mut out: Vec<EquityPoint> = Vec::with_capacity(buckets * 4);
    let mut i = 0;
    while i < with_dd.len() {
        let bucket = (with_dd[i].time - first).num_milliseconds() * buckets as i64 / span;
        let mut j = i;
        while j < with_dd.len()
            && (with_dd[j].time - first).num_milliseconds() * buckets as i64 / span == bucket
        {
            j += 1;
        }
        let part = &with_dd[i..j];
        let lo = part
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.equity.cmp(&b.1.equity))
            .map(|x| x.0);
        let hi = part
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.equity.cmp(&b.1.equity))
            .map(|x| x.0);
        let mut keep: Vec<usize> = [Some(0), lo, hi, Some(part.len() - 1)]
            .into_iter()
            .flatten()
            .collect();
        keep.sort_unstable();
        keep.dedup();
        out.extend(keep.into_iter().map(|k| part[k].clone()));
        i = j;
    }
    out
}

/// A decimal for people: grouped thousands, `dp` places.
pub fn money(d: Decimal, dp: u32) -> String {
    let mut d = d.round_dp(dp);
    d.set_sign_positive(d.is_sign_positive() || d.is_zero());
    let text = format!("{:.*}", dp as usize, d);
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let mut grouped = String::new();
    for (k, c) in int.chars().enumerate() {
        if k > 0 && (int.len() - k) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// An optional figure, or `n/a`.
pub fn opt(d: Option<Decimal>, dp: u32) -> String {
    d.map_or_else(|| "n/a".to_owned(), |d| money(d, dp))
}

/// Seconds as `1d 2h 3m` (or `45s`).
pub fn duration(secs: Option<i64>) -> String {
    let Some(s) = secs else {
        return "n/a".into();
    };
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m {}s", s % 60),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, m) => format!("{d}d {h}h {m}m"),
    }
}

/// The summary's figures as label and value, in the order every rendering shows them.
pub fn figures(run: &RunReport) -> Vec<(&'static str, String)> {
    let s = &run.summary;
    let usd = |d: Decimal| format!("{} USD", money(d, 2));
    let pct = |d: Decimal| format!("{}%", money(d, 2));
    let opt_pct = |d: Option<Decimal>| d.map_or_else(|| "n/a".to_owned(), pct);
    let trade = |t: &Option<super::metrics::TradeRef>| {
        t.as_ref().map_or_else(
            || "n/a".to_owned(),
            |t| {
                format!(
                    "{} USD ({}%) {} {}",
                    money(t.net_pnl, 2),
                    money(t.return_pct, 2),
                    t.symbol,
                    t.closed_at
                )
            },
        )
    };
    let day = |d: &Option<super::metrics::DayRef>| {
        d.as_ref().map_or_else(
            || "n/a".to_owned(),
            |d| format!("{} USD on {}", money(d.pnl, 2), d.day),
        )
    };
    let dd = &s.max_drawdown;
    vec![
        (
            "Period",
            format!("{} to {} ({} days)", s.from, s.to, money(s.days, 2)),
        ),
        ("Starting balance", usd(s.starting_balance)),
        ("Final equity", usd(s.final_equity)),
        (
            "Net PnL (after fees)",
            format!("{} ({})", usd(s.net_pnl), pct(s.total_return_pct)),
        ),
        ("Closed trades' PnL", usd(s.closed_pnl)),
        ("Unrealized at end", usd(s.unrealized_pnl)),
        ("Fees paid", usd(s.fees)),
        ("Traded volume", usd(s.traded_volume)),
        ("CAGR", opt_pct(s.cagr_pct)),
        ("Sharpe", opt(s.sharpe, 2)),
        ("Sortino", opt(s.sortino, 2)),
        ("Calmar", opt(s.calmar, 2)),
        ("SQN", opt(s.sqn, 2)),
        (
            "Max drawdown",
            match (&dd.start, &dd.end) {
                (Some(a), Some(b)) => format!(
                    "{} ({}) from {a} to {b}, {}",
                    pct(dd.percent),
                    usd(dd.usd),
                    dd.recovered
                        .as_ref()
                        .map_or_else(|| "not recovered".to_owned(), |r| format!("recovered {r}"))
                ),
                _ => "none".to_owned(),
            },
        ),
        (
            "Min / max equity",
            format!("{} / {}", usd(s.min_equity), usd(s.max_equity)),
        ),
        (
            "Trades",
            format!("{} ({} a day)", s.trades, money(s.trades_per_day, 2)),
        ),
        (
            "Win / draw / loss",
            format!(
                "{} / {} / {} (win rate {})",
                s.wins,
                s.draws,
                s.losses,
                opt_pct(s.win_rate_pct)
            ),
        ),
        ("Profit factor", opt(s.profit_factor, 2)),
        (
            "Expectancy",
            format!(
                "{} USD a trade (ratio {})",
                opt(s.expectancy, 2),
                opt(s.expectancy_ratio, 2)
            ),
        ),
        (
            "Avg win / avg loss",
            format!("{} / {} USD", opt(s.avg_win, 2), opt(s.avg_loss, 2)),
        ),
        ("Best trade", trade(&s.best_trade)),
        ("Worst trade", trade(&s.worst_trade)),
        (
            "Longest streaks",
            format!(
                "{} wins, {} losses",
                s.longest_win_streak, s.longest_loss_streak
            ),
        ),
        (
            "Avg duration",
            format!(
                "{} (winners {}, losers {})",
                duration(s.avg_duration_secs),
                duration(s.avg_win_duration_secs),
                duration(s.avg_loss_duration_secs)
            ),
        ),
        (
            "Avg trade notional",
            format!("{} USD", opt(s.avg_trade_notional, 2)),
        ),
        (
            "Exposure",
            format!(
                "{} of the time; most positions open at once {}, largest gross {}",
                pct(s.exposure_pct),
                s.max_open_positions,
                usd(s.max_gross_exposure)
            ),
        ),
        ("Best day", day(&s.best_day)),
        ("Worst day", day(&s.worst_day)),
        (
            "Days win / draw / loss",
            format!(
                "{} / {} / {} (avg daily return {})",
                s.days_win,
                s.days_draw,
                s.days_loss,
                opt_pct(s.avg_daily_return_pct)
            ),
        ),
        ("Market change (buy and hold)", opt_pct(s.market_change_pct)),
        ("Open positions at end", s.open_positions.to_string()),
        (
            "Signals",
            format!(
                "{} (ordered {}, refused {}, ignored {})",
                run.signals.total, run.signals.ordered, run.signals.refused, run.signals.ignored
            ),
        ),
        (
            "Orders",
            format!(
                "{} ({})",
                run.orders.total,
                run.orders
                    .by_status
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_groups_thousands_and_never_prints_a_negative_zero() {
        let m = |s: &str, dp| money(s.parse().unwrap(), dp);
        assert_eq!(m("1234567.891", 2), "1,234,567.89");
        assert_eq!(m("-1234.5", 2), "-1,234.50");
        assert_eq!(m("-0.001", 2), "0.00");
        assert_eq!(m("999", 0), "999");
        assert_eq!(duration(Some(93_784)), "1d 2h 3m");
        assert_eq!(duration(Some(45)), "45s");
    }

    #[test]
    fn downsampling_keeps_each_buckets_first_lowest_highest_and_last_point() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let curve: Vec<(DateTime<Utc>, Decimal)> = (0..1000)
            .map(|i| {
                let v = if i == 500 {
                    -50
                } else if i == 700 {
                    300
                } else {
                    100
                };
                (t0 + chrono::Duration::seconds(i), Decimal::from(v))
            })
            .collect();
        let points = downsample(&curve, 10);
        assert!(points.len() <= 40, "{}", points.len());
        assert!(points.iter().any(|p| p.equity == Decimal::from(-50)));
        assert!(points.iter().any(|p| p.equity == Decimal::from(300)));
        assert_eq!(points.first().unwrap().time, t0);
        assert_eq!(
            points.last().unwrap().time,
            t0 + chrono::Duration::seconds(999)
        );
        assert!(points.windows(2).all(|w| w[0].time < w[1].time));
    }
}
