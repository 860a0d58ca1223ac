//! The real binary, `sigex run --config`, against an in-process simulator: SIGTERM in the middle
//! of a webhook stream, then the database and the log it leaves behind.

use crate::helpers::database::TestDatabase;
use crate::helpers::{sign_with, spawn_receiver, start_sim, RunningSim};
use sigex::sim::SimConfig;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// Distinctive values, so finding one in the log cannot be a coincidence.
const WEBHOOK_SECRET: &str = "whsec_LOGCHECK_webhook_6d1f0c2a";
const API_KEY: &str = "apikey_LOGCHECK_83b1e0";
const API_SECRET: &str = "apisecret_LOGCHECK_f29a71";
const ADMIN_TOKEN: &str = "admintoken_LOGCHECK_0c7e5d91";
const SLACK_TOKEN: &str = "T000LOGCHECK/B000/slacktoken5a9e";
const PATIENCE: Duration = Duration::from_secs(90);

const STRATEGY: &str = r#"
name = "lifecycle"
symbols = ["BTC/USD", "ETH/USD"]
recommendations = ["buy", "sell"]
min_confidence = 70
allow_short = true

[sizing]
method = "fixed_notional"
notional = 100

[limits]
max_position_notional = 1000000
"#;

fn signal(n: u32) -> String {
    let (symbol, rec) = match n % 4 {
        0 => ("BTC/USD", "buy"),
        1 => ("ETH/USD", "buy"),
        2 => ("BTC/USD", "sell"),
        _ => ("ETH/USD", "sell"),
    };
    serde_json::json!({
        "event": "signal.generated",
        "timestamp": crate::helpers::epoch_iso(),
        "data": {"symbol": symbol, "recommendation": rec, "confidence": 90, "nonce": n}
    })
    .to_string()
}

