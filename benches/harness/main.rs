//! The benchmark harness: every speed claim measured on this machine, in one run, next to the
//! alternative a user would otherwise pick. `cargo bench --bench harness` builds sigex in release
//! mode and runs every scenario; `-- --smoke` runs each briefly (CI); `-- --only NAME` runs one;
//! results go to `target/bench/results.json`.
//!
//! sigex runs as its own process (the release binary, as in production), so its memory and start
//! time are its own. The load generator lives in this process and speaks raw HTTP/1.1 over
//! keep-alive connections with pre-signed, unique bodies (deduplication never short-circuits the
//! work). It is shown not to be the bottleneck by driving a null HTTP server too. The reference
//! receiver is the venue docs' example: a Flask app verifying the HMAC, under gunicorn with 2
//! workers, installed from PyPI into `target/bench/venv`.

mod gen;
mod minimal;
mod venue;

use gen::Load;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_bench_0123456789abcdef";
const PATH: &str = "/webhooks/vibe";

struct Options {
    smoke: bool,
    only: Option<String>,
    reps: usize,
    seconds: u64,
    connections: usize,
    /// The signal scenario's length and rate: long enough to show a bot falling behind.
    signal_seconds: u64,
    rate: u64,
    /// How many webhooks the simulator delivers at once in the signal scenario.
    webhook_concurrency: usize,
}

fn options() -> Options {
    let mut o = Options {
        smoke: false,
        only: None,
        reps: 3,
        seconds: 5,
        connections: 64,
        signal_seconds: 60,
        rate: 200,
        webhook_concurrency: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => o.smoke = true,
            "--only" => o.only = it.next(),
            "--reps" => o.reps = it.next().and_then(|v| v.parse().ok()).unwrap_or(o.reps),
            "--seconds" => o.seconds = it.next().and_then(|v| v.parse().ok()).unwrap_or(o.seconds),
            "--signal-seconds" => {
                o.signal_seconds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(o.signal_seconds)
            }
            "--webhook-concurrency" => {
                o.webhook_concurrency = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(o.webhook_concurrency)
            }
            "--rate" => o.rate = it.next().and_then(|v| v.parse().ok()).unwrap_or(o.rate),
            "--connections" => {
                o.connections = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(o.connections)
            }
            _ => {} // cargo passes --bench
        }
    }
    if o.smoke {
        o.reps = 1;
        o.seconds = 1;
        o.signal_seconds = 2;
    }
    o
}

/// One line of the results table.
#[derive(serde::Serialize)]
struct Row {
    scenario: &'static str,
    /// Median over repetitions.
    value: f64,
    /// Lowest and highest repetition.
    spread: (f64, f64),
    unit: &'static str,
    target: String,
    met: Option<bool>,
    note: String,
}

fn row(scenario: &'static str, values: &[f64], unit: &'static str) -> Row {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    Row {
        scenario,
        value: if v.is_empty() {
            f64::NAN
        } else {
            v[v.len() / 2]
        },
        spread: (
            v.first().copied().unwrap_or(f64::NAN),
            v.last().copied().unwrap_or(f64::NAN),
        ),
        unit,
        target: String::new(),
        met: None,
        note: String::new(),
    }
}

/// Pre-built requests, each a unique signed `test` event.
fn requests(n: usize, label: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let body = format!(
                r#"{{"event":"test","timestamp":"2026-11-27T12:00:00Z","data":{{"message":"{label} {i}"}}}}"#
            );
            gen::signed_request(SECRET, PATH, &body)
        })
        .collect()
}

