//! The webhook edge under hostile input: a table of bad requests, each with the status it must
//! get, and none of them may change orders or positions. Plus the source allowlist, the rate
//! limit, timeouts and TLS.

use crate::helpers::{sign, sign_with, signal_body, signed_request, TestApp, WEBHOOK_PATH};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How a case signs its body.
#[derive(Clone, Copy)]
enum Sig {
    None,
    Valid,
    Literal(&'static str),
    /// Signed with another secret.
    WrongSecret,
    /// The signature of a different body.
    OtherBody,
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: String,
    sig: Sig,
    status: u16,
}

fn post(name: &'static str, body: impl Into<String>, sig: Sig, status: u16) -> Case {
    Case {
        name,
        method: "POST",
        path: WEBHOOK_PATH,
        content_type: Some("application/json"),
        body: body.into(),
        sig,
        status,
    }
}

fn signed_event(event: &str, data: &str) -> String {
    format!(
        r#"{{"event":"{event}","timestamp":"{}","data":{data}}}"#,
        crate::helpers::epoch_iso()
    )
}

fn cases() -> Vec<Case> {
    let signal = signal_body("BTC/USD", "buy", 99, 1);
    vec![
        post("no signature", signal.clone(), Sig::None, 401),
        post("empty signature", signal.clone(), Sig::Literal(""), 401),
        post(
            "short signature",
            signal.clone(),
            Sig::Literal("abcdef"),
            401,
        ),
        post(
            "63 hex characters",
            signal.clone(),
            Sig::Literal("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            401,
        ),
        post(
            "66 hex characters",
            signal.clone(),
            Sig::Literal("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            401,
        ),
        post(
            "64 non-hex characters",
            signal.clone(),
            Sig::Literal("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"),
            401,
        ),
        post(
            "prefixed sha256=",
            signal.clone(),
            Sig::Literal("sha256=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            401,
        ),
        post(
            "right length, wrong value",
            signal.clone(),
            Sig::Literal("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            401,
        ),
        post("wrong secret", signal.clone(), Sig::WrongSecret, 401),
        post(
            "signature of another body",
            signal.clone(),
            Sig::OtherBody,
            401,
        ),
        post("malformed JSON, unsigned", "{\"event\":", Sig::None, 401),
        Case {
            content_type: Some("text/plain"),
            ..post("wrong content type", signal.clone(), Sig::Valid, 415)
        },
        Case {
            content_type: None,
            ..post("no content type", signal.clone(), Sig::Valid, 415)
        },
        Case {
            content_type: Some("application/x-www-form-urlencoded"),
            ..post("form content type", "a=b", Sig::Valid, 415)
        },
        post(
            "oversized body",
            format!(
                r#"{{"event":"test","data":{{"message":"{}"}}}}"#,
                "x".repeat(65 * 1024)
            ),
            Sig::Valid,
            413,
        ),
        Case {
            method: "GET",
            ..post("GET instead of POST", "", Sig::None, 405)
        },
        Case {
            path: "/webhooks/other",
            ..post("wrong path", signal.clone(), Sig::Valid, 404)
        },
        // Signed but unusable: acknowledged (so the venue stops retrying) and kept as dead letters.
        post("malformed JSON, signed", "{\"event\":", Sig::Valid, 200),
        post("empty body, signed", "", Sig::Valid, 200),
        post("JSON array, signed", "[1,2,3]", Sig::Valid, 200),
        post(
            "confidence 140",
            signed_event(
                "signal.generated",
                r#"{"symbol":"BTC/USD","recommendation":"buy","confidence":140}"#,
            ),
            Sig::Valid,
            200,
        ),
        post(
            "negative confidence",
            signed_event(
                "signal.generated",
                r#"{"symbol":"BTC/USD","recommendation":"buy","confidence":-5}"#,
            ),
            Sig::Valid,
            200,
        ),
        post(
            "confidence as a string",
            signed_event(
                "signal.generated",
                r#"{"symbol":"BTC/USD","recommendation":"buy","confidence":"high"}"#,
            ),
            Sig::Valid,
            200,
        ),
        post(
            "lower-case symbol",
            signed_event(
                "signal.generated",
                r#"{"symbol":"btc/usd","recommendation":"buy","confidence":99}"#,
            ),
            Sig::Valid,
            200,
        ),
        post(
            "huge number",
            signed_event(
                "order.updated",
                r#"{"orderId":"x1","status":"filled","filledQuantity":1e400,"averagePrice":1}"#,
            ),
            Sig::Valid,
            200,
        ),
        post(
            "NaN as a string",
            signed_event(
                "order.updated",
                r#"{"orderId":"x2","status":"filled","filledQuantity":"NaN","averagePrice":1}"#,
            ),
            Sig::Valid,
            200,
        ),
        post(
            "quantity beyond decimal range",
            signed_event(
                "order.updated",
                r#"{"orderId":"x3","status":"filled","filledQuantity":123456789012345678901234567890123,"averagePrice":1}"#,
            ),
            Sig::Valid,
            200,
        ),
        post(
            "missing orderId",
            signed_event("order.updated", r#"{"status":"filled"}"#),
            Sig::Valid,
            200,
        ),
        post(
            "negative balance fields",
            signed_event(
                "account.deposit_received",
                r#"{"transactionId":"t","asset":"USD","amount":-5}"#,
            ),
            Sig::Valid,
            200,
        ),
        // Signed and well-formed but not ours to act on.
        post(
            "unknown event type",
            signed_event("shiny.new", "{}"),
            Sig::Valid,
            200,
        ),
        post(
            "news about an order we never placed",
            signed_event(
                "order.updated",
                r#"{"orderId":"not-ours","status":"filled","filledQuantity":1,"averagePrice":1}"#,
            ),
            Sig::Valid,
            200,
        ),
    ]
}

async fn send(app: &TestApp, case: &Case) -> u16 {
    let url = app.webhook_url.replace(WEBHOOK_PATH, case.path);
    let mut req = app
        .http
        .request(case.method.parse().unwrap(), url)
        .body(case.body.clone());
    if let Some(ct) = case.content_type {
        req = req.header("Content-Type", ct);
    }
    let signature = match case.sig {
        Sig::None => None,
        Sig::Valid => Some(sign(case.body.as_bytes())),
        Sig::Literal(s) => Some(s.to_owned()),
        Sig::WrongSecret => Some(sign_with("not-the-secret", case.body.as_bytes())),
        Sig::OtherBody => Some(sign(b"{}")),
    };
    if let Some(sig) = signature {
        req = req.header("X-Webhook-Signature", sig);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_change_no_order_or_position() {
    let app = TestApp::spawn().await;
    let cases = cases();
    assert!(cases.len() >= 25);
    for case in &cases {
        assert_eq!(send(&app, case).await, case.status, "{}", case.name);
    }
    // Raw-socket cases: a body shorter than its Content-Length is refused, never stored.
    let body = signal_body("BTC/USD", "buy", 99, 2);
    let truncated = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Webhook-Signature: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        sign(body.as_bytes()),
        &body[..body.len() / 2]
    );
    assert_eq!(
        raw_status(&app, truncated.as_bytes(), true).await,
        Some(400),
        "truncated body"
    );
    // A captured, correctly signed request sent again is a duplicate and changes nothing.
    let replay = post(
        "signed replay",
        signed_event("shiny.new", "{}"),
        Sig::Valid,
        200,
    );
    assert_eq!(send(&app, &replay).await, 200);

    let counts = app
        .wait_for("every stored event handled", || async {
            let c = app.get("/api/events").await;
            c.get("pending").is_none().then_some(c)
        })
        .await;
    // 12 signed-but-unusable cases are dead letters; unknown and foreign events are not.
    assert_eq!(counts["dead"], 12, "{counts}");
    assert_eq!(
        counts["processed"], 1,
        "the unknown event, stored once: {counts}"
    );
    assert_eq!(
        counts["deferred"], 1,
        "news about an order not (yet) known: {counts}"
    );
    assert_eq!(app.get("/api/event-types").await["shiny.new"], 1);
    assert!(app.orders().await.is_empty());
    assert!(app.positions().await.is_empty());
    assert!(app.signals().await.is_empty());
    assert!(app.sim.orders().is_empty());
    app.stop().await;
}

/// Sends raw bytes; `half_close` shuts the write side so the server sees the body end early.
/// Returns the status code, or `None` when the server closed without answering.
async fn raw_status(app: &TestApp, request: &[u8], half_close: bool) -> Option<u16> {
    let addr = app
        .webhook_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    if half_close {
        stream.shutdown().await.unwrap();
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server neither answered nor closed the connection"
    );
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok())
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let app = TestApp::builder()
        .tweak(|c| {
            c.webhook.header_timeout = Duration::from_millis(300);
            c.webhook.read_timeout = Duration::from_millis(300);
        })
        .spawn()
        .await;
    let addr = app
        .webhook_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // Headers that never finish: the connection is closed.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"POST /webhooks/vibe HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "a client stuck in its headers was not cut off"
    );
    // A body that stalls: 408.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"POST /webhooks/vibe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"event\"")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(app.get("/api/events").await, serde_json::json!({}));
    app.stop().await;
}

#[tokio::test]
async fn a_flood_from_one_source_is_rate_limited_with_429() {
    let app = TestApp::builder()
        .tweak(|c| {
            c.webhook.rate_limit_per_second = 1;
            c.webhook.rate_limit_burst = 3;
        })
        .spawn()
        .await;
    let mut statuses = Vec::new();
    for n in 0..30 {
        let body = signed_event("test", &format!(r#"{{"message":"m{n}"}}"#));
        statuses.push(app.post_signed(&body).await.status().as_u16());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(ok + limited, 30, "{statuses:?}");
    assert!(ok >= 3, "the burst is served: {statuses:?}");
    assert!(limited >= 10, "the flood is refused: {statuses:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_allowlist_admits_listed_sources_and_trusted_proxies_only() {
    // Loopback is not in the venue's ranges: refused before the signature is even checked.
    let app = TestApp::builder()
        .tweak(|c| {
            c.webhook.allow_sources = vec!["203.0.113.0/24".parse().unwrap()];
        })
        .spawn()
        .await;
    let body = signed_event("test", r#"{"message":"a"}"#);
    assert_eq!(app.post_signed(&body).await.status(), 403);
    // A forwarded-for header from an untrusted peer proves nothing.
    let r = app
        .post_signed_with(&body, &[("X-Forwarded-For", "203.0.113.5")])
        .await;
    assert_eq!(r.status(), 403);
    app.stop().await;

    let app = TestApp::builder()
        .tweak(|c| {
            c.webhook.allow_sources = vec!["203.0.113.0/24".parse().unwrap()];
            c.webhook.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        })
        .spawn()
        .await;
    for (client, want) in [("203.0.113.5", 200), ("6.6.6.6", 403)] {
        let r = app
            .post_signed_with(&body, &[("X-Forwarded-For", client)])
            .await;
        assert_eq!(r.status(), want, "client {client}");
    }
    app.stop().await;
}

#[tokio::test]
async fn webhooks_can_be_served_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::helpers::test_certificate(dir.path());
    let (c, k) = (cert.clone(), key.clone());
    let app = TestApp::builder()
        .tweak(move |cfg| cfg.webhook.tls = Some((c, k)))
        .spawn()
        .await;
    let https_url = app
        .webhook_url
        .replace("http://127.0.0.1", "https://localhost");
    let client = crate::helpers::https_client(&cert);
    let body = signed_event("test", r#"{"message":"over tls"}"#);
    let r = signed_request(&client, &https_url, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP to the TLS port gets nowhere.
    let plain = app
        .http
        .post(&app.webhook_url)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    app.stop().await;
}
