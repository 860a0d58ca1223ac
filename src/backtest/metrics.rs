//! The report's figures, from the trades and the equity curve of one run. All in `Decimal`: the
//! ratios that need a square root, a logarithm or an exponential use `rust_decimal`'s
//! `MathematicalOps` (checked, so an extreme input gives no figure instead of a panic).
//!
//! Definitions (README "Backtest a strategy" repeats them for users):
//! - equity: the starting balance plus realized PnL after fees plus open positions marked at the
//!   mid; sampled after every fill, at every full hour inside the period, and at its end;
//! - daily returns: equity at each 00:00 UTC (and at the end) over the equity before, minus one;
//!   the first day starts from the starting balance at the period's start;
//! - Sharpe: mean daily return over its sample standard deviation, times sqrt(365); risk-free
//!   rate 0 (crypto trades every day of the year). Needs two days and some variation;
//! - Sortino: mean daily return over the downside deviation sqrt(sum(min(r, 0)^2) / n), times
//!   sqrt(365); needs a losing day;
//! - CAGR: (final equity / starting balance)^(365 / days) - 1, days the period's length; shown
//!   for periods of a day or more;
//! - Calmar: CAGR over the maximum drawdown (as fractions);
//! - maximum drawdown: the largest fall of equity below its running peak, relative to that peak,
//!   with its USD amount, the peak's time (start), the trough's time (end) and when equity was
//!   back at the peak (if it was);
//! - a trade wins when its net PnL (after fees) is above zero, loses below, draws at zero; profit
//!   factor = sum of winning trades' net PnL / |sum of losing trades' net PnL|; expectancy = mean
//!   net PnL per trade; expectancy ratio = (1 + average win / |average loss|) x win rate - 1;
//!   SQN = sqrt(trades) x mean / standard deviation of trade returns (net PnL / entry notional);
//! - exposure: the share of the period with at least one open position.

use super::collect::{Collector, Dimensions, SignalRow, Trade};
use chrono::{DateTime, Datelike, Utc};
use rust_decimal::{Decimal, MathematicalOps};
use serde::Serialize;
use std::collections::BTreeMap;

mod ser {
    pub use rust_decimal::serde::arbitrary_precision as exact;
    pub use rust_decimal::serde::arbitrary_precision_option as exact_opt;
}

const DAY_SECS: i64 = 86_400;

fn hundred() -> Decimal {
    Decimal::ONE_HUNDRED
}

/// Rounds a figure for display and for the report files.
fn r(d: Decimal, dp: u32) -> Decimal {
    d.round_dp(dp).normalize()
}

fn mean(xs: &[Decimal]) -> Option<Decimal> {
    (!xs.is_empty()).then(|| xs.iter().sum::<Decimal>() / Decimal::from(xs.len()))
}

/// Sample standard deviation (n - 1).
fn stdev(xs: &[Decimal]) -> Option<Decimal> {
    let m = mean(xs)?;
    if xs.len() < 2 {
        return None;
    }
    let var = xs.iter().map(|x| (*x - m) * (*x - m)).sum::<Decimal>() / Decimal::from(xs.len() - 1);
    var.sqrt()
}

/// The largest relative fall of equity below its running peak.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Drawdown {
    #[serde(with = "ser::exact")]
    pub percent: Decimal,
    #[serde(with = "ser::exact")]
    pub usd: Decimal,
    /// When the peak was.
    pub start: Option<String>,
    /// When the trough was.
    pub end: Option<String>,
    /// When equity first got back to the peak; `None` if it did not.
    pub recovered: Option<String>,
    /// The fall over the peak, unrounded (for Calmar).
    #[serde(skip)]
    pub fraction: Decimal,
}

pub fn max_drawdown(curve: &[(DateTime<Utc>, Decimal)]) -> Drawdown {
    let mut best: Option<(DateTime<Utc>, Decimal, DateTime<Utc>, Decimal)> = None;
    let mut peak: Option<(DateTime<Utc>, Decimal)> = None;
    for &(t, e) in curve {
        match peak {
            Some((pt, p)) if e < p && p > Decimal::ZERO => {
                let worse = best.is_none_or(|(_, bp, _, be)| (p - e) / p > (bp - be) / bp);
                if worse {
                    best = Some((pt, p, t, e));
                }
            }
            Some((_, p)) if e <= p => {}
            _ => peak = Some((t, e)),
        }
    }
    let Some((pt, p, tt, e)) = best else {
        return Drawdown::default();
    };
    let recovered = curve
        .iter()
        .find(|(t, v)| *t > tt && *v >= p)
        .map(|(t, _)| crate::clock::ts(*t));
    Drawdown {
        percent: r((p - e) / p * hundred(), 4),
        usd: r(p - e, 2),
        start: Some(crate::clock::ts(pt)),
        end: Some(crate::clock::ts(tt)),
        recovered,
        fraction: (p - e) / p,
    }
}

