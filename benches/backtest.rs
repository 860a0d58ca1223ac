//! The backtest at scale: 1,000,000 recorded signals over a year of 1-minute candles for three
//! symbols, through three strategies (market orders with stop-loss and take-profit orders,
//! risk-per-trade sizing, resting limit orders with reversals and an unfilled timeout), with
//! alerts and monthly maintenance windows in the stream.
//! `cargo bench --bench backtest` (`-- --smoke` for 10,000 signals over a week: CI runs it;
//! `-- --signals N --days D` for another size).
//!
//! The inputs are generated once from a fixed seed into `target/bench/backtest/` (JSON Lines as
//! `sigex events export` writes them, candles CSV as the paper venue reads them) and reused. The
//! run itself happens in a child process (this binary with `--measure`), so its peak resident
//! memory (VmHWM) is the backtest's alone: wall time from reading the first event to the report
//! files written, signals per second, and peak RSS are printed and written to
//! `target/bench/backtest.json`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

const SYMBOLS: [(&str, f64); 3] = [
    ("BTC/USD", 50_000.0),
    ("ETH/USD", 3_000.0),
    ("SOL/USD", 150.0),
];
/// Bump when the generated inputs change.
const INPUTS_VERSION: &str = "2";

struct Size {
    name: String,
    signals: u64,
    days: i64,
}

const STRATEGIES: [(&str, &str); 3] = [
    (
        "btc_momentum.toml",
        r#"name = "btc_momentum"
symbols = ["BTC/USD"]
recommendations = ["buy", "sell"]
min_confidence = 70
max_signal_age_secs = 120
[sizing]
method = "fixed_notional"
notional = 500
[limits]
max_position_notional = 2000
cooldown_secs = 60
[exits]
stop_loss = true
take_profit = true
"#,
    ),
    (
        "eth_risk.toml",
        r#"name = "eth_risk"
symbols = ["ETH/USD"]
recommendations = ["buy", "sell"]
min_confidence = 65
risk_levels = ["low", "medium"]
[sizing]
method = "risk_per_trade"
percent = 0.5
[limits]
max_position_notional = 3000
max_concurrent_positions = 2
[exits]
stop_loss = true
"#,
    ),
    (
        "sol_reversal.toml",
        r#"name = "sol_reversal"
symbols = ["SOL/USD"]
recommendations = ["buy", "sell", "hold"]
min_confidence = 80
allow_short = true
[sizing]
method = "percent_of_balance"
percent = 1
scale_by_confidence = true
[orders]
type = "limit"
limit_offset_bps = 2
time_in_force = "GTC"
unfilled_timeout_secs = 300
[exits]
on_opposite_signal = "reverse"
hold_closes = true
"#,
    ),
];

const CONFIG: &str = r#"mode = "paper"
[limits]
max_open_orders = 20
max_orders_per_minute = 30
max_drawdown_percent = 25
[symbols."BTC/USD"]
lot_step = 0.0001
min_quantity = 0.0001
[maintenance]
lead_secs = 300
settle_secs = 300
"#;

fn start() -> chrono::DateTime<chrono::Utc> {
    "2025-01-01T00:00:00Z".parse().unwrap()
}

/// A year (or a week) of 1-minute bars per symbol, a random walk with a slow cycle; returns each
/// bar's close for the signal generator.
fn candles(dir: &Path, days: i64, rng: &mut StdRng) -> Vec<Vec<f64>> {
    let bars = (days * 24 * 60) as usize;
    let mut closes = Vec::new();
    for (k, (symbol, first)) in SYMBOLS.iter().enumerate() {
        let file = dir.join(format!("{}.csv", symbol.replace('/', "-")));
        let mut out = std::io::BufWriter::new(std::fs::File::create(file).unwrap());
        writeln!(out, "timestamp,open,high,low,close,volume").unwrap();
        let mut price = *first;
        let mut series = Vec::with_capacity(bars);
        for i in 0..bars {
            let t = start() + chrono::Duration::minutes(i as i64);
            let cycle = ((i as f64) / (1440.0 * 20.0) + k as f64).sin() * 0.00004;
            let open = price;
            let close = open * (1.0 + cycle + (rng.gen::<f64>() - 0.5) * 0.002);
            let high = open.max(close) * (1.0 + rng.gen::<f64>() * 0.0006);
            let low = open.min(close) * (1.0 - rng.gen::<f64>() * 0.0006);
            writeln!(
                out,
                "{},{open:.2},{high:.2},{low:.2},{close:.2},{:.3}",
                t.format("%Y-%m-%dT%H:%M:%SZ"),
                rng.gen::<f64>() * 50.0
            )
            .unwrap();
            series.push(close);
            price = close;
        }
        out.flush().unwrap();
        closes.push(series);
    }
    closes
}

