//! Micro-benchmarks of the hot pure functions: webhook signature verification, the dedupe key,
//! payload parsing, and one risk decision. `cargo bench --bench micro` (`-- --smoke` for a quick
//! pass). Each is timed in 5 repetitions; the median and the spread are printed in nanoseconds
//! per operation.

use rust_decimal::Decimal;
use sigex::ingress::signature;
use sigex::model::events;
use sigex::model::Price;
use sigex::risk::limits::AccountLimits;
use sigex::risk::sizing::SymbolSpec;
use sigex::risk::{self, AccountView, Exposure, Gate};
use sigex::strategy::Direction;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn time_it(name: &str, budget: Duration, mut op: impl FnMut()) {
    // Calibrate: how many iterations fill a tenth of the budget.
    let mut n: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            op();
        }
        if t.elapsed() >= budget / 10 || n > 1 << 30 {
            break;
        }
        n *= 2;
    }
    let mut per_op: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                op();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    per_op.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name:<52} {:>10.0} ns/op   (spread {:.0}..{:.0}, {n} iterations x 5)",
        per_op[2], per_op[0], per_op[4]
    );
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let budget = if smoke {
        Duration::from_millis(50)
    } else {
        Duration::from_secs(1)
    };
    let body = br#"{"event":"signal.generated","timestamp":"2024-01-15T12:00:00Z","data":{"symbol":"BTC/USD","recommendation":"buy","confidence":87,"timeHorizon":"short_term","riskLevel":"medium","reasoning":["Strong bullish momentum detected","High volume confirmation"],"technicalAnalysis":{"rsi":35.2,"macd":"bullish","support":48500.0,"resistance":50200.0}}}"#;
    let secret = b"whsec_bench_0123456789abcdef";
    let sig = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    };
    time_it(
        "verify X-Webhook-Signature (HMAC-SHA256, 380 B)",
        budget,
        || {
            black_box(signature::verify(
                black_box(secret),
                black_box(body),
                Some(sig.as_bytes()),
            ))
            .unwrap();
        },
    );
    let now = chrono::Utc::now();
    time_it(
        "parse signal.generated into a domain Signal",
        budget,
        || {
            black_box(events::parse(black_box(body), now)).unwrap();
        },
    );
    time_it(
        "dedupe key: canonical JSON + SHA-256 (380 B)",
        budget,
        || {
            black_box(sigex::inbox::dedupe_key(black_box(body)));
        },
    );
    let strategy = sigex::strategy::parse(
        "symbols = [\"BTC/USD\"]\nrecommendations = [\"buy\", \"sell\"]\nmin_confidence = 70\n[sizing]\nmethod = \"fixed_notional\"\nnotional = 500\n[limits]\nmax_position_notional = 2000\n",
        "bench.toml",
        "bench",
    )
    .unwrap();
    let signal = match events::parse(body, now).unwrap() {
        events::Event::Signal(s) => s,
        other => panic!("not a signal: {other:?}"),
    };
    let price = Price::new(Decimal::new(4_985_025, 2)).unwrap();
    let d = |v: &str| v.parse::<Decimal>().unwrap();
    // Every account limit configured, so the decision does all of its checks.
    let limits = AccountLimits {
        max_order_notional: Some(d("1000")),
        max_position_notional: Some(d("5000")),
        max_gross_exposure: Some(d("20000")),
        max_open_orders: Some(10),
        max_orders_per_minute: Some(30),
        daily_loss_limit: Some(d("500")),
        max_drawdown_percent: Some(d("10")),
        max_margin_ratio: Some(d("0.8")),
    };
    let account = AccountView {
        exposure: Exposure {
            position: d("0.01"),
            working_buy: Decimal::ZERO,
            working_sell: Decimal::ZERO,
        },
        available_usd: Some(d("50000")),
        equity_usd: Some(d("50000")),
        ..AccountView::default()
    };
    let gate = Gate::default();
    let spec = SymbolSpec {
        lot_step: d("0.00001"),
        tick_size: d("0.01"),
        min_quantity: d("0.00001"),
        ..SymbolSpec::default()
    };
    time_it(
        "one risk decision (sizing + every account limit)",
        budget,
        || {
            black_box(risk::decide(&risk::Request {
                strategy: &strategy,
                signal: &signal,
                direction: Direction::Buy,
                price,
                spec,
                limits: &limits,
                gate: &gate,
                account: &account,
                now,
            }))
            .unwrap();
        },
    );
}
