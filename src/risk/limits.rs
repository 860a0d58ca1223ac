//! Account-wide limits from the config, the two circuit breakers (daily realized loss and
//! drawdown from the equity peak) that halt trading, the margin-ratio rule that puts the account
//! in `reducing`, and how the equity peak moves. Pure: the caller supplies the numbers and the
//! current state, and persists what these functions return (the dispatcher in SQL, the backtest
//! in memory), so both apply the same rules.

use super::state::{SetBy, StateEntry, TradingState};
use crate::model::checked::{self, Overflow};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// The asset balances, equity and the loss limits are counted in.
pub const QUOTE_ASSET: &str = "USD";

/// 00:00 UTC of `now`'s day: the daily realized-loss limit counts from there.
pub fn day_start(now: DateTime<Utc>) -> DateTime<Utc> {
    now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The equity peak after a USD balance update: `Some(total)` when `total` is a new peak (or the
/// first one), `None` when the peak stays.
pub fn peak_after_balance(peak: Option<Decimal>, total: Decimal) -> Option<Decimal> {
    peak.is_none_or(|p| total > p).then_some(total)
}

/// The equity peak after a deposit or withdrawal seen for the first time (a replay must not
/// move it): a completed one (or one without a status) in the quote asset moves the peak by its
/// amount, so money leaving is not mistaken for a drawdown. `None` when the peak stays (also when
/// there is no peak yet); an amount the peak cannot absorb is an overflow.
pub fn peak_after_transfer(
    peak: Option<Decimal>,
    kind: &str,
    asset: &str,
    amount: Decimal,
    status: Option<&str>,
) -> Result<Option<Decimal>, Overflow> {
    let completed = status.is_none_or(|s| s == "completed");
    let Some(peak) = peak else { return Ok(None) };
    if !completed || asset != QUOTE_ASSET || amount <= Decimal::ZERO {
        return Ok(None);
    }
    let signed = if kind == "deposit" { amount } else { -amount };
    Ok(Some(checked::add(peak, signed)?.max(Decimal::ZERO)))
}

/// Every limit is optional; `None` means not enforced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountLimits {
    /// Largest value (USD) of one opening order.
    pub max_order_notional: Option<Decimal>,
    /// Largest |position + working orders| value (USD) on one symbol.
    pub max_position_notional: Option<Decimal>,
    /// Largest sum over symbols of |position + working orders| value (USD).
    pub max_gross_exposure: Option<Decimal>,
    /// Largest number of orders not yet in a terminal state.
    pub max_open_orders: Option<u32>,
    /// Largest number of orders created in any 60 seconds.
    pub max_orders_per_minute: Option<u32>,
    /// Realized loss (USD, positive number) since 00:00 UTC that halts trading.
    pub daily_loss_limit: Option<Decimal>,
    /// Drawdown from the equity peak, in percent, that halts trading.
    pub max_drawdown_percent: Option<Decimal>,
    /// `position.updated` marginRatio above this puts the account in `reducing`.
    pub max_margin_ratio: Option<Decimal>,
}

/// A breaker that has tripped, with the numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breach {
    DailyLoss(String),
    Drawdown(String),
}

impl AccountLimits {
    /// `daily_realized` is signed (a loss is negative).
    pub fn daily_loss_breach(&self, daily_realized: Decimal) -> Option<Breach> {
        let limit = self.daily_loss_limit?;
        let loss = -daily_realized;
        (loss >= limit).then(|| {
            Breach::DailyLoss(format!(
                "daily realized loss limit {limit} USD reached: lost {} USD since 00:00 UTC",
                loss.round_dp(2)
            ))
        })
    }

    pub fn drawdown_breach(&self, equity: Decimal, peak: Decimal) -> Option<Breach> {
        let limit = self.max_drawdown_percent?;
        if peak <= Decimal::ZERO || equity >= peak {
            return None;
        }
        // Venue numbers: a drawdown too large to compute is beyond any limit.
        let drawdown = peak
            .checked_sub(equity)
            .and_then(|d| d.checked_div(peak))
            .and_then(|r| r.checked_mul(Decimal::ONE_HUNDRED));
        drawdown.is_none_or(|d| d >= limit).then(|| {
            Breach::Drawdown(format!(
                "max drawdown {limit}% reached: equity {} USD is {}% below its peak {} USD",
                equity.round_dp(2),
                drawdown.map_or_else(
                    || "far more than 100".to_owned(),
                    |d| d.round_dp(2).to_string()
                ),
                peak.round_dp(2)
            ))
        })
    }

