//! Sizing: how much to buy or sell for one intent, and the symbol's trading increments.
//!
//! Pure arithmetic on `Decimal`. Guarantees: a quantity is always rounded *down* to the symbol's
//! lot step (never more than the method asked for), a limit price is rounded to the tick in the
//! direction that is never worse for us, and every refusal names the numbers it compared.

use rust_decimal::{Decimal, RoundingStrategy};

/// A symbol's trading increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolSpec {
    /// Quantities are multiples of this.
    pub lot_step: Decimal,
    /// Prices are multiples of this.
    pub tick_size: Decimal,
    /// Smaller orders are refused.
    pub min_quantity: Decimal,
    /// Fee in basis points of a fill's notional, charged when the venue does not report a fill's
    /// fee (until it does).
    pub fee_bps: Decimal,
}

impl Default for SymbolSpec {
    /// For symbols the config does not list: 0.00001 units, 0.01 quote, minimum one lot, 5 bps fee.
    fn default() -> Self {
        Self {
            lot_step: Decimal::new(1, 5),
            tick_size: Decimal::new(1, 2),
            min_quantity: Decimal::new(1, 5),
            fee_bps: Decimal::new(5, 0),
        }
    }
}

impl SymbolSpec {
    /// Rounds a quantity down to the lot step.
    pub fn round_quantity(&self, q: Decimal) -> Decimal {
        if q <= Decimal::ZERO {
            return Decimal::ZERO;
        }
        ((q / self.lot_step).round_dp_with_strategy(0, RoundingStrategy::ToZero) * self.lot_step)
            .normalize()
    }

    /// Rounds a price to the tick: down for a buy (pay no more), up for a sell (receive no less).
    pub fn round_price(&self, p: Decimal, buy: bool) -> Decimal {
        let strategy = if buy {
            RoundingStrategy::ToNegativeInfinity
        } else {
            RoundingStrategy::ToPositiveInfinity
        };
        ((p / self.tick_size).round_dp_with_strategy(0, strategy) * self.tick_size).normalize()
    }
}

/// How a strategy sizes an opening order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizingMethod {
    /// This many units.
    FixedQuantity(Decimal),
    /// This much quote currency (USD) at the reference price.
    FixedNotional(Decimal),
    /// This percentage of the available USD balance.
    PercentOfBalance(Decimal),
    /// Risk this percentage of equity, with the stop at `support` (buys) or `resistance` (sells);
    /// never more than the equity's worth (a stop next to the price would ask for a fortune).
    RiskPerTrade(Decimal),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizing {
    pub method: SizingMethod,
    /// Multiply the size by confidence / 100.
    pub scale_by_confidence: bool,
}

/// What sizing may look at.
#[derive(Debug, Clone, Copy, Default)]
pub struct SizingInputs {
    pub price: Decimal,
    pub buy: bool,
    pub confidence: u8,
    /// Available USD, from `account.balance_updated` or the REST snapshot.
    pub available_usd: Option<Decimal>,
    /// Total USD (the equity sigex knows of).
    pub equity_usd: Option<Decimal>,
    pub support: Option<Decimal>,
    pub resistance: Option<Decimal>,
}

const HUNDRED: Decimal = Decimal::ONE_HUNDRED;

