//! The risk manager end to end: maintenance windows, alerts, circuit breakers, trading state that
//! survives a restart, and the authenticated admin endpoints.

use crate::helpers::{dec, TestApp, ADMIN_TOKEN, RESTING_LIMIT};
use chrono::{Duration, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sigex::config::TradingConfig;

fn iso(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl TestApp {
    async fn post_event(&self, event: &str, data: Value) {
        let body = json!({"event": event, "timestamp": iso(Utc::now()), "data": data}).to_string();
        let r = self.post_signed(&body).await;
        assert_eq!(r.status(), 200, "{event} refused");
    }

    /// Waits for the decision on the n-th signal sent (1-based, in arrival order).
    async fn decision_number(&self, n: usize) -> Value {
        self.wait_for("the decision", || async {
            let mut s = self.signals().await;
            s.reverse(); // oldest first
            s.get(n - 1).cloned()
        })
        .await
    }

    /// Posts an event with an `X-Webhook-Id` header, which is shown and never used as a key.
    async fn post_event_with_id(&self, webhook_id: &str, event: &str, data: Value) {
        let body = json!({"event": event, "timestamp": iso(Utc::now()), "data": data}).to_string();
        let r = self
            .post_signed_with(&body, &[("X-Webhook-Id", webhook_id)])
            .await;
        assert_eq!(r.status(), 200, "{event} refused");
    }

    async fn trading_state(&self) -> Value {
        self.get("/api/trading-state").await
    }
}

fn reason(decision: &Value) -> String {
    decision["reason"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_maintenance_notice_arriving_before_a_signal_blocks_it() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    // Starts in one minute: inside the default five-minute lead time already.
    app.post_event(
        "system.maintenance",
        json!({
            "startTime": iso(now + Duration::minutes(1)),
            "endTime": iso(now + Duration::minutes(30)),
            "description": "upgrade",
            "affectedServices": ["trading", "webhooks"]
        }),
    )
    .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let d = app.decision_number(1).await;
    assert_eq!(d["decision"], "refused", "{d}");
    assert!(reason(&d).contains("maintenance window"), "{d}");
    assert!(app.orders().await.is_empty());
    assert!(app.sim.orders().is_empty());
    let state = app.trading_state().await;
    assert_eq!(state["maintenanceWindows"][0]["reconciledAt"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn a_maintenance_notice_for_other_services_or_already_past_blocks_nothing() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    app.post_event(
        "system.maintenance",
        json!({"startTime": iso(now), "endTime": iso(now + Duration::hours(1)), "affectedServices": ["webhooks"]}),
    )
    .await;
    app.post_event(
        "system.maintenance",
        json!({"startTime": iso(now - Duration::hours(3)), "endTime": iso(now - Duration::hours(2)), "affectedServices": ["trading"]}),
    )
    .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let d = app.decision_number(1).await;
    assert_eq!(d["decision"], "ordered", "{d}");
    app.stop().await;
}

#[tokio::test]
async fn trading_resumes_after_the_window_only_once_the_reconciliation_pass_completed() {
    let mut trading = TradingConfig::default();
    trading.maintenance.lead = Duration::zero();
    trading.maintenance.settle = Duration::milliseconds(500);
    let app = TestApp::builder().trading(trading).spawn().await;
    // An order before the window, still known to the venue, so the pass has something to ask about.
    app.send_signal("ETH/USD", "buy", 90, 1).await;
    app.settled_orders(1).await;

    let start = Utc::now() - Duration::seconds(1);
    let end = Utc::now() + Duration::seconds(2);
    app.post_event(
        "system.maintenance",
        json!({"startTime": iso(start), "endTime": iso(end), "affectedServices": ["api"]}),
    )
    .await;
    app.send_signal("BTC/USD", "buy", 90, 2).await;
    let d = app.decision_number(2).await;
    assert_eq!(d["decision"], "refused", "{d}");
    assert!(reason(&d).contains("maintenance window"), "{d}");

    // The reconciliation task marks the window once end + settle passed and a pass succeeded.
    let reconciled_at = app
        .wait_for("the window to be reconciled", || async {
            let s = app.trading_state().await;
            s["maintenanceWindows"][0]["reconciledAt"]
                .as_str()
                .map(str::to_owned)
        })
        .await;
    let reconciled_at = chrono::DateTime::parse_from_rfc3339(&reconciled_at).unwrap();
    assert!(reconciled_at >= end + Duration::milliseconds(500));

    app.send_signal("BTC/USD", "buy", 90, 3).await;
    let d = app.decision_number(3).await;
    assert_eq!(d["decision"], "ordered", "{d}");
    app.settled_orders(2).await;
    app.stop().await;
}

#[tokio::test]
async fn a_critical_alert_halts_the_listed_symbols_and_one_without_symbols_halts_everything() {
    let app = TestApp::spawn().await;
    app.post_event(
        "system.alert",
        json!({"level": "critical", "title": "BTC feed broken", "affectedSymbols": ["BTC/USD"]}),
    )
    .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    app.send_signal("ETH/USD", "buy", 90, 2).await;
    let btc = app.decision_number(1).await;
    let eth = app.decision_number(2).await;
    assert_eq!(btc["decision"], "refused", "{btc}");
    assert!(
        reason(&btc).contains("trading is halted (BTC/USD)")
            && reason(&btc).contains("BTC feed broken"),
        "{btc}"
    );
    assert_eq!(eth["decision"], "ordered", "{eth}");
    app.settled_orders(1).await;

    app.post_event(
        "system.alert",
        json!({"level": "critical", "title": "venue degraded"}),
    )
    .await;
    app.send_signal("ETH/USD", "buy", 90, 3).await;
    let eth = app.decision_number(3).await;
    assert_eq!(eth["decision"], "refused", "{eth}");
    assert!(
        reason(&eth).contains("trading is halted (account)"),
        "{eth}"
    );
    assert_eq!(app.sim.orders().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_warning_alert_scales_the_size_of_new_orders() {
    let app = TestApp::spawn().await;
    app.post_event(
        "system.alert",
        json!({"level": "warning", "title": "volatility", "affectedSymbols": ["BTC/USD"]}),
    )
    .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let d = app.decision_number(1).await;
    assert_eq!(d["decision"], "ordered", "{d}");
    assert!(reason(&d).contains("size x0.5"), "{d}");
    let orders = app.settled_orders(1).await;
    let notional = dec(&orders[0]["quantity"]) * app.sim.mid_price("BTC/USD").unwrap();
    assert!(notional < Decimal::from(520), "{notional}");
    app.stop().await;
}

#[tokio::test]
async fn a_daily_loss_breach_halts_trading_and_the_halt_survives_a_restart() {
    let mut trading = TradingConfig::default();
    trading.limits.daily_loss_limit = Some(Decimal::from(10));
    let mut app = TestApp::builder().trading(trading).spawn().await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    app.settled_orders(1).await;
    // The market halves: closing the long realizes a loss of about 500 USD.
    app.sim.set_mid_price("BTC/USD", Decimal::from(25_000));
    app.send_signal("BTC/USD", "sell", 90, 2).await;
    app.settled_orders(2).await;
    let halted = app
        .wait_for("the halt", || async {
            let s = app.trading_state().await;
            s["states"]
                .as_array()
                .and_then(|a| a.iter().find(|e| e["state"] == "halted").cloned())
        })
        .await;
    assert_eq!(halted["setBy"], "daily_loss", "{halted}");
    assert_eq!(halted["symbol"], Value::Null, "{halted}");
    assert!(
        halted["reason"]
            .as_str()
            .unwrap()
            .contains("daily realized loss limit 10 USD reached"),
        "{halted}"
    );

    app.restart().await;
    let s = app.trading_state().await;
    assert_eq!(s["states"][0]["state"], "halted", "{s}");
    app.send_signal("ETH/USD", "buy", 90, 3).await;
    let d = app.decision_number(3).await;
    assert_eq!(d["decision"], "refused", "{d}");
    assert!(reason(&d).contains("halted"), "{d}");
    assert_eq!(app.sim.orders().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn operators_halt_and_resume_through_the_admin_endpoint_only_with_the_token() {
    let app = TestApp::builder().token().spawn().await;
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut r = app
            .http
            .post(format!("{}{path}", app.admin_url))
            .json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let halt = json!({"symbol": "BTC/USD", "reason": "exchange incident"});
    assert_eq!(
        post("/api/admin/halt", None, halt.clone())
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        post(
            "/api/admin/halt",
            Some("wrong-token-0123456789"),
            halt.clone()
        )
        .await
        .unwrap()
        .status(),
        401
    );
    assert_eq!(
        post(
            "/api/admin/halt",
            Some(ADMIN_TOKEN),
            json!({"symbol": "BTC/USD"})
        )
        .await
        .unwrap()
        .status(),
        400,
        "a halt needs a reason"
    );
    assert_eq!(
        post("/api/admin/halt", Some(ADMIN_TOKEN), halt)
            .await
            .unwrap()
            .status(),
        200
    );
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let d = app.decision_number(1).await;
    assert!(reason(&d).contains("exchange incident"), "{d}");

    let resume = json!({"symbol": "BTC/USD"});
    assert_eq!(
        post("/api/admin/resume", Some(ADMIN_TOKEN), resume)
            .await
            .unwrap()
            .status(),
        200
    );
    app.send_signal("BTC/USD", "buy", 90, 2).await;
    let d = app.decision_number(2).await;
    assert_eq!(d["decision"], "ordered", "{d}");
    app.stop().await;
}

#[tokio::test]
async fn without_a_configured_token_the_admin_mutation_endpoints_do_not_exist() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .post(format!("{}/api/admin/halt", app.admin_url))
        .bearer_auth("anything-at-all-0123")
        .json(&json!({"reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(app.trading_state().await["states"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_margin_ratio_above_the_limit_only_lets_reducing_orders_through() {
    let mut trading = TradingConfig::default();
    trading.limits.max_margin_ratio = Some("0.5".parse().unwrap());
    let app = TestApp::builder().trading(trading).spawn().await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    app.settled_orders(1).await;
    app.post_event(
        "position.updated",
        json!({"symbol": "BTC/USD", "quantity": 0.02, "markPrice": 50000.0, "marginRatio": 0.8}),
    )
    .await;
    app.send_signal("ETH/USD", "buy", 90, 2).await;
    let d = app.decision_number(2).await;
    assert_eq!(d["decision"], "refused", "{d}");
    assert!(reason(&d).contains("reducing"), "{d}");
    app.send_signal("BTC/USD", "sell", 90, 3).await;
    let d = app.decision_number(3).await;
    assert_eq!(d["decision"], "ordered", "{d}");
    assert!(reason(&d).contains("reduces the position"), "{d}");
    app.stop().await;
}

async fn wait_for_order_status(app: &TestApp, status: &str) -> Value {
    app.wait_for(&format!("an order {status}"), || async {
        app.orders()
            .await
            .into_iter()
            .find(|o| o["status"] == status)
    })
    .await
}

#[tokio::test]
async fn open_orders_are_cancelled_when_a_window_begins_if_so_configured() {
    let mut trading = TradingConfig::default();
    trading.maintenance.cancel_open_orders = true;
    let app = TestApp::builder()
        .trading(trading)
        .strategy(RESTING_LIMIT)
        .spawn()
        .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let open = wait_for_order_status(&app, "open").await;
    assert_eq!(open["type"], "limit", "{open}");
    let now = Utc::now();
    app.post_event(
        "system.maintenance",
        json!({"startTime": iso(now + Duration::minutes(2)), "endTime": iso(now + Duration::minutes(20)), "affectedServices": ["trading"]}),
    )
    .await;
    let cancelled = wait_for_order_status(&app, "cancelled").await;
    assert_eq!(cancelled["clientOrderId"], open["clientOrderId"]);
    assert_eq!(app.sim.orders()[0].status, "cancelled");
    app.stop().await;
}

#[tokio::test]
async fn a_limit_order_not_filled_within_its_timeout_is_cancelled() {
    let strategy = format!("{RESTING_LIMIT}unfilled_timeout_secs = 30\n");
    let app = TestApp::builder()
        .strategy(&strategy)
        .manual_clock()
        .spawn()
        .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let open = wait_for_order_status(&app, "open").await;
    // The bot's clock, not the test's patience, says when the 30 seconds are up.
    app.advance(Duration::seconds(30));
    let cancelled = wait_for_order_status(&app, "cancelled").await;
    assert_eq!(cancelled["clientOrderId"], open["clientOrderId"]);
    assert_eq!(cancelled["type"], "limit", "{cancelled}");
    assert_eq!(app.sim.orders()[0].status, "cancelled");
    app.stop().await;
}

/// The venue re-sends a notice under the same `data.id` with new times and no event id header:
/// that is news about the window, not a duplicate.
#[tokio::test]
async fn a_moved_maintenance_window_re_sent_under_the_same_id_moves() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let notice = |start: chrono::DateTime<Utc>, end: chrono::DateTime<Utc>| json!({"id": "mw-1", "startTime": iso(start), "endTime": iso(end), "affectedServices": ["trading"]});
    app.post_event(
        "system.maintenance",
        notice(now + Duration::minutes(1), now + Duration::minutes(30)),
    )
    .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    assert_eq!(app.decision_number(1).await["decision"], "refused");
    // Postponed by two hours: outside the lead time, trading goes on.
    app.post_event(
        "system.maintenance",
        notice(now + Duration::hours(2), now + Duration::hours(3)),
    )
    .await;
    app.send_signal("BTC/USD", "buy", 90, 2).await;
    let d = app.decision_number(2).await;
    assert_eq!(d["decision"], "ordered", "{d}");
    let windows = app.trading_state().await["maintenanceWindows"].clone();
    assert_eq!(windows.as_array().unwrap().len(), 1, "{windows}");
    assert_eq!(windows[0]["key"], "mw-1");
    let start = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert_eq!(
        start(&windows[0]["start"]),
        start(&iso(now + Duration::hours(2)).into()),
        "{windows}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_drawdown_from_the_equity_peak_halts_but_a_withdrawal_is_not_a_drawdown() {
    let mut trading = TradingConfig::default();
    trading.limits.max_drawdown_percent = Some(Decimal::from(10));
    let app = TestApp::builder().trading(trading).spawn().await;
    let balance =
        |total: u32| json!({"asset": "USD", "available": total, "locked": 0, "total": total});
    app.post_event("account.balance_updated", balance(10_000))
        .await;
    // 2000 leave the account: the peak moves down with them, so 8000 is no drawdown.
    app.post_event(
        "account.withdrawal_processed",
        json!({"transactionId": "tx-1", "asset": "USD", "amount": 2000, "status": "completed"}),
    )
    .await;
    app.post_event("account.balance_updated", balance(8_000))
        .await;
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let d = app.decision_number(1).await;
    assert_eq!(d["decision"], "ordered", "{d}");
    // A loss of 10% from the (moved) peak of 8000 halts.
    app.post_event("account.balance_updated", balance(7_200))
        .await;
    let halted = app
        .wait_for("the halt", || async {
            let s = app.trading_state().await;
            s["states"]
                .as_array()
                .and_then(|a| a.iter().find(|e| e["state"] == "halted").cloned())
        })
        .await;
    assert_eq!(halted["setBy"], "drawdown", "{halted}");
    assert!(
        halted["reason"]
            .as_str()
            .unwrap()
            .contains("max drawdown 10% reached"),
        "{halted}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_filled_entry_gets_a_venue_stop_loss_and_take_profit_that_go_when_the_position_closes() {
    let strategy = crate::helpers::TEST_STRATEGY.replace(
        "[limits]",
        "[exits]\nstop_loss = true\ntake_profit = true\n\n[limits]",
    );
    let app = TestApp::builder().strategy(&strategy).spawn().await;
    // The test signal carries support 48500 and resistance 50200 around the 50000 price.
    app.send_signal("BTC/USD", "buy", 90, 1).await;
    let orders = app
        .wait_for(
            "the entry and its two protective orders at the venue",
            || async {
                let o = app.orders().await;
                (o.len() == 3 && o.iter().all(|o| o["orderId"].is_string())).then_some(o)
            },
        )
        .await;
    let entry = orders.iter().find(|o| o["role"] == "entry").unwrap();
    let stop = orders.iter().find(|o| o["role"] == "stop_loss").unwrap();
    let target = orders.iter().find(|o| o["role"] == "take_profit").unwrap();
    assert_eq!(stop["type"], "stop", "{stop}");
    assert_eq!(stop["side"], "sell", "{stop}");
    assert_eq!(stop["stopPrice"].to_string(), "48500", "{stop}");
    assert_eq!(target["type"], "limit", "{target}");
    assert_eq!(target["price"].to_string(), "50200", "{target}");
    assert_eq!(stop["quantity"], entry["quantity"]);
    assert_eq!(stop["parentClientOrderId"], entry["clientOrderId"]);
    let at_venue = app.sim.orders();
    assert!(
        at_venue.iter().any(|o| o.order_type == "stop"),
        "{at_venue:?}"
    );

    // A sell signal closes the long; the protective orders must not outlive the position.
    app.send_signal("BTC/USD", "sell", 90, 2).await;
    app.wait_for("every order terminal and the position flat", || async {
        let o = app.orders().await;
        let terminal = o.iter().all(|o| {
            matches!(
                o["status"].as_str(),
                Some("filled" | "cancelled" | "rejected" | "expired")
            )
        });
        let flat = app
            .positions()
            .await
            .iter()
            .all(|p| dec(&p["quantity"]).is_zero());
        (terminal && flat).then_some(())
    })
    .await;
    assert!(app
        .sim
        .orders()
        .iter()
        .all(|o| o.status == "filled" || o.status == "cancelled"));
    app.stop().await;
}

/// A seeded random run through the whole pipeline (webhooks, inbox, dispatcher, store, executor,
/// simulator): signals, balance updates, operator halts and maintenance notices in random order.
/// After every decision: nothing is ordered while halted or in maintenance, and the venue's
/// positions, gross exposure and order rate stay within the configured limits.
#[tokio::test]
async fn a_random_run_through_the_pipeline_never_breaks_a_limit_or_a_stop() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = 20261127;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut trading = TradingConfig::default();
    trading.limits.max_position_notional = Some(Decimal::from(2200));
    trading.limits.max_gross_exposure = Some(Decimal::from(3500));
    trading.limits.max_orders_per_minute = Some(7);
    let app = TestApp::builder().trading(trading).token().spawn().await;
    let (mut halted, mut maintenance, mut sent) = (false, false, 0usize);
    for step in 0..40 {
        let ctx = format!("seed {seed}, step {step}");
        let mut choice = rng.gen_range(0..12);
        if choice == 3 {
            // Clear whatever stop is on, so the run also trades.
            choice = if halted {
                0
            } else if maintenance {
                1
            } else {
                4
            };
        }
        match choice {
            0 => {
                halted = !halted;
                let path = if halted {
                    "/api/admin/halt"
                } else {
                    "/api/admin/resume"
                };
                let r = app
                    .admin_post_json(path, &json!({"reason": "random halt"}))
                    .await;
                assert_eq!(r.status(), 200, "{ctx}");
            }
            1 => {
                // A window that is on (starts now) or off (postponed by a day), same id.
                maintenance = !maintenance;
                let start = if maintenance {
                    Utc::now()
                } else {
                    Utc::now() + Duration::days(1)
                };
                app.post_event_with_id(
                    &format!("mw-{step}"),
                    "system.maintenance",
                    json!({"id": "mw", "startTime": iso(start), "endTime": iso(start + Duration::hours(1)), "affectedServices": ["trading"]}),
                )
                .await;
            }
            2 => {
                let total = rng.gen_range(1_000..200_000);
                app.post_event(
                    "account.balance_updated",
                    json!({"asset": "USD", "available": total, "locked": 0, "total": total}),
                )
                .await;
            }
            _ => {
                let symbol = if rng.gen_bool(0.5) {
                    "BTC/USD"
                } else {
                    "ETH/USD"
                };
                let side = if rng.gen_bool(0.7) { "buy" } else { "sell" };
                sent += 1;
                app.send_signal(symbol, side, 90, step).await;
                let d = app.decision_number(sent).await;
                if halted || maintenance {
                    assert_ne!(d["decision"], "ordered", "{ctx}: {d}");
                }
                // Let the order fill so the positions reflect it.
                let n = app.orders().await.len();
                app.settled_orders(n).await;
                let mut gross = Decimal::ZERO;
                for p in app.positions().await {
                    let q = dec(&p["quantity"]);
                    let mid = app.sim.mid_price(p["symbol"].as_str().unwrap()).unwrap();
                    // 2% allowance for the price walk between the decision and now.
                    assert!(q.abs() * mid <= Decimal::from(2244), "{ctx}: position {p}");
                    gross += q.abs() * mid;
                }
                assert!(gross <= Decimal::from(3570), "{ctx}: gross {gross}");
            }
        }
    }
    // The seed is chosen so that the run meets halts, maintenance, the rate limit and the
    // position limit, and trades in between.
    let reasons: Vec<String> = app.signals().await.iter().map(reason).collect();
    for needle in [
        "trading is halted",
        "maintenance window",
        "max orders per minute",
        "would be exceeded",
        "market buy",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "seed {seed}: no decision says {needle:?}"
        );
    }
    let orders = app.sim.orders();
    assert!(!orders.is_empty(), "the run never traded; change the seed");
    let first = orders.iter().map(|o| o.created_at).min().unwrap();
    let last = orders.iter().map(|o| o.created_at).max().unwrap();
    if last - first < Duration::seconds(60) {
        assert!(orders.len() <= 7, "{} orders within a minute", orders.len());
    }
    app.stop().await;
}