/// A trade named in the summary.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TradeRef {
    pub symbol: String,
    pub closed_at: String,
    #[serde(with = "ser::exact")]
    pub net_pnl: Decimal,
    #[serde(with = "ser::exact")]
    pub return_pct: Decimal,
}

impl TradeRef {
    fn of(t: &Trade) -> Self {
        Self {
            symbol: t.symbol.clone(),
            closed_at: t.closed_at.clone(),
            net_pnl: t.net_pnl,
            return_pct: t.return_pct,
        }
    }
}

/// A day's result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DayRef {
    pub day: String,
    #[serde(with = "ser::exact")]
    pub pnl: Decimal,
}

/// Every figure of the summary.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub from: String,
    pub to: String,
    #[serde(with = "ser::exact")]
    pub days: Decimal,
    #[serde(with = "ser::exact")]
    pub starting_balance: Decimal,
    #[serde(with = "ser::exact")]
    pub final_equity: Decimal,
    /// Final equity minus the starting balance: after fees, open positions at the mid.
    #[serde(with = "ser::exact")]
    pub net_pnl: Decimal,
    #[serde(with = "ser::exact")]
    pub total_return_pct: Decimal,
    /// Closed trades' net PnL.
    #[serde(with = "ser::exact")]
    pub closed_pnl: Decimal,
    /// Open positions at the end, marked at the mid (before their closing fees).
    #[serde(with = "ser::exact")]
    pub unrealized_pnl: Decimal,
    #[serde(with = "ser::exact")]
    pub fees: Decimal,
    /// Sum of |quantity| x price over every fill.
    #[serde(with = "ser::exact")]
    pub traded_volume: Decimal,
    #[serde(with = "ser::exact_opt")]
    pub cagr_pct: Option<Decimal>,
    #[serde(with = "ser::exact_opt")]
    pub sharpe: Option<Decimal>,
    #[serde(with = "ser::exact_opt")]
    pub sortino: Option<Decimal>,
    #[serde(with = "ser::exact_opt")]
    pub calmar: Option<Decimal>,
    #[serde(with = "ser::exact_opt")]
    pub sqn: Option<Decimal>,
    pub max_drawdown: Drawdown,
    #[serde(with = "ser::exact")]
    pub min_equity: Decimal,
    #[serde(with = "ser::exact")]
    pub max_equity: Decimal,
    pub trades: u64,
    #[serde(with = "ser::exact")]
    pub trades_per_day: Decimal,
    pub wins: u64,
    pub draws: u64,
    pub losses: u64,
    #[serde(with = "ser::exact_opt")]
    pub win_rate_pct: Option<Decimal>,
    #[serde(with = "ser::exact_opt")]
    pub profit_factor: Option<Decimal>,
    #[serde(with = "ser::exact_opt")]
    pub expectancy: Option<Decimal>,
    #[serde(with = "ser::exact_opt")]
    pub expectancy_ratio: Option<Decimal>,
    #[serde(with = "ser::exact_opt")]
    pub avg_win: Option<Decimal>,
    #[serde(with = "ser::exact_opt")]
    pub avg_loss: Option<Decimal>,
    pub best_trade: Option<TradeRef>,
    pub worst_trade: Option<TradeRef>,
    pub longest_win_streak: u64,
    pub longest_loss_streak: u64,
    pub avg_duration_secs: Option<i64>,
    pub avg_win_duration_secs: Option<i64>,
    pub avg_loss_duration_secs: Option<i64>,
    #[serde(with = "ser::exact_opt")]
    pub avg_trade_notional: Option<Decimal>,
    /// Share of the period with at least one open position, in percent.
    #[serde(with = "ser::exact")]
    pub exposure_pct: Decimal,
    pub max_open_positions: u64,
    #[serde(with = "ser::exact")]
    pub max_gross_exposure: Decimal,
    pub best_day: Option<DayRef>,
    pub worst_day: Option<DayRef>,
    pub days_win: u64,
    pub days_draw: u64,
    pub days_loss: u64,
    #[serde(with = "ser::exact_opt")]
    pub avg_daily_return_pct: Option<Decimal>,
    /// Buy and hold: each symbol's mid at the end over its mid at the start, minus one (mean).
    #[serde(with = "ser::exact_opt")]
    pub market_change_pct: Option<Decimal>,
    pub open_positions: u64,
}