/// Pre-built requests, each a unique signed `signal.generated` for a symbol no strategy trades
/// (a realistic body, decided "ignored"), timestamped now so none is stale.
fn untraded_signals(n: usize, label: &str) -> Vec<Vec<u8>> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    (0..n)
        .map(|i| {
            let body = format!(
                r#"{{"event":"signal.generated","timestamp":"{now}","data":{{"symbol":"XRP/USD","recommendation":"buy","confidence":85,"timeHorizon":"short_term","riskLevel":"medium","reasoning":["{label} {i}","RSI oversold on the 15m chart","MACD crossing up"],"technicalAnalysis":{{"rsi":28.4,"macd":"bullish","support":0.52,"resistance":0.61}}}}}}"#
            );
            gen::signed_request(SECRET, PATH, &body)
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A sigex process under test.
struct Sigex {
    child: Child,
    webhook: SocketAddr,
    admin: SocketAddr,
}

impl Sigex {
    fn spawn(dir: &Path, db: &Path) -> Sigex {
        Self::spawn_with(
            dir,
            db,
            "http://127.0.0.1:9/api/v1",
            "symbols = [\"BTC/USD\"]\nrecommendations = [\"buy\"]\nmin_confidence = 90\n[sizing]\nmethod = \"fixed_notional\"\nnotional = 100\n[limits]\nmax_position_notional = 1000\n",
            "",
        )
    }

    /// A sigex process against the venue at `base_url`, trading `strategy` (the file
    /// `strategies/bench.toml`), with `venue_extra` lines added to its `[venue]` section.
    fn spawn_with(
        dir: &Path,
        db: &Path,
        base_url: &str,
        strategy: &str,
        venue_extra: &str,
    ) -> Sigex {
        let (webhook, admin) = (free_port(), free_port());
        std::fs::create_dir_all(dir.join("strategies")).unwrap();
        std::fs::write(dir.join("strategies/bench.toml"), strategy).unwrap();
        let config = dir.join("sigex.toml");
        std::fs::write(
            &config,
            format!(
                "mode = \"live\"\n[venue]\nbase_url = \"{base_url}\"\n{venue_extra}\n[webhook]\nlisten = \"127.0.0.1:{webhook}\"\nrate_limit_per_second = 0\nmax_connections_per_source = 1024\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[storage]\ndatabase_url = \"sqlite://{}\"\n",
                db.display()
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sigex"))
            .args(["run", "--config"])
            .arg(&config)
            .env("SIGEX_WEBHOOK__SECRET", SECRET)
            .env("SIGEX_VENUE__API_KEY", "bench")
            .env("SIGEX_VENUE__API_SECRET", "bench")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sigex starts");
        Sigex {
            child,
            webhook: SocketAddr::from(([127, 0, 0, 1], webhook)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
        }
    }

    /// Waits until the admin API answers `path` with 200; returns how long that took.
    fn wait_ready(&self, since: Instant, path: &str) -> Option<Duration> {
        let deadline = since + Duration::from_secs(30);
        while Instant::now() < deadline {
            if gen::get_status(self.admin, path) == Some(200) {
                return Some(since.elapsed());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        None
    }

    fn status_kb(&self, field: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(f64::NAN)
    }

    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let rest = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (t(11) + t(12)) / 100.0
    }
}

impl Drop for Sigex {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The venue docs' reference receiver, under gunicorn with 2 workers.
fn flask(work: &Path) -> Result<(Child, SocketAddr), String> {
    let venv = work.join("venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let ok = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .map_err(|e| e.to_string())?;
        if !ok.success() {
            return Err("python3 -m venv failed".into());
        }
    }
    if !venv.join("bin/gunicorn").exists() {
        let out = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "flask==3.1.*", "gunicorn==23.*"])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "pip install flask gunicorn failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    std::fs::write(
        work.join("reference_receiver.py"),
        format!(
            r#"# The receiver the venue's Webhooks page shows: verify X-Webhook-Signature, answer 200.
import hashlib, hmac
from flask import Flask, request, abort

SECRET = b"{SECRET}"
app = Flask(__name__)

@app.post("{PATH}")
def webhook():
    body = request.get_data()
    expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Webhook-Signature", "")):
        abort(401)
    return {{"status": "ok"}}, 200
"#
        ),
    )
    .map_err(|e| e.to_string())?;
    let port = free_port();
    let child = Command::new(venv.join("bin/gunicorn"))
        .args([
            "--workers",
            "2",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--log-level",
            "warning",
            "reference_receiver:app",
        ])
        .current_dir(work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err("gunicorn did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, addr))
}

/// A fresh bot database holding `orders` as open limit orders the venue has acknowledged.
fn seed_local_orders(db: &Path, orders: &[(String, String)]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", db.display());
        sigex::store::Store::open(&url).await.unwrap().close().await;
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        for (cid, oid) in orders {
            sqlx::query(
                "INSERT INTO orders (client_order_id, venue_order_id, strategy, symbol, side, order_type,
                     quantity, price, time_in_force, status, venue_status, filled_quantity, created_at, updated_at)
                 VALUES (?, ?, 'bench', 'BTC/USD', 'buy', 'limit', '0.001', '1', 'GTC', 'open', 'open', '0',
                     '2026-11-27T00:00:00.000Z', '2026-11-27T00:00:00.000Z')",
            )
            .bind(cid)
            .bind(oid)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        pool.close().await;
    });
}

/// Fills a fresh database with `n` processed events, as months of operation would.
fn prefill(db: &Path, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", db.display());
        sigex::store::Store::open(&url).await.unwrap().close().await;
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        let body = [b'x'; 180];
        let mut i = 0;
        while i < n {
            let mut tx = pool.begin().await.unwrap();
            let chunk = (n - i).min(5000);
            let mut sql = String::from("INSERT INTO inbox (dedupe_key, event_type, received_at, body, status, processed_at) VALUES ");
            for k in 0..chunk {
                if k > 0 {
                    sql.push(',');
                }
                sql.push_str("(?, 'test', '2026-11-01T00:00:00.000Z', ?, 'processed', '2026-11-01T00:00:00.000Z')");
            }
            let mut q = sqlx::query(&sql);
            for k in 0..chunk {
                q = q.bind(format!("sha256:prefill-{}", i + k)).bind(&body[..]);
            }
            q.execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
            i += chunk;
        }
        pool.close().await;
    });
}

fn main() {
    let o = options();
    let run = |name: &str| o.only.as_deref().is_none_or(|only| only == name);
    let work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&work).unwrap();
    let load = Load::new(2);
    let mut rows: Vec<Row> = Vec::new();
    let per_run = (o.seconds as usize) * 40_000 + 10_000;
    // Fresh unique bodies for every run, so no run is ever answered from deduplication.
    let mut runs = 0;
    let mut fresh = |n: usize| {
        runs += 1;
        requests(n, &format!("run{runs}"))
    };
    println!(
        "sigex benchmark harness ({}): {} repetition(s) of {} s, {} connections",
        if o.smoke { "smoke" } else { "full" },
        o.reps,
        o.seconds,
        o.connections
    );

    // 1. The generator against a server that does nothing: its own ceiling.
    let mut null_rates = Vec::new();
    if run("null") || run("ingest") {
        let null = gen::null_server();
        for _ in 0..o.reps {
            let out = load.saturate(null.addr, &fresh(per_run), o.connections, o.seconds);
            null_rates.push(out.rate());
        }
        let mut r = row("load generator vs null server", &null_rates, "req/s");
        r.note = "the generator's ceiling on this machine".into();
        rows.push(r);
    }

    // 2-4. sigex: saturation, resident memory, CPU per webhook, latency at a fixed rate.
    let mut ingest_rates = Vec::new();
    if run("ingest") || run("latency") || run("memory") {
        let dir = tempfile::tempdir().unwrap();
        let sigex = Sigex::spawn(dir.path(), &dir.path().join("bench.db"));
        sigex
            .wait_ready(Instant::now(), "/healthz")
            .expect("sigex ready");
        load.saturate(sigex.webhook, &requests(2000, "warm"), 16, 1);
        let (mut p99s, mut cpu) = (Vec::new(), Vec::new());
        for _ in 0..o.reps {
            let c0 = sigex.cpu_seconds();
            let mut out = load.saturate(sigex.webhook, &fresh(per_run), o.connections, o.seconds);
            cpu.push((sigex.cpu_seconds() - c0) * 1e6 / out.ok.max(1) as f64);
            assert_eq!(out.failed, 0, "sigex refused requests under load");
            ingest_rates.push(out.rate());
            p99s.push(out.percentile_ms(0.99));
        }
        let mut r = row(
            "ingest: verified + committed webhooks/s (SQLite, synchronous=FULL)",
            &ingest_rates,
            "webhooks/s",
        );
        r.target = ">= 20000".into();
        r.met = Some(r.value >= 20_000.0);
        let null_median = row("", &null_rates, "").value;
        r.note = format!(
            "p99 ack under saturation {:.1} ms; generator ceiling {:.1}x this",
            row("", &p99s, "").value,
            null_median / r.value
        );
        rows.push(r);
        rows.push(row("sigex CPU per webhook at saturation", &cpu, "us"));
        // The same load, same run, against the least a durable receiver can do; then both with
        // realistic signal bodies for a symbol no strategy trades.
        let minimal_dir = tempfile::tempdir().unwrap();
        let minimal =
            minimal::MinimalReceiver::start(&minimal_dir.path().join("minimal.db"), SECRET);
        load.saturate(minimal.addr(), &requests(2000, "warm-minimal"), 16, 1);
        let (mut minimal_rates, mut sigex_signal, mut minimal_signal) =
            (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..o.reps {
            let out = load.saturate(minimal.addr(), &fresh(per_run), o.connections, o.seconds);
            assert_eq!(out.failed, 0, "the minimal receiver refused requests");
            minimal_rates.push(out.rate());
            let bodies = untraded_signals(per_run, &format!("sig{rep}"));
            let out = load.saturate(sigex.webhook, &bodies, o.connections, o.seconds);
            assert_eq!(out.failed, 0, "sigex refused signal requests under load");
            sigex_signal.push(out.rate());
            let out = load.saturate(minimal.addr(), &bodies, o.connections, o.seconds);
            minimal_signal.push(out.rate());
        }
        let mut r = row(
            "minimal durable receiver: hyper, HMAC, group commit (SQLite, synchronous=FULL)",
            &minimal_rates,
            "webhooks/s",
        );
        let minimal_median = r.value;
        let ratio = row("", &ingest_rates, "").value / minimal_median;
        r.target = "sigex >= 0.8x".into();
        r.met = Some(ratio >= 0.8);
        r.note = format!("sigex ingests {ratio:.2}x this");
        rows.push(r);
        let mut r = row(
            "ingest of signal.generated bodies (untraded symbol), sigex",
            &sigex_signal,
            "webhooks/s",
        );
        let ratio = r.value / row("", &minimal_signal, "").value;
        r.target = ">= 0.6x minimal".into();
        r.met = Some(ratio >= 0.6);
        r.note = format!(
            "minimal receiver {:.0}/s with the same bodies: sigex {ratio:.2}x",
            row("", &minimal_signal, "").value
        );
        rows.push(r);
        let mut r = row(
            "resident memory under ingest load (peak, VmHWM)",
            &[sigex.status_kb("VmHWM:") / 1024.0],
            "MB",
        );
        r.target = "<= 40".into();
        r.met = Some(r.value <= 40.0);
        rows.push(r);
        if run("latency") || o.only.is_none() {
            let mut lat = Vec::new();
            let mut p50 = Vec::new();
            for _ in 0..o.reps {
                let mut out = load.fixed_rate(sigex.webhook, &fresh(per_run), 2000, o.seconds);
                assert_eq!(out.failed, 0);
                lat.push(out.percentile_ms(0.99));
                p50.push(out.percentile_ms(0.50));
            }
            let mut r = row("ack latency p99 at a fixed 2000 webhooks/s", &lat, "ms");
            r.target = "<= 2".into();
            r.met = Some(r.value <= 2.0);
            r.note = format!("p50 {:.3} ms", row("", &p50, "").value);
            rows.push(r);
        }
    }

    // 5. Start to ready on an empty database.
    if run("startup") {
        let mut times = Vec::new();
        for _ in 0..o.reps.max(3) {
            let dir = tempfile::tempdir().unwrap();
            let started = Instant::now();
            let sigex = Sigex::spawn(dir.path(), &dir.path().join("empty.db"));
            let t = sigex.wait_ready(started, "/healthz").expect("sigex ready");
            times.push(t.as_secs_f64() * 1000.0);
        }
        let mut r = row(
            "start to ready (empty database, until /healthz answers)",
            &times,
            "ms",
        );
        r.target = "<= 100".into();
        r.met = Some(r.value <= 100.0);
        rows.push(r);
    }

    // 6. Ingest with a million events already stored.
    if run("stored") {
        let n = if o.smoke { 20_000 } else { 1_000_000 };
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("full.db");
        let t = Instant::now();
        prefill(&db, n);
        let fill_s = t.elapsed().as_secs_f64();
        let sigex = Sigex::spawn(dir.path(), &db);
        sigex
            .wait_ready(Instant::now(), "/healthz")
            .expect("sigex ready");
        load.saturate(sigex.webhook, &requests(2000, "warm2"), 16, 1);
        let mut rates = Vec::new();
        for _ in 0..o.reps {
            let out = load.saturate(sigex.webhook, &fresh(per_run), o.connections, o.seconds);
            rates.push(out.rate());
        }
        let mut r = row(
            if o.smoke {
                "ingest with 20k events stored"
            } else {
                "ingest with 1M events stored"
            },
            &rates,
            "webhooks/s",
        );
        let empty = row("", &ingest_rates, "").value;
        if empty.is_finite() {
            let ratio = r.value / empty;
            r.target = "within 10% of empty".into();
            r.met = Some(ratio >= 0.9);
            r.note = format!(
                "{:.0}% of the empty-database rate; prefill took {fill_s:.0} s",
                ratio * 100.0
            );
        }
        rows.push(r);
    }

    // 7. Signal to signed POST at the venue, at a fixed 200 signals/s.
    if run("signal") {
        let host = venue::SimHost::start_with(SECRET, o.webhook_concurrency);
        let dir = tempfile::tempdir().unwrap();
        let sigex = Sigex::spawn_with(
            dir.path(),
            &dir.path().join("signal.db"),
            &host.url,
            venue::EVERY_SIGNAL_STRATEGY,
            "max_orders_per_second = 0",
        );
        sigex
            .wait_ready(Instant::now(), "/readyz")
            .expect("sigex ready (reconciled with the simulator)");
        host.sim
            .set_webhook_url(Some(format!("http://{}{PATH}", sigex.webhook)));
        let (rate, seconds) = (o.rate, o.signal_seconds);
        // First and last windows: 10 s each, or a third of a shorter run.
        let window = (seconds / 3).clamp(1, 10) as usize * rate as usize;
        let mut stats: Vec<[f64; 8]> = Vec::new();
        let mut missing = (0, 0, 0);
        // One short warm-up round fills the reference-price cache and the connections.
        for rep in 0..=o.reps {
            let secs = if rep == 0 { 1 } else { seconds };
            let n = (rate * secs) as usize;
            let (reqs, cids) = venue::signal_requests(n, &format!("signal{rep}"), SECRET, PATH);
            let mut out = load.fixed_rate(sigex.webhook, &reqs, rate, secs);
            let started = out.started.expect("fixed-rate runs record their start");
            let acks = (out.percentile_ms(0.5), out.percentile_ms(0.99));
            // Wait until every order has arrived, or nothing new has for 2 s (a signal the risk
            // gate refuses never produces one), at most 30 s.
            let deadline = Instant::now() + Duration::from_secs(30);
            let (mut seen, mut quiet_since) = (0, Instant::now());
            let arrivals = loop {
                let a: std::collections::HashMap<String, Instant> =
                    host.sim.order_arrivals().into_iter().collect();
                if a.len() != seen {
                    (seen, quiet_since) = (a.len(), Instant::now());
                }
                let all = cids.iter().all(|c| a.contains_key(c));
                if all
                    || Instant::now() > deadline
                    || quiet_since.elapsed() > Duration::from_secs(2)
                {
                    break a;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if rep == 0 {
                continue;
            }
            let interval = Duration::from_nanos(1_000_000_000 / rate);
            // Latency per signal, in send order; None for a signal whose order never came.
            let lat: Vec<Option<f64>> = cids
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let sent = started + interval * i as u32;
                    arrivals
                        .get(c)
                        .map(|t| t.duration_since(sent).as_secs_f64() * 1e3)
                })
                .collect();
            let pct = |part: &[Option<f64>]| {
                let mut v: Vec<f64> = part.iter().flatten().copied().collect();
                v.sort_by(|a, b| a.total_cmp(b));
                if v.is_empty() {
                    return (f64::NAN, f64::NAN);
                }
                (v[v.len() / 2], v[((v.len() - 1) as f64 * 0.99) as usize])
            };
            let gone = |part: &[Option<f64>]| part.iter().filter(|l| l.is_none()).count();
            let w = window.min(lat.len());
            let (all, first, last) = (&lat[..], &lat[..w], &lat[lat.len() - w..]);
            missing.0 += gone(all);
            missing.1 += gone(first);
            missing.2 += gone(last);
            let ((a50, a99), (f50, f99), (l50, l99)) = (pct(all), pct(first), pct(last));
            stats.push([a50, a99, f50, f99, l50, l99, acks.0, acks.1]);
        }
        let col = |k: usize| stats.iter().map(|s| s[k]).collect::<Vec<_>>();
        let wsecs = window / rate as usize;
        let whole = format!(
            "{rate} signals/s for {seconds} s, simulator delivering {} webhook(s) at once; {} signals without an order at the venue",
            o.webhook_concurrency, missing.0
        );
        let first = format!("{wsecs} s window; {} without an order", missing.1);
        let last = format!("{wsecs} s window; {} without an order", missing.2);
        // (row, target in ms, note), in the order of `stats`' columns.
        let labels: [(&'static str, Option<f64>, String); 8] = [
            (
                "signal -> signed POST at the venue, p50 over the whole run",
                Some(5.0),
                whole,
            ),
            (
                "signal -> signed POST at the venue, p99 over the whole run",
                Some(25.0),
                String::new(),
            ),
            (
                "signal -> signed POST, p50 of the first window",
                Some(5.0),
                first,
            ),
            (
                "signal -> signed POST, p99 of the first window",
                Some(25.0),
                String::new(),
            ),
            (
                "signal -> signed POST, p50 of the last window",
                Some(5.0),
                last,
            ),
            (
                "signal -> signed POST, p99 of the last window",
                Some(25.0),
                String::new(),
            ),
            (
                "signal webhook acknowledged (200), p50",
                None,
                String::new(),
            ),
            (
                "signal webhook acknowledged (200), p99",
                None,
                String::new(),
            ),
        ];
        for (k, (label, target, note)) in labels.into_iter().enumerate() {
            let mut r = row(label, &col(k), "ms");
            if let Some(target) = target {
                r.target = format!("<= {target}");
                r.met = Some(r.value <= target);
            }
            r.note = note;
            rows.push(r);
        }
    }

    // 8. Start-up reconciliation of 10,000 open orders.
    if run("reconcile") {
        let n = if o.smoke { 500 } else { 10_000 };
        let host = venue::SimHost::start(SECRET);
        let seeded = venue::seed_open_orders(&host, n);
        let mut times = Vec::new();
        for _ in 0..o.reps {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("open.db");
            seed_local_orders(&db, &seeded);
            let started = Instant::now();
            let sigex =
                Sigex::spawn_with(dir.path(), &db, &host.url, venue::EVERY_SIGNAL_STRATEGY, "");
            let ready = sigex
                .wait_ready(started, "/readyz")
                .map_or(f64::NAN, |t| t.as_secs_f64());
            times.push(ready);
        }
        let mut r = row(
            if o.smoke {
                "start-up reconciliation of 500 open orders (start to ready)"
            } else {
                "start-up reconciliation of 10,000 open orders (start to ready)"
            },
            &times,
            "s",
        );
        r.target = "<= 2".into();
        r.met = Some(r.value <= 2.0);
        rows.push(r);
    }

    // 9. The reference receiver.
    if run("flask") {
        match flask(&work) {
            Ok((mut child, addr)) => {
                let mut rates = Vec::new();
                for _ in 0..o.reps {
                    let out = load.saturate(addr, &fresh(per_run), o.connections, o.seconds);
                    rates.push(out.rate());
                }
                let _ = child.kill();
                let _ = child.wait();
                let mut r = row(
                    "reference: Flask + gunicorn (2 workers), verify HMAC, 200",
                    &rates,
                    "req/s",
                );
                let ours = row("", &ingest_rates, "").value;
                if ours.is_finite() {
                    r.note = format!("sigex ingests {:.1}x this (target >= 15x)", ours / r.value);
                    r.met = Some(ours / r.value >= 15.0);
                    r.target = "sigex >= 15x".into();
                }
                rows.push(r);
            }
            Err(e) => {
                let mut r = row("reference: Flask + gunicorn (2 workers)", &[], "req/s");
                r.note = format!("skipped: {e}");
                rows.push(r);
            }
        }
    }

    println!();
    println!(
        "{:<72} {:>12} {:>21} {:>10}  {:<20} note",
        "scenario", "median", "spread (min..max)", "unit", "target"
    );
    for r in &rows {
        let verdict = match r.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        println!(
            "{:<72} {:>12.1} {:>10.1}..{:<10.1} {:>10}  {:<20} {}",
            r.scenario,
            r.value,
            r.spread.0,
            r.spread.1,
            r.unit,
            format!("{} {}", r.target, verdict).trim(),
            r.note
        );
    }
    let json = serde_json::json!({
        "mode": if o.smoke { "smoke" } else { "full" },
        "repetitions": o.reps,
        "seconds": o.seconds,
        "connections": o.connections,
        "machine": machine(),
        "rows": rows,
    });
    let out = work.join("results.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("\nresults: {}", out.display());
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    format!(
        "{} cores, {cpu}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}
