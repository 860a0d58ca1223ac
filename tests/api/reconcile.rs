//! Start-up reconciliation: no order before the book agrees with the venue's; venue orders
//! nobody knows are adopted.

use crate::helpers::{buy_request, dec, reconciled, TestApp};
use sigex::sim::{Faults, Probability};
use std::time::Duration;

#[tokio::test]
async fn an_unreachable_venue_at_start_keeps_the_bot_unready_and_signals_waiting_until_it_answers()
{
    // Every REST request fails for the first seconds: the start-up pass cannot succeed.
    let app = TestApp::builder()
        .sim(|cfg| {
            cfg.faults = Faults {
                rest_5xx: Probability::ALWAYS,
                rest_routes: sigex::sim::RestRoutes::All,
                windows: vec![(Duration::ZERO, Duration::from_secs(5))],
                ..Faults::default()
            };
        })
        .unreconciled()
        .spawn()
        .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let bot = app.bot.as_ref().unwrap();
    // While the pass cannot succeed, the signal waits in the inbox: no decision, no order.
    while !bot.health.is_reconciled() {
        let decisions = app.signals().await;
        let venue_orders = app.sim.orders();
        if bot.health.is_reconciled() {
            break;
        }
        assert!(
            decisions.is_empty(),
            "decided while unreconciled: {decisions:?}"
        );
        assert!(venue_orders.is_empty(), "an order before reconciliation");
        let (status, body) = app.admin_get_raw("/readyz").await;
        if !bot.health.is_reconciled() {
            assert_eq!(status, 503, "{body}");
            assert!(body.contains("reconciliation"), "{body}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reconciled(bot).await;
    // Once the book agrees with the venue's, the waiting signal is decided and traded.
    let ours = app
        .wait_for("the waiting signal's order", || async {
            let o = app.orders().await;
            (o.len() == 1 && o[0]["status"] == "filled").then_some(o)
        })
        .await;
    assert_eq!(app.sim.orders().len(), 1, "{ours:?}");
    assert_eq!(app.signals().await[0]["decision"], "ordered");
    app.wait_for("readiness", || async {
        (app.admin_get_raw("/readyz").await.0 == 200).then_some(())
    })
    .await;
    app.stop().await;
}

/// A market buy of 0.1 ETH/USD placed behind the bot's back.
async fn trade_behind_the_bots_back(app: &TestApp, client_order_id: &str) {
    let placed = app
        .venue_client()
        .place_order(&buy_request(client_order_id, "ETH/USD", "0.1", None))
        .await;
    assert!(
        matches!(placed, sigex::venue::OrderOutcome::Accepted(_)),
        "{placed:?}"
    );
}

#[tokio::test]
async fn a_position_the_bot_did_not_trade_is_drift_that_halts_the_symbol_with_both_views() {
    // Snapshots are paced by a tokio timer, not the clock: a short real interval.
    let app = TestApp::builder()
        .tweak(|cfg| cfg.reconcile.snapshot_interval = Duration::from_millis(300))
        .spawn()
        .await;
    // A market order placed behind the bot's back moves the venue's position, not ours.
    trade_behind_the_bots_back(&app, "manual-2").await;
    let halted = app
        .wait_for("the drift halt", || async {
            let s = app.get("/api/trading-state").await;
            s["states"].as_array().and_then(|a| {
                a.iter()
                    .find(|e| e["symbol"] == "ETH/USD" && e["state"] == "halted")
                    .cloned()
            })
        })
        .await;
    assert_eq!(halted["setBy"], "reconciliation", "{halted}");
    let reason = halted["reason"].as_str().unwrap();
    assert!(
        reason.contains("ours 0") && reason.contains("venue 0.1"),
        "{reason}"
    );
    // The bot's own symbol is untouched.
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    app.settled_orders(1).await;
    app.stop().await;
}

#[tokio::test]
async fn a_venue_open_order_unknown_locally_is_adopted_at_start() {
    let mut app = TestApp::spawn().await;
    // Someone else places a resting order on the account (far below the market: it stays open).
    let venue = app.venue_client();
    let placed = venue
        .place_order(&buy_request("manual-1", "BTC/USD", "0.001", Some("1000")))
        .await;
    assert!(
        matches!(placed, sigex::venue::SubmitOutcome::Accepted(_)),
        "{placed:?}"
    );
    app.restart().await;
    let orders = app.orders().await;
    let adopted: Vec<_> = orders
        .iter()
        .filter(|o| o["strategy"] == "adopted")
        .collect();
    assert_eq!(adopted.len(), 1, "{orders:?}");
    assert_eq!(adopted[0]["clientOrderId"], "manual-1");
    assert_eq!(adopted[0]["status"], "open", "{orders:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_balance_change_our_books_do_not_explain_is_reported_with_both_views() {
    // Snapshots are paced by a tokio timer, not the clock: a short real interval.
    let app = TestApp::builder()
        .tweak(|cfg| cfg.reconcile.snapshot_interval = Duration::from_millis(300))
        .spawn()
        .await;
    // Our own trade moves the balance by what our books say: no drift.
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    app.settled_orders(1).await;
    let baseline = app
        .wait_for("the cash check's baseline", || async {
            let c = app.get("/api/cash-check").await;
            (!c["baseline_venue"].is_null()).then_some(c)
        })
        .await;
    // A trade behind the bot's back pays a fee our books know nothing about.
    trade_behind_the_bots_back(&app, "manual-cash").await;
    let check = app
        .wait_for("the balance drift", || async {
            let c = app.get("/api/cash-check").await;
            (!c["drift_venue"].is_null()).then_some(c)
        })
        .await;
    let d = |v: &serde_json::Value| dec(&v["value"]);
    let manual_fee: rust_decimal::Decimal = app
        .sim
        .orders()
        .iter()
        .filter(|o| o.client_order_id.as_deref() == Some("manual-cash"))
        .flat_map(|o| o.fills.iter().map(|f| f.fee))
        .sum();
    assert!(manual_fee > rust_decimal::Decimal::ZERO);
    assert_eq!(
        d(&check["drift_ours"]) - d(&check["drift_venue"]),
        manual_fee,
        "{check} from {baseline}"
    );
    assert_eq!(d(&check["drift_venue"]), app.sim.balance().total, "{check}");
    app.stop().await;
}