/// Trade figures for one breakdown key (or for all).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TradeRow {
    pub trades: u64,
    pub wins: u64,
    pub losses: u64,
    #[serde(with = "ser::exact_opt")]
    pub win_rate_pct: Option<Decimal>,
    #[serde(with = "ser::exact")]
    pub net_pnl: Decimal,
    #[serde(with = "ser::exact_opt")]
    pub avg_net_pnl: Option<Decimal>,
    #[serde(with = "ser::exact_opt")]
    pub profit_factor: Option<Decimal>,
    #[serde(skip)]
    gross_win: Decimal,
    #[serde(skip)]
    gross_loss: Decimal,
}

impl TradeRow {
    fn add(&mut self, t: &Trade) {
        self.trades += 1;
        self.net_pnl += t.net_pnl;
        if t.net_pnl > Decimal::ZERO {
            self.wins += 1;
            self.gross_win += t.net_pnl;
        } else if t.net_pnl < Decimal::ZERO {
            self.losses += 1;
            self.gross_loss -= t.net_pnl;
        }
    }

    fn done(mut self) -> Self {
        let n = Decimal::from(self.trades);
        if self.trades > 0 {
            self.win_rate_pct = Some(r(Decimal::from(self.wins) / n * hundred(), 2));
            self.avg_net_pnl = Some(r(self.net_pnl / n, 4));
        }
        self.profit_factor =
            (!self.gross_loss.is_zero()).then(|| r(self.gross_win / self.gross_loss, 4));
        self.net_pnl = r(self.net_pnl, 4);
        self
    }
}

/// One row of a breakdown: what the signals became and what the trades made.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakdownRow {
    pub key: String,
    #[serde(flatten)]
    pub signals: SignalRow,
    #[serde(flatten)]
    pub trades: TradeRow,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Breakdowns {
    pub strategy: Vec<BreakdownRow>,
    pub symbol: Vec<BreakdownRow>,
    pub confidence_band: Vec<BreakdownRow>,
    pub risk_level: Vec<BreakdownRow>,
    pub time_horizon: Vec<BreakdownRow>,
    pub exit_reason: Vec<BreakdownRow>,
}

/// One calendar month (UTC).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MonthRow {
    pub month: String,
    #[serde(with = "ser::exact")]
    pub pnl: Decimal,
    #[serde(with = "ser::exact")]
    pub return_pct: Decimal,
    pub trades: u64,
    pub wins: u64,
}

fn rows(
    signals: &BTreeMap<String, SignalRow>,
    trades: &[Trade],
    key: impl Fn(&Trade) -> String,
) -> Vec<BreakdownRow> {
    let mut by: BTreeMap<String, TradeRow> = BTreeMap::new();
    for t in trades {
        by.entry(key(t)).or_default().add(t);
    }
    let keys: std::collections::BTreeSet<&String> = signals.keys().chain(by.keys()).collect();
    keys.into_iter()
        .map(|k| BreakdownRow {
            key: k.clone(),
            signals: signals.get(k).cloned().unwrap_or_default(),
            trades: by.get(k).cloned().unwrap_or_default().done(),
        })
        .collect()
}

pub fn breakdowns(d: &Dimensions, trades: &[Trade]) -> Breakdowns {
    use super::collect::{band, NONE};
    let none = BTreeMap::new();
    Breakdowns {
        strategy: rows(&d.strategy, trades, |t| t.strategy.clone()),
        symbol: rows(&d.symbol, trades, |t| t.symbol.clone()),
        confidence_band: rows(&d.band, trades, |t| {
            t.confidence.map_or(NONE.to_owned(), |c| band(c).to_owned())
        }),
        risk_level: rows(&d.risk_level, trades, |t| {
            t.risk_level.clone().unwrap_or_else(|| NONE.into())
        }),
        time_horizon: rows(&d.time_horizon, trades, |t| {
            t.time_horizon.clone().unwrap_or_else(|| NONE.into())
        }),
        exit_reason: rows(&none, trades, |t| t.exit.to_owned()),
    }
}

