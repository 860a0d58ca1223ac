//! Chaos: the real `sigex` binary against a simulator that drops, duplicates, delays and
//! reorders webhooks and answers REST with 5xx, 429, timeouts and lost responses, while the bot
//! is SIGKILLed and restarted at seeded random moments. At the end every intent has exactly one
//! venue order and the bot's orders and positions equal the simulator's.
//!
//! Size: `SIGEX_CHAOS_SIGNALS` (default 500) signals, `SIGEX_CHAOS_KILLS` (default 10) kills;
//! `SIGEX_CHAOS_SEED` replays a run (the seed is printed).

use crate::helpers::process::{
    alongside, join_all, kill_and_restart_at, rig, while_running, Bot, Rig,
};
use crate::helpers::{dec, get_json, post_until_acknowledged, signal_body};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use sigex::sim::{Faults, Probability, RestRoutes};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_through_faults_and_sigkills_leave_one_venue_order_per_intent_and_equal_books() {
    let seed = env_or("SIGEX_CHAOS_SEED", rand::thread_rng().gen());
    let signals = env_or("SIGEX_CHAOS_SIGNALS", 500) as usize;
    let kills = env_or("SIGEX_CHAOS_KILLS", 10) as usize;
    println!(
        "chaos: SIGEX_CHAOS_SEED={seed} SIGEX_CHAOS_SIGNALS={signals} SIGEX_CHAOS_KILLS={kills}"
    );
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let rig = rig(dir.path(), |c| {
        c.seed = seed;
        c.faults = chaos_faults();
    })
    .await;
    // Dropped callbacks are found by the stale-order poll: make it quick.
    rig.append_config("[reconcile]\nstale_after_secs = 1\n");
    let Rig {
        sim,
        sim_stop,
        webhook_url,
        admin_url,
        config,
        ..
    } = rig;
    let bot = Bot::started(config, dir.path());
    // The bot is watched throughout: if it dies, the test says so with its log.
    while_running(&bot, async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();

        // Buy/sell alternating per symbol keeps positions inside the strategy's limit.
        let script: Vec<String> = (0..signals)
            .map(|n| {
                let symbol = ["BTC/USD", "ETH/USD"][n % 2];
                let side = if (n / 2) % 2 == 0 { "buy" } else { "sell" };
                signal_body(symbol, side, 90, n as u32 + 1)
            })
            .collect();
        let mut kill_at: Vec<usize> = (0..kills).map(|_| rng.gen_range(1..signals)).collect();
        kill_at.sort_unstable();
        let acked = Arc::new(AtomicUsize::new(0));
        let mut sender = JoinSet::new();
        {
            let (http, url, acked) = (http.clone(), webhook_url.clone(), acked.clone());
            sender.spawn(async move {
                for body in script {
                    post_until_acknowledged(&http, &url, &body, 3000, Duration::from_millis(20))
                        .await;
                    acked.fetch_add(1, Ordering::SeqCst);
                    // About 100 signals a second.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        }
        // A sender that gives up fails the test at once: the kills would wait for it forever.
        alongside(&mut sender, async {
            for at in kill_at {
                kill_and_restart_at(&bot, &acked, at).await;
            }
        })
        .await;
        join_all(&mut sender).await;

        let get = |path: &'static str| get_json(&http, format!("{admin_url}{path}"));
        let terminal = |s: &str| matches!(s, "filled" | "cancelled" | "rejected" | "expired");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let orders = loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "orders never settled (seed {seed}); see {}",
                dir.path().join("bot.log").display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (Some(counts), Some(orders)) = (
                get("/api/events").await,
                get("/api/orders?limit=100000").await,
            ) else {
                continue;
            };
            let orders = orders.as_array().unwrap().clone();
            let venue = sim.orders();
            let settled = counts.get("pending").is_none()
                && orders
                    .iter()
                    .all(|o| terminal(o["status"].as_str().unwrap_or("")))
                && venue.iter().all(|o| terminal(&o.status))
                && venue.len() == orders.len();
            if settled {
                break orders;
            }
        };
        // Every intent has exactly one venue order, and both sides agree on each.
        let venue: BTreeMap<String, _> = sim
            .orders()
            .into_iter()
            .map(|o| (o.client_order_id.clone().unwrap(), o))
            .collect();
        assert_eq!(
            venue.len(),
            sim.orders().len(),
            "a clientOrderId twice at the venue (seed {seed})"
        );
        let ours: BTreeSet<String> = orders
            .iter()
            .map(|o| o["clientOrderId"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ours, venue.keys().cloned().collect(), "seed {seed}");
        for o in &orders {
            let v = &venue[o["clientOrderId"].as_str().unwrap()];
            assert_eq!(o["status"], v.status.as_str(), "seed {seed}: {o}");
            assert_eq!(
                dec(&o["filledQuantity"]),
                v.filled_quantity,
                "seed {seed}: {o}"
            );
        }
        assert!(!ours.is_empty(), "the run placed orders");
        let mut decided: BTreeMap<String, usize> = BTreeMap::new();
        if let Some(decisions) = get("/api/signals?limit=100000").await {
            for d in decisions.as_array().unwrap() {
                *decided
                    .entry(d["decision"].as_str().unwrap_or("").to_owned())
                    .or_default() += 1;
            }
        }
        println!(
            "chaos: {} orders, decisions {decided:?}, venue faults {:?}",
            orders.len(),
            sim.stats()
        );
        // Positions by our fills equal the venue's.
        let positions = get("/api/positions").await.unwrap();
        let ours: BTreeMap<String, Decimal> = positions
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["symbol"].as_str().unwrap().to_owned(),
                    dec(&p["quantity"]),
                )
            })
            .filter(|(_, q)| !q.is_zero())
            .collect();
        let theirs: BTreeMap<String, Decimal> = sim
            .positions()
            .into_iter()
            .map(|p| {
                let q = if p.side == "short" {
                    -p.quantity.abs()
                } else {
                    p.quantity
                };
                (p.symbol, q)
            })
            .filter(|(_, q)| !q.is_zero())
            .collect();
        assert_eq!(ours, theirs, "seed {seed}: positions differ");
        // The strategy's limit: max_position_notional 2500 (at the venue's mark price).
        for p in sim.positions() {
            let notional = p.quantity.abs() * p.mark_price;
            assert!(
                notional <= Decimal::from(2500),
                "seed {seed}: {} position notional {notional}",
                p.symbol
            );
        }
        // Fees and PnL from our fills equal the venue's once every ended order's fill list has been
        // read. Realized PnL alone depends on the order fills were booked in (callbacks reorder);
        // realized plus unrealized at the venue's mark does not.
        let venue_books = sim.balance();
        let marks: BTreeMap<String, Decimal> = sim
            .positions()
            .into_iter()
            .map(|p| (p.symbol, p.mark_price))
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        let positions = loop {
            let positions = get("/api/positions").await.unwrap();
            let fees: Decimal = positions
                .as_array()
                .unwrap()
                .iter()
                .map(|p| dec(&p["fees"]))
                .sum();
            if fees == venue_books.fees_paid {
                break positions;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "seed {seed}: fees never settled: ours {fees}, venue {}",
                venue_books.fees_paid
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let ours_pnl: Decimal = positions
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let q = dec(&p["quantity"]);
                let mark = marks
                    .get(p["symbol"].as_str().unwrap())
                    .copied()
                    .unwrap_or_default();
                let unrealized = if q.is_zero() {
                    Decimal::ZERO
                } else {
                    q * (mark - dec(&p["averagePrice"]))
                };
                dec(&p["realizedPnl"]) + unrealized
            })
            .sum();
        let venue_pnl = venue_books.realized_pnl + venue_books.unrealized_pnl;
        assert!(
            (ours_pnl - venue_pnl).abs() <= Decimal::new(1, 4),
            "seed {seed}: PnL ours {ours_pnl}, venue {venue_pnl}"
        );
    })
    .await;
    bot.lock().unwrap().kill();
    sim_stop.trigger();
}

