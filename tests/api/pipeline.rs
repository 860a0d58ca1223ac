//! A signal's whole path: webhook → inbox → strategy → risk → signed order → fill → position.

use crate::helpers::{dec, signal_body, signed_request, TestApp};
use rust_decimal::Decimal;

#[tokio::test]
async fn a_signed_signal_becomes_one_signed_filled_order_and_an_open_position() {
    let app = TestApp::spawn().await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;

    let orders = app.settled_orders(1).await;
    let order = &orders[0];
    assert_eq!(order["status"], "filled", "{order}");
    assert_eq!(order["symbol"], "BTC/USD");
    assert_eq!(order["side"], "buy");
    assert_eq!(order["type"], "market");
    let cid = order["clientOrderId"].as_str().unwrap();
    assert!(cid.starts_with("sx-"), "{cid}");
    assert_eq!(dec(&order["filledQuantity"]), dec(&order["quantity"]));
    assert!(order["averagePrice"].is_number());

    // The venue saw exactly one order, under our id, and every request passed its own signature check.
    let at_venue = app.sim.orders();
    assert_eq!(at_venue.len(), 1);
    assert_eq!(at_venue[0].client_order_id.as_deref(), Some(cid));
    assert_eq!(
        Some(at_venue[0].order_id.as_str()),
        order["orderId"].as_str()
    );
    assert_eq!(app.sim.stats().auth_failures, 0);

    // Sized from the strategy's 1000 USD notional at the venue's price, rounded down to 5 dp.
    let price = app.sim.mid_price("BTC/USD").unwrap();
    let qty = dec(&order["quantity"]);
    assert!(
        qty * price <= Decimal::from(1010) && qty * price >= Decimal::from(990),
        "{qty} at {price}"
    );

    let positions = app
        .wait_for("the position", || async {
            let p = app.positions().await;
            (!p.is_empty()).then_some(p)
        })
        .await;
    assert_eq!(positions[0]["symbol"], "BTC/USD");
    assert_eq!(dec(&positions[0]["quantity"]), qty);

    let signals = app.signals().await;
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0]["decision"], "ordered");
    assert_eq!(signals[0]["clientOrderId"], cid);
    assert!(signals[0]["reason"].as_str().unwrap().contains("buy"));
    app.stop().await;
}

#[tokio::test]
async fn the_same_signal_delivered_five_times_concurrently_places_one_order() {
    let app = TestApp::spawn().await;
    let body = signal_body("ETH/USD", "buy", 95, 7);
    let sends: Vec<_> = (0..5)
        .map(|_| {
            let request = signed_request(&app.http, &app.webhook_url, &body);
            tokio::spawn(request.send())
        })
        .collect();
    for send in sends {
        assert_eq!(send.await.unwrap().unwrap().status(), 200);
    }
    app.settled_orders(1).await;
    assert_eq!(app.sim.orders().len(), 1);
    assert_eq!(app.signals().await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn signals_the_strategy_does_not_take_are_recorded_with_the_reason() {
    let app = TestApp::spawn().await;
    app.send_signal("BTC/USD", "buy", 50, 1).await; // below min_confidence 70
    app.send_signal("SOL/USD", "buy", 99, 2).await; // no strategy trades it
    app.send_signal("BTC/USD", "hold", 99, 3).await; // not an accepted recommendation
    app.send_signal("ETH/USD", "sell", 99, 4).await; // long-only, nothing to sell
    let signals = app
        .wait_for("four decisions", || async {
            let s = app.signals().await;
            (s.len() == 4).then_some(s)
        })
        .await;
    let reason = |symbol: &str, rec: &str| {
        let s = signals
            .iter()
            .find(|s| s["symbol"] == symbol && s["recommendation"] == rec)
            .unwrap();
        (
            s["decision"].as_str().unwrap().to_owned(),
            s["reason"].as_str().unwrap().to_owned(),
        )
    };
    let (d, r) = reason("BTC/USD", "buy");
    assert_eq!(d, "ignored");
    assert!(r.contains("confidence 50 is below the minimum 70"), "{r}");
    let (d, r) = reason("SOL/USD", "buy");
    assert_eq!(d, "ignored");
    assert!(r.contains("no strategy trades SOL/USD"), "{r}");
    let (d, _) = reason("BTC/USD", "hold");
    assert_eq!(d, "ignored");
    let (d, r) = reason("ETH/USD", "sell");
    assert_eq!(d, "refused");
    assert!(r.contains("long-only"), "{r}");
    assert!(app.orders().await.is_empty());
    assert!(app.sim.orders().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn the_position_limit_refuses_the_order_that_would_breach_it_and_says_why() {
    let app = TestApp::spawn().await;
    // 1000 USD per order, 2500 USD limit: two orders fit, the third would not.
    for n in 1..=2 {
        app.send_signal("BTC/USD", "buy", 90, n).await;
        app.settled_orders(n as usize).await;
    }
    app.send_signal("BTC/USD", "buy", 90, 3).await;
    let refused = app
        .wait_for("the third decision", || async {
            app.signals()
                .await
                .into_iter()
                .find(|s| s["decision"] == "refused")
        })
        .await;
    let reason = refused["reason"].as_str().unwrap();
    assert!(
        reason.contains("max position notional 2500 would be exceeded"),
        "{reason}"
    );
    assert_eq!(app.sim.orders().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_sell_signal_closes_the_long_and_books_the_pnl() {
    let app = TestApp::spawn().await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    app.settled_orders(1).await;
    app.send_signal("BTC/USD", "sell", 90, 2).await;
    let orders = app.settled_orders(2).await;
    let sell = orders.iter().find(|o| o["side"] == "sell").unwrap();
    let buy = orders.iter().find(|o| o["side"] == "buy").unwrap();
    assert_eq!(dec(&sell["quantity"]), dec(&buy["quantity"]));
    let position = app
        .wait_for("the flat position", || async {
            app.positions()
                .await
                .into_iter()
                .find(|p| dec(&p["quantity"]).is_zero())
        })
        .await;
    let expected = dec(&buy["quantity"]) * (dec(&sell["averagePrice"]) - dec(&buy["averagePrice"]));
    assert_eq!(dec(&position["realizedPnl"]), expected);
    app.stop().await;
}

#[tokio::test]
async fn paper_mode_trades_through_its_own_paper_venue() {
    let app = TestApp::builder().paper().spawn().await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let orders = app.settled_orders(1).await;
    assert_eq!(orders[0]["status"], "filled", "{}", orders[0]);
    assert_eq!(
        app.sim.orders().len(),
        1,
        "the order went to the paper venue"
    );
    app.stop().await;
}
