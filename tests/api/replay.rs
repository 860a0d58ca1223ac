//! Captured webhooks sent again: identity comes from the signed bytes only, an event outside the
//! freshness window is kept but never applied, and state that only moves forward never moves back.

use crate::helpers::{signal_body, TestApp};
use chrono::{Duration, Utc};
use serde_json::{json, Value};

impl TestApp {
    /// POSTs `body`, signed, with extra headers; returns the status and the answer's `status`.
    async fn deliver(&self, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let r = self.post_signed_with(body, headers).await;
        let status = r.status().as_u16();
        let answer: Value = r.json().await.unwrap_or_default();
        (status, answer["status"].as_str().unwrap_or("").to_owned())
    }

    /// A signed `{"event", "timestamp", "data"}` dated `at`.
    async fn deliver_dated(&self, event: &str, at: chrono::DateTime<Utc>, data: Value) {
        let body = json!({"event": event, "timestamp": sigex::clock::ts(at), "data": data});
        let (status, _) = self.deliver(&body.to_string(), &[]).await;
        assert_eq!(status, 200, "{event} refused");
    }

    /// Sends a `test` event and waits until it is processed: events are processed in arrival
    /// order, so everything sent before it has been handled too.
    async fn barrier(&self, n: u32) {
        let body = json!({"event": "test", "data": {"message": format!("barrier {n}")}});
        let (status, _) = self.deliver(&body.to_string(), &[]).await;
        assert_eq!(status, 200);
        self.wait_for("the barrier event", || async {
            let events = self.get("/api/events/recent?limit=1000").await;
            events
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["eventType"] == "test" && e["status"] == "processed")
                .then_some(())
        })
        .await;
    }

    async fn dead_letters(&self, n: usize) -> Vec<Value> {
        self.wait_for("the dead letters", || async {
            let dead = self.get("/api/events/recent?status=dead&limit=100").await;
            let dead = dead.as_array().unwrap().clone();
            (dead.len() >= n).then_some(dead)
        })
        .await
    }
}

#[tokio::test]
async fn a_signal_replayed_under_made_up_headers_places_no_second_order() {
    let app = TestApp::spawn().await;
    let body = signal_body("BTC/USD", "buy", 90, 1);
    let (status, word) = app.deliver(&body, &[("X-Webhook-Id", "wh-evt-1")]).await;
    assert_eq!((status, word.as_str()), (200, "accepted"));
    app.settled_orders(1).await;
    // An attacker (or a confused proxy) sends the captured body again with new ids.
    for forged in ["wh-evt-2", "replay-0001", ""] {
        let (status, word) = app.deliver(&body, &[("X-Webhook-Id", forged)]).await;
        assert_eq!((status, word.as_str()), (200, "duplicate"), "{forged:?}");
    }
    app.barrier(1).await;
    assert_eq!(app.signals().await.len(), 1, "one decision");
    assert_eq!(app.sim.orders().len(), 1, "one venue order");
    // The header is kept for display only.
    let events = app.get("/api/events/recent?limit=10").await;
    let signal = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["eventType"] == "signal.generated")
        .unwrap()
        .clone();
    assert_eq!(signal["webhookId"], "wh-evt-1", "{signal}");
    assert_eq!(
        signal["dedupeKey"],
        sigex::inbox::dedupe_key(body.as_bytes()),
        "{signal}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_re_serialised_body_is_a_duplicate() {
    let app = TestApp::spawn().await;
    let body = signal_body("BTC/USD", "buy", 90, 1);
    assert_eq!(app.deliver(&body, &[]).await.1, "accepted");
    // The same event as another serialiser writes it: keys in reverse order, spaces, newlines.
    let value: Value = serde_json::from_str(&body).unwrap();
    let mut fields: Vec<(&String, &Value)> = value.as_object().unwrap().iter().collect();
    fields.reverse();
    let reordered = format!(
        "{{\n  {}\n}}",
        fields
            .iter()
            .map(|(k, v)| format!("{k:?} : {}", serde_json::to_string_pretty(v).unwrap()))
            .collect::<Vec<_>>()
            .join(",\n  ")
    );
    assert_ne!(reordered, body);
    assert_eq!(
        app.deliver(&reordered, &[]).await,
        (200, "duplicate".into())
    );
    app.barrier(1).await;
    assert_eq!(app.signals().await.len(), 1);
    assert_eq!(app.settled_orders(1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn stale_signed_signals_alerts_and_balances_are_dead_letters_and_change_nothing() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let balance =
        |total: u32| json!({"asset": "USD", "available": total, "locked": 0, "total": total});
    app.deliver_dated("account.balance_updated", now, balance(10_000))
        .await;
    // Two days old, as in a captured-and-replayed attack; and one dated well in the future.
    let old = now - Duration::days(2);
    let mut signal: Value = serde_json::from_str(&signal_body("BTC/USD", "buy", 90, 1)).unwrap();
    signal["timestamp"] = sigex::clock::ts(old).into();
    let (status, _) = app.deliver(&signal.to_string(), &[]).await;
    assert_eq!(status, 200, "acknowledged, so the venue stops retrying");
    let halt_all =
        json!({"level": "critical", "title": "exchange incident", "affectedSymbols": []});
    app.deliver_dated("system.alert", old, halt_all.clone())
        .await;
    app.deliver_dated("account.balance_updated", old, balance(1))
        .await;
    app.deliver_dated("system.alert", now + Duration::minutes(10), halt_all)
        .await;

    let dead = app.dead_letters(4).await;
    assert_eq!(dead.len(), 4, "{dead:?}");
    for d in &dead {
        let error = d["error"].as_str().unwrap_or("");
        assert!(error.starts_with("stale: "), "{d}");
    }
    assert!(app.signals().await.is_empty(), "no decision");
    assert!(app.sim.orders().is_empty(), "no order");
    let state = app.get("/api/trading-state").await;
    assert_eq!(state["state"], "active", "{state}");
    assert!(state["states"].as_array().unwrap().is_empty(), "{state}");
    let balances = app.get("/api/balances").await;
    assert_eq!(balances[0]["total"].to_string(), "10000", "{balances}");
    app.stop().await;
}

#[tokio::test]
async fn a_balance_or_position_report_older_than_the_one_held_is_not_applied() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let balance =
        |total: u32| json!({"asset": "USD", "available": total, "locked": 0, "total": total});
    let position = |quantity: &str| json!({"symbol": "ETH/USD", "side": "long", "quantity": quantity, "averagePrice": 3000});
    // Both fresh, delivered out of order: the later report arrives first.
    app.deliver_dated("account.balance_updated", now, balance(9_000))
        .await;
    app.deliver_dated(
        "account.balance_updated",
        now - Duration::seconds(30),
        balance(50_000),
    )
    .await;
    app.deliver_dated("position.updated", now, position("2"))
        .await;
    app.deliver_dated(
        "position.updated",
        now - Duration::seconds(30),
        position("5"),
    )
    .await;
    app.barrier(1).await;
    let balances = app.get("/api/balances").await;
    assert_eq!(balances[0]["total"].to_string(), "9000", "{balances}");
    // The venue's view of a position is only in the database until we hold one ourselves.
    let db = app.database().connect().await;
    let venue_quantity: String =
        sqlx::query_scalar("SELECT quantity FROM venue_positions WHERE symbol = 'ETH/USD'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(venue_quantity, "2");
    db.close().await;
    let dead = app.get("/api/events/recent?status=dead&limit=10").await;
    assert!(dead.as_array().unwrap().is_empty(), "{dead}");
    app.stop().await;
}
