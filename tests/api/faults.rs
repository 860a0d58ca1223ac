//! The bot against a misbehaving venue: injected faults must never cost an order or duplicate one.

use crate::helpers::{buy_request, dec, TestApp, ADMIN_TOKEN, RESTING_LIMIT};
use serde_json::Value;
use sigex::sim::{Faults, Probability, RestRoutes};
use std::collections::HashSet;
use std::time::Duration;

/// Waits for the bot's one order to settle filled and checks the venue holds exactly one order,
/// under the bot's `clientOrderId`; returns both views.
async fn one_filled_order_at_the_venue(app: &TestApp) -> (Vec<Value>, Vec<sigex::sim::SimOrder>) {
    let ours = app.settled_orders(1).await;
    one_filled_order_as_at_the_venue(app, ours)
}

/// Checks the bot's settled `ours` is one filled order, which the venue holds under the bot's
/// `clientOrderId` and nothing else; returns both views.
fn one_filled_order_as_at_the_venue(
    app: &TestApp,
    ours: Vec<Value>,
) -> (Vec<Value>, Vec<sigex::sim::SimOrder>) {
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0]["status"], "filled", "{ours:?}");
    let at_venue = app.sim.orders();
    assert_eq!(at_venue.len(), 1, "exactly one order at the venue");
    assert_eq!(
        at_venue[0].client_order_id.as_deref(),
        ours[0]["clientOrderId"].as_str()
    );
    (ours, at_venue)
}

