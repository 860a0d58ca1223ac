//! Realized PnL and fees computed from our fills, compared with the venue's: fills recorded by
//! fill id, fees settled from the venue's fill lists, `position.closed` checked against our
//! closed positions, and a drift halts the symbol with both views.

use crate::helpers::{dec, TestApp};
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// Buys, then sells the same quantity: one closed long.
async fn round_trip(app: &TestApp) -> Vec<Value> {
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    app.settled_orders(1).await;
    app.send_signal("BTC/USD", "sell", 90, 2).await;
    app.settled_orders(2).await
}

/// [`round_trip`] for a bot that hears of its orders only by asking (callbacks lost, manual
/// clock): each order settles once the test has made it stale.
async fn round_trip_by_polling(app: &TestApp) -> Vec<Value> {
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    app.settled_by_stale_poll(1).await;
    app.send_signal("BTC/USD", "sell", 90, 2).await;
    app.settled_by_stale_poll(2).await
}

/// A bot whose simulator callbacks are all lost, on a manual clock.
async fn spawn_without_callbacks() -> TestApp {
    TestApp::builder()
        .without_callbacks()
        .manual_clock()
        .spawn()
        .await
}

#[tokio::test]
async fn fees_and_realized_pnl_from_our_fills_equal_the_venues_and_its_position_closed_matches() {
    let app = TestApp::spawn().await;
    round_trip(&app).await;
    // Settlement reads each ended order's fill list: its fees become the venue's own.
    let venue_orders = app.sim.orders();
    assert_eq!(venue_orders.len(), 2);
    for vo in &venue_orders {
        let venue_fees: Decimal = vo.fills.iter().map(|f| f.fee).sum();
        assert!(venue_fees > Decimal::ZERO, "the simulator charges fees");
        let cid = vo.client_order_id.clone().unwrap();
        app.wait_for("the order's fees to settle at the venue's", || async {
            let o = app.orders().await;
            let ours = o.iter().find(|o| o["clientOrderId"] == cid.as_str())?;
            (dec(&ours["fees"]) == venue_fees).then_some(())
        })
        .await;
    }
    let venue = app.sim.balance();
    let position = app
        .wait_for("the flat position with the venue's numbers", || async {
            let p = app.positions().await.into_iter().next()?;
            (dec(&p["quantity"]).is_zero() && dec(&p["fees"]) == venue.fees_paid).then_some(p)
        })
        .await;
    // Gross realized PnL: exact up to the venue's 8-decimal rounding of average prices.
    let gap = (dec(&position["realizedPnl"]) - venue.realized_pnl).abs();
    assert!(gap <= Decimal::new(1, 6), "{position} vs {venue:?}");
    assert_eq!(
        dec(&position["netRealizedPnl"]),
        dec(&position["realizedPnl"]) - venue.fees_paid
    );
    // The venue's position.closed matched our closed long, within the tolerance.
    let closed = app
        .wait_for("the venue's view beside ours", || async {
            let c = app.get("/api/closed-positions").await;
            let first = c.as_array()?.first()?.clone();
            (!first["venueRealizedPnl"].is_null()).then_some(first)
        })
        .await;
    assert_eq!(closed["side"], "long", "{closed}");
    assert_eq!(closed["drift"], false, "{closed}");
    assert!(
        (dec(&closed["realizedPnl"]) - dec(&closed["venueRealizedPnl"])).abs()
            <= Decimal::new(1, 2)
    );
    let states = app.get("/api/trading-state").await;
    assert!(
        states["states"].as_array().unwrap().is_empty(),
        "nothing halted: {states}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_venue_position_closed_with_another_realized_pnl_halts_the_symbol_with_both_views() {
    // The simulator's callbacks are all lost: the bot learns its fills by REST, and the only
    // `position.closed` it sees is the one this test sends.
    let app = spawn_without_callbacks().await;
    round_trip_by_polling(&app).await;
    let ours = app
        .wait_for("our closed long", || async {
            let c = app.get("/api/closed-positions").await;
            c.as_array()?.first().cloned()
        })
        .await;
    let realized = dec(&ours["realizedPnl"]);
    let claimed = realized + Decimal::new(25, 0);
    let body = json!({
        "event": "position.closed",
        "timestamp": app.now().to_rfc3339(),
        "data": {
            "symbol": "BTC/USD",
            "quantity": 0.01,
            "averagePrice": dec(&ours["entryPrice"]),
            "closePrice": 50000,
            "realizedPnl": claimed,
            "closedAt": app.now().to_rfc3339(),
        }
    })
    .to_string();
    assert_eq!(app.post_signed(&body).await.status(), 200);
    let halted = app
        .wait_for("the PnL drift halt", || async {
            let s = app.get("/api/trading-state").await;
            s["states"].as_array().and_then(|a| {
                a.iter()
                    .find(|e| e["symbol"] == "BTC/USD" && e["state"] == "halted")
                    .cloned()
            })
        })
        .await;
    assert_eq!(halted["setBy"], "reconciliation", "{halted}");
    let reason = halted["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("ours {}", realized.normalize()))
            && reason.contains(&format!("venue {}", claimed.normalize())),
        "{reason}"
    );
    let closed = app.get("/api/closed-positions").await;
    let row = &closed[0];
    assert_eq!(row["drift"], true, "{row}");
    assert_eq!(dec(&row["venueRealizedPnl"]), claimed);
    assert_eq!(dec(&row["realizedPnl"]), realized);
    // A halted symbol takes no new entry; the other symbol still trades.
    app.send_signal("BTC/USD", "buy", 90, 3).await;
    app.send_signal("ETH/USD", "buy", 90, 4).await;
    let orders = app.settled_by_stale_poll(3).await;
    assert_eq!(
        orders.iter().filter(|o| o["symbol"] == "BTC/USD").count(),
        2,
        "{orders:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_position_closed_that_arrives_before_our_closing_fill_waits_for_it() {
    // No simulator callbacks: the test delivers the venue's `position.closed` first, while our
    // sell has not been placed yet; it must wait, deferred, and match once we close.
    let app = spawn_without_callbacks().await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let buy = app.settled_by_stale_poll(1).await.remove(0);
    let entry = dec(&buy["averagePrice"]);
    let body = json!({
        "event": "position.closed",
        "timestamp": app.now().to_rfc3339(),
        "data": {"symbol": "BTC/USD", "quantity": 0.01, "averagePrice": entry,
                 "closePrice": 50000, "realizedPnl": 1.5, "closedAt": app.now().to_rfc3339()}
    })
    .to_string();
    assert_eq!(app.post_signed(&body).await.status(), 200);
    app.wait_for("the position.closed to be deferred", || async {
        let e = app.get("/api/events").await;
        (e["deferred"].as_i64() == Some(1)).then_some(())
    })
    .await;
    app.send_signal("BTC/USD", "sell", 90, 2).await;
    app.settled_by_stale_poll(2).await;
    let row = app
        .wait_for("the deferred close to match ours", || async {
            let c = app.get("/api/closed-positions").await;
            let first = c.as_array()?.first()?.clone();
            (!first["venueRealizedPnl"].is_null()).then_some(first)
        })
        .await;
    assert_eq!(dec(&row["venueRealizedPnl"]), Decimal::new(15, 1));
    assert_eq!(dec(&row["entryPrice"]), entry);
    let e = app.get("/api/events").await;
    assert!(e["deferred"].is_null() || e["deferred"] == 0, "{e}");
    app.stop().await;
}

#[tokio::test]
async fn unrealized_pnl_is_marked_at_the_market_price_alike_in_every_view_and_sampled_over_time() {
    let app = TestApp::builder()
        // Prices move only when the test moves them.
        .sim(|sim| sim.engine.walk.volatility_bps = Decimal::ZERO)
        // The sampler paces itself by a tokio timer, not the clock: a short real interval.
        .tweak(|bot| bot.admin.pnl_sample_interval = std::time::Duration::from_millis(100))
        .spawn()
        .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    app.settled_orders(1).await;
    let mark = Decimal::from(51_000);
    app.sim.set_mid_price("BTC/USD", mark);
    // The sampler reads the new market price; the summary, the positions and the curve use it.
    let summary = app
        .wait_for("the position marked at the market price", || async {
            let s = app.get("/api/summary").await;
            (dec(&s["positions"][0]["markPrice"]) == mark).then_some(s)
        })
        .await;
    let p = &summary["positions"][0];
    let expected = dec(&p["quantity"]) * (mark - dec(&p["averagePrice"]));
    assert!(expected > Decimal::ZERO, "{summary}");
    assert_eq!(dec(&p["unrealizedPnl"]), expected, "{summary}");
    assert_eq!(dec(&summary["unrealizedPnl"]), expected, "{summary}");
    let positions = app.positions().await;
    assert_eq!(
        dec(&positions[0]["unrealizedPnl"]),
        expected,
        "{positions:?}"
    );
    let equity = app
        .wait_for("samples at the new mark", || async {
            let e = app.get("/api/equity").await;
            let samples = e["samples"].as_array()?;
            let last = samples.last()?;
            (samples.len() >= 3 && dec(&last["unrealizedPnl"]) == expected).then_some(e)
        })
        .await;
    assert_eq!(equity["fills"].as_array().unwrap().len(), 1, "{equity}");
    let last = equity["samples"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        dec(&last["netPnl"]),
        dec(&last["realizedPnl"]) + dec(&last["unrealizedPnl"]) - dec(&last["fees"])
    );

    // Closed: the position leaves the summary's list, its realized PnL stays in the totals.
    app.send_signal("BTC/USD", "sell", 90, 2).await;
    app.settled_orders(2).await;
    let summary = app
        .wait_for("the closed position gone from the list", || async {
            let s = app.get("/api/summary").await;
            s["positions"].as_array()?.is_empty().then_some(s)
        })
        .await;
    assert!(dec(&summary["realizedPnl"]) > Decimal::ZERO, "{summary}");
    assert_eq!(dec(&summary["unrealizedPnl"]), Decimal::ZERO, "{summary}");
    // The book still has the flat symbol, with its realized PnL.
    let positions = app.positions().await;
    assert!(dec(&positions[0]["quantity"]).is_zero(), "{positions:?}");
    app.stop().await;
}

/// The venue's `position.closed` of one round trip, as the test delivers it.
fn venue_closed(app: &TestApp, entry: Decimal, realized: Decimal) -> String {
    json!({
        "event": "position.closed",
        "timestamp": app.now().to_rfc3339(),
        "data": {"symbol": "BTC/USD", "quantity": 0.02, "averagePrice": entry,
                 "closePrice": 50000, "realizedPnl": realized, "closedAt": app.now().to_rfc3339()}
    })
    .to_string()
}

#[tokio::test]
async fn two_positions_entered_at_one_price_match_their_own_position_closed_whatever_the_order() {
    // Two longs entered at the same price, closed at different prices. The venue's report of the
    // second arrives first, before our closing fill of the second is even booked; the report of
    // the first arrives last. Each must be compared with its own position: no drift, no halt.
    let app = TestApp::builder()
        .without_callbacks()
        .manual_clock()
        .sim(|sim| sim.engine.walk.volatility_bps = Decimal::ZERO)
        .spawn()
        .await;
    let mid = |p: i64| app.sim.set_mid_price("BTC/USD", Decimal::from(p));
    mid(50_000);
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let entry = dec(&app.settled_by_stale_poll(1).await[0]["averagePrice"]);
    mid(50_100);
    app.send_signal("BTC/USD", "sell", 90, 2).await;
    let orders = app.settled_by_stale_poll(2).await;
    let sell = orders.iter().find(|o| o["side"] == "sell").unwrap();
    // What a sell gives away below the mid on this still book (spread and slippage).
    let below_mid = Decimal::from(50_100) - dec(&sell["averagePrice"]);
    let quantity = dec(&sell["filledQuantity"]);
    let first = app
        .wait_for("our first closed long", || async {
            app.get("/api/closed-positions")
                .await
                .as_array()?
                .first()
                .cloned()
        })
        .await;
    let first_realized = dec(&first["realizedPnl"]);

    mid(50_000);
    app.send_signal("BTC/USD", "buy", 90, 3).await;
    let orders = app.settled_by_stale_poll(3).await;
    let second_entry = orders
        .iter()
        .filter(|o| o["side"] == "buy")
        .map(|o| dec(&o["averagePrice"]))
        .find(|p| *p == entry);
    assert!(
        orders.iter().filter(|o| o["side"] == "buy").count() == 2 && second_entry.is_some(),
        "both longs entered at {entry}: {orders:?}"
    );
    // The second will close at mid 49,900: its realized PnL, reported by the venue first.
    let second_realized = quantity * (Decimal::from(49_900) - below_mid - entry);
    assert_ne!(second_realized, first_realized);
    assert_eq!(
        app.post_signed(&venue_closed(&app, entry, second_realized))
            .await
            .status(),
        200
    );
    app.wait_for("the early report to wait", || async {
        (app.get("/api/events").await["deferred"].as_i64() == Some(1)).then_some(())
    })
    .await;
    mid(49_900);
    app.send_signal("BTC/USD", "sell", 90, 4).await;
    app.settled_by_stale_poll(4).await;
    assert_eq!(
        app.post_signed(&venue_closed(&app, entry, first_realized))
            .await
            .status(),
        200
    );
    let closed = app
        .wait_for("both closed longs matched", || async {
            let c = app.get("/api/closed-positions").await;
            let rows = c.as_array()?.clone();
            (rows.len() == 2 && rows.iter().all(|r| !r["venueRealizedPnl"].is_null()))
                .then_some(rows)
        })
        .await;
    for row in &closed {
        assert_eq!(row["drift"], false, "{closed:?}");
        // Within `[reconcile] pnl_tolerance` (0.01): the prediction above ignores that the
        // book's slippage moves with the price.
        let gap = dec(&row["venueRealizedPnl"]) - dec(&row["realizedPnl"]);
        assert!(gap.abs() <= Decimal::new(1, 2), "{closed:?}");
    }
    let states = app.get("/api/trading-state").await;
    assert!(
        states["states"].as_array().unwrap().is_empty(),
        "nothing halted: {states}"
    );
    app.stop().await;
}
