//! Webhook ingest benchmark: verified and durably committed webhooks per second, and the ack
//! latency at a fixed rate. Run with `cargo bench --bench ingest` (release build); it prints its
//! numbers and, with `--json FILE`, writes them as JSON.
//!
//! The bot runs in this process on its own runtime (2 worker threads, as on the target machine);
//! the load generator runs on another runtime and speaks raw HTTP/1.1 over keep-alive connections
//! with pre-signed, unique bodies (so deduplication never short-circuits the work). Durability is
//! the production setting: SQLite WAL with `synchronous = FULL`, 200 only after the commit.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sigex::config::{
    AdminConfig, Config, Credentials, InboxConfig, Mode, Secret, StorageConfig, VenueConfig,
    WebhookConfig,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "whsec_bench_0123456789abcdef";

struct Args {
    seconds: u64,
    connections: usize,
    rate: u64,
    json: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 5,
        connections: 64,
        rate: 2000,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.seconds),
            "--connections" => {
                a.connections = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(a.connections)
            }
            "--rate" => a.rate = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.rate),
            "--json" => a.json = it.next(),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// Pre-built requests: each a unique signed `test` event.
fn requests(n: usize, path: &str, label: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let body = format!(
                r#"{{"event":"test","timestamp":"2026-11-27T12:00:00Z","data":{{"message":"{label} {i}"}}}}"#
            );
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(body.as_bytes());
            let sig = hex::encode(mac.finalize().into_bytes());
            format!(
                "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nX-Webhook-Signature: {sig}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect()
}

/// Sends one request and reads one response; returns whether it was a 200.
async fn round_trip(stream: &mut tokio::net::TcpStream, request: &[u8], buf: &mut Vec<u8>) -> bool {
    if stream.write_all(request).await.is_err() {
        return false;
    }
    buf.clear();
    let mut chunk = [0u8; 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return head.starts_with("http/1.1 200");
            }
        }
    }
}

struct Outcome {
    ok: usize,
    failed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// Closed loop: every connection sends as fast as answers come back.
async fn saturate(
    addr: SocketAddr,
    reqs: Arc<Vec<Vec<u8>>>,
    connections: usize,
    seconds: u64,
) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (reqs, next) = (reqs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut ok, mut failed, mut lat, mut buf) =
                (0, 0, Vec::new(), Vec::with_capacity(512));
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= reqs.len() {
                    break;
                }
                let t = Instant::now();
                if round_trip(&mut stream, &reqs[i], &mut buf).await {
                    ok += 1;
                    lat.push(t.elapsed());
                } else {
                    failed += 1;
                    stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                }
            }
            (ok, failed, lat)
        }));
    }
    let mut out = Outcome {
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for t in tasks {
        let (ok, failed, lat) = t.await.unwrap();
        out.ok += ok;
        out.failed += failed;
        out.latencies.extend(lat);
    }
    out.elapsed = start.elapsed();
    out
}

/// Open loop at a fixed rate; latency counts from the scheduled send time, so a stall shows up
/// in the numbers instead of slowing the generator down.
async fn fixed_rate(addr: SocketAddr, reqs: Arc<Vec<Vec<u8>>>, rate: u64, seconds: u64) -> Outcome {
    let total = (rate * seconds) as usize;
    let (tx, rx) = tokio::sync::mpsc::channel::<(usize, Instant)>(total.max(1));
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (reqs, rx) = (reqs.clone(), rx.clone());
        workers.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut ok, mut failed, mut lat, mut buf) =
                (0, 0, Vec::new(), Vec::with_capacity(512));
            loop {
                let next = rx.lock().await.recv().await;
                let Some((i, scheduled)) = next else { break };
                if round_trip(&mut stream, &reqs[i], &mut buf).await {
                    ok += 1;
                    lat.push(scheduled.elapsed());
                } else {
                    failed += 1;
                    stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                }
            }
            (ok, failed, lat)
        }));
    }
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    for i in 0..total {
        let at = start + interval * i as u32;
        tokio::time::sleep_until(at.into()).await;
        tx.send((i, at)).await.unwrap();
    }
    drop(tx);
    let mut out = Outcome {
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for w in workers {
        let (ok, failed, lat) = w.await.unwrap();
        out.ok += ok;
        out.failed += failed;
        out.latencies.extend(lat);
    }
    out.elapsed = start.elapsed();
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn resident_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds used so far by this process's threads whose name starts with `prefix`
/// (`!prefix`: whose name does not).
fn cpu_seconds(prefix: &str) -> f64 {
    let (prefix, negate) = match prefix.strip_prefix('!') {
        Some(p) => (p, true),
        None => (prefix, false),
    };
    let tick = 100.0; // USER_HZ on Linux
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            if comm.trim().starts_with(prefix) == negate {
                return None;
            }
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let (utime, stime): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
            Some((utime + stime) / tick)
        })
        .sum()
}

