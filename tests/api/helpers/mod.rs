//! What every end-to-end test shares: the bot under test ([`TestApp`], built by
//! [`TestApp::builder`]), the `sigex` process rig ([`process`]), where databases live
//! ([`database`]), and the small tools: signing, test bodies, reading money out of JSON, local
//! receivers and certificates.

mod app;
pub mod database;
pub mod process;

pub use app::{reconciled, TestApp};

use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use serde_json::Value;
use sha2::Sha256;
use sigex::sim::{SimConfig, Simulator};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";
pub const WEBHOOK_PATH: &str = "/webhooks/vibe";
/// The venue API credentials of every test bot and of its simulator.
pub const API_KEY: &str = "test-key";
pub const API_SECRET: &str = "test-api-secret";
/// The admin token [`TestAppBuilder::token`] configures.
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";
/// How long a test waits for the pipeline before failing; generous for a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub const TEST_STRATEGY: &str = r#"
name = "test"
symbols = ["BTC/USD", "ETH/USD"]
recommendations = ["buy", "sell"]
min_confidence = 70

[sizing]
method = "fixed_notional"
notional = 1000

[limits]
max_position_notional = 2500
"#;

/// The `X-Webhook-Signature` of `body` under the test webhook secret.
pub fn sign(body: &[u8]) -> String {
    sign_with(WEBHOOK_SECRET, body)
}

/// The `X-Webhook-Signature` of `body` under `secret`.
pub fn sign_with(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A POST of `body` to `url` as the venue sends it: JSON, signed with the test webhook secret.
pub fn signed_request(http: &reqwest::Client, url: &str, body: &str) -> reqwest::RequestBuilder {
    http.post(url)
        .header("Content-Type", "application/json")
        .header("X-Webhook-Signature", sign(body.as_bytes()))
        .body(body.to_owned())
}

/// POSTs `body`, signed with the webhook secret, to `url`.
pub async fn post_signed_to(http: &reqwest::Client, url: &str, body: &str) -> reqwest::Response {
    signed_request(http, url, body)
        .send()
        .await
        .expect("webhook endpoint reachable")
}

/// POSTs `body`, signed, until it is answered 200, as the venue retries a delivery: up to
/// `attempts` times, `pause` apart (a bot being killed and restarted is away for a while).
/// Returns how many attempts failed.
pub async fn post_until_acknowledged(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    attempts: usize,
    pause: Duration,
) -> usize {
    for failed in 0..attempts {
        let sent = signed_request(http, url, body).send().await;
        if matches!(&sent, Ok(r) if r.status() == 200) {
            return failed;
        }
        tokio::time::sleep(pause).await;
    }
    panic!("never acknowledged after {attempts} attempts: {body}");
}

/// GETs `url` as JSON; `None` while nothing answers there (a bot restarting) or the answer is
/// not JSON.
pub async fn get_json(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// A money or quantity field of the admin API, exactly. The API writes every one as a JSON number
/// (with all its digits); anything else, or digits a `Decimal` cannot hold exactly, fails the test.
pub fn dec(v: &Value) -> Decimal {
    let Value::Number(n) = v else {
        panic!("{v} is not a number");
    };
    let text = n.to_string();
    Decimal::from_str_exact(&text).unwrap_or_else(|e| panic!("{text} is not a decimal: {e}"))
}

/// The time test webhooks are dated at: fixed for the whole test process, so a body built twice is
/// byte-identical (a duplicate), and recent, so the freshness rule lets it be applied.
pub fn epoch() -> chrono::DateTime<chrono::Utc> {
    static EPOCH: std::sync::OnceLock<chrono::DateTime<chrono::Utc>> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = chrono::Utc::now();
        now - chrono::Duration::milliseconds(i64::from(now.timestamp_subsec_millis()))
    })
}

/// [`epoch`] as an envelope `timestamp`.
pub fn epoch_iso() -> String {
    sigex::clock::ts(epoch())
}

/// A `signal.generated` body; `nonce` makes otherwise equal signals distinct (it dates the
/// signal `nonce` milliseconds before [`epoch`]).
pub fn signal_body(symbol: &str, recommendation: &str, confidence: u32, nonce: u32) -> String {
    serde_json::json!({
        "event": "signal.generated",
        "timestamp": sigex::clock::ts(epoch() - chrono::Duration::milliseconds(i64::from(nonce))),
        "data": {
            "symbol": symbol,
            "recommendation": recommendation,
            "confidence": confidence,
            "timeHorizon": "short_term",
            "riskLevel": "medium",
            "reasoning": ["test"],
            "technicalAnalysis": {"rsi": 35.2, "macd": "bullish", "support": 48500.0, "resistance": 50200.0}
        }
    })
    .to_string()
}

