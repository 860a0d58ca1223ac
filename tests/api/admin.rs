//! The admin listener: readiness, metrics, the dashboard, operator mutations behind the token,
//! and notifications to local receivers.

use crate::helpers::{buy_request, signal_body, spawn_receiver, TestApp, ADMIN_TOKEN};
use serde_json::{json, Value};
use sigex::config::{NotifyKind, NotifyTarget, Secret};

#[tokio::test]
async fn readiness_metrics_and_the_dashboard_reflect_a_trading_bot() {
    let app = TestApp::spawn().await;
    // The venue heartbeat answers at start; everything else is ready from the beginning.
    app.wait_for("readiness", || async {
        (app.admin_get_raw("/readyz").await.0 == 200).then_some(())
    })
    .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let forged = app
        .post_with_signature(&signal_body("BTC/USD", "buy", 90, 2), Some(&"0".repeat(64)))
        .await;
    assert_eq!(forged.status(), 401);
    app.settled_orders(1).await;
    app.send_signal("BTC/USD", "sell", 90, 3).await;
    app.settled_orders(2).await;

    let (status, metrics) = app.admin_get_raw("/metrics").await;
    assert_eq!(status, 200);
    for expected in [
        r#"sigex_webhooks_received_total{event_type="signal.generated"} 2"#,
        r#"sigex_webhooks_rejected_total{reason="mismatch"} 1"#,
        "sigex_order_submit_latency_seconds_count 2",
        r#"sigex_orders{status="filled"} 2"#,
        r#"sigex_inbox_events{status="dead"} 0"#,
        "sigex_reconciliation_drift_symbols",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected:?} missing from\n{metrics}"
        );
    }

    // The sampler took a point at start; both fills are marked on the curve after it.
    let equity = app
        .wait_for("two fills on the PnL curve", || async {
            let e = app.get("/api/equity").await;
            (e["fills"].as_array().unwrap().len() == 2).then_some(e)
        })
        .await;
    assert!(equity["samples"][0]["netPnl"].is_number(), "{equity}");

    let summary = app.get("/api/summary").await;
    assert_eq!(summary["ready"], true, "{summary}");
    assert_eq!(summary["mode"], "live");
    assert_eq!(summary["orders"]["filled"], 2);

    let (status, page) = app.admin_get_raw("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("sigex dashboard") && page.contains("/api/summary"));
    app.stop().await;
}