#[tokio::test]
async fn lost_responses_errors_and_unruly_webhooks_never_duplicate_or_lose_an_order() {
    let app = TestApp::builder()
        .sim(|cfg| {
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
        .spawn()
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
    let app = TestApp::builder()
        .sim(|cfg| {
            // With this seed the first POST draws a 429; later ones may too.
            cfg.seed = 1;
            cfg.faults = Faults {
                rest_429: Probability::per_mille(600),
                rest_retry_after_secs: 1,
                ..Faults::default()
            };
        })
        .spawn()
        .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    one_filled_order_at_the_venue(&app).await;
    assert!(app.sim.stats().rest_429 > 0, "the 429 struck");
    app.stop().await;
}

#[tokio::test]
async fn a_lost_order_update_is_found_by_the_stale_order_poll() {
    let app = TestApp::builder()
        .without_callbacks()
        .manual_clock()
        .spawn()
        .await;
    // Signals come in as webhooks from the test, not from the simulator, so they still arrive.
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let ours = app.settled_by_stale_poll(1).await;
    let (_, at_venue) = one_filled_order_as_at_the_venue(&app, ours);
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
    let app = TestApp::builder()
        .sim(|cfg| {
            cfg.faults = Faults {
                order_lost_response: Probability::ALWAYS,
                ..Faults::default()
            };
        })
        .spawn()
        .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let (_, at_venue) = one_filled_order_at_the_venue(&app).await;
    assert_eq!(at_venue[0].status, "filled");
    assert_eq!(app.positions().await.len(), 1);
    assert!(app.sim.stats().lost_responses > 0);
    app.stop().await;
}

#[tokio::test]
async fn an_order_booked_then_answered_500_is_placed_once_and_tracked_with_its_venue_id() {
    // Every POST /orders books the order, then answers 500: the bot must not take the 500 for a
    // failure (and must not send the order again under a new id or the same one).
    let app = TestApp::builder()
        .sim(|cfg| {
            cfg.faults = Faults {
                processed_5xx: Probability::ALWAYS,
                ..Faults::default()
            };
        })
        .spawn()
        .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let (ours, at_venue) = one_filled_order_at_the_venue(&app).await;
    assert_eq!(
        ours[0]["orderId"].as_str(),
        Some(at_venue[0].order_id.as_str())
    );
    assert_eq!(at_venue[0].status, "filled");
    assert_eq!(
        app.sim.requests("POST", "/api/v1/orders"),
        1,
        "the order was sent once: the 500 was resolved by asking, not by sending again"
    );
    let positions = app.positions().await;
    assert_eq!(positions.len(), 1, "{positions:?}");
    let venue_positions = app.sim.positions();
    assert_eq!(venue_positions.len(), 1, "{venue_positions:?}");
    let quantity = dec(&positions[0]["quantity"]);
    assert_eq!(
        quantity, venue_positions[0].quantity,
        "{positions:?} vs {venue_positions:?}"
    );
    assert_eq!(quantity, at_venue[0].filled_quantity);
    assert_eq!(app.sim.stats().processed_5xx, 1);
    app.stop().await;
}

/// [`RESTING_LIMIT`], cancelled when it has not filled within a second (by the bot's clock: see
/// [`UNFILLED_TIMEOUT`]).
fn resting_limit_with_timeout() -> String {
    format!("{RESTING_LIMIT}unfilled_timeout_secs = 1\n")
}

/// The `unfilled_timeout_secs` of [`resting_limit_with_timeout`].
const UNFILLED_TIMEOUT: chrono::Duration = chrono::Duration::seconds(1);
/// Longer than any retry delay of a first unknown outcome (`executor::retry_delay`).
const FIRST_RETRY_CEILING: chrono::Duration = chrono::Duration::seconds(1);

/// Places one resting limit order and waits until its timed-out cancel is closed; returns the
/// order as the admin API shows it.
async fn timed_out_order_once_its_cancel_is_closed(app: &TestApp) -> Value {
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    cancel_closed(app).await
}

/// Waits for the one order whose cancel the venue has accepted.
async fn cancel_closed(app: &TestApp) -> Value {
    app.wait_for("the timed-out order's cancel to close", || async {
        app.orders()
            .await
            .into_iter()
            .find(|o| o["status"] == "cancelled" && o["cancel"]["state"] == "accepted")
    })
    .await
}

/// Places one resting limit order and waits until it is open at the venue.
async fn resting_order(app: &TestApp) -> Value {
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    app.wait_for("the order to rest at the venue", || async {
        app.orders()
            .await
            .into_iter()
            .find(|o| o["status"] == "open" && o["orderId"].is_string())
    })
    .await
}

fn delete_path(order: &Value) -> String {
    format!("/api/v1/orders/{}", order["orderId"].as_str().unwrap())
}

async fn a_cancel_whose_answer_never_arrives_is_resolved_by_asking(fault: Faults) {
    let app = TestApp::builder()
        .sim(|cfg| cfg.faults = fault)
        .strategy(&resting_limit_with_timeout())
        .manual_clock()
        .spawn()
        .await;
    let open = resting_order(&app).await;
    assert!(open["cancel"].is_null(), "not timed out yet: {open}");
    // The order's time is up: the bot sends its DELETE and cannot know what became of it.
    app.advance(UNFILLED_TIMEOUT);
    app.wait_for("the cancel's outcome to be unknown", || async {
        let orders = app.orders().await;
        (orders[0]["cancel"]["state"] == "unknown").then_some(())
    })
    .await;
    // The time to look again has come: it asks the venue instead of sending a second DELETE.
    app.advance(FIRST_RETRY_CEILING);
    let order = cancel_closed(&app).await;
    assert_eq!(order["clientOrderId"], open["clientOrderId"]);
    assert_eq!(order["cancel"]["reason"], "unfilled_timeout", "{order}");
    assert_eq!(
        order["cancel"]["attempts"], 1,
        "one unknown outcome: {order}"
    );
    let at_venue = app.sim.orders();
    assert_eq!(at_venue.len(), 1);
    assert_eq!(at_venue[0].status, "cancelled");
    assert_eq!(
        app.sim.requests("DELETE", &delete_path(&order)),
        1,
        "no second DELETE once the venue reports the order cancelled"
    );
    let (status, metrics) = app.admin_get_raw("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"sigex_order_requests_total{request="cancel",outcome="unknown"} 1"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_cancel_done_at_the_venue_but_answered_500_ends_cancelled_with_one_delete() {
    a_cancel_whose_answer_never_arrives_is_resolved_by_asking(Faults {
        processed_5xx: Probability::ALWAYS,
        rest_routes: RestRoutes::Cancels,
        ..Faults::default()
    })
    .await;
}

#[tokio::test]
async fn a_cancel_done_at_the_venue_whose_answer_is_lost_ends_cancelled_with_one_delete() {
    a_cancel_whose_answer_never_arrives_is_resolved_by_asking(Faults {
        order_lost_response: Probability::ALWAYS,
        rest_routes: RestRoutes::Cancels,
        ..Faults::default()
    })
    .await;
}

#[tokio::test]
async fn a_cancel_answered_429_waits_for_retry_after_then_succeeds() {
    // On the system clock: the point is that the bot waited Retry-After's real second.
    let app = TestApp::builder()
        .sim(|cfg| {
            // Only the first DELETE is refused.
            cfg.faults = Faults {
                rest_429: Probability::ALWAYS,
                rest_retry_after_secs: 1,
                rest_routes: RestRoutes::Cancels,
                rest_fault_limit: Some(1),
                ..Faults::default()
            };
        })
        .strategy(&resting_limit_with_timeout())
        .spawn()
        .await;
    let order = timed_out_order_once_its_cancel_is_closed(&app).await;
    assert_eq!(app.sim.stats().rest_429, 1);
    assert_eq!(app.sim.orders()[0].status, "cancelled");
    assert_eq!(
        app.sim.requests("DELETE", &delete_path(&order)),
        2,
        "the throttled DELETE, then the one that cancelled"
    );
    assert_eq!(order["cancel"]["attempts"], 1, "{order}");
    // The second DELETE waited for Retry-After: the bot's own record says so.
    let at = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(order["cancel"][field].as_str().unwrap()).unwrap()
    };
    assert!(
        at("doneAt") - at("requestedAt") >= chrono::Duration::seconds(1),
        "{order}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_cancel_in_flight_when_the_bot_stopped_is_resumed_after_a_restart() {
    let mut app = TestApp::builder().strategy(RESTING_LIMIT).spawn().await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let open = app
        .wait_for("the order to rest at the venue", || async {
            app.orders()
                .await
                .into_iter()
                .find(|o| o["status"] == "open")
        })
        .await;
    // The bot stops while a DELETE's outcome is unknown (as if it died right after sending it).
    app.stop_bot().await;
    let db = app.database().connect().await;
    let now = sigex::clock::ts(chrono::Utc::now());
    sqlx::query(
        "UPDATE orders SET cancel_state = 'unknown', cancel_reason = 'unfilled_timeout',
             cancel_requested_at = ?, cancel_attempts = 1, cancel_next_at = ?,
             cancel_error = 'timeout: no answer'
         WHERE client_order_id = ?",
    )
    .bind(&now)
    .bind(&now)
    .bind(open["clientOrderId"].as_str().unwrap())
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
    app.start_again().await;
    let order = app
        .wait_for("the resumed cancel to close", || async {
            app.orders()
                .await
                .into_iter()
                .find(|o| o["status"] == "cancelled" && o["cancel"]["state"] == "accepted")
        })
        .await;
    assert_eq!(order["clientOrderId"], open["clientOrderId"]);
    assert_eq!(app.sim.orders()[0].status, "cancelled");
    // The venue still reported the order working, so the DELETE was sent again, once.
    assert_eq!(app.sim.requests("DELETE", &delete_path(&order)), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_cancel_refused_as_not_cancellable_is_resolved_by_asking_the_venue() {
    // Callbacks are lost, so the bot still believes in an order the venue has already filled.
    let app = TestApp::builder().without_callbacks().token().spawn().await;
    let venue = app.venue_client();
    let request = buy_request("refused-cancel-1", "BTC/USD", "0.01", None);
    let sigex::venue::SubmitOutcome::Accepted(placed) = venue.place_order(&request).await else {
        panic!("the simulator refused the market order");
    };
    app.wait_for("the venue to fill the order", || async {
        app.sim
            .orders()
            .into_iter()
            .find(|o| o.order_id == placed.order_id && o.status == "filled")
    })
    .await;
    app.database()
        .insert_open_order(&request, &placed.order_id)
        .await;

    let r = app
        .admin_post("/api/orders/refused-cancel-1/cancel", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(
        r.status(),
        200,
        "the order is no longer working: the cancel is done"
    );
    let order: Value = r.json().await.unwrap();
    assert_eq!(
        order["status"], "filled",
        "the venue's word, not a guess: {order}"
    );
    assert_eq!(
        order["filledQuantity"].to_string().trim_matches('"'),
        "0.01",
        "{order}"
    );
    assert_eq!(order["cancel"]["state"], "accepted", "{order}");
    assert!(
        order["cancel"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("409 not_cancellable")),
        "the refusal is kept: {order}"
    );
    let path = format!("/api/v1/orders/{}", placed.order_id);
    assert_eq!(app.sim.requests("DELETE", &path), 1);
    assert!(app.sim.requests("GET", &path) >= 1, "the venue was asked");
    app.stop().await;
}