/// A simulator serving on a loopback port until `stop` is triggered.
pub struct RunningSim {
    pub sim: Simulator,
    pub stop: sigex::shutdown::ShutdownTrigger,
    /// The REST API's base URL (`http://127.0.0.1:PORT/api/v1`): a bot's `[venue] base_url`.
    pub url: String,
}

/// Starts the simulator on a free loopback port.
pub async fn start_sim(config: SimConfig) -> RunningSim {
    let sim = Simulator::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let (stop, mut shutdown) = sigex::shutdown::shutdown_pair();
    tokio::spawn(
        sim.clone()
            .serve(listener, async move { shutdown.wait().await }),
    );
    RunningSim { sim, stop, url }
}

/// The test simulator's configuration: the test credentials and webhook secret.
pub fn sim_config() -> SimConfig {
    SimConfig::new(API_KEY, API_SECRET, WEBHOOK_SECRET)
}

/// A venue client with the bot's credentials: "someone else" trading on the same account.
pub fn venue_client(sim_url: &str) -> sigex::venue::VenueClient {
    sigex::venue::VenueClient::new(
        sim_url,
        sigex::config::Credentials {
            api_key: sigex::config::Secret::new(API_KEY),
            api_secret: sigex::config::Secret::new(API_SECRET),
        },
        Duration::from_secs(5),
        Arc::new(sigex::clock::SystemClock),
    )
    .unwrap()
}

/// A GTC buy of `quantity` `symbol` as another client of the account would send it: a limit
/// order at `limit`, or a market order.
pub fn buy_request(
    client_order_id: &str,
    symbol: &str,
    quantity: &str,
    limit: Option<&str>,
) -> sigex::venue::wire::PlaceOrderRequest {
    sigex::venue::wire::PlaceOrderRequest {
        symbol: symbol.into(),
        side: "buy".into(),
        order_type: if limit.is_some() { "limit" } else { "market" }.into(),
        quantity: quantity.parse().unwrap(),
        price: limit.map(|p| p.parse().unwrap()),
        stop_price: None,
        time_in_force: "GTC".into(),
        client_order_id: client_order_id.into(),
    }
}

/// Buys BTC/USD with a limit 20% below the price: it rests at the venue.
pub const RESTING_LIMIT: &str = r#"
symbols = ["BTC/USD"]
recommendations = ["buy", "sell"]
min_confidence = 0

[sizing]
method = "fixed_notional"
notional = 1000

[orders]
type = "limit"
limit_offset_bps = 2000
"#;

/// What a local notification receiver got: `(path, JSON body)` per request it answered 200.
pub type Received = Arc<std::sync::Mutex<Vec<(String, Value)>>>;

/// A local HTTP receiver for notifications. It answers 500 to the first `fail_first` requests
/// (to exercise retries), then 200, and records what it accepted.
pub async fn spawn_receiver(fail_first: usize) -> (String, Received) {
    use axum::extract::{Path, State};
    let received: Received = Arc::default();
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(fail_first));
    let state = (received.clone(), failures);
    let router = axum::Router::new()
        .route(
            "/{*path}",
            axum::routing::post(
                |State((received, failures)): State<(
                    Received,
                    Arc<std::sync::atomic::AtomicUsize>,
                )>,
                 Path(path): Path<String>,
                 axum::Json(body): axum::Json<Value>| async move {
                    use std::sync::atomic::Ordering;
                    if failures
                        .try_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    received.lock().unwrap().push((format!("/{path}"), body));
                    axum::http::StatusCode::OK
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}"), received)
}

/// A self-signed certificate for `localhost` and 127.0.0.1, made by `openssl` in `dir`: the
/// `(certificate, key)` PEM files.
pub fn test_certificate(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "keyUsage=digitalSignature",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl makes the test certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert, key)
}

/// A client that trusts `cert` and reaches `localhost` on 127.0.0.1.
pub fn https_client(cert: &std::path::Path) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(cert).unwrap()).unwrap(),
        )
        .resolve("localhost", "127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap()
}