/// Reads the child's stderr into `log`, and reports the webhook address from the start line.
fn collect_log(
    stderr: std::process::ChildStderr,
    log: Arc<Mutex<String>>,
    started: tokio::sync::oneshot::Sender<(String, String)>,
) {
    let mut started = Some(started);
    for line in std::io::BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if v["fields"]["message"] == "sigex started" {
                if let Some(tx) = started.take() {
                    let field = |k: &str| v["fields"][k].as_str().unwrap_or_default().to_owned();
                    let _ = tx.send((field("webhook"), field("admin")));
                }
            }
        }
        let mut log = log.lock().unwrap();
        log.push_str(&line);
        log.push('\n');
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_loses_no_acknowledged_webhook_and_no_secret_reaches_the_log() {
    let RunningSim {
        sim,
        stop: sim_stop,
        url: sim_url,
    } = start_sim(SimConfig::new(API_KEY, API_SECRET, WEBHOOK_SECRET)).await;
    let (receiver_url, _received) = spawn_receiver(0).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("strategies")).unwrap();
    std::fs::write(dir.path().join("strategies/lifecycle.toml"), STRATEGY).unwrap();
    std::fs::write(dir.path().join("admin_token"), ADMIN_TOKEN).unwrap();
    let database = TestDatabase::fresh(dir.path());
    let config = dir.path().join("sigex.toml");
    std::fs::write(
        &config,
        format!(
            r#"mode = "live"
[venue]
base_url = "{sim_url}"
[webhook]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
token_file = "admin_token"
[storage]
database_url = "{}"
[shutdown]
deadline_ms = 60000
[[notify]]
kind = "slack"
url_env = "LIFECYCLE_TEST_SLACK_URL"
"#,
            database.url()
        ),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_sigex"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .env("SIGEX_WEBHOOK__SECRET", WEBHOOK_SECRET)
        .env("SIGEX_VENUE__API_KEY", API_KEY)
        .env("SIGEX_VENUE__API_SECRET", API_SECRET)
        .env(
            "LIFECYCLE_TEST_SLACK_URL",
            format!("{receiver_url}/services/{SLACK_TOKEN}"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let stderr = child.stderr.take().unwrap();
    let log_reader = {
        let log = log.clone();
        std::thread::spawn(move || collect_log(stderr, log, started_tx))
    };
    let Ok(Ok((webhook_addr, admin_addr))) = tokio::time::timeout(PATIENCE, started_rx).await
    else {
        let _ = child.kill();
        panic!("the bot did not start:\n{}", log.lock().unwrap());
    };
    let webhook_url = format!("http://{webhook_addr}/webhooks/vibe");
    sim.set_webhook_url(Some(webhook_url.clone()));
    let http = reqwest::Client::new();

    // The token crosses the wire once, in a real mutation request.
    let r = http
        .post(format!("http://{admin_addr}/api/events/999999/replay"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    // Four concurrent streams of signed signals; SIGTERM once 40 are acknowledged, while
    // requests are in flight; every stream keeps sending until the bot refuses or closes.
    let pid = child.id().to_string();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let term_sent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let streams: Vec<_> = (0..4u32)
        .map(|stream| {
            let (http, url, acked, refused, term_sent, pid) = (
                http.clone(),
                webhook_url.clone(),
                acked.clone(),
                refused.clone(),
                term_sent.clone(),
                pid.clone(),
            );
            tokio::spawn(async move {
                use std::sync::atomic::Ordering;
                for n in 0..2_000u32 {
                    let body = signal(n * 4 + stream);
                    let sent = http
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .header(
                            "X-Webhook-Signature",
                            sign_with(WEBHOOK_SECRET, body.as_bytes()),
                        )
                        .body(body.clone())
                        .send()
                        .await;
                    match sent.map(|r| r.status().as_u16()) {
                        Ok(200) => {
                            let total = {
                                let mut a = acked.lock().unwrap();
                                a.push(body);
                                a.len()
                            };
                            if total >= 40 && !term_sent.swap(true, Ordering::SeqCst) {
                                let kill = Command::new("kill").args(["-TERM", &pid]).status();
                                assert!(kill.unwrap().success());
                            }
                        }
                        Ok(503) => {
                            if refused.fetch_add(1, Ordering::SeqCst) >= 20 {
                                return;
                            }
                        }
                        Ok(other) => panic!("unexpected {other}"),
                        Err(_) => return, // the listener is closed
                    }
                }
            })
        })
        .collect();
    for s in streams {
        s.await.unwrap();
    }
    let acknowledged = acked.lock().unwrap().clone();
    let refused_while_draining = refused.load(std::sync::atomic::Ordering::SeqCst);
    let terminated = term_sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(terminated, "the stream ended before SIGTERM was sent");

    let status = tokio::time::timeout(PATIENCE, tokio::task::spawn_blocking(move || child.wait()))
        .await
        .expect("the bot did not exit within the patience window")
        .unwrap()
        .unwrap();
    log_reader.join().unwrap();
    sim_stop.trigger();
    let log = log.lock().unwrap().clone();
    assert!(status.success(), "exit status {status:?}\n{log}");

    // Every acknowledged webhook is in the database, processed.
    let pool = database.connect().await;
    for body in &acknowledged {
        let key = sigex::inbox::dedupe_key(body.as_bytes());
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM inbox WHERE dedupe_key = ?")
                .bind(&key)
                .fetch_optional(&pool)
                .await
                .unwrap();
        assert_eq!(
            status.as_deref(),
            Some("processed"),
            "acknowledged signal lost or unprocessed: {body}"
        );
    }
    // In-flight order requests resolved: no order is left as an unsent intent.
    let intents: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = 'intent'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(intents, 0);
    pool.close().await;
    assert!(log.contains("final reconciliation done"), "{log}");
    assert!(log.contains("stopped cleanly"), "{log}");
    let took_ms = log
        .lines()
        .find(|l| l.contains("stopped cleanly"))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["fields"]["took_ms"].as_u64());
    eprintln!(
        "lifecycle: {} acknowledged, {refused_while_draining} refused with 503 while draining, shutdown took {took_ms:?} ms, {} log lines",
        acknowledged.len(),
        log.lines().count()
    );

    // No secret value appears anywhere in the log of the whole run (RUST_LOG=debug).
    for (name, secret) in [
        ("webhook secret", WEBHOOK_SECRET),
        ("venue API key", API_KEY),
        ("venue API secret", API_SECRET),
        ("admin token", ADMIN_TOKEN),
        ("Slack URL token", SLACK_TOKEN),
    ] {
        assert!(!log.contains(secret), "the {name} appears in the log");
    }
}
