//! Paper mode: the same pipeline against the in-process paper venue, which never calls the live
//! venue and keeps its account across restarts until `paper reset`.

use crate::helpers::{spawn_paper_app, spawn_paper_app_in};
use rust_decimal::Decimal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A listener that counts every request it receives, whatever the path.
async fn recording_venue() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let app = axum::Router::new().fallback(move || {
        seen.fetch_add(1, Ordering::SeqCst);
        async { (axum::http::StatusCode::CREATED, "{}") }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

#[tokio::test]
async fn paper_trading_never_sends_a_request_to_the_live_venue() {
    let (live_url, hits) = recording_venue().await;
    let app = spawn_paper_app_in(tempfile::tempdir().unwrap(), live_url).await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    app.settled_orders(1).await;
    app.send_signal("ETH/USD", "buy", 90, 2).await;
    app.settled_orders(2).await;
    app.send_signal("BTC/USD", "sell", 90, 3).await;
    let orders = app.settled_orders(3).await;
    assert!(orders.iter().all(|o| o["status"] == "filled"), "{orders:?}");
    assert_eq!(
        app.sim.orders().len(),
        3,
        "every order went to the paper venue"
    );
    app.stop().await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the live base_url was never called"
    );
}

#[tokio::test]
async fn paper_orders_positions_and_balances_survive_a_restart_until_reset() {
    let app = spawn_paper_app().await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    app.settled_orders(1).await;
    let orders_before = app.sim.orders();
    let balance_before = app
        .wait_for("the venue's position", || async {
            (!app.sim.positions().is_empty()).then(|| app.sim.balance())
        })
        .await;
    assert!(
        balance_before.fees_paid > Decimal::ZERO,
        "taker fee charged"
    );
    let database_url = app.database_url();
    let dir = app.stop_keeping_data().await;

    // Restarted on the same database: the paper venue remembers the order, position and cash.
    let app = spawn_paper_app_in(dir, "http://127.0.0.1:9/api/v1".into()).await;
    let orders_after = app.sim.orders();
    assert_eq!(orders_after.len(), 1);
    assert_eq!(orders_after[0].order_id, orders_before[0].order_id);
    assert_eq!(orders_after[0].status, "filled");
    assert_eq!(app.sim.positions()[0].quantity, orders_before[0].quantity);
    assert_eq!(app.sim.balance().total, balance_before.total);
    assert_eq!(app.sim.balance().locked, balance_before.locked);
    // A signal trades on from there: the second buy adds to the same position.
    app.send_signal("BTC/USD", "buy", 90, 2).await;
    app.settled_orders(2).await;
    assert_eq!(app.sim.orders().len(), 2);
    let dir = app.stop_keeping_data().await;

    // `sigex paper reset` empties the paper venue and the bot's view of it.
    let store = sigex::store::Store::open(&database_url).await.unwrap();
    store.reset_paper().await.unwrap();
    store.close().await;
    let app = spawn_paper_app_in(dir, "http://127.0.0.1:9/api/v1".into()).await;
    assert!(app.sim.orders().is_empty());
    assert!(app.sim.positions().is_empty());
    assert_eq!(app.sim.balance().total, Decimal::new(100_000, 0));
    assert!(app.orders().await.is_empty());
    assert!(app.positions().await.is_empty());
    app.stop().await;
}