fn line(
    seq: u64,
    at: chrono::DateTime<chrono::Utc>,
    event: &str,
    data: serde_json::Value,
) -> String {
    let body = serde_json::json!({
        "event": event,
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string();
    let received = at + chrono::Duration::milliseconds(((seq * 37) % 300) as i64 + 20);
    serde_json::json!({
        "seq": seq,
        "receivedAt": received.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "eventType": event,
        "dedupeKey": format!("sha256:{}", hex::encode(Sha256::digest(body.as_bytes()))),
        "body": body,
    })
    .to_string()
}

/// The recorded stream: signals spread evenly over the period, a `system.alert` every 3 days,
/// a maintenance window every 30 days.
fn signals(dir: &Path, size: &Size, closes: &[Vec<f64>], rng: &mut StdRng) {
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(dir.join("signals.jsonl")).unwrap());
    let span_ms = size.days * 86_400_000;
    let step = span_ms as f64 / size.signals as f64;
    let mut seq = 0;
    let mut next_alert = 0i64;
    let mut next_maintenance = 86_400_000i64 * 10;
    for i in 0..size.signals {
        let offset = (i as f64 * step) as i64 + rng.gen_range(0..step.max(1.0) as i64);
        let at = start() + chrono::Duration::milliseconds(offset);
        if offset >= next_alert {
            seq += 1;
            // No critical alert: it halts a symbol until an operator resumes it, as live.
            let level = ["info", "warning"][rng.gen_range(0..2)];
            let symbol = SYMBOLS[rng.gen_range(0..3)].0;
            let data = serde_json::json!({"level": level, "title": "Market notice",
                "message": "generated", "affectedSymbols": [symbol]});
            writeln!(out, "{}", line(seq, at, "system.alert", data)).unwrap();
            next_alert += 86_400_000 * 3;
        }
        if offset >= next_maintenance {
            seq += 1;
            let begins = at + chrono::Duration::hours(6);
            let data = serde_json::json!({"id": format!("mw-{seq}"),
                "startTime": begins.to_rfc3339(), "endTime": (begins + chrono::Duration::hours(1)).to_rfc3339(),
                "description": "scheduled", "affectedServices": ["trading", "api"]});
            writeln!(out, "{}", line(seq, at, "system.maintenance", data)).unwrap();
            next_maintenance += 86_400_000 * 30;
        }
        let k = rng.gen_range(0..3);
        let bar = ((offset / 60_000) as usize).min(closes[k].len() - 1);
        let price = closes[k][bar];
        let rec = match rng.gen_range(0..100) {
            0..=44 => "buy",
            45..=89 => "sell",
            _ => "hold",
        };
        let horizon = ["short_term", "medium_term"][rng.gen_range(0..2)];
        let risk = ["low", "medium", "high"][rng.gen_range(0..3)];
        let data = serde_json::json!({
            "symbol": SYMBOLS[k].0,
            "recommendation": rec,
            "confidence": rng.gen_range(40..100),
            "timeHorizon": horizon,
            "riskLevel": risk,
            "reasoning": ["generated"],
            "technicalAnalysis": {
                "rsi": (rng.gen_range(150..850) as f64) / 10.0,
                "macd": if rec == "buy" { "bullish" } else { "bearish" },
                "support": (price * (1.0 - rng.gen_range(5..30) as f64 / 1000.0) * 100.0).round() / 100.0,
                "resistance": (price * (1.0 + rng.gen_range(5..30) as f64 / 1000.0) * 100.0).round() / 100.0,
            },
        });
        seq += 1;
        writeln!(out, "{}", line(seq, at, "signal.generated", data)).unwrap();
    }
    out.flush().unwrap();
}

/// The inputs of `size`, generated unless already there.
fn inputs(size: &Size) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench/backtest")
        .join(&size.name);
    let marker = dir.join("version");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(INPUTS_VERSION) {
        return dir;
    }
    let t = Instant::now();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("strategies")).unwrap();
    for (name, text) in STRATEGIES {
        std::fs::write(dir.join("strategies").join(name), text).unwrap();
    }
    std::fs::write(dir.join("sigex.toml"), CONFIG).unwrap();
    let mut rng = StdRng::seed_from_u64(20_250_101);
    let closes = candles(&dir, size.days, &mut rng);
    signals(&dir, size, &closes, &mut rng);
    std::fs::write(&marker, INPUTS_VERSION).unwrap();
    eprintln!(
        "generated {} signals over {} days in {:.1} s into {}",
        size.signals,
        size.days,
        t.elapsed().as_secs_f64(),
        dir.display()
    );
    dir
}

