//! Test support for the simulator's own in-process tests: a venue on an ephemeral port, requests signed
//! here with `hmac` directly (never through `auth.rs`, so the two can disagree), and bounded waits.

use std::future::Future;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::oneshot;

use super::{SimConfig, Simulator};

pub(crate) const API_KEY: &str = "test-key";
pub(crate) const API_SECRET: &str = "test-secret";
pub(crate) const WEBHOOK_SECRET: &str = "test-webhook-secret";

/// Upper bound for anything a test waits on; generous so a loaded CI machine does not flake.
const WAIT: Duration = Duration::from_secs(10);

pub(crate) fn hmac_hex(key: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Awaits `f`, failing the test if it takes longer than the bound.
pub(crate) async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .expect("timed out waiting")
}

/// Polls `probe` until it yields a value, failing the test after the bound.
pub(crate) async fn eventually<T, F, Fut>(mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(async {
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

/// One webhook request as a receiver saw it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub signature: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl Received {
    pub(crate) fn new(headers: &HeaderMap, body: Bytes) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        Self {
            signature: text("x-webhook-signature"),
            content_type: text("content-type"),
            body,
        }
    }
}

/// A simulator served on 127.0.0.1:0; stops when dropped.
pub(crate) struct TestVenue {
    pub sim: Simulator,
    base: String,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

impl TestVenue {
    pub(crate) async fn start(configure: impl FnOnce(&mut SimConfig)) -> Self {
        let mut cfg = SimConfig::new(API_KEY, API_SECRET, WEBHOOK_SECRET);
        configure(&mut cfg);
        let sim = Simulator::new(cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(sim.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            sim,
            base,
            client: reqwest::Client::new(),
            _stop: stop,
        }
    }

    /// The full URL of `path` (which includes `/api/v1`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn signature(&self, method: &str, path: &str, body: &str, ts: &str) -> String {
        hmac_hex(API_SECRET, format!("{method}{path}{body}{ts}").as_bytes())
    }

    /// A correctly signed request; `path` includes `/api/v1` and any query.
    pub(crate) async fn send(&self, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
        let ts = chrono::Utc::now().timestamp().to_string();
        let sig = self.signature(method, path, body, &ts);
        self.send_raw(method, path, body, Some(API_KEY), Some(&ts), Some(&sig))
            .await
    }

    pub(crate) async fn send_raw(
        &self,
        method: &str,
        path: &str,
        body: &str,
        key: Option<&str>,
        ts: Option<&str>,
        sig: Option<&str>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        for (name, value) in [
            ("X-API-Key", key),
            ("X-Timestamp", ts),
            ("X-Signature", sig),
        ] {
            if let Some(value) = value {
                req = req.header(name, value);
            }
        }
        if !body.is_empty() {
            req = req.body(body.to_string());
        }
        let resp = within(req.send()).await.expect("request");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }
}
