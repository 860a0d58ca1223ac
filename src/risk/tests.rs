//! The gate's table-driven tests and its property test.

use super::state::{SetBy, StateEntry, TradingState};
use super::*;
use crate::model::{Recommendation, TechnicalAnalysis};
use crate::risk::sizing::{Sizing, SizingMethod};
use crate::strategy::{Exits, OrderSettings};
use chrono::{Duration, TimeZone};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
}

fn strategy() -> Strategy {
    Strategy {
        name: "t".into(),
        symbols: vec![Symbol::parse("BTC/USD").unwrap()],
        recommendations: vec![Recommendation::Buy, Recommendation::Sell],
        min_confidence: 0,
        time_horizons: vec![],
        risk_levels: vec![],
        max_signal_age: None,
        rsi_below: None,
        rsi_above: None,
        sizing: Sizing {
            method: SizingMethod::FixedNotional(d("500")),
            scale_by_confidence: false,
        },
        max_position_notional: Some(d("1200")),
        max_concurrent_positions: None,
        cooldown: None,
        allow_short: false,
        orders: OrderSettings {
            kind: OrderKind::Market,
            time_in_force: "GTC",
            unfilled_timeout: None,
        },
        exits: Exits {
            reverse_on_opposite: false,
            hold_closes: true,
            stop_loss: false,
            take_profit: false,
        },
    }
}

fn signal() -> Signal {
    Signal {
        symbol: Symbol::parse("BTC/USD").unwrap(),
        recommendation: Recommendation::Buy,
        confidence: 80,
        time_horizon: None,
        risk_level: None,
        reasoning: vec![],
        technical: TechnicalAnalysis::default(),
        generated_at: now(),
    }
}

fn spec() -> SymbolSpec {
    SymbolSpec {
        lot_step: d("0.0001"),
        tick_size: d("0.01"),
        min_quantity: d("0.001"),
        ..SymbolSpec::default()
    }
}

fn state(s: TradingState) -> StateEntry {
    StateEntry {
        symbol: None,
        state: s,
        reason: "operator says so".into(),
        since: now(),
        set_by: SetBy::Operator,
    }
}

/// One row: what to change from the defaults, and the expected quantity or refusal.
struct Case {
    name: &'static str,
    direction: Direction,
    price: &'static str,
    setup: fn(&mut Strategy, &mut AccountLimits, &mut Gate, &mut AccountView),
    /// The quantity, or the rule that refuses and a part of its reason.
    want: Result<&'static str, (Rule, &'static str)>,
}

fn run(c: &Case) -> Result<OrderPlan, Refusal> {
    let mut s = strategy();
    let mut limits = AccountLimits::default();
    let mut gate = Gate::default();
    let mut account = AccountView::default();
    (c.setup)(&mut s, &mut limits, &mut gate, &mut account);
    decide(&Request {
        strategy: &s,
        signal: &signal(),
        direction: c.direction,
        price: Price::new(d(c.price)).unwrap(),
        spec: spec(),
        limits: &limits,
        gate: &gate,
        account: &account,
        now: now(),
    })
    .map(|a| a.get().clone())
}

fn pos(a: &mut AccountView, position: &str, wb: &str, ws: &str) {
    a.exposure = Exposure {
        position: d(position),
        working_buy: d(wb),
        working_sell: d(ws),
    };
}

