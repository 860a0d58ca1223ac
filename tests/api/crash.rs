//! Durability under SIGKILL: the real `sigex` binary receives signed webhooks from concurrent
//! senders that retry like the venue does, is killed mid-stream and restarted; every webhook that
//! got a 200 must be processed exactly once, and every order intent must exist exactly once at the
//! venue.

use crate::helpers::process::{
    alongside, assert_one_venue_order_per_intent, join_all, kill_and_restart_at, rig,
    while_running, Bot, Rig,
};
use crate::helpers::{get_json, post_signed_to, post_until_acknowledged, signal_body, ADMIN_TOKEN};
use sigex::sim::{Faults, Probability, Simulator};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SENDERS: usize = 4;
const PER_SENDER: usize = 150;
/// Kill the bot when this many webhooks have been acknowledged.
const KILL_AT: &[usize] = &[100, 250, 420];

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
        ..
    } = rig(dir.path(), |_| {}).await;
    let bot = Bot::started(config, dir.path());
    // The bot is watched throughout: if it dies, the test says so with its log.
    while_running(&bot, async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();

        let acked = Arc::new(Mutex::new(Vec::<(String, &'static str)>::new()));
        let acked_count = Arc::new(AtomicUsize::new(0));
        let failed_sends = Arc::new(AtomicUsize::new(0));
        let mut senders = tokio::task::JoinSet::new();
        for sender in 0..SENDERS {
            let (http, url, acked, acked_count, failed_sends) = (
                http.clone(),
                webhook_url.clone(),
                acked.clone(),
                acked_count.clone(),
                failed_sends.clone(),
            );
            senders.spawn(async move {
                for n in 0..PER_SENDER {
                    let (body, kind) = body(sender, n);
                    // Like the venue: retry until acknowledged.
                    let failed = post_until_acknowledged(
                        &http,
                        &url,
                        &body,
                        2000,
                        Duration::from_millis(10),
                    )
                    .await;
                    acked.lock().unwrap().push((body.clone(), kind));
                    acked_count.fetch_add(1, Ordering::SeqCst);
                    failed_sends.fetch_add(failed, Ordering::SeqCst);
                }
            });
        }
        // A sender that gives up fails the test at once: the kills would wait for it forever.
        alongside(&mut senders, async {
            for &at in KILL_AT {
                kill_and_restart_at(&bot, &acked_count, at).await;
            }
        })
        .await;
        join_all(&mut senders).await;
        // The kills really landed mid-stream: senders saw the bot gone and had to retry.
        assert!(
            failed_sends.load(Ordering::SeqCst) > 0,
            "no send ever failed: the bot was not down mid-stream"
        );

        // Every acknowledged webhook is in the inbox exactly once and processed; orders settle.
        let get = |path: &'static str| get_json(&http, format!("{admin_url}{path}"));
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
        assert_one_venue_order_per_intent(&sim, &local);
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
    let state = get_json(
        &stuck.http,
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

/// The real binary (with the admin token [`ADMIN_TOKEN`]) against a simulator that books, fills and answers the
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
        let rig = rig(dir.path(), |c| {
            c.faults = Faults {
                order_slow_response: Probability::ALWAYS,
                rest_timeout_after: Duration::from_secs(60),
                rest_fault_limit: Some(1),
                // What the bot learns about its orders, it learns by asking.
                webhook_drop: Probability::ALWAYS,
                ..Faults::default()
            }
        })
        .await;
        let token_file = dir.path().join("admin-token");
        std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
        rig.edit_config(|text| {
            text.replace(
                "request_timeout_ms = 2000",
                &format!("request_timeout_ms = 120000\n{extra_venue_config}"),
            )
            .replace(
                "[admin]\n",
                &format!("[admin]\ntoken_file = \"{}\"\n", token_file.display()),
            )
        });
        let Rig {
            sim,
            sim_stop,
            webhook_url,
            admin_url,
            config,
            ..
        } = rig;
        let mut bot = Bot::new(config, dir.path());
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
                stuck
                    .bot
                    .until("the venue to fill the first order", || async {
                        (sim.positions().len() == 1).then_some(())
                    })
                    .await;
            }
        }
        let (http, admin) = (stuck.http.clone(), stuck.admin_url.clone());
        stuck
            .bot
            .until("every order decided", || async {
                let orders = get_json(&http, format!("{admin}/api/orders")).await?;
                (orders.as_array()?.len() == signals.len()).then_some(())
            })
            .await;
        stuck
    }

    pub(crate) async fn ready(&mut self) {
        let (http, admin) = (self.http.clone(), self.admin_url.clone());
        self.bot
            .until("the bot to be ready", || async {
                let r = http.get(format!("{admin}/readyz")).send().await.ok()?;
                (r.status() == 200).then_some(())
            })
            .await;
    }

    /// After a restart: waits until no order is `intent`/`unknown` any more; returns them.
    pub(crate) async fn settled(&mut self) -> Vec<serde_json::Value> {
        let (http, admin) = (self.http.clone(), self.admin_url.clone());
        self.bot
            .until("every order to be resolved", || async {
                let orders = get_json(&http, format!("{admin}/api/orders")).await?;
                let orders = orders.as_array()?.clone();
                orders
                    .iter()
                    .all(|o| o["status"] != "intent" && o["status"] != "unknown")
                    .then_some(orders)
            })
            .await
    }

    pub(crate) fn log(&self) -> String {
        self.bot.log_text()
    }

    pub(crate) fn stop(mut self) {
        self.bot.kill();
        self.sim_stop.trigger();
    }
}
