//! Durability under SIGKILL: the real `sigex` binary receives signed webhooks from concurrent
//! senders that retry like the venue does, is killed mid-stream and restarted; every webhook that
//! got a 200 must be processed exactly once, and every order intent must exist exactly once at the
//! venue.

use crate::helpers::{post_signed_to, sign, signal_body, WEBHOOK_SECRET};
use sigex::sim::{Faults, Probability, SimConfig, Simulator};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SENDERS: usize = 4;
const PER_SENDER: usize = 150;
/// Kill the bot when this many webhooks have been acknowledged.
const KILL_AT: &[usize] = &[100, 250, 420];

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Bot {
    pub(crate) config: std::path::PathBuf,
    pub(crate) log: std::path::PathBuf,
    pub(crate) child: Option<Child>,
}

/// Starts `sigex run --config config` through `command` (the binary itself, or a launcher in
/// front of it) with the rig's secrets (`crash-key`, `crash-secret`), its log appended to `log`.
pub(crate) fn start_sigex(mut command: Command, config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    command
        .args(["run", "--config"])
        .arg(config)
        .env("SIGEX_WEBHOOK__SECRET", WEBHOOK_SECRET)
        .env("SIGEX_VENUE__API_KEY", "crash-key")
        .env("SIGEX_VENUE__API_SECRET", "crash-secret")
        .env("RUST_LOG", "warn")
        // Variables sigex must leave alone (README recipes set them in the same shell).
        .env("SIGEX_ADMIN_URL", "http://127.0.0.1:9")
        .env("SIGEX_SIM_API_KEY", "not-a-config-key")
        .env("SIGEX_CHAOS_SEED", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the sigex binary starts")
}

impl Bot {
    /// A bot process on `config`, logging to `dir/bot.log`, started.
    pub(crate) fn started(config: std::path::PathBuf, dir: &Path) -> Arc<Mutex<Bot>> {
        let mut bot = Bot {
            config,
            log: dir.join("bot.log"),
            child: None,
        };
        bot.start();
        Arc::new(Mutex::new(bot))
    }

    pub(crate) fn start(&mut self) {
        self.child = Some(start_sigex(
            Command::new(env!("CARGO_BIN_EXE_sigex")),
            &self.config,
            &self.log,
        ));
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // SIGKILL: no shutdown code runs.
            child.wait().unwrap();
        }
    }
}

impl Bot {
    /// `Some(why)` when the process ended without the test killing it: its exit status and the
    /// end of its log.
    pub(crate) fn died(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        // The start (where an error at start-up is) and the end (what it did last).
        let shown = if lines.len() <= 80 {
            lines.join("\n")
        } else {
            format!(
                "{}\n[...]\n{}",
                lines[..20].join("\n"),
                lines[lines.len() - 40..].join("\n")
            )
        };
        Some(format!(
            "the sigex bot exited by itself ({status}); its log ({}):\n{shown}",
            self.log.display()
        ))
    }
}