fn main() {
    let args = args();
    let dir = tempfile::tempdir().unwrap();
    let bot_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bot")
        .enable_all()
        .build()
        .unwrap();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut webhook = WebhookConfig::new(loopback, Secret::new(SECRET));
    webhook.rate_limit_per_second = 0;
    let config = Config {
        mode: Mode::Live,
        venue: VenueConfig {
            // `test` events never reach the venue.
            base_url: "http://127.0.0.1:9/api/v1".into(),
            credentials: Some(Credentials {
                api_key: Secret::new("k"),
                api_secret: Secret::new("s"),
            }),
            request_timeout: Duration::from_secs(1),
        },
        webhook,
        inbox: InboxConfig::default(),
        admin: AdminConfig { listen: loopback },
        storage: StorageConfig {
            database_url: format!("sqlite://{}", dir.path().join("bench.db").display()),
        },
        strategies_dir: "unused".into(),
    };
    let clock: sigex::clock::SharedClock = Arc::new(sigex::clock::SystemClock);
    let bot = bot_rt
        .block_on(sigex::app::start(config, Vec::new(), clock))
        .unwrap();
    let addr = bot.webhook_addr;

    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()
        .unwrap();
    let reqs = Arc::new(requests(400_000, "/webhooks/vibe", "bench"));
    // Warm-up: connections, page cache, SQLite file growth.
    let warm = load_rt.block_on(saturate(
        addr,
        Arc::new(requests(2000, "/webhooks/vibe", "warm")),
        16,
        1,
    ));
    assert!(warm.ok > 0, "warm-up got no 200s");

    // The bot's own threads plus sqlx's SQLite worker threads: everything but the generator.
    let (bot_cpu0, load_cpu0) = (cpu_seconds("!load"), cpu_seconds("load"));
    let mut sat = load_rt.block_on(saturate(addr, reqs.clone(), args.connections, args.seconds));
    let bot_cpu_us = (cpu_seconds("!load") - bot_cpu0) * 1e6 / sat.ok.max(1) as f64;
    let load_cpu_us = (cpu_seconds("load") - load_cpu0) * 1e6 / sat.ok.max(1) as f64;
    sat.latencies.sort();
    let rate = sat.ok as f64 / sat.elapsed.as_secs_f64();
    let rss_after_saturation = resident_mb();

    let fixed_reqs: Arc<Vec<Vec<u8>>> = Arc::new(reqs[sat.ok + sat.failed..].to_vec());
    let mut fixed = load_rt.block_on(fixed_rate(addr, fixed_reqs, args.rate, args.seconds));
    fixed.latencies.sort();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("ingest benchmark (SQLite WAL, synchronous=FULL, 200 after commit; bot and load generator in one process, 2+2 threads)");
    println!(
        "saturation: {:>9.0} webhooks/s over {:.1} s, {} connections; {} ok, {} failed; ack p50 {:.2} ms, p99 {:.2} ms",
        rate,
        sat.elapsed.as_secs_f64(),
        args.connections,
        sat.ok,
        sat.failed,
        ms(percentile(&sat.latencies, 0.50)),
        ms(percentile(&sat.latencies, 0.99)),
    );
    println!(
        "fixed rate: {:>9} webhooks/s for {} s; {} ok, {} failed; ack p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        args.rate,
        args.seconds,
        fixed.ok,
        fixed.failed,
        ms(percentile(&fixed.latencies, 0.50)),
        ms(percentile(&fixed.latencies, 0.99)),
        ms(fixed.latencies.last().copied().unwrap_or_default()),
    );
    println!(
        "cpu per webhook at saturation: bot {bot_cpu_us:.1} us, load generator {load_cpu_us:.1} us (the bot alone on 2 cores could ack ~{:.0}/s)",
        2e6 / bot_cpu_us.max(0.001)
    );
    println!("resident memory after saturation: {rss_after_saturation:.1} MB (whole process: bot + load generator + pre-built requests)");
    if let Some(path) = args.json {
        let json = serde_json::json!({
            "saturation": {"webhooks_per_second": rate.round(), "ok": sat.ok, "failed": sat.failed,
                "p50_ms": ms(percentile(&sat.latencies, 0.5)), "p99_ms": ms(percentile(&sat.latencies, 0.99))},
            "fixed_rate": {"rate": args.rate, "ok": fixed.ok, "failed": fixed.failed,
                "p50_ms": ms(percentile(&fixed.latencies, 0.5)), "p99_ms": ms(percentile(&fixed.latencies, 0.99))},
            "rss_mb": rss_after_saturation,
            "bot_cpu_us_per_webhook": bot_cpu_us,
            "load_cpu_us_per_webhook": load_cpu_us,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    }
    bot_rt.block_on(bot.stop());
}
