//! `sigex demo` as a newcomer runs it: the shipped strategies, under the shipped limits, against
//! the simulator with its faults. Every strategy must trade, some signals must be refused for
//! visible reasons, faults must strike and be survived, and positions must open and close.

use crate::helpers::{dec, get_json};
use rust_decimal::Decimal;
use sigex::demo::{Demo, DemoOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What the demo has shown so far, read from its admin API and the simulator.
#[derive(Debug, Default)]
struct Seen {
    filled_by_strategy: BTreeMap<String, usize>,
    refusal_rules: BTreeSet<String>,
    closed_positions: usize,
    rest_faults: u64,
}

impl Seen {
    fn everything(&self, strategies: &[&str]) -> bool {
        strategies
            .iter()
            .all(|s| self.filled_by_strategy.get(*s).copied().unwrap_or(0) > 0)
            && !self.refusal_rules.is_empty()
            && self.closed_positions > 0
            && self.rest_faults > 0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_demo_trades_every_shipped_strategy_refuses_some_signals_and_survives_faults() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(&DemoOptions {
        duration: None,
        signal_interval: Duration::from_millis(100),
        data_dir: Some(dir.path().to_owned()),
        seed: 7,
        faults: true,
        admin_listen: "127.0.0.1:0".parse().unwrap(),
    })
    .await
    .unwrap();
    let strategies = ["momentum", "sol_high_conviction", "eth_oversold_risk"];
    let admin = demo.admin_url();
    let http = reqwest::Client::new();
    // Outcomes, not timing: wait (bounded, for a loaded machine) until each has been seen.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let seen = loop {
        let mut seen = Seen::default();
        if let Some(orders) = get_json(&http, format!("{admin}/api/orders?limit=10000")).await {
            for o in orders.as_array().unwrap() {
                if dec(&o["filledQuantity"]) > Decimal::ZERO {
                    *seen
                        .filled_by_strategy
                        .entry(o["strategy"].as_str().unwrap().to_owned())
                        .or_default() += 1;
                }
            }
        }
        if let Some(signals) = get_json(&http, format!("{admin}/api/signals?limit=10000")).await {
            for s in signals.as_array().unwrap() {
                if s["decision"] == "refused" {
                    let reason = s["reason"].as_str().unwrap();
                    seen.refusal_rules
                        .insert(reason.split(':').next().unwrap().to_owned());
                }
            }
        }
        if let Some(closed) = get_json(&http, format!("{admin}/api/closed-positions")).await {
            seen.closed_positions = closed.as_array().unwrap().len();
        }
        let stats = demo.sim.stats();
        seen.rest_faults = stats.rest_5xx
            + stats.rest_429
            + stats.rest_timeouts
            + stats.lost_responses
            + stats.processed_5xx;
        if seen.everything(&strategies) {
            break seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the demo did not show everything: {seen:?}\n{}",
            demo.progress().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("demo: {seen:?}");

    // The progress line's order counts add up to the orders the API lists.
    let line = demo.progress().await.unwrap();
    let orders = get_json(&http, format!("{admin}/api/orders?limit=10000"))
        .await
        .unwrap();
    let total = orders.as_array().unwrap().len() as i64;
    let part = line.split("| orders ").nth(1).unwrap();
    let (stated, rest) = part.split_once(" (").unwrap();
    let parts: i64 = rest
        .split(')')
        .next()
        .unwrap()
        .split(", ")
        .map(|p| p.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert!(stated.parse::<i64>().unwrap() <= total, "{line}");
    assert_eq!(parts, stated.parse::<i64>().unwrap(), "{line}");

    // Every order the bot holds as final is final at the venue with the same status, and the
    // venue status shown beside it agrees.
    let venue: BTreeMap<String, String> = demo
        .sim
        .orders()
        .into_iter()
        .filter_map(|o| Some((o.client_order_id?, o.status)))
        .collect();
    for o in orders.as_array().unwrap() {
        let status = o["status"].as_str().unwrap();
        if matches!(status, "filled" | "cancelled" | "rejected" | "expired") {
            let id = o["clientOrderId"].as_str().unwrap();
            if status != "rejected" {
                assert_eq!(venue.get(id).map(String::as_str), Some(status), "{o}");
            }
            // A definite 4xx is our own record of a refusal: the venue has no status for it.
            if !(status == "rejected" && o["venueStatus"].is_null()) {
                assert_eq!(o["venueStatus"].as_str(), Some(status), "{o}");
            }
        }
    }
    demo.stop().await;
}