/// Once `acked` reaches `at`, SIGKILLs the bot and starts it again.
pub(crate) async fn kill_and_restart_at(bot: &Arc<Mutex<Bot>>, acked: &AtomicUsize, at: usize) {
    while acked.load(Ordering::SeqCst) < at {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let bot = bot.clone();
    tokio::task::spawn_blocking(move || {
        let mut bot = bot.lock().unwrap();
        bot.kill();
        bot.start();
    })
    .await
    .unwrap();
}

/// Runs `work` while watching `bot`: when the bot process dies on its own, the test fails at
/// once with its log instead of waiting for webhooks that will never be answered.
pub(crate) async fn while_running<T>(
    bot: &Arc<Mutex<Bot>>,
    work: impl std::future::Future<Output = T>,
) -> T {
    let watch = async {
        loop {
            // Kills and restarts happen under this lock, so a killed bot is never seen here.
            if let Some(why) = bot.lock().unwrap().died() {
                return why;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        out = work => out,
        why = watch => panic!("{why}"),
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A simulator on a loopback port whose webhooks go to a bot process, and that bot's config file
/// (written under `dir`): what the tests that run the real binary start from.
pub(crate) struct Rig {
    pub sim: Simulator,
    pub sim_stop: sigex::shutdown::ShutdownTrigger,
    pub webhook_url: String,
    pub admin_url: String,
    pub config: std::path::PathBuf,
}

pub(crate) async fn rig(dir: &Path, sim_config: SimConfig) -> Rig {
    let sim = Simulator::new(sim_config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_url = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let (sim_stop, mut sim_shutdown) = sigex::shutdown::shutdown_pair();
    tokio::spawn(
        sim.clone()
            .serve(listener, async move { sim_shutdown.wait().await }),
    );
    let (webhook_port, admin_port) = (free_port(), free_port());
    let webhook_url = format!("http://127.0.0.1:{webhook_port}/webhooks/vibe");
    sim.set_webhook_url(Some(webhook_url.clone()));
    Rig {
        sim,
        sim_stop,
        webhook_url,
        admin_url: format!("http://127.0.0.1:{admin_port}"),
        config: write_config(dir, &sim_url, webhook_port, admin_port),
    }
}

pub(crate) fn write_config(
    dir: &Path,
    sim_url: &str,
    webhook_port: u16,
    admin_port: u16,
) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("strategies")).unwrap();
    std::fs::write(
        dir.join("strategies/test.toml"),
        crate::helpers::TEST_STRATEGY,
    )
    .unwrap();
    let config = dir.join("sigex.toml");
    std::fs::write(
        &config,
        format!(
            r#"mode = "live"
[venue]
base_url = "{sim_url}"
request_timeout_ms = 2000
[webhook]
listen = "127.0.0.1:{webhook_port}"
rate_limit_per_second = 0
[admin]
listen = "127.0.0.1:{admin_port}"
[storage]
database_url = "sqlite://{}"
[strategies]
dir = "strategies"
"#,
            dir.join("bot.db").display()
        ),
    )
    .unwrap();
    config
}

/// One webhook per (sender, n): a `test` event, an untraded-symbol signal or a traded signal.
fn body(sender: usize, n: usize) -> (String, &'static str) {
    let id = sender * 1000 + n;
    match n % 3 {
        0 => (
            format!(
                r#"{{"event":"test","timestamp":"2026-11-27T12:00:00Z","data":{{"message":"m{id}"}}}}"#
            ),
            "test",
        ),
        1 => (signal_body("SOL/USD", "buy", 90, id as u32), "signal"),
        _ => (signal_body("BTC/USD", "buy", 90, id as u32), "signal"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_acknowledged_before_a_sigkill_are_processed_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let Rig {
        sim,
        sim_stop,
        webhook_url,
        admin_url,
        config,
    } = rig(
        dir.path(),
        SimConfig::new("crash-key", "crash-secret", WEBHOOK_SECRET),
    )
    .await;
    let bot = Bot::started(config, dir.path());
    // The bot is watched throughout: if it dies, the test says so with its log.
    crate::crash::while_running(&bot, async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();

        let acked = Arc::new(Mutex::new(Vec::<(String, &'static str)>::new()));
        let acked_count = Arc::new(AtomicUsize::new(0));
        let failed_sends = Arc::new(AtomicUsize::new(0));
        let mut senders = Vec::new();
        for sender in 0..SENDERS {
            let (http, url, acked, acked_count, failed_sends) = (
                http.clone(),
                webhook_url.clone(),
                acked.clone(),
                acked_count.clone(),
                failed_sends.clone(),
            );
            senders.push(tokio::spawn(async move {
                for n in 0..PER_SENDER {
                    let (body, kind) = body(sender, n);
                    // Like the venue: retry until acknowledged.
                    for attempt in 0.. {
                        assert!(attempt < 2000, "webhook never acknowledged");
                        let sent = http
                            .post(&url)
                            .header("Content-Type", "application/json")
                            .header("X-Webhook-Signature", sign(body.as_bytes()))
                            .body(body.clone())
                            .send()
                            .await;
                        if matches!(&sent, Ok(r) if r.status() == 200) {
                            acked.lock().unwrap().push((body.clone(), kind));
                            acked_count.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        failed_sends.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }));
        }
        for &at in KILL_AT {
            kill_and_restart_at(&bot, &acked_count, at).await;
        }
        for s in senders {
            s.await.unwrap();
        }
        // The kills really landed mid-stream: senders saw the bot gone and had to retry.
        assert!(
            failed_sends.load(Ordering::SeqCst) > 0,
            "no send ever failed: the bot was not down mid-stream"
        );

        // Every acknowledged webhook is in the inbox exactly once and processed; orders settle.
        let get = |path: &'static str| {
            let (http, admin_url) = (http.clone(), admin_url.clone());
            async move {
                http.get(format!("{admin_url}{path}"))
                    .send()
                    .await
                    .ok()?
                    .json::<serde_json::Value>()
                    .await
                    .ok()
            }
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let (events, orders) = loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the inbox never drained; see {}",
                dir.path().join("bot.log").display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (Some(counts), Some(events), Some(orders)) = (
                get("/api/events").await,
                get("/api/events/recent?limit=10000").await,
                get("/api/orders?limit=10000").await,
            ) else {
                continue;
            };
            let unsettled = orders.as_array().unwrap().iter().any(|o| {
                o["orderId"].is_null() || o["status"] == "intent" || o["status"] == "unknown"
            });
            if counts.get("pending").is_none() && !unsettled {
                break (events, orders);
            }
        };
        let acked = acked.lock().unwrap().clone();
        assert_eq!(acked.len(), SENDERS * PER_SENDER);
        let stored: HashMap<String, (i64, String)> = events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["dedupeKey"].as_str().unwrap().to_owned(),
                    (
                        e["seq"].as_i64().unwrap(),
                        e["status"].as_str().unwrap().to_owned(),
                    ),
                )
            })
            .collect();
        let mut signal_seqs = HashSet::new();
        for (body, kind) in &acked {
            let key = sigex::inbox::dedupe_key(body.as_bytes());
            let (seq, status) = stored
                .get(&key)
                .unwrap_or_else(|| panic!("acknowledged but lost: {body}"));
            assert_eq!(status, "processed", "{body}");
            if *kind == "signal" {
                signal_seqs.insert(*seq);
            }
        }
        // Exactly one decision per acknowledged signal.
        let decisions = http
            .get(format!("{admin_url}/api/signals?limit=10000"))
            .send()
            .await
            .unwrap()
            .json::<Vec<serde_json::Value>>()
            .await
            .unwrap();
        let decided: Vec<i64> = decisions
            .iter()
            .map(|d| d["eventSeq"].as_i64().unwrap())
            .collect();
        assert_eq!(decided.len(), signal_seqs.len(), "one decision per signal");
        assert_eq!(decided.iter().copied().collect::<HashSet<_>>(), signal_seqs);
        // Every order intent exists exactly once at the venue, under its own clientOrderId.
        let local: HashSet<String> = orders
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["clientOrderId"].as_str().unwrap().to_owned())
            .collect();
        let at_venue: Vec<String> = sim
            .orders()
            .into_iter()
            .filter_map(|o| o.client_order_id)
            .collect();
        assert_eq!(at_venue.len(), local.len(), "one venue order per intent");
        assert_eq!(at_venue.into_iter().collect::<HashSet<_>>(), local);
        assert!(!local.is_empty(), "the run placed orders");
    })
    .await;
    bot.lock().unwrap().kill();
    sim_stop.trigger();
}

#[tokio::test]
async fn a_bot_process_that_dies_fails_its_test_at_once_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sigex.toml");
    std::fs::write(
        &config,
        "mode = \"live\"\n[webhook]\nlisten = \"not an address\"\n",
    )
    .unwrap();
    let bot = Bot::started(config, dir.path());
    // Work that would wait forever for a bot that is gone.
    let watched = tokio::spawn(async move {
        while_running(&bot, std::future::pending::<()>()).await;
    });
    let failure = tokio::time::timeout(Duration::from_secs(60), watched)
        .await
        .expect("the watcher noticed the dead bot")
        .unwrap_err();
    let why = *failure.into_panic().downcast::<String>().unwrap();
    assert!(why.contains("exited by itself"), "{why}");
    assert!(
        why.contains("[webhook] listen"),
        "the bot's own error: {why}"
    );
}

/// GETs an admin API URL as JSON; `None` while the bot does not answer.
pub(crate) async fn admin_json(http: reqwest::Client, url: String) -> Option<serde_json::Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// Polls `check` every 10 ms until it returns `Some`, failing (with the bot's log) when the bot
/// dies or `what` takes longer than 30 s.
pub(crate) async fn until<T, F, Fut>(bot: &mut Bot, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(why) = bot.died() {
            panic!("{why}");
        }
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; log: {}",
            std::fs::read_to_string(&bot.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The venue books and fills an order but answers slowly; the bot dies while the POST is in
/// flight, its order still an `intent`. After the restart the intent is found by its
/// `clientOrderId` before positions are compared: one venue order, and no drift halt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_killed_during_a_slow_post_restarts_with_one_venue_order_and_no_drift_halt() {
    let mut stuck = SlowPost::start("", &[(1, "BTC/USD")]).await;
    stuck.bot.kill();
    assert_eq!(
        stuck.sim.stats().slow_responses,
        1,
        "the POST was still unanswered"
    );
    stuck.bot.start();
    stuck.ready().await;
    let orders = stuck.settled().await;
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0]["status"], "filled", "{orders:?}");
    let at_venue = stuck.sim.orders();
    assert_eq!(at_venue.len(), 1, "exactly one venue order");
    assert_eq!(
        at_venue[0].client_order_id.as_deref(),
        orders[0]["clientOrderId"].as_str()
    );
    let state = admin_json(
        stuck.http.clone(),
        format!("{}/api/trading-state", stuck.admin_url),
    )
    .await
    .unwrap();
    assert_eq!(state["state"], "active", "{state}");
    assert!(
        state["states"].as_array().unwrap().is_empty(),
        "no drift halt: {state}"
    );
    stuck.stop();
}

/// The admin token a [`SlowPost`] bot is configured with.
pub(crate) const ADMIN_TOKEN: &str = "slow-post-admin-token-0123456789";

/// The real binary (with an admin token) against a simulator that books, fills and answers the
/// bot's first order only after a minute, sends no callbacks (what the bot learns, it learns by
/// asking), after `signals` (`(nonce, symbol)` buys) were sent and decided: the first order's POST
/// is in flight, the others are `intent` behind it.
pub(crate) struct SlowPost {
    _dir: tempfile::TempDir,
    pub sim: Simulator,
    sim_stop: sigex::shutdown::ShutdownTrigger,
    pub admin_url: String,
    pub bot: Bot,
    pub http: reqwest::Client,
}

impl SlowPost {
    pub(crate) async fn start(extra_venue_config: &str, signals: &[(u32, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut sim_config = SimConfig::new("crash-key", "crash-secret", WEBHOOK_SECRET);
        sim_config.faults = Faults {
            order_slow_response: Probability::ALWAYS,
            rest_timeout_after: Duration::from_secs(60),
            rest_fault_limit: Some(1),
            // What the bot learns about its orders, it learns by asking.
            webhook_drop: Probability::ALWAYS,
            ..Faults::default()
        };
        let Rig {
            sim,
            sim_stop,
            webhook_url,
            admin_url,
            config,
        } = rig(dir.path(), sim_config).await;
        let token_file = dir.path().join("admin-token");
        std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace(
                "request_timeout_ms = 2000",
                &format!("request_timeout_ms = 120000\n{extra_venue_config}"),
            )
            .replace(
                "[admin]\n",
                &format!("[admin]\ntoken_file = \"{}\"\n", token_file.display()),
            );
        std::fs::write(&config, text).unwrap();
        let mut bot = Bot {
            config,
            log: dir.path().join("bot.log"),
            child: None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        bot.start();
        let mut stuck = Self {
            _dir: dir,
            sim,
            sim_stop,
            admin_url,
            bot,
            http,
        };
        stuck.ready().await;
        for (i, &(n, symbol)) in signals.iter().enumerate() {
            let body = signal_body(symbol, "buy", 90, n);
            assert_eq!(
                post_signed_to(&stuck.http, &webhook_url, &body)
                    .await
                    .status(),
                200
            );
            if i == 0 {
                let sim = stuck.sim.clone();
                until(
                    &mut stuck.bot,
                    "the venue to fill the first order",
                    || async { (sim.positions().len() == 1).then_some(()) },
                )
                .await;
            }
        }
        let (http, admin) = (stuck.http.clone(), stuck.admin_url.clone());
        until(&mut stuck.bot, "every order decided", || async {
            let orders = admin_json(http.clone(), format!("{admin}/api/orders")).await?;
            (orders.as_array()?.len() == signals.len()).then_some(())
        })
        .await;
        stuck
    }

    pub(crate) async fn ready(&mut self) {
        let (http, admin) = (self.http.clone(), self.admin_url.clone());
        until(&mut self.bot, "the bot to be ready", || async {
            let r = http.get(format!("{admin}/readyz")).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }

    /// After a restart: waits until no order is `intent`/`unknown` any more; returns them.
    pub(crate) async fn settled(&mut self) -> Vec<serde_json::Value> {
        let (http, admin) = (self.http.clone(), self.admin_url.clone());
        until(&mut self.bot, "every order to be resolved", || async {
            let orders = admin_json(http.clone(), format!("{admin}/api/orders")).await?;
            let orders = orders.as_array()?.clone();
            orders
                .iter()
                .all(|o| o["status"] != "intent" && o["status"] != "unknown")
                .then_some(orders)
        })
        .await
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.bot.log).unwrap_or_default()
    }

    pub(crate) fn stop(mut self) {
        self.bot.kill();
        self.sim_stop.trigger();
    }
}