#[test]
fn each_rule_of_the_gate_approves_or_refuses_with_its_numbers() {
    use Direction::{Buy, Close, Sell};
    let cases = [
        Case { name: "fixed notional rounds down to the lot", direction: Buy, price: "30000", setup: |_, _, _, _| {}, want: Ok("0.0166") },
        Case { name: "second buy fits the strategy limit", direction: Buy, price: "500", setup: |_, _, _, a| pos(a, "1", "0", "0"), want: Ok("1") },
        Case { name: "third buy would exceed the strategy limit", direction: Buy, price: "500", setup: |_, _, _, a| pos(a, "2", "0", "0"), want: Err((Rule::MaxPositionNotional, "max position notional 1200 would be exceeded: 1000.00 + 500.00 = 1500.00 USD")) },
        Case { name: "working buys count toward the limit", direction: Buy, price: "500", setup: |_, _, _, a| pos(a, "0", "2", "0"), want: Err((Rule::MaxPositionNotional, "would be exceeded")) },
        Case { name: "account position limit applies too", direction: Buy, price: "500", setup: |_, l, _, _| l.max_position_notional = Some(d("400")), want: Err((Rule::AccountMaxPositionNotional, "account max position notional 400 would be exceeded: 0.00 + 500.00 = 500.00 USD")) },
        Case { name: "max order notional refuses a big order", direction: Buy, price: "500", setup: |_, l, _, _| l.max_order_notional = Some(d("499")), want: Err((Rule::MaxOrderNotional, "max order notional 499 would be exceeded: 1 BTC/USD at 500 = 500 USD")) },
        Case { name: "max order notional lets an equal order pass", direction: Buy, price: "500", setup: |_, l, _, _| l.max_order_notional = Some(d("500")), want: Ok("1") },
        Case { name: "gross exposure counts other symbols", direction: Buy, price: "500", setup: |_, l, _, a| { l.max_gross_exposure = Some(d("1000")); a.gross_other = d("600"); }, want: Err((Rule::MaxGrossExposure, "max gross exposure 1000 would be exceeded: other symbols 600 + BTC/USD 500 = 1100 USD")) },
        Case { name: "gross exposure with an unpriced symbol refuses", direction: Buy, price: "500", setup: |_, l, _, a| { l.max_gross_exposure = Some(d("1100")); a.unpriced = vec!["SOL/USD".into()]; }, want: Err((Rule::MaxGrossExposure, "cannot be checked: no price for SOL/USD")) },
        Case { name: "gross exposure fits", direction: Buy, price: "500", setup: |_, l, _, a| { l.max_gross_exposure = Some(d("1100")); a.gross_other = d("600"); }, want: Ok("1") },
        Case { name: "max open orders reached", direction: Buy, price: "500", setup: |_, l, _, a| { l.max_open_orders = Some(3); a.open_orders = 3; }, want: Err((Rule::MaxOpenOrders, "max open orders 3 reached: 3 orders are open")) },
        Case { name: "max orders per minute reached", direction: Buy, price: "500", setup: |_, l, _, a| { l.max_orders_per_minute = Some(10); a.orders_last_minute = 10; }, want: Err((Rule::MaxOrdersPerMinute, "max orders per minute 10 reached")) },
        Case { name: "daily loss at the limit refuses", direction: Buy, price: "500", setup: |_, l, _, a| { l.daily_loss_limit = Some(d("100")); a.daily_realized = d("-100"); }, want: Err((Rule::DailyLoss, "daily realized loss limit 100 USD reached")) },
        Case { name: "long-only sell needs a long", direction: Sell, price: "500", setup: |_, _, _, _| {}, want: Err((Rule::LongOnly, "long-only")) },
        Case { name: "an opposite signal closes the whole long", direction: Sell, price: "500", setup: |_, _, _, a| pos(a, "0.4", "0", "0"), want: Ok("0.4") },
        Case { name: "working sells already cover the long", direction: Sell, price: "500", setup: |_, _, _, a| pos(a, "0.4", "0", "0.4"), want: Err((Rule::LongOnly, "long-only")) },
        Case { name: "shorts allowed open a short", direction: Sell, price: "500", setup: |s, _, _, _| s.allow_short = true, want: Ok("1") },
        Case { name: "short limit", direction: Sell, price: "500", setup: |s, _, _, a| { s.allow_short = true; pos(a, "-2", "0", "0"); }, want: Err((Rule::MaxPositionNotional, "would be exceeded")) },
        Case { name: "reverse closes the long and opens a short", direction: Sell, price: "500", setup: |s, _, _, a| { s.allow_short = true; s.exits.reverse_on_opposite = true; pos(a, "0.4", "0", "0"); }, want: Ok("1.4") },
        Case { name: "reverse without shorts only closes", direction: Sell, price: "500", setup: |s, _, _, a| { s.exits.reverse_on_opposite = true; pos(a, "0.4", "0", "0"); }, want: Ok("0.4") },
        Case { name: "a buy closes a short", direction: Buy, price: "500", setup: |s, _, _, a| { s.allow_short = true; pos(a, "-0.3", "0", "0"); }, want: Ok("0.3") },
        Case { name: "reducing is allowed above the limit", direction: Sell, price: "500", setup: |_, _, _, a| pos(a, "5", "0", "0"), want: Ok("5") },
        Case { name: "hold closes the position", direction: Close, price: "500", setup: |_, _, _, a| pos(a, "0.7", "0", "0"), want: Ok("0.7") },
        Case { name: "hold without a position refuses", direction: Close, price: "500", setup: |_, _, _, _| {}, want: Err((Rule::NoPosition, "no BTC/USD position")) },
        Case { name: "too expensive for one lot", direction: Buy, price: "100000000", setup: |_, _, _, _| {}, want: Err((Rule::MinQuantity, "below the minimum order size 0.001")) },
        Case { name: "below the minimum order size", direction: Buy, price: "600000", setup: |_, _, _, _| {}, want: Err((Rule::MinQuantity, "quantity 0.00083333 rounds down to 0.0008 at lot step 0.0001, below the minimum order size 0.001")) },
        Case { name: "halted refuses everything", direction: Close, price: "500", setup: |_, _, g, a| { g.state = Some(state(TradingState::Halted)); pos(a, "1", "0", "0"); }, want: Err((Rule::TradingState, "trading is halted (account)")) },
        Case { name: "maintenance refuses everything", direction: Close, price: "500", setup: |_, _, g, a| { g.maintenance = Some("maintenance window x".into()); pos(a, "1", "0", "0"); }, want: Err((Rule::Maintenance, "maintenance window x")) },
        Case { name: "reducing refuses an opening buy", direction: Buy, price: "500", setup: |_, _, g, _| g.state = Some(state(TradingState::Reducing)), want: Err((Rule::TradingState, "only orders that reduce a position")) },
        Case { name: "reducing allows a close", direction: Sell, price: "500", setup: |_, _, g, a| { g.state = Some(state(TradingState::Reducing)); pos(a, "0.5", "0", "0"); }, want: Ok("0.5") },
        Case { name: "reducing turns a reversal into a close", direction: Sell, price: "500", setup: |s, _, g, a| { s.allow_short = true; s.exits.reverse_on_opposite = true; g.state = Some(state(TradingState::Reducing)); pos(a, "0.5", "0", "0"); }, want: Ok("0.5") },
        Case { name: "an alert scale halves the size", direction: Buy, price: "500", setup: |_, _, g, _| g.size_scale = Some((d("0.5"), "alert".into())), want: Ok("0.5") },
        Case { name: "confidence scaling takes 80%", direction: Buy, price: "500", setup: |s, _, _, _| s.sizing.scale_by_confidence = true, want: Ok("0.8") },
        Case { name: "cooldown refuses a quick second order", direction: Buy, price: "500", setup: |s, _, _, a| { s.cooldown = Some(Duration::seconds(60)); a.last_order_at = Some(now() - Duration::seconds(59)); }, want: Err((Rule::Cooldown, "cooldown 60s on BTC/USD: the last order was 59s ago")) },
        Case { name: "a reversal inside the cooldown only closes", direction: Sell, price: "500", setup: |s, _, _, a| { s.allow_short = true; s.exits.reverse_on_opposite = true; s.cooldown = Some(Duration::seconds(60)); a.last_order_at = Some(now() - Duration::seconds(5)); pos(a, "0.4", "0", "0"); }, want: Ok("0.4") },
        Case { name: "cooldown over lets it pass", direction: Buy, price: "500", setup: |s, _, _, a| { s.cooldown = Some(Duration::seconds(60)); a.last_order_at = Some(now() - Duration::seconds(60)); }, want: Ok("1") },
        Case { name: "max concurrent positions refuses a new symbol", direction: Buy, price: "500", setup: |s, _, _, a| { s.max_concurrent_positions = Some(2); a.strategy_open_symbols = 2; }, want: Err((Rule::MaxConcurrentPositions, "max concurrent positions 2 reached")) },
        Case { name: "max concurrent positions lets an open symbol grow", direction: Buy, price: "500", setup: |s, _, _, a| { s.max_concurrent_positions = Some(1); a.strategy_open_symbols = 1; pos(a, "0.1", "0", "0"); }, want: Ok("1") },
        Case { name: "percent of balance without a balance refuses", direction: Buy, price: "500", setup: |s, _, _, _| s.sizing.method = SizingMethod::PercentOfBalance(d("5")), want: Err((Rule::Sizing, "no USD balance known")) },
        Case { name: "percent of balance sizes from the balance", direction: Buy, price: "500", setup: |s, _, _, a| { s.sizing.method = SizingMethod::PercentOfBalance(d("5")); a.available_usd = Some(d("10000")); }, want: Ok("1") },
    ];
    for c in &cases {
        let got = run(c).map(|p| p.quantity.get());
        match (c.want, &got) {
            (Ok(q), Ok(g)) => assert_eq!(*g, d(q), "{}", c.name),
            (Err((rule, needle)), Err(refusal)) => {
                assert!(refusal.reason.contains(needle), "{}: {refusal}", c.name);
                assert_eq!(refusal.rule, rule, "{}: {refusal}", c.name);
            }
            _ => panic!("{}: got {got:?}, want {:?}", c.name, c.want),
        }
    }
}