/// The summary of one run.
pub fn summary(
    c: &Collector,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    starting_balance: Decimal,
    open: &[Trade],
    market: &BTreeMap<String, (Decimal, Decimal)>,
) -> Summary {
    let final_equity = c.equity.last().map_or(starting_balance, |e| e.1);
    let secs = (end - start).num_seconds().max(0);
    let days = Decimal::from(secs) / Decimal::from(DAY_SECS);
    let trades = &c.trades;
    let n = trades.len() as u64;
    let nd = Decimal::from(n);
    let wins: Vec<&Trade> = trades
        .iter()
        .filter(|t| t.net_pnl > Decimal::ZERO)
        .collect();
    let losses: Vec<&Trade> = trades
        .iter()
        .filter(|t| t.net_pnl < Decimal::ZERO)
        .collect();
    let gross_win: Decimal = wins.iter().map(|t| t.net_pnl).sum();
    let gross_loss: Decimal = -losses.iter().map(|t| t.net_pnl).sum::<Decimal>();
    let closed_pnl: Decimal = trades.iter().map(|t| t.net_pnl).sum();
    let avg_win = (!wins.is_empty()).then(|| gross_win / Decimal::from(wins.len()));
    let avg_loss = (!losses.is_empty()).then(|| -gross_loss / Decimal::from(losses.len()));
    let win_rate = (n > 0).then(|| Decimal::from(wins.len()) / nd);
    let expectancy_ratio = match (avg_win, avg_loss, win_rate) {
        (Some(w), Some(l), Some(rate)) => Some((Decimal::ONE + w / -l) * rate - Decimal::ONE),
        (None, Some(_), Some(_)) => Some(Decimal::NEGATIVE_ONE),
        _ => None,
    };
    let (mut win_streak, mut loss_streak, mut w, mut l) = (0u64, 0u64, 0u64, 0u64);
    for t in trades {
        if t.net_pnl > Decimal::ZERO {
            w += 1;
            l = 0;
        } else if t.net_pnl < Decimal::ZERO {
            l += 1;
            w = 0;
        } else {
            w = 0;
            l = 0;
        }
        win_streak = win_streak.max(w);
        loss_streak = loss_streak.max(l);
    }
    let avg_secs = |ts: &[&Trade]| {
        (!ts.is_empty()).then(|| ts.iter().map(|t| t.duration_secs).sum::<i64>() / ts.len() as i64)
    };
    let all: Vec<&Trade> = trades.iter().collect();
    let returns: Vec<Decimal> = trades
        .iter()
        .filter(|t| !t.entry_notional.is_zero())
        .map(|t| t.net_pnl / t.entry_notional)
        .collect();
    let sqn = match (mean(&returns), stdev(&returns)) {
        (Some(m), Some(s)) if !s.is_zero() => Decimal::from(n).sqrt().map(|q| q * m / s),
        _ => None,
    };

    // Daily returns, from the starting balance.
    let mut daily_returns = Vec::new();
    let mut day_pnls: Vec<(DateTime<Utc>, Decimal)> = Vec::new();
    let mut before = (start, starting_balance);
    for &(t, e) in &c.daily {
        if t <= before.0 {
            continue;
        }
        if !before.1.is_zero() {
            daily_returns.push(e / before.1 - Decimal::ONE);
        }
        day_pnls.push((before.0, e - before.1));
        before = (t, e);
    }
    let sqrt365 = Decimal::from(365).sqrt().unwrap_or_default();
    let sharpe = match (mean(&daily_returns), stdev(&daily_returns)) {
        (Some(m), Some(s)) if !s.is_zero() => Some(m / s * sqrt365),
        _ => None,
    };
    let downside = if daily_returns.is_empty() {
        None
    } else {
        let sum: Decimal = daily_returns
            .iter()
            .map(|x| (*x).min(Decimal::ZERO) * (*x).min(Decimal::ZERO))
            .sum();
        (sum / Decimal::from(daily_returns.len())).sqrt()
    };
    let sortino = match (mean(&daily_returns), downside) {
        (Some(m), Some(dd)) if !dd.is_zero() => Some(m / dd * sqrt365),
        _ => None,
    };
    let ratio = if starting_balance.is_zero() {
        Decimal::ZERO
    } else {
        final_equity / starting_balance
    };
    let cagr = if days < Decimal::ONE || ratio <= Decimal::ZERO {
        None
    } else {
        ratio
            .checked_ln()
            .and_then(|ln| ln.checked_mul(Decimal::from(365) / days))
            .and_then(|x| x.checked_exp())
            .map(|g| g - Decimal::ONE)
    };
    let drawdown = max_drawdown(&c.equity);
    let calmar = match cagr {
        Some(g) if !drawdown.fraction.is_zero() => Some(g / drawdown.fraction),
        _ => None,
    };
    let best_day = day_pnls.iter().max_by(|a, b| a.1.cmp(&b.1));
    let worst_day = day_pnls.iter().min_by(|a, b| a.1.cmp(&b.1));
    let day_ref = |d: &(DateTime<Utc>, Decimal)| DayRef {
        day: d.0.format("%Y-%m-%d").to_string(),
        pnl: r(d.1, 2),
    };
    let changes: Vec<Decimal> = market
        .values()
        .filter(|(a, _)| !a.is_zero())
        .map(|(a, b)| (*b / *a - Decimal::ONE) * hundred())
        .collect();
    let secs_d = Decimal::from(secs);
    Summary {
        from: crate::clock::ts(start),
        to: crate::clock::ts(end),
        days: r(days, 4),
        starting_balance: r(starting_balance, 2),
        final_equity: r(final_equity, 4),
        net_pnl: r(final_equity - starting_balance, 4),
        total_return_pct: if starting_balance.is_zero() {
            Decimal::ZERO
        } else {
            r(
                (final_equity - starting_balance) / starting_balance * hundred(),
                4,
            )
        },
        closed_pnl: r(closed_pnl, 4),
        unrealized_pnl: r(open.iter().map(|t| t.gross_pnl).sum(), 4),
        fees: r(c.fees, 4),
        traded_volume: r(c.traded_volume, 2),
        cagr_pct: cagr.map(|g| r(g * hundred(), 4)),
        sharpe: sharpe.map(|s| r(s, 4)),
        sortino: sortino.map(|s| r(s, 4)),
        calmar: calmar.map(|s| r(s, 4)),
        sqn: sqn.map(|s| r(s, 4)),
        max_drawdown: drawdown,
        min_equity: r(
            c.equity
                .iter()
                .map(|e| e.1)
                .min()
                .unwrap_or(starting_balance),
            4,
        ),
        max_equity: r(
            c.equity
                .iter()
                .map(|e| e.1)
                .max()
                .unwrap_or(starting_balance),
            4,
        ),
        trades: n,
        trades_per_day: if days.is_zero() {
            Decimal::ZERO
        } else {
            r(nd / days, 4)
        },
        wins: wins.len() as u64,
        draws: n - wins.len() as u64 - losses.len() as u64,
        losses: losses.len() as u64,
        win_rate_pct: win_rate.map(|w| r(w * hundred(), 2)),
        profit_factor: (!gross_loss.is_zero()).then(|| r(gross_win / gross_loss, 4)),
        expectancy: (n > 0).then(|| r(closed_pnl / nd, 4)),
        expectancy_ratio: expectancy_ratio.map(|x| r(x, 4)),
        avg_win: avg_win.map(|x| r(x, 4)),
        avg_loss: avg_loss.map(|x| r(x, 4)),
        best_trade: trades
            .iter()
            .max_by(|a, b| a.net_pnl.cmp(&b.net_pnl))
            .map(TradeRef::of),
        worst_trade: trades
            .iter()
            .min_by(|a, b| a.net_pnl.cmp(&b.net_pnl))
            .map(TradeRef::of),
        longest_win_streak: win_streak,
        longest_loss_streak: loss_streak,
        avg_duration_secs: avg_secs(&all),
        avg_win_duration_secs: avg_secs(&wins),
        avg_loss_duration_secs: avg_secs(&losses),
        avg_trade_notional: (n > 0).then(|| {
            r(
                trades.iter().map(|t| t.entry_notional).sum::<Decimal>() / nd,
                2,
            )
        }),
        exposure_pct: if secs == 0 {
            Decimal::ZERO
        } else {
            r(
                Decimal::from(c.in_market.num_seconds()) / secs_d * hundred(),
                2,
            )
        },
        max_open_positions: c.max_open_positions as u64,
        max_gross_exposure: r(c.max_gross_exposure, 2),
        best_day: best_day.map(day_ref),
        worst_day: worst_day.map(day_ref),
        days_win: day_pnls.iter().filter(|d| d.1 > Decimal::ZERO).count() as u64,
        days_draw: day_pnls.iter().filter(|d| d.1.is_zero()).count() as u64,
        days_loss: day_pnls.iter().filter(|d| d.1 < Decimal::ZERO).count() as u64,
        avg_daily_return_pct: mean(&daily_returns).map(|m| r(m * hundred(), 4)),
        market_change_pct: mean(&changes).map(|m| r(m, 4)),
        open_positions: open.len() as u64,
    }
}