/// The raw (unrounded) quantity a method asks for, or why it cannot say.
pub fn raw_quantity(sizing: &Sizing, i: &SizingInputs) -> Result<Decimal, String> {
    let q = match &sizing.method {
        SizingMethod::FixedQuantity(q) => *q,
        SizingMethod::FixedNotional(n) => *n / i.price,
        SizingMethod::PercentOfBalance(pct) => {
            let available = i.available_usd.ok_or_else(|| {
                "percent-of-balance sizing: no USD balance known yet (no account.balance_updated \
                 event or balance snapshot)"
                    .to_owned()
            })?;
            if available <= Decimal::ZERO {
                return Err(format!(
                    "percent-of-balance sizing: available USD balance is {available}"
                ));
            }
            available * *pct / HUNDRED / i.price
        }
        SizingMethod::RiskPerTrade(pct) => {
            let equity = i.equity_usd.ok_or_else(|| {
                "risk-per-trade sizing: no USD equity known yet (no balance event or snapshot)"
                    .to_owned()
            })?;
            let (stop, name) = if i.buy {
                (i.support, "support")
            } else {
                (i.resistance, "resistance")
            };
            let stop = stop.ok_or_else(|| {
                format!("risk-per-trade sizing: the signal carries no {name} to put the stop at")
            })?;
            let distance = if i.buy {
                i.price - stop
            } else {
                stop - i.price
            };
            if distance <= Decimal::ZERO {
                return Err(format!(
                    "risk-per-trade sizing: stop at {name} {stop} is on the wrong side of the price {}",
                    i.price
                ));
            }
            // 1/distance grows without bound as the stop nears the price: never ask for more
            // than the equity's worth (no leverage from sizing alone), limits or not.
            (equity * *pct / HUNDRED / distance).min(equity / i.price)
        }
    };
    Ok(if sizing.scale_by_confidence {
        q * Decimal::from(i.confidence) / HUNDRED
    } else {
        q
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn inputs() -> SizingInputs {
        SizingInputs {
            price: d("50000"),
            buy: true,
            confidence: 80,
            available_usd: Some(d("10000")),
            equity_usd: Some(d("20000")),
            support: Some(d("49000")),
            resistance: Some(d("52000")),
        }
    }

    #[test]
    fn each_sizing_method_asks_for_the_documented_quantity() {
        let spec = SymbolSpec {
            lot_step: d("0.001"),
            tick_size: d("0.5"),
            min_quantity: d("0.001"),
            ..SymbolSpec::default()
        };
        type Tweak = fn(&mut SizingInputs);
        let none: Tweak = |_| {};
        let sell: Tweak = |i| i.buy = false;
        let no_balance: Tweak = |i| i.available_usd = None;
        let no_support: Tweak = |i| i.support = None;
        let support_above: Tweak = |i| i.support = Some(d("51000"));
        let stop_a_cent_away: Tweak = |i| i.support = Some(d("49999.99"));
        type Row = (
            &'static str,
            SizingMethod,
            bool,
            Tweak,
            Result<&'static str, &'static str>,
        );
        let cases: Vec<Row> = vec![
            (
                "fixed quantity is taken as is",
                SizingMethod::FixedQuantity(d("0.25")),
                false,
                none,
                Ok("0.25"),
            ),
            (
                "fixed quantity rounds down to the lot",
                SizingMethod::FixedQuantity(d("0.2509")),
                false,
                none,
                Ok("0.25"),
            ),
            (
                "fixed notional divides by the price and rounds down",
                SizingMethod::FixedNotional(d("1000")),
                false,
                none,
                Ok("0.02"),
            ),
            (
                "fixed notional scaled by confidence 80",
                SizingMethod::FixedNotional(d("1000")),
                true,
                none,
                Ok("0.016"),
            ),
            (
                "percent of balance: 10% of 10000 at 50000",
                SizingMethod::PercentOfBalance(d("10")),
                false,
                none,
                Ok("0.02"),
            ),
            (
                "percent of balance needs a balance",
                SizingMethod::PercentOfBalance(d("10")),
                false,
                no_balance,
                Err("no USD balance known"),
            ),
            (
                "risk per trade: 1% of 20000 over a 1000 stop distance",
                SizingMethod::RiskPerTrade(d("1")),
                false,
                none,
                Ok("0.2"),
            ),
            (
                "risk per trade sells stop at resistance",
                SizingMethod::RiskPerTrade(d("1")),
                false,
                sell,
                Ok("0.1"),
            ),
            (
                "risk per trade with the stop a cent away is capped at the equity's worth",
                SizingMethod::RiskPerTrade(d("1")),
                false,
                stop_a_cent_away,
                // 200 USD at risk over 0.01 would be 20000 BTC (1e9 USD); 20000 / 50000 = 0.4.
                Ok("0.4"),
            ),
            (
                "risk per trade without support refuses",
                SizingMethod::RiskPerTrade(d("1")),
                false,
                no_support,
                Err("no support"),
            ),
            (
                "risk per trade with support above the price refuses",
                SizingMethod::RiskPerTrade(d("1")),
                false,
                support_above,
                Err("wrong side"),
            ),
        ];
        for (name, method, scale, tweak, want) in cases {
            let mut i = inputs();
            tweak(&mut i);
            let sizing = Sizing {
                method,
                scale_by_confidence: scale,
            };
            let got = raw_quantity(&sizing, &i).map(|q| spec.round_quantity(q));
            match (want, got) {
                (Ok(w), Ok(g)) => assert_eq!(g, d(w), "{name}"),
                (Err(needle), Err(e)) => assert!(e.contains(needle), "{name}: {e}"),
                (w, g) => panic!("{name}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn quantities_round_down_to_the_lot_and_prices_to_the_safe_side_of_the_tick() {
        let spec = SymbolSpec {
            lot_step: d("0.01"),
            tick_size: d("0.05"),
            min_quantity: d("0.01"),
            ..SymbolSpec::default()
        };
        let cases = [
            ("just under two lots", "0.0199", "0.01"),
            ("exactly one lot", "0.01", "0.01"),
            ("below one lot is zero", "0.0099", "0"),
            ("many lots", "12.345", "12.34"),
            ("negative is zero", "-1", "0"),
        ];
        for (name, q, want) in cases {
            assert_eq!(spec.round_quantity(d(q)), d(want), "{name}");
        }
        assert_eq!(spec.round_price(d("100.07"), true), d("100.05"));
        assert_eq!(spec.round_price(d("100.07"), false), d("100.1"));
        assert_eq!(spec.round_price(d("100.05"), false), d("100.05"));
        let odd = SymbolSpec {
            lot_step: d("0.25"),
            ..spec
        };
        assert_eq!(odd.round_quantity(d("1.2")), d("1"));
    }
}
