//! Account-wide limits from the config, and the two circuit breakers (daily realized loss and
//! drawdown from the equity peak) that halt trading. Pure: the caller supplies the numbers.

use rust_decimal::Decimal;

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
}