/// PnL per calendar month (UTC), from the equity at each month's first midnight.
pub fn monthly(c: &Collector, start: DateTime<Utc>, starting_balance: Decimal) -> Vec<MonthRow> {
    let mut out: Vec<MonthRow> = Vec::new();
    let month = |t: DateTime<Utc>| format!("{:04}-{:02}", t.year(), t.month());
    let mut opening = starting_balance;
    let mut current = month(start);
    let mut last = starting_balance;
    let push = |m: &str, open: Decimal, close: Decimal, out: &mut Vec<MonthRow>| {
        let trades: Vec<&Trade> = c
            .trades
            .iter()
            .filter(|t| t.closed_at.starts_with(m))
            .collect();
        out.push(MonthRow {
            month: m.to_owned(),
            pnl: r(close - open, 2),
            return_pct: if open.is_zero() {
                Decimal::ZERO
            } else {
                r((close - open) / open * hundred(), 4)
            },
            trades: trades.len() as u64,
            wins: trades.iter().filter(|t| t.net_pnl > Decimal::ZERO).count() as u64,
        });
    };
    for &(t, e) in &c.daily {
        // The sample at a month's first midnight closes the month before.
        let m = month(t - chrono::Duration::seconds(1));
        if m != current {
            push(&current, opening, last, &mut out);
            opening = last;
            current = m;
        }
        last = e;
    }
    push(&current, opening, last, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn at(h: i64) -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::hours(h)
    }

    #[test]
    fn the_deepest_relative_fall_is_the_max_drawdown_with_its_recovery() {
        let curve: Vec<(DateTime<Utc>, Decimal)> = [
            (0, "100"),
            (1, "120"),
            (2, "90"),
            (3, "110"),
            (4, "200"),
            (5, "170"),
            (6, "125"),
            (7, "121"),
        ]
        .iter()
        .map(|(h, e)| (at(*h), d(e)))
        .collect();
        let dd = max_drawdown(&curve);
        // 120 -> 90 is 25%; 200 -> 121 is 39.5%: the deeper one, not recovered.
        assert_eq!((dd.percent, dd.usd), (d("39.5"), d("79")));
        assert_eq!(dd.start, Some(crate::clock::ts(at(4))));
        assert_eq!(dd.end, Some(crate::clock::ts(at(7))));
        assert_eq!(dd.recovered, None);
        let recovered = max_drawdown(&curve[..5]);
        assert_eq!(recovered.percent, d("25"));
        assert_eq!(recovered.recovered, Some(crate::clock::ts(at(4))));
        assert_eq!(
            max_drawdown(&[(at(0), d("1")), (at(1), d("2"))]),
            Drawdown::default()
        );
    }

    #[test]
    fn the_sample_standard_deviation_divides_by_n_minus_one() {
        let xs = [
            d("2"),
            d("4"),
            d("4"),
            d("4"),
            d("5"),
            d("5"),
            d("7"),
            d("9"),
        ];
        // Mean 5, squares sum to 32; 32 / 7 = 4.571428..., its root 2.138089935...
        assert_eq!(stdev(&xs).unwrap().round_dp(6), d("2.13809"));
        assert_eq!(stdev(&xs[..1]), None);
        assert_eq!(mean(&[]), None);
    }
}