/// Every webhook and order-request fault, at rates that strike many times in a run.
fn chaos_faults() -> Faults {
    Faults {
        webhook_drop: Probability::per_mille(50),
        webhook_duplicate: Probability::per_mille(100),
        webhook_delay: Probability::per_mille(100),
        webhook_delay_max: Duration::from_millis(200),
        webhook_reorder: Probability::per_mille(100),
        rest_5xx: Probability::per_mille(30),
        rest_429: Probability::per_mille(30),
        rest_retry_after_secs: 1,
        rest_timeout: Probability::per_mille(10),
        rest_timeout_after: Duration::from_secs(3),
        order_lost_response: Probability::per_mille(30),
        processed_5xx: Probability::per_mille(20),
        // DELETEs would meet the same faults; this script's market orders need none (cancels
        // under faults are covered in faults.rs).
        rest_routes: RestRoutes::OrderRequests,
        ..Faults::default()
    }
}

/// The harness itself: when the sender gives up ("never acknowledged"), the kill loop is left
/// waiting for acknowledgements that will never come. The test must fail at once with the
/// sender's panic, not hang.
#[tokio::test]
async fn a_sender_that_panics_fails_the_chaos_test_at_once_with_its_panic() {
    let dir = tempfile::tempdir().unwrap();
    // Never started: the kill loop waits for acknowledgements before it touches the bot.
    let bot = Arc::new(Mutex::new(Bot::new(
        dir.path().join("sigex.toml"),
        dir.path(),
    )));
    let acked = Arc::new(AtomicUsize::new(0));
    let mut sender = JoinSet::new();
    sender.spawn(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        panic!("never acknowledged after 3000 attempts: {{\"event\":\"signal.generated\"}}");
    });
    let harness = tokio::spawn(async move {
        alongside(&mut sender, kill_and_restart_at(&bot, &acked, 1)).await;
    });
    let failure = tokio::time::timeout(Duration::from_secs(60), harness)
        .await
        .expect("the harness failed instead of waiting for the kill loop")
        .unwrap_err();
    let panic = failure.into_panic();
    let why = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(why.starts_with("never acknowledged"), "{why:?}");
}
