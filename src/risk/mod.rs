//! The risk manager: sizing and limits, the gate between an intent and money. No I/O.
//!
//! `RiskApproved<T>` can only be constructed in this module, and the store only writes orders from
//! a `RiskApproved<OrderPlan>`: an order that skipped the checks cannot be expressed. Every refusal
//! carries the rule and the numbers it compared, for the operator.

use crate::model::{Price, Quantity, Side, Symbol};
use crate::strategy::Strategy;
use rust_decimal::{Decimal, RoundingStrategy};

/// A value that passed the risk checks. Deliberately has no public constructor.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskApproved<T>(T);

impl<T> RiskApproved<T> {
    pub fn get(&self) -> &T {
        &self.0
    }
}

/// A sized order, ready to be written as an intent.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderPlan {
    pub strategy: String,
    pub symbol: Symbol,
    pub side: Side,
    pub quantity: Quantity,
    /// The price the size was computed at; market orders carry no limit price.
    pub reference_price: Price,
}

/// What is already committed on one symbol: the position and working (non-terminal) orders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exposure {
    /// Signed: long > 0.
    pub position: Decimal,
    /// Unfilled remainder of working buy orders.
    pub working_buy: Decimal,
    /// Unfilled remainder of working sell orders.
    pub working_sell: Decimal,
}

/// Sizes an intent for `strategy` and checks it against the strategy's limits.
pub fn size_and_check(
    strategy: &Strategy,
    symbol: &Symbol,
    side: Side,
    price: Price,
    exposure: Exposure,
) -> Result<RiskApproved<OrderPlan>, String> {
    let p = price.get();
    let mut quantity = (strategy.order_notional / p)
        .round_dp_with_strategy(strategy.quantity_decimals, RoundingStrategy::ToZero);
    if side == Side::Sell && !strategy.allow_short {
        let sellable = exposure.position - exposure.working_sell;
        if sellable <= Decimal::ZERO {
            return Err(format!(
                "long-only: no long {symbol} position left to sell (position {}, working sells {}); \
                 set allow_short = true to open shorts",
                exposure.position.normalize(),
                exposure.working_sell.normalize()
            ));
        }
        quantity = quantity.min(sellable);
    }
    let quantity = Quantity::new(quantity).map_err(|_| {
        format!(
            "order notional {} at price {} rounds to zero quantity at {} decimals",
            strategy.order_notional, p, strategy.quantity_decimals
        )
    })?;
    // Worst case for each direction: every working order on that side fills.
    let (current, after) = match side {
        Side::Buy => {
            let current = exposure.position + exposure.working_buy;
            (current, current + quantity.get())
        }
        Side::Sell => {
            let current = exposure.position - exposure.working_sell;
            (current, current - quantity.get())
        }
    };
    let (current_notional, after_notional) = ((current * p).abs(), (after * p).abs());
    // An order that shrinks exposure is always allowed; one that grows it must fit the limit.
    if after_notional > current_notional && after_notional > strategy.max_position_notional {
        return Err(format!(
            "max position notional {} would be exceeded: {:.2} + {:.2} = {:.2}",
            strategy.max_position_notional,
            current_notional,
            quantity.get() * p,
            after_notional,
        ));
    }
    Ok(RiskApproved(OrderPlan {
        strategy: strategy.name.clone(),
        symbol: symbol.clone(),
        side,
        quantity,
        reference_price: price,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Recommendation;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn strategy(allow_short: bool) -> Strategy {
        Strategy {
            name: "t".into(),
            symbols: vec![Symbol::parse("BTC/USD").unwrap()],
            recommendations: vec![Recommendation::Buy, Recommendation::Sell],
            min_confidence: 0,
            order_notional: d("500"),
            max_position_notional: d("1200"),
            quantity_decimals: 4,
            allow_short,
        }
    }

    /// One row: the order, the exposure already there, and the expected quantity or refusal.
    struct Case {
        name: &'static str,
        side: Side,
        price: &'static str,
        /// Position, working buys, working sells.
        exposure: (&'static str, &'static str, &'static str),
        allow_short: bool,
        want: Result<&'static str, &'static str>,
    }

    fn check(c: &Case) -> Result<Decimal, String> {
        let (position, wb, ws) = c.exposure;
        size_and_check(
            &strategy(c.allow_short),
            &Symbol::parse("BTC/USD").unwrap(),
            c.side,
            Price::new(d(c.price)).unwrap(),
            Exposure {
                position: d(position),
                working_buy: d(wb),
                working_sell: d(ws),
            },
        )
        .map(|a| a.get().quantity.get())
    }

    const fn case(
        name: &'static str,
        side: Side,
        price: &'static str,
        exposure: (&'static str, &'static str, &'static str),
        allow_short: bool,
        want: Result<&'static str, &'static str>,
    ) -> Case {
        Case {
            name,
            side,
            price,
            exposure,
            allow_short,
            want,
        }
    }

    #[test]
    fn sizing_and_limits() {
        use Side::{Buy, Sell};
        let cases = [
            case(
                "fixed notional rounds down to the lot",
                Buy,
                "30000",
                ("0", "0", "0"),
                false,
                Ok("0.0166"),
            ),
            case(
                "second buy fits the limit",
                Buy,
                "500",
                ("1", "0", "0"),
                false,
                Ok("1"),
            ),
            case(
                "third buy would exceed it",
                Buy,
                "500",
                ("2", "0", "0"),
                false,
                Err("max position notional 1200 would be exceeded: 1000.00 + 500.00 = 1500.00"),
            ),
            case(
                "working buys count toward the limit",
                Buy,
                "500",
                ("0", "2", "0"),
                false,
                Err("would be exceeded"),
            ),
            case(
                "long-only sell needs a long",
                Sell,
                "500",
                ("0", "0", "0"),
                false,
                Err("long-only"),
            ),
            case(
                "long-only sell is capped at the long",
                Sell,
                "500",
                ("0.4", "0", "0"),
                false,
                Ok("0.4"),
            ),
            case(
                "working sells already cover the long",
                Sell,
                "500",
                ("0.4", "0", "0.4"),
                false,
                Err("long-only"),
            ),
            case(
                "shorts allowed open a short",
                Sell,
                "500",
                ("0", "0", "0"),
                true,
                Ok("1"),
            ),
            case(
                "short limit",
                Sell,
                "500",
                ("-2", "0", "0"),
                true,
                Err("would be exceeded"),
            ),
            case(
                "reducing is allowed above the limit",
                Sell,
                "500",
                ("5", "0", "0"),
                false,
                Ok("1"),
            ),
            case(
                "too expensive for one lot",
                Buy,
                "100000000",
                ("0", "0", "0"),
                false,
                Err("rounds to zero"),
            ),
        ];
        for c in &cases {
            let got = check(c);
            match (c.want, &got) {
                (Ok(q), Ok(g)) => assert_eq!(*g, d(q), "{}", c.name),
                (Err(needle), Err(msg)) => assert!(msg.contains(needle), "{}: {msg}", c.name),
                _ => panic!("{}: got {got:?}, want {:?}", c.name, c.want),
            }
        }
    }
}
