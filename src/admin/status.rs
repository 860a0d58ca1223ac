//! `sigex status`: a compact summary of a running bot, read from its admin API (`/api/summary`,
//! and `/api/trading-state` where the build has it). `--json` prints the summary as the API gives
//! it, for scripts.
//!
//! Exit codes: 0 ready, 1 running but not ready (the failing checks are printed), 2 unreachable.

use serde_json::Value;
use std::fmt::Write;
use std::time::Duration;

pub async fn run(admin_url: &str, json: bool) -> anyhow::Result<i32> {
    let base = admin_url.trim_end_matches('/');
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let summary = match fetch(&http, &format!("{base}/api/summary")).await {
        Ok(Some(v)) => v,
        Ok(None) | Err(_) => {
            eprintln!("sigex status: no admin API at {base} (is the bot running? --admin-url)");
            return Ok(2);
        }
    };
    let trading = fetch(&http, &format!("{base}/api/trading-state"))
        .await
        .ok()
        .flatten();
    if json {
        let mut out = summary.clone();
        out["tradingState"] = trading.unwrap_or(Value::Null);
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render(&summary, trading.as_ref()));
    }
    Ok(if summary["ready"] == Value::Bool(true) {
        0
    } else {
        1
    })
}

/// `Ok(None)` on 404.
async fn fetch(http: &reqwest::Client, url: &str) -> Result<Option<Value>, reqwest::Error> {
    let r = http.get(url).send().await?;
    if r.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    Ok(Some(r.error_for_status()?.json().await?))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A number rounded for a person: money to the cent, prices to 8 decimals (an average price is
/// exact and can run to 28 digits).
fn rounded(v: &Value, dp: u32) -> String {
    let parsed = match v {
        Value::String(s) => s.parse::<rust_decimal::Decimal>().ok(),
        Value::Number(n) => n.to_string().parse::<rust_decimal::Decimal>().ok(),
        _ => None,
    };
    match parsed {
        Some(d) => d.round_dp(dp).normalize().to_string(),
        None => text(v),
    }
}

fn counts(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "none".into(),
    }
}

/// The human summary.
pub fn render(s: &Value, trading: Option<&Value>) -> String {
    let mut out = String::new();
    let ready = if s["ready"] == Value::Bool(true) {
        "ready".to_owned()
    } else {
        let failing: Vec<String> = s["failing"]
            .as_array()
            .map(|a| a.iter().map(|f| text(&f["check"])).collect())
            .unwrap_or_default();
        format!("NOT READY ({})", failing.join(", "))
    };
    let _ = writeln!(
        out,
        "sigex {} | {ready} | up since {}",
        text(&s["mode"]),
        text(&s["startedAt"])
    );
    let trading = match trading {
        None => "not available".to_owned(),
        Some(t) => text(&t["state"]),
    };
    let _ = writeln!(out, "trading state: {trading}");
    for f in s["failing"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  failing {}: {}",
            text(&f["check"]),
            text(&f["detail"])
        );
    }
    let lag = match &s["inboxLagMs"] {
        Value::Null => "0 ms".to_owned(),
        v => format!("{v} ms"),
    };
    let _ = writeln!(out, "inbox: {} | lag {lag}", counts(&s["inbox"]));
    let _ = writeln!(out, "orders: {}", counts(&s["orders"]));
    let _ = writeln!(out, "signals: {}", counts(&s["decisions"]));
    let _ = writeln!(
        out,
        "PnL: {} after fees (realized {}, unrealized {}, fees {})",
        rounded(&s["netPnl"], 2),
        rounded(&s["realizedPnl"], 2),
        rounded(&s["unrealizedPnl"], 2),
        rounded(&s["fees"], 2)
    );
    let positions: Vec<&Value> = s["positions"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let _ = writeln!(out, "positions: {}", positions.len());
    for p in positions {
        let _ = writeln!(
            out,
            "  {:<10} qty {:<12} avg {:<14} unrealized {:<12} realized {}{}",
            text(&p["symbol"]),
            text(&p["quantity"]),
            rounded(&p["averagePrice"], 8),
            rounded(&p["unrealizedPnl"], 2),
            rounded(&p["realizedPnl"], 2),
            if p["drift"] == Value::Bool(true) {
                format!("  DRIFT (venue {})", text(&p["venueSignedQuantity"]))
            } else {
                String::new()
            }
        );
    }
    let open: Vec<&Value> = s["openOrders"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let _ = writeln!(out, "open orders: {}", open.len());
    for o in open {
        let _ = writeln!(
            out,
            "  {} {} {} {} filled {} {}",
            text(&o["clientOrderId"]),
            text(&o["symbol"]),
            text(&o["side"]),
            text(&o["quantity"]),
            text(&o["filledQuantity"]),
            text(&o["status"])
        );
    }
    let _ = writeln!(out, "last events:");
    for e in s["recentEvents"].as_array().into_iter().flatten().take(5) {
        let _ = writeln!(
            out,
            "  #{} {} {} {}{}",
            text(&e["seq"]),
            text(&e["eventType"]),
            text(&e["status"]),
            text(&e["receivedAt"]),
            match &e["error"] {
                Value::String(err) => format!(" ({err})"),
                _ => String::new(),
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_status_summary_shows_readiness_positions_orders_and_events() {
        let summary = json!({
            "mode": "live", "startedAt": "2026-11-27T12:00:00.000Z", "ready": false,
            "failing": [{"check": "venue", "detail": "no answer from the venue yet"}],
            "inbox": {"processed": 10, "dead": 1}, "inboxLagMs": 250,
            "orders": {"filled": 3, "open": 1}, "decisions": {"ordered": 4},
            "realizedPnl": 12.5, "unrealizedPnl": -1.25, "fees": 0.4, "netPnl": 10.85,
            "positions": [{"symbol": "BTC/USD", "quantity": 0.02, "averagePrice": "50000.123456789123",
                           "unrealizedPnl": -1.25, "realizedPnl": 12.5, "drift": true, "venueSignedQuantity": 0.01}],
            "openOrders": [{"clientOrderId": "sx-abc", "symbol": "ETH/USD", "side": "buy",
                            "quantity": 1, "filledQuantity": 0, "status": "open"}],
            "recentEvents": [{"seq": 11, "eventType": "signal.generated", "status": "dead",
                              "receivedAt": "2026-11-27T12:00:01.000Z", "error": "confidence 140"}]
        });
        let cases = [
            ("not ready names the check", None, "NOT READY (venue)"),
            (
                "failing detail",
                None,
                "failing venue: no answer from the venue yet",
            ),
            ("trading state absent", None, "trading state: not available"),
            (
                "trading state present",
                Some(json!({"state": "halted"})),
                "trading state: halted",
            ),
            (
                "inbox and lag",
                None,
                "inbox: dead 1, processed 10 | lag 250 ms",
            ),
            (
                "pnl",
                None,
                "PnL: 10.85 after fees (realized 12.5, unrealized -1.25, fees 0.4)",
            ),
            ("an exact average, rounded", None, "avg 50000.12345679"),
            ("drift", None, "DRIFT (venue 0.01)"),
            ("open order", None, "sx-abc ETH/USD buy 1 filled 0 open"),
            ("dead event", None, "#11 signal.generated dead"),
        ];
        for (name, trading, expected) in cases {
            let out = render(&summary, trading.as_ref());
            assert!(out.contains(expected), "{name}: {expected:?} not in\n{out}");
        }
    }
}