/// CPU seconds this process has used (user + system, every thread): less sensitive than wall
/// time to other work on a shared machine.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn vm_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// In the child: one backtest over `dir`, as `sigex backtest` runs it, then the numbers.
fn measure(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let prices = SYMBOLS
        .iter()
        .map(|(s, _)| {
            format!(
                "{s}={}",
                dir.join(format!("{}.csv", s.replace('/', "-"))).display()
            )
        })
        .collect();
    let opts = sigex::backtest::Options {
        strategies: dir.join("strategies"),
        config: Some(dir.join("sigex.toml")),
        signals: dir.join("signals.jsonl").display().to_string(),
        prices,
        ..Default::default()
    };
    let t = Instant::now();
    let cpu = cpu_seconds();
    let report = runtime
        .block_on(sigex::backtest::run(&opts, Vec::<(String, String)>::new()))
        .unwrap_or_else(|e| panic!("the backtest failed: {e}"));
    report.write(&dir.join("report")).unwrap();
    let seconds = t.elapsed().as_secs_f64();
    let run = &report.runs[0];
    println!(
        "{}",
        serde_json::json!({
            "signals": run.signals.total,
            "ordered": run.signals.ordered,
            "orders": run.orders.total,
            "trades": run.summary.trades,
            "seconds": seconds,
            "cpuSeconds": cpu_seconds() - cpu,
            "peakRssMb": vm_hwm_mb(),
        })
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--measure") {
        measure(Path::new(&args[i + 1]));
        return;
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1)?.parse::<u64>().ok())
    };
    let size = match (
        args.iter().any(|a| a == "--smoke"),
        value("--signals"),
        value("--days"),
    ) {
        (true, _, _) => Size {
            name: "smoke".into(),
            signals: 10_000,
            days: 7,
        },
        // `-- --signals N --days D`: another size, for looking at how the run scales.
        (false, Some(signals), Some(days)) => Size {
            name: format!("{signals}-over-{days}-days"),
            signals,
            days: days as i64,
        },
        _ => Size {
            name: "full".into(),
            signals: 1_000_000,
            days: 365,
        },
    };
    let dir = inputs(&size);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--measure")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the measured run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let numbers: serde_json::Value = serde_json::from_str(
        text.lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .expect("the child printed its numbers"),
    )
    .unwrap();
    let signals = numbers["signals"].as_f64().unwrap_or(0.0);
    let seconds = numbers["seconds"].as_f64().unwrap_or(f64::NAN);
    let rss = numbers["peakRssMb"].as_f64().unwrap_or(f64::NAN);
    println!(
        "backtest ({}): {} signals over {} days, 3 symbols of 1-minute candles",
        size.name, size.signals, size.days
    );
    println!(
        "  {} ordered, {} orders, {} trades",
        numbers["ordered"], numbers["orders"], numbers["trades"]
    );
    println!(
        "  whole run {seconds:.1} s ({:.0} signals/s), {:.1} CPU seconds on 2 threads, peak RSS {rss:.1} MB",
        signals / seconds,
        numbers["cpuSeconds"].as_f64().unwrap_or(f64::NAN)
    );
    if size.name == "full" {
        println!(
            "  targets: under 30 s ({}), under 200 MB ({})",
            if seconds < 30.0 { "met" } else { "MISSED" },
            if rss < 200.0 { "met" } else { "MISSED" }
        );
    }
    let results = serde_json::json!({
        "size": size.name,
        "signals": signals,
        "days": size.days,
        "seconds": seconds,
        "signalsPerSecond": signals / seconds,
        "peakRssMb": rss,
        "child": numbers,
    });
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench/backtest.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&results).unwrap()).unwrap();
}