#[test]
fn limit_orders_are_priced_off_the_reference_by_the_offset_and_rounded_to_the_tick() {
    let cases = [
        (
            "a buy limit sits below the price",
            Direction::Buy,
            "100.07",
            "100.01",
        ),
        (
            "a sell limit sits above the price",
            Direction::Sell,
            "100.07",
            "100.13",
        ),
    ];
    for (name, direction, price, want) in cases {
        let c = Case {
            name,
            direction,
            price,
            setup: |s, _, _, _| {
                s.allow_short = true;
                s.max_position_notional = None;
                s.orders.kind = OrderKind::Limit { offset_bps: d("5") };
            },
            want: Ok(""),
        };
        let plan = run(&c).unwrap();
        assert_eq!(plan.order_type, "limit", "{name}");
        assert_eq!(plan.limit_price.map(|p| p.get()), Some(d(want)), "{name}");
    }
}

/// A miniature account the property test drives with random events.
struct World {
    position: Decimal,
    working: Vec<(Side, Decimal)>,
    others: Decimal,
    available: Decimal,
    daily: Decimal,
    state: Option<TradingState>,
    maintenance: bool,
    recent: u32,
}

/// For random sequences of signals, fills, balance and position events: no approved order breaks
/// a configured limit, and a halted or maintenance state never lets any order through, a reducing
/// state never an opening one. The seed is printed on failure.
#[test]
fn no_random_sequence_of_events_gets_an_order_past_a_limit_or_a_stop() {
    let seed: u64 = std::env::var("SIGEX_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026);
    let mut rng = StdRng::seed_from_u64(seed);
    let limits = AccountLimits {
        max_order_notional: Some(d("800")),
        max_position_notional: Some(d("2000")),
        max_gross_exposure: Some(d("3000")),
        max_open_orders: Some(4),
        max_orders_per_minute: Some(6),
        daily_loss_limit: Some(d("300")),
        max_drawdown_percent: None,
        max_margin_ratio: None,
    };
    for run_no in 0..300 {
        let mut s = strategy();
        s.allow_short = rng.gen_bool(0.5);
        s.exits.reverse_on_opposite = rng.gen_bool(0.5);
        s.max_position_notional = None;
        s.sizing.method = match rng.gen_range(0..3) {
            0 => SizingMethod::FixedNotional(Decimal::from(rng.gen_range(50..1500))),
            1 => SizingMethod::FixedQuantity(Decimal::new(rng.gen_range(1..3000), 3)),
            _ => SizingMethod::PercentOfBalance(Decimal::from(rng.gen_range(1..30))),
        };
        let mut w = World {
            position: Decimal::ZERO,
            working: vec![],
            others: Decimal::from(rng.gen_range(0..2000)),
            available: Decimal::from(rng.gen_range(0..20000)),
            daily: Decimal::ZERO,
            state: None,
            maintenance: false,
            recent: 0,
        };
        for step in 0..60 {
            let price = Decimal::new(rng.gen_range(5_000..200_000), 2);
            match rng.gen_range(0..10) {
                0 => {
                    // A fill of the oldest working order, with a random realized PnL.
                    if !w.working.is_empty() {
                        let (side, q) = w.working.remove(0);
                        w.position += side.sign() * q;
                        w.daily += Decimal::from(rng.gen_range(-120..60));
                    }
                }
                1 => w.available = Decimal::from(rng.gen_range(0..20000)),
                2 => w.others = Decimal::from(rng.gen_range(0..3500)),
                3 => {
                    w.state = match rng.gen_range(0..4) {
                        0 => Some(TradingState::Halted),
                        1 => Some(TradingState::Reducing),
                        _ => None,
                    }
                }
                4 => w.maintenance = rng.gen_bool(0.3),
                5 => w.recent = rng.gen_range(0..8),
                _ => {
                    let direction = match rng.gen_range(0..5) {
                        0 | 1 => Direction::Buy,
                        2 | 3 => Direction::Sell,
                        _ => Direction::Close,
                    };
                    let wb: Decimal = w
                        .working
                        .iter()
                        .filter(|o| o.0 == Side::Buy)
                        .map(|o| o.1)
                        .sum();
                    let ws: Decimal = w
                        .working
                        .iter()
                        .filter(|o| o.0 == Side::Sell)
                        .map(|o| o.1)
                        .sum();
                    let exposure = Exposure {
                        position: w.position,
                        working_buy: wb,
                        working_sell: ws,
                    };
                    let account = AccountView {
                        exposure,
                        gross_other: w.others,
                        open_orders: w.working.len() as u32,
                        orders_last_minute: w.recent,
                        available_usd: Some(w.available),
                        equity_usd: Some(w.available),
                        daily_realized: w.daily,
                        ..Default::default()
                    };
                    let gate = Gate {
                        maintenance: w.maintenance.then(|| "maintenance".to_owned()),
                        state: w.state.map(state),
                        size_scale: None,
                    };
                    let out = decide(&Request {
                        strategy: &s,
                        signal: &signal(),
                        direction,
                        price: Price::new(price).unwrap(),
                        spec: spec(),
                        limits: &limits,
                        gate: &gate,
                        account: &account,
                        now: now(),
                    });
                    let ctx = || {
                        format!("seed {seed}, run {run_no}, step {step}: {direction:?} at {price} with {account:?} {gate:?}")
                    };
                    if let Ok(a) = out {
                        let plan = a.get();
                        let q = plan.quantity.get();
                        assert!(!w.maintenance, "approved during maintenance; {}", ctx());
                        assert_ne!(
                            w.state,
                            Some(TradingState::Halted),
                            "approved while halted; {}",
                            ctx()
                        );
                        assert!(
                            w.daily > -d("300"),
                            "approved past the daily loss limit; {}",
                            ctx()
                        );
                        assert!(
                            account.open_orders < 4 && account.orders_last_minute < 6,
                            "rate limits; {}",
                            ctx()
                        );
                        let (current, after) = match plan.side {
                            Side::Buy => (w.position + wb, w.position + wb + q),
                            Side::Sell => (w.position - ws, w.position - ws - q),
                        };
                        let grows = after.abs() > current.abs() || after * current < Decimal::ZERO;
                        if w.state == Some(TradingState::Reducing) {
                            assert!(!grows, "reducing let an opening order through; {}", ctx());
                        }
                        if grows {
                            let opening = if after * current < Decimal::ZERO {
                                after.abs()
                            } else {
                                after.abs() - current.abs()
                            };
                            assert!(opening * price <= d("800"), "order notional; {}", ctx());
                            assert!(
                                after.abs() * price <= d("2000"),
                                "position notional; {}",
                                ctx()
                            );
                            assert!(
                                w.others + after.abs().max(exposure.worst_case()) * price
                                    <= d("3000"),
                                "gross; {}",
                                ctx()
                            );
                            if !s.allow_short {
                                assert!(
                                    after >= Decimal::ZERO,
                                    "long-only opened a short; {}",
                                    ctx()
                                );
                            }
                        }
                        assert_eq!(spec().round_quantity(q), q, "not a lot multiple; {}", ctx());
                        w.working.push((plan.side, q));
                    }
                }
            }
        }
    }
}

#[test]
fn other_books_are_valued_at_their_last_fill_else_a_reference_price_else_unpriced() {
    let s = strategy();
    let none: Vec<String> = vec![];
    let theirs = vec!["t".to_owned()];
    let book = |symbol, position: &str, last: Option<&str>, strategies| OpenBook {
        symbol,
        exposure: Exposure {
            position: d(position),
            working_buy: Decimal::ZERO,
            working_sell: Decimal::ZERO,
        },
        last_price: last.map(d),
        strategies,
    };
    let books = [
        book("BTC/USD", "5", Some("100"), &none),
        book("ETH/USD", "2", Some("10"), &none),
        book("SOL/USD", "-3", None, &theirs),
        book("XRP/USD", "1", None, &none),
        book("ADA/USD", "0", Some("1"), &theirs),
    ];
    let got = elsewhere(books, "ETH/USD", &s, |sym| {
        (sym == "SOL/USD").then(|| d("7"))
    });
    assert_eq!(
        got,
        Elsewhere {
            // BTC 5 x 100 + SOL 3 x 7 (reference price); the flat ADA book does not count.
            gross: d("521"),
            unpriced: vec!["XRP/USD".into()],
            // BTC (listed by the strategy) and SOL (its working orders).
            strategy_open_symbols: 2,
        }
    );
}
