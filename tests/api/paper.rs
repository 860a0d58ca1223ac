//! Paper mode: the same pipeline against the in-process paper venue, which never calls the live
//! venue and keeps its account across restarts until `paper reset`.

use crate::helpers::{dec, signal_body, signed_request, TestApp};
use rust_decimal::Decimal;
use sigex::config::PriceSource;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    let app = TestApp::builder().paper().live_url(live_url).spawn().await;
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
    let app = TestApp::builder().paper().spawn().await;
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
    let data = app.stop_keeping_data().await;

    // Restarted on the same database: the paper venue remembers the order, position and cash.
    let app = TestApp::builder().paper().data(data).spawn().await;
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
    let data = app.stop_keeping_data().await;

    // `sigex paper reset` empties the paper venue and the bot's view of it.
    let store = sigex::store::Store::open(data.database().url())
        .await
        .unwrap();
    store.reset_paper().await.unwrap();
    store.close().await;
    let app = TestApp::builder().paper().data(data).spawn().await;
    assert!(app.sim.orders().is_empty());
    assert!(app.sim.positions().is_empty());
    assert_eq!(app.sim.balance().total, Decimal::new(100_000, 0));
    assert!(app.orders().await.is_empty());
    assert!(app.positions().await.is_empty());
    app.stop().await;
}

/// A live venue that only quotes prices (BTC/USD at 61234.5) and records every path it is asked.
async fn quoting_venue() -> (String, Arc<Mutex<Vec<String>>>) {
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = paths.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        seen.lock().unwrap().push(uri.path().to_string());
        async move {
            let symbol = if uri.path().ends_with("ETH%2FUSD") {
                ("ETH/USD", "3100.25")
            } else {
                ("BTC/USD", "61234.5")
            };
            let body = format!(r#"{{"symbol":"{}","price":{}}}"#, symbol.0, symbol.1);
            ([("content-type", "application/json")], body)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, paths)
}

#[tokio::test]
async fn with_venue_prices_paper_mode_reads_market_data_and_nothing_else() {
    let (live_url, paths) = quoting_venue().await;
    let app = TestApp::builder()
        .paper()
        .live_url(live_url)
        .tweak(|c| {
            c.paper.price_source = PriceSource::Venue {
                interval: Duration::from_millis(200),
            };
            // A still walk, so the paper price is exactly the venue's between polls.
            c.paper.engine.walk.volatility_bps = Decimal::ZERO;
            c.paper.symbols = vec![
                ("BTC/USD".into(), Decimal::new(50_000, 0)),
                ("ETH/USD".into(), Decimal::new(3_000, 0)),
            ];
        })
        .spawn()
        .await;
    app.wait_for("the venue's BTC price", || async {
        (app.sim.mid_price("BTC/USD") == Some(Decimal::new(612345, 1))).then_some(())
    })
    .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let orders = app.settled_orders(1).await;
    let fill = dec(&orders[0]["averagePrice"]);
    assert!(
        fill > Decimal::new(61_000, 0),
        "filled near the venue's price: {fill}"
    );
    app.stop().await;
    let paths = paths.lock().unwrap().clone();
    assert!(!paths.is_empty());
    assert!(
        paths.iter().all(|p| p.starts_with("/api/v1/market/price/")),
        "only market data was read: {paths:?}"
    );
}

/// The paper venue's callbacks reach the bot whatever guards its public webhook listener: TLS,
/// and an allowlist that only admits the venue's published ranges (behind a trusted proxy).
#[tokio::test]
async fn paper_callbacks_arrive_when_the_public_listener_has_tls_and_an_allowlist() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = crate::helpers::test_certificate(certs.path());
    let app = TestApp::builder()
        .paper()
        .tweak(move |c| {
            c.webhook.tls = Some((cert, key));
            c.webhook.allow_sources = vec!["203.0.113.0/24".parse().unwrap()];
            c.webhook.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        })
        .spawn()
        .await;
    // The signal comes from the venue's range, through TLS and the proxy.
    let body = signal_body("BTC/USD", "buy", 90, 1);
    let client = crate::helpers::https_client(&certs.path().join("cert.pem"));
    let url = app
        .webhook_url
        .replace("http://127.0.0.1", "https://localhost");
    let r = signed_request(&client, &url, &body)
        .header("X-Forwarded-For", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The paper venue's own order events got in, signed, over its loopback listener.
    app.wait_for("the paper venue's order events", || async {
        let types = app.get("/api/event-types").await;
        (types["order.updated"].as_i64() > Some(0)).then_some(())
    })
    .await;
    let orders = app.settled_orders(1).await;
    assert_eq!(orders[0]["status"], "filled", "{orders:?}");
    assert_eq!(app.sim.stats().webhooks_failed, 0, "{:?}", app.sim.stats());
    app.stop().await;
}