#[tokio::test]
async fn mutations_are_disabled_without_a_token_and_refused_without_the_right_one() {
    let open = TestApp::spawn().await;
    let r = open
        .admin_post("/api/events/1/replay", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(r.status(), 403, "no token configured: disabled, not open");
    open.stop().await;

    let app = TestApp::builder().token().spawn().await;
    let cases = [
        ("no credentials", None, 401),
        ("wrong token", Some("admin-token-for-tests-0000000000"), 401),
        ("right token, no such dead letter", Some(ADMIN_TOKEN), 409),
    ];
    for (name, token, status) in cases {
        let r = app.admin_post("/api/events/999/replay", token).await;
        assert_eq!(r.status(), status, "{name}");
    }
    let r = app
        .admin_post("/api/orders/sx-nope/cancel", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(r.status(), 404);
    app.stop().await;
}

/// RFC 7235: the scheme of `Authorization: Bearer <token>` is case-insensitive, on every
/// protected endpoint.
#[tokio::test]
async fn the_bearer_scheme_is_accepted_in_any_case() {
    let app = TestApp::builder().token().spawn().await;
    let post = |path: &'static str, authorization: String, body: &'static str| {
        app.http
            .post(format!("{}{path}", app.admin_url))
            .header("Authorization", authorization)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let r = post(
            "/api/events/999/replay",
            format!("{scheme} {ADMIN_TOKEN}"),
            "",
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 409, "{scheme}: past authentication");
        let r = post(
            "/api/admin/resume",
            format!("{scheme} {ADMIN_TOKEN}"),
            r#"{"reason": "checked"}"#,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200, "{scheme}: trading-state change");
    }
    let r = post("/api/admin/resume", format!("Basic {ADMIN_TOKEN}"), "{}")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn an_operator_cancel_sends_a_signed_delete_and_records_the_cancelled_order() {
    let app = TestApp::builder().token().spawn().await;
    // A resting limit order at the venue that the bot's database knows as open.
    let request = buy_request("manual-cancel-1", "BTC/USD", "0.01", Some("1"));
    let sigex::venue::SubmitOutcome::Accepted(placed) =
        app.venue_client().place_order(&request).await
    else {
        panic!("the simulator refused the limit order");
    };
    app.database()
        .insert_open_order(&request, &placed.order_id)
        .await;

    let r = app
        .admin_post("/api/orders/manual-cancel-1/cancel", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(r.status(), 200);
    let order: Value = r.json().await.unwrap();
    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(order["cancel"]["state"], "accepted", "{order}");
    assert_eq!(order["cancel"]["reason"], "operator", "{order}");
    let at_venue = app
        .sim
        .orders()
        .into_iter()
        .find(|o| o.order_id == placed.order_id)
        .unwrap();
    assert_eq!(at_venue.status, "cancelled");
    assert_eq!(app.sim.stats().auth_failures, 0, "the DELETE was signed");

    let again = app
        .admin_post("/api/orders/manual-cancel-1/cancel", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(again.status(), 409, "a cancelled order cannot be cancelled");
    app.stop().await;
}

fn target(kind: NotifyKind, url: String, events: Option<&[&str]>) -> NotifyTarget {
    NotifyTarget {
        kind,
        url: Secret::new(url),
        chat_id: (kind == NotifyKind::Telegram).then(|| "-100123".to_owned()),
        events: events.map(|e| e.iter().map(|s| s.to_string()).collect()),
    }
}

#[tokio::test]
async fn a_dead_letter_is_notified_in_every_format_and_can_be_replayed() {
    let (url, received) = spawn_receiver(0).await;
    let targets = vec![
        target(NotifyKind::Webhook, format!("{url}/generic"), None),
        target(
            NotifyKind::Slack,
            format!("{url}/slack"),
            Some(&["dead_letter"]),
        ),
        target(
            NotifyKind::Discord,
            format!("{url}/discord"),
            Some(&["dead_letter"]),
        ),
        target(
            NotifyKind::Telegram,
            format!("{url}/bot123:abc/sendMessage"),
            Some(&["dead_letter"]),
        ),
    ];
    let app = TestApp::builder()
        .token()
        .tweak(move |c| c.notify = targets)
        .spawn()
        .await;
    // Signed but unusable: confidence 140.
    app.send_signal("BTC/USD", "buy", 140, 1).await;
    let got = app
        .wait_for("four dead-letter notifications", || async {
            let r = received.lock().unwrap().clone();
            (r.len() == 4).then_some(r)
        })
        .await;
    let body = |path: &str| {
        got.iter()
            .find(|(p, _)| p.starts_with(path))
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| panic!("nothing at {path}: {got:?}"))
    };
    let generic = body("/generic");
    assert_eq!(generic["event"], "dead_letter");
    assert!(
        generic["text"].as_str().unwrap().contains("dead letter #1"),
        "{generic}"
    );
    assert!(body("/slack")["text"]
        .as_str()
        .unwrap()
        .contains("dead letter"));
    assert!(body("/discord")["content"]
        .as_str()
        .unwrap()
        .contains("dead letter"));
    let telegram = body("/bot123:abc/sendMessage");
    assert_eq!(telegram["chat_id"], "-100123");
    assert!(telegram["text"].as_str().unwrap().contains("dead letter"));

    let dead = app.get("/api/events/dead").await;
    assert_eq!(dead[0]["seq"], 1, "{dead}");
    let r = app
        .admin_post("/api/events/1/replay", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(r.status(), 200);
    // Still unusable: it is processed again and dead again, and the operator hears it again.
    app.wait_for("the replayed event to be notified again", || async {
        (received.lock().unwrap().len() == 8).then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_fill_reaches_a_receiver_that_fails_twice_first() {
    let (url, received) = spawn_receiver(2).await;
    let targets = vec![target(
        NotifyKind::Webhook,
        format!("{url}/fills"),
        Some(&["fill"]),
    )];
    let app = TestApp::builder()
        .tweak(move |c| c.notify = targets)
        .spawn()
        .await;
    app.send_signal("BTC/USD", "buy", 140, 1).await; // a dead letter: not subscribed
    app.send_signal("ETH/USD", "buy", 90, 2).await;
    let orders = app.settled_orders(1).await;
    let cid = orders[0]["clientOrderId"].as_str().unwrap().to_owned();
    let got = app
        .wait_for("the fill notification", || async {
            let r = received.lock().unwrap().clone();
            (!r.is_empty()).then_some(r)
        })
        .await;
    assert_eq!(got.len(), 1, "only the subscribed event: {got:?}");
    assert_eq!(got[0].1["event"], "fill");
    let text = got[0].1["text"].as_str().unwrap();
    assert!(text.contains(&cid) && text.contains("ETH/USD"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn repeated_venue_errors_are_notified_once_per_streak() {
    let (url, received) = spawn_receiver(0).await;
    let targets = vec![target(
        NotifyKind::Discord,
        format!("{url}/discord"),
        Some(&["venue_errors"]),
    )];
    let app = TestApp::builder()
        .tweak(move |c| c.notify = targets)
        .spawn()
        .await;
    app.stop_venue();
    // Each traded signal needs a reference price from the venue: one failure each.
    for n in 1..=7 {
        app.send_signal("BTC/USD", "buy", 90, n).await;
    }
    app.wait_for("seven refused signals", || async {
        let s = app.signals().await;
        (s.len() == 7 && s.iter().all(|s| s["decision"] == "refused")).then_some(())
    })
    .await;
    let got = app
        .wait_for("the venue-errors notification", || async {
            let r = received.lock().unwrap().clone();
            (!r.is_empty()).then_some(r)
        })
        .await;
    assert_eq!(got.len(), 1, "one notification per streak: {got:?}");
    let text = got[0].1["content"].as_str().unwrap();
    assert!(text.contains("5 venue errors in a row"), "{text}");
    let (_, metrics) = app.admin_get_raw("/metrics").await;
    assert!(
        metrics.contains("sigex_venue_errors_total{class="),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn sigex_status_prints_the_summary_and_json_for_scripts() {
    let app = TestApp::spawn().await;
    app.send_signal("ETH/USD", "buy", 90, 1).await;
    app.settled_orders(1).await;
    app.wait_for("readiness", || async {
        (app.admin_get_raw("/readyz").await.0 == 200).then_some(())
    })
    .await;
    let status = |json: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sigex"));
        cmd.args(["status", "--admin-url", &app.admin_url]);
        if json {
            cmd.arg("--json");
        }
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let human = status(false).await.unwrap();
    assert_eq!(human.status.code(), Some(0), "ready exits 0");
    let text = String::from_utf8(human.stdout).unwrap();
    for expected in [
        "sigex live | ready",
        "trading state: active",
        "orders: filled 1",
        "positions: 1",
        "ETH/USD",
    ] {
        assert!(text.contains(expected), "{expected:?} not in\n{text}");
    }
    let json = status(true).await.unwrap();
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["orders"]["filled"], 1);
    assert_eq!(v["ready"], true);
    app.stop().await;

    let gone = std::process::Command::new(env!("CARGO_BIN_EXE_sigex"))
        .args(["status", "--admin-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(2), "unreachable exits 2");
}

#[tokio::test]
async fn halts_and_resumes_are_notified_whoever_makes_them() {
    let (url, received) = spawn_receiver(0).await;
    let targets = vec![target(
        NotifyKind::Webhook,
        format!("{url}/ops"),
        Some(&["halt", "resume"]),
    )];
    let app = TestApp::builder()
        .tweak(move |c| c.notify = targets)
        .token()
        .spawn()
        .await;
    let r = app
        .admin_post_json(
            "/api/admin/halt",
            &json!({"reason": "exchange incident", "symbol": "BTC/USD"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let halted = app
        .wait_for("the halt notification", || async {
            received
                .lock()
                .unwrap()
                .iter()
                .find(|(_, b)| b["event"] == "halt")
                .cloned()
        })
        .await;
    let text = halted.1["text"].as_str().unwrap().to_owned();
    assert!(
        text.contains("BTC/USD") && text.contains("exchange incident"),
        "{text}"
    );
    let r = app
        .admin_post_json("/api/admin/resume", &json!({"symbol": "BTC/USD"}))
        .await;
    assert_eq!(r.status(), 200);
    app.wait_for("the resume notification", || async {
        received
            .lock()
            .unwrap()
            .iter()
            .find(|(_, b)| b["event"] == "resume")
            .cloned()
    })
    .await;
    assert_eq!(
        received.lock().unwrap().len(),
        2,
        "one of each, nothing else"
    );
    app.stop().await;
}