    pub fn margin_ratio_exceeded(&self, ratio: Decimal) -> Option<String> {
        let limit = self.max_margin_ratio?;
        (ratio > limit).then(|| format!("margin ratio {ratio} is above the limit {limit}"))
    }

    /// The halt a circuit breaker calls for: the daily realized loss (after fees, since 00:00
    /// UTC) first, then the USD `total` below its peak. `None` when neither trips, or when the
    /// account is halted already (a halt is never written over another).
    pub fn breaker_halt(
        &self,
        daily_realized: Decimal,
        equity: Option<Decimal>,
        peak: Option<Decimal>,
        account: Option<&StateEntry>,
        now: DateTime<Utc>,
    ) -> Option<StateEntry> {
        let breach = self
            .daily_loss_breach(daily_realized)
            .map(|b| (b, SetBy::DailyLoss))
            .or_else(|| match (equity, peak) {
                (Some(equity), Some(peak)) => self
                    .drawdown_breach(equity, peak)
                    .map(|b| (b, SetBy::Drawdown)),
                _ => None,
            });
        let (Breach::DailyLoss(reason) | Breach::Drawdown(reason), set_by) = breach?;
        if account.is_some_and(|a| a.state == TradingState::Halted) {
            return None;
        }
        Some(StateEntry {
            symbol: None,
            state: TradingState::Halted,
            reason,
            since: now,
            set_by,
        })
    }

