//! A halt (or an old decision) stops orders already decided: the real binary with intents waiting
//! behind a POST the venue answers slowly, SIGKILLed and restarted. What the venue already has is
//! kept; what it never got is not sent, and ends `cancelled` with the reason.

use crate::crash::SlowPost;
use crate::helpers::ADMIN_TOKEN;
use serde_json::Value;
use sigex::sim::Simulator;
use std::time::Duration;

/// A bot whose first order (a BTC buy) the venue books, fills and answers only after a minute,
/// with an ETH and a second BTC buy decided behind it, still `intent`.
async fn stuck(extra_venue_config: &str) -> SlowPost {
    let stuck = SlowPost::start(
        extra_venue_config,
        &[(1, "BTC/USD"), (2, "ETH/USD"), (3, "BTC/USD")],
    )
    .await;
    assert_eq!(stuck.sim.orders().len(), 1, "only the first has gone out");
    stuck
}

/// The order the venue has, and the two it never got.
fn split(orders: &[Value], sim: &Simulator) -> (Value, Vec<Value>) {
    let at_venue: Vec<String> = sim
        .orders()
        .into_iter()
        .filter_map(|o| o.client_order_id)
        .collect();
    assert_eq!(
        at_venue.len(),
        1,
        "nothing more reached the venue: {orders:?}"
    );
    let (sent, unsent): (Vec<Value>, Vec<Value>) = orders
        .iter()
        .cloned()
        .partition(|o| o["clientOrderId"].as_str() == Some(at_venue[0].as_str()));
    assert_eq!(sent.len(), 1);
    (sent[0].clone(), unsent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_stops_orders_decided_before_it_even_across_a_restart() {
    let mut stuck = stuck("").await;
    let halted = stuck
        .http
        .post(format!("{}/api/admin/halt", stuck.admin_url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"reason": "exchange incident"}))
        .send()
        .await
        .unwrap();
    assert_eq!(halted.status(), 200);
    // Killed while the first POST is still unanswered; the other two were never sent.
    stuck.bot.kill();
    stuck.bot.start();
    stuck.ready().await;
    let orders = stuck.settled().await;
    let (sent, unsent) = split(&orders, &stuck.sim);
    assert_eq!(
        sent["status"], "filled",
        "the venue's order is kept: {sent}"
    );
    assert_eq!(unsent.len(), 2);
    for o in &unsent {
        assert_eq!(o["status"], "cancelled", "{o}");
        let reason = o["droppedReason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("halted") && reason.contains("exchange incident"),
            "{o}"
        );
    }
    assert!(stuck.log().contains("order dropped"), "{}", stuck.log());
    stuck.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opening_order_older_than_max_intent_age_is_dropped_not_sent_late() {
    let mut stuck = stuck("max_intent_age_secs = 1").await;
    let decided = chrono::Utc::now();
    stuck.bot.kill();
    // Down for longer than the orders may wait.
    while chrono::Utc::now() < decided + chrono::Duration::milliseconds(1500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stuck.bot.start();
    stuck.ready().await;
    let orders = stuck.settled().await;
    let (sent, unsent) = split(&orders, &stuck.sim);
    assert_eq!(sent["status"], "filled", "{sent}");
    for o in &unsent {
        assert_eq!(o["status"], "cancelled", "{o}");
        let reason = o["droppedReason"].as_str().unwrap_or_default();
        assert!(reason.contains("max_intent_age_secs = 1"), "{o}");
    }
    stuck.stop();
}
