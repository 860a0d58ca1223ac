//! The bot against a misbehaving venue: injected faults must never cost an order or duplicate one.

use crate::helpers::{spawn_app_full, spawn_app_with_sim, TEST_STRATEGY};
use sigex::sim::{Faults, Probability};
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test]
async fn lost_responses_errors_and_unruly_webhooks_never_duplicate_or_lose_an_order() {
    let app = spawn_app_with_sim(|cfg| {
        cfg.faults = Faults {
            webhook_duplicate: Probability::per_mille(200),
            webhook_delay: Probability::per_mille(200),
            webhook_delay_max: Duration::from_millis(50),
            webhook_reorder: Probability::per_mille(200),
            rest_5xx: Probability::per_mille(200),
            rest_429: Probability::per_mille(200),
            order_lost_response: Probability::per_mille(200),
            ..Faults::default()
        };
    })
    .await;
    // Buy then sell, alternating symbols: each buy opens, each sell closes, so none is refused.
    let script = [
        ("BTC/USD", "buy"),
        ("ETH/USD", "buy"),
        ("BTC/USD", "sell"),
        ("ETH/USD", "sell"),
        ("BTC/USD", "buy"),
        ("ETH/USD", "buy"),
        ("BTC/USD", "sell"),
        ("ETH/USD", "sell"),
    ];
    for (n, (symbol, side)) in script.iter().enumerate() {
        app.send_signal(symbol, side, 90, n as u32 + 1).await;
        app.settled_orders(n + 1).await;
    }
    let ours = app.settled_orders(script.len()).await;
    assert!(ours.iter().all(|o| o["status"] == "filled"), "{ours:?}");
    let at_venue = app.sim.orders();
    assert_eq!(at_venue.len(), script.len(), "one venue order per intent");
    let ids: HashSet<_> = at_venue.iter().map(|o| o.client_order_id.clone()).collect();
    assert_eq!(ids.len(), script.len(), "no clientOrderId twice");
    // Flat again on both sides, as the script intends.
    assert!(app.sim.positions().is_empty(), "{:?}", app.sim.positions());
    let stats = app.sim.stats();
    assert!(
        stats.rest_5xx + stats.rest_429 + stats.lost_responses > 0,
        "the faults struck: {stats:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_throttled_order_waits_for_retry_after_and_is_placed_once() {
    let app = spawn_app_with_sim(|cfg| {
        // With this seed the first POST draws a 429; later ones may too.
        cfg.seed = 1;
        cfg.faults = Faults {
            rest_429: Probability::per_mille(600),
            rest_retry_after_secs: 1,
            ..Faults::default()
        };
    })
    .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let ours = app.settled_orders(1).await;
    assert_eq!(ours[0]["status"], "filled", "{ours:?}");
    let at_venue = app.sim.orders();
    assert_eq!(at_venue.len(), 1, "exactly one order at the venue");
    assert_eq!(
        at_venue[0].client_order_id.as_deref(),
        ours[0]["clientOrderId"].as_str()
    );
    assert!(app.sim.stats().rest_429 > 0, "the 429 struck");
    app.stop().await;
}

#[tokio::test]
async fn a_lost_order_update_is_found_by_the_stale_order_poll() {
    let app = spawn_app_full(
        |cfg| {
            // Every callback is lost: only REST can tell the bot what became of its order.
            cfg.faults = Faults {
                webhook_drop: Probability::ALWAYS,
                ..Faults::default()
            };
        },
        |cfg| cfg.reconcile.stale_after = chrono::Duration::seconds(1),
        TEST_STRATEGY,
    )
    .await;
    // Signals come in as webhooks from the test, not from the simulator, so they still arrive.
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let ours = app.settled_orders(1).await;
    assert_eq!(ours[0]["status"], "filled", "{ours:?}");
    let at_venue = app.sim.orders();
    assert_eq!(at_venue.len(), 1, "exactly one order at the venue");
    assert_eq!(at_venue[0].status, "filled");
    let positions = app.positions().await;
    assert_eq!(positions.len(), 1, "{positions:?}");
    assert!(
        app.sim.stats().webhook_faults.webhooks_dropped > 0,
        "callbacks were dropped"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_order_whose_answer_is_always_lost_is_placed_once_and_its_callbacks_settle_it() {
    // Every POST /orders is processed but its answer never arrives: the bot learns of the order
    // only from its callbacks (which come before any POST outcome) and from the clientOrderId
    // lookup, never by sending it under a new id.
    let app = spawn_app_with_sim(|cfg| {
        cfg.faults = Faults {
            order_lost_response: Probability::ALWAYS,
            ..Faults::default()
        };
    })
    .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let ours = app.settled_orders(1).await;
    assert_eq!(ours[0]["status"], "filled", "{ours:?}");
    let at_venue = app.sim.orders();
    assert_eq!(at_venue.len(), 1, "exactly one order at the venue");
    assert_eq!(at_venue[0].status, "filled");
    assert_eq!(
        at_venue[0].client_order_id.as_deref(),
        ours[0]["clientOrderId"].as_str()
    );
    assert_eq!(app.positions().await.len(), 1);
    assert!(app.sim.stats().lost_responses > 0);
    app.stop().await;
}