    /// What the margin-ratio limit sets, given the largest margin ratio the venue reports: the
    /// account `reducing` when a ratio is above the limit and the account has no state of its
    /// own; `active` again once every ratio is back within it, only if this rule set the state.
    pub fn margin_rule(
        &self,
        max_ratio: Option<Decimal>,
        account: Option<&StateEntry>,
        now: DateTime<Utc>,
    ) -> Option<StateEntry> {
        self.max_margin_ratio?;
        let exceeded = max_ratio.and_then(|r| self.margin_ratio_exceeded(r));
        let (state, reason) = match (exceeded, account) {
            (Some(reason), None) => (TradingState::Reducing, reason),
            (None, Some(a)) if a.set_by == SetBy::MarginRatio => (
                TradingState::Active,
                "margin ratio back within the limit".to_owned(),
            ),
            _ => return None,
        };
        Some(StateEntry {
            symbol: None,
            state,
            reason,
            since: now,
            set_by: SetBy::MarginRatio,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn breakers_trip_at_their_limits_and_not_before() {
        let l = AccountLimits {
            daily_loss_limit: Some(d("500")),
            max_drawdown_percent: Some(d("10")),
            max_margin_ratio: Some(d("0.5")),
            ..Default::default()
        };
        let cases: Vec<(&str, Option<Breach>, bool)> = vec![
            ("a profit is no loss", l.daily_loss_breach(d("100")), false),
            (
                "a loss below the limit passes",
                l.daily_loss_breach(d("-499.99")),
                false,
            ),
            (
                "a loss at the limit halts",
                l.daily_loss_breach(d("-500")),
                true,
            ),
            (
                "drawdown of 9.99% passes",
                l.drawdown_breach(d("9001"), d("10000")),
                false,
            ),
            (
                "drawdown of 10% halts",
                l.drawdown_breach(d("9000"), d("10000")),
                true,
            ),
            (
                "a new peak is no drawdown",
                l.drawdown_breach(d("11000"), d("10000")),
                false,
            ),
        ];
        for (name, got, tripped) in cases {
            assert_eq!(got.is_some(), tripped, "{name}: {got:?}");
        }
        assert_eq!(
            l.daily_loss_breach(d("-612.346")),
            Some(Breach::DailyLoss(
                "daily realized loss limit 500 USD reached: lost 612.35 USD since 00:00 UTC".into()
            ))
        );
        assert!(l.margin_ratio_exceeded(d("0.5")).is_none());
        assert!(l.margin_ratio_exceeded(d("0.51")).is_some());
        assert!(AccountLimits::default()
            .daily_loss_breach(d("-1000000"))
            .is_none());
    }

    fn at(h: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2026, 11, 27, h, 0, 0).unwrap()
    }

    fn entry(state: TradingState, set_by: SetBy) -> StateEntry {
        StateEntry {
            symbol: None,
            state,
            reason: "r".into(),
            since: at(1),
            set_by,
        }
    }

    #[test]
    fn a_breaker_halts_once_naming_the_first_limit_it_finds_broken() {
        let l = AccountLimits {
            daily_loss_limit: Some(d("500")),
            max_drawdown_percent: Some(d("10")),
            ..Default::default()
        };
        let halted = entry(TradingState::Halted, SetBy::Operator);
        let reducing = entry(TradingState::Reducing, SetBy::Alert);
        type Row<'a> = (
            &'a str,
            Decimal,
            Option<&'a str>,
            Option<&'a StateEntry>,
            Option<SetBy>,
        );
        let cases: Vec<Row> = vec![
            ("nothing broken", d("-10"), Some("9500"), None, None),
            (
                "daily loss halts",
                d("-500"),
                Some("9500"),
                None,
                Some(SetBy::DailyLoss),
            ),
            (
                "drawdown halts",
                d("0"),
                Some("9000"),
                None,
                Some(SetBy::Drawdown),
            ),
            (
                "daily loss is named first",
                d("-600"),
                Some("8000"),
                None,
                Some(SetBy::DailyLoss),
            ),
            ("no balance, no drawdown", d("0"), None, None, None),
            (
                "a halted account is left alone",
                d("-600"),
                None,
                Some(&halted),
                None,
            ),
            (
                "reducing becomes halted",
                d("-600"),
                None,
                Some(&reducing),
                Some(SetBy::DailyLoss),
            ),
        ];
        for (name, daily, equity, account, want) in cases {
            let got = l.breaker_halt(daily, equity.map(d), Some(d("10000")), account, at(2));
            assert_eq!(got.as_ref().map(|e| e.set_by), want, "{name}: {got:?}");
            if let Some(e) = got {
                assert_eq!(
                    (e.state, e.symbol, e.since),
                    (TradingState::Halted, None, at(2))
                );
            }
        }
        assert_eq!(day_start(at(23)), at(0));
    }

    #[test]
    fn the_margin_rule_reduces_and_only_undoes_its_own_state() {
        let l = AccountLimits {
            max_margin_ratio: Some(d("0.8")),
            ..Default::default()
        };
        let own = entry(TradingState::Reducing, SetBy::MarginRatio);
        let operator = entry(TradingState::Halted, SetBy::Operator);
        type Row<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a StateEntry>,
            Option<TradingState>,
        );
        let cases: Vec<Row> = vec![
            (
                "above the limit reduces",
                Some("0.9"),
                None,
                Some(TradingState::Reducing),
            ),
            ("within the limit does nothing", Some("0.8"), None, None),
            (
                "back within undoes its own",
                Some("0.5"),
                Some(&own),
                Some(TradingState::Active),
            ),
            (
                "never undoes an operator's",
                Some("0.5"),
                Some(&operator),
                None,
            ),
            (
                "never overwrites an operator's",
                Some("0.9"),
                Some(&operator),
                None,
            ),
        ];
        for (name, ratio, account, want) in cases {
            let got = l.margin_rule(ratio.map(d), account, at(2));
            assert_eq!(got.map(|e| e.state), want, "{name}");
        }
        assert_eq!(
            AccountLimits::default().margin_rule(Some(d("5")), None, at(2)),
            None
        );
    }

    #[test]
    fn the_equity_peak_rises_with_the_total_and_moves_with_completed_transfers() {
        assert_eq!(peak_after_balance(None, d("100")), Some(d("100")));
        assert_eq!(peak_after_balance(Some(d("100")), d("101")), Some(d("101")));
        assert_eq!(peak_after_balance(Some(d("100")), d("99")), None);
        let t = |peak: Option<&str>, kind, asset, amount, status| {
            peak_after_transfer(peak.map(d), kind, asset, d(amount), status).unwrap()
        };
        assert_eq!(
            t(Some("1000"), "withdrawal", "USD", "300", Some("completed")),
            Some(d("700"))
        );
        assert_eq!(
            t(Some("1000"), "deposit", "USD", "300", None),
            Some(d("1300"))
        );
        assert_eq!(
            t(Some("100"), "withdrawal", "USD", "300", None),
            Some(d("0"))
        );
        assert_eq!(
            t(Some("1000"), "withdrawal", "USD", "300", Some("pending")),
            None
        );
        assert_eq!(t(Some("1000"), "withdrawal", "BTC", "1", None), None);
        assert_eq!(t(None, "deposit", "USD", "300", None), None);
    }
}
