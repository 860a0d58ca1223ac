use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use sigex::app::RunningBot;
use sigex::clock::{SharedClock, SystemClock};
use sigex::config::{
    AdminConfig, Config, Credentials, InboxConfig, Mode, PaperConfig, Secret, StorageConfig,
    TradingConfig, VenueConfig, WebhookConfig,
};
use sigex::shutdown::ShutdownTrigger;
use sigex::sim::{SimConfig, Simulator};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";
pub const WEBHOOK_PATH: &str = "/webhooks/vibe";
/// How long a test waits for the pipeline before failing; generous for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(20);

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

pub struct TestApp {
    pub bot: Option<RunningBot>,
    pub sim: Simulator,
    sim_stop: ShutdownTrigger,
    pub webhook_url: String,
    pub admin_url: String,
    pub http: reqwest::Client,
    /// The config the bot runs with, for a restart on the same database.
    config: Option<(Config, String)>,
    pub sim_url: String,
    _dir: tempfile::TempDir,
}

/// The admin token `spawn_app_with_token` configures.
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

/// Starts the simulator and a live-mode bot pointed at it.
pub async fn spawn_app() -> TestApp {
    spawn_app_full(|_| {}, |_| {}, TEST_STRATEGY).await
}

/// Like `spawn_app`, with admin mutations enabled under `ADMIN_TOKEN`.
pub async fn spawn_app_with_token() -> TestApp {
    spawn_app_tweaked(|c| c.admin.token = Some(Secret::new(ADMIN_TOKEN))).await
}

/// Like `spawn_app`, with the bot's configuration adjusted first.
pub async fn spawn_app_tweaked(tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_full(|_| {}, tweak, TEST_STRATEGY).await
}

/// Like `spawn_app`, with account limits, maintenance and alert settings.
pub async fn spawn_app_with(trading: TradingConfig) -> TestApp {
    spawn_app_with_strategy(trading, TEST_STRATEGY).await
}

/// Like `spawn_app_with`, trading under the given strategy file text instead of `TEST_STRATEGY`.
pub async fn spawn_app_with_strategy(trading: TradingConfig, strategy: &str) -> TestApp {
    spawn_app_full(|_| {}, move |c| c.trading = trading, strategy).await
}

/// Like [`spawn_app`], with the simulator configured by `configure` first (faults, engine...).
pub async fn spawn_app_with_sim(configure: impl FnOnce(&mut SimConfig)) -> TestApp {
    spawn_app_full(configure, |_| {}, TEST_STRATEGY).await
}

/// Every simulator callback is lost: the bot learns what became of its orders only by REST (the
/// stale-order poll after one second). Signals still arrive: the tests send them, not the simulator.
pub async fn spawn_app_without_callbacks() -> TestApp {
    spawn_app_full(
        |cfg| {
            cfg.faults = sigex::sim::Faults {
                webhook_drop: sigex::sim::Probability::ALWAYS,
                ..sigex::sim::Faults::default()
            };
        },
        |cfg| cfg.reconcile.stale_after = chrono::Duration::seconds(1),
        TEST_STRATEGY,
    )
    .await
}

/// The simulator (configured by `configure`) and a live-mode bot pointed at it (configured by
/// `tweak`), trading `strategy`.
pub async fn spawn_app_full(
    configure: impl FnOnce(&mut SimConfig),
    tweak: impl FnOnce(&mut Config),
    strategy: &str,
) -> TestApp {
    let app = spawn_app_unreconciled(configure, tweak, strategy).await;
    reconciled(app.bot.as_ref().unwrap()).await;
    app
}

/// Like `spawn_app_full`, without waiting for the start-up reconciliation.
pub async fn spawn_app_unreconciled(
    configure: impl FnOnce(&mut SimConfig),
    tweak: impl FnOnce(&mut Config),
    strategy: &str,
) -> TestApp {
    let api_key = "test-key".to_owned();
    let api_secret = "test-api-secret".to_owned();
    let mut sim_config = SimConfig::new(
        api_key.clone(),
        api_secret.clone(),
        WEBHOOK_SECRET.to_owned(),
    );
    configure(&mut sim_config);
    let sim = Simulator::new(sim_config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_addr = listener.local_addr().unwrap();
    let (sim_stop, mut sim_shutdown) = sigex::shutdown::shutdown_pair();
    tokio::spawn(
        sim.clone()
            .serve(listener, async move { sim_shutdown.wait().await }),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(
        &dir,
        Mode::Live,
        Some(Credentials {
            api_key: Secret::new(api_key),
            api_secret: Secret::new(api_secret),
        }),
        format!("http://{sim_addr}/api/v1"),
    );
    tweak(&mut config);
    let app = start_bot(config, dir, sim, sim_stop, strategy).await;
    app.sim.set_webhook_url(Some(app.webhook_url.clone()));
    app
}

/// Starts a paper-mode bot: no venue credentials, its own in-process paper venue.
pub async fn spawn_paper_app() -> TestApp {
    // The live URL is deliberately unroutable: paper mode must never use it.
    spawn_paper_app_in(
        tempfile::tempdir().unwrap(),
        "http://127.0.0.1:9/api/v1".into(),
    )
    .await
}

/// A paper-mode bot whose database lives in `dir` (so a restart finds it) and whose `[venue]
/// base_url` is `live_url`.
pub async fn spawn_paper_app_in(dir: tempfile::TempDir, live_url: String) -> TestApp {
    spawn_paper_app_with(dir, live_url, |_| {}).await
}

/// Like [`spawn_paper_app_in`], with the configuration adjusted by `configure` first.
pub async fn spawn_paper_app_with(
    dir: tempfile::TempDir,
    live_url: String,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    spawn_paper_app_with_strategy(dir, live_url, configure, TEST_STRATEGY).await
}

/// Like [`spawn_paper_app_with`], trading under the given strategy file text.
pub async fn spawn_paper_app_with_strategy(
    dir: tempfile::TempDir,
    live_url: String,
    configure: impl FnOnce(&mut Config),
    strategy: &str,
) -> TestApp {
    let mut config = test_config(&dir, Mode::Paper, None, live_url);
    configure(&mut config);
    let (sim_stop, _) = sigex::shutdown::shutdown_pair();
    let bot = sigex::app::start(config, strategies_from(strategy), clock())
        .await
        .unwrap();
    reconciled(&bot).await;
    let sim = bot
        .paper_venue
        .clone()
        .expect("paper mode runs a paper venue");
    TestApp {
        webhook_url: format!("http://{}{WEBHOOK_PATH}", bot.webhook_addr),
        admin_url: format!("http://{}", bot.admin_addr),
        bot: Some(bot),
        sim,
        sim_stop,
        http: reqwest::Client::new(),
        config: None,
        sim_url: "http://127.0.0.1:9/api/v1".into(),
        _dir: dir,
    }
}

fn test_config(
    dir: &tempfile::TempDir,
    mode: Mode,
    credentials: Option<Credentials>,
    base_url: String,
) -> Config {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    Config {
        mode,
        venue: VenueConfig {
            base_url,
            credentials,
            request_timeout: Duration::from_secs(5),
            max_orders_per_second: sigex::config::DEFAULT_MAX_ORDERS_PER_SECOND,
            max_intent_age: sigex::config::DEFAULT_MAX_INTENT_AGE,
        },
        webhook: WebhookConfig::new(loopback, Secret::new(WEBHOOK_SECRET)),
        inbox: InboxConfig::default(),
        admin: AdminConfig::read_only(loopback),
        storage: StorageConfig {
            database_url: format!("sqlite://{}", dir.path().join("test.db").display()),
        },
        strategies_dir: PathBuf::from("unused"),
        trading: Default::default(),
        paper: PaperConfig::default(),
        notify: Vec::new(),
        shutdown_deadline: sigex::config::DEFAULT_SHUTDOWN_DEADLINE,
        reconcile: sigex::config::ReconcileConfig::default(),
    }
}

fn strategies_from(text: &str) -> Vec<sigex::strategy::Strategy> {
    sigex::strategy::load_sources(&[("test.toml".into(), "test".into(), text.into())]).unwrap()
}

fn clock() -> SharedClock {
    Arc::new(SystemClock)
}

async fn start_bot(
    config: Config,
    dir: tempfile::TempDir,
    sim: Simulator,
    sim_stop: ShutdownTrigger,
    strategy: &str,
) -> TestApp {
    let sim_url = config.venue.base_url.clone();
    let bot = sigex::app::start(config.clone(), strategies_from(strategy), clock())
        .await
        .unwrap();
    TestApp {
        webhook_url: format!("http://{}{WEBHOOK_PATH}", bot.webhook_addr),
        admin_url: format!("http://{}", bot.admin_addr),
        bot: Some(bot),
        sim,
        sim_stop,
        http: reqwest::Client::new(),
        config: Some((config, strategy.to_owned())),
        sim_url,
        _dir: dir,
    }
}

/// Waits until the bot's start-up reconciliation has succeeded: before that it refuses signals.
pub async fn reconciled(bot: &sigex::app::RunningBot) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !bot.health.is_reconciled() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the start-up reconciliation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
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

/// POSTs `body`, signed with the webhook secret, to `url`.
pub async fn post_signed_to(http: &reqwest::Client, url: &str, body: &str) -> reqwest::Response {
    http.post(url)
        .header("Content-Type", "application/json")
        .header("X-Webhook-Signature", sign(body.as_bytes()))
        .body(body.to_owned())
        .send()
        .await
        .expect("webhook endpoint reachable")
}

impl TestApp {
    /// POSTs `body` signed with the webhook secret.
    pub async fn post_signed(&self, body: &str) -> reqwest::Response {
        self.post_with_signature(body, Some(&sign(body.as_bytes())))
            .await
    }

    pub async fn post_with_signature(
        &self,
        body: &str,
        signature: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(&self.webhook_url)
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        if let Some(sig) = signature {
            req = req.header("X-Webhook-Signature", sig);
        }
        req.send().await.expect("webhook endpoint reachable")
    }

    pub async fn send_signal(&self, symbol: &str, rec: &str, confidence: u32, nonce: u32) {
        let r = self
            .post_signed(&signal_body(symbol, rec, confidence, nonce))
            .await;
        assert_eq!(
            r.status(),
            200,
            "signal refused: {}",
            r.text().await.unwrap()
        );
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.admin_url))
            .send()
            .await
            .expect("admin API reachable");
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// POSTs to an admin endpoint, with `Authorization: Bearer token` when given.
    pub async fn admin_post(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{path}", self.admin_url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("admin API reachable")
    }

    /// GETs an admin path and returns the status and the body text.
    pub async fn admin_get_raw(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.admin_url))
            .send()
            .await
            .expect("admin API reachable");
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The SQLite file of this test's bot.
    pub fn database_path(&self) -> std::path::PathBuf {
        self._dir.path().join("test.db")
    }

    pub async fn orders(&self) -> Vec<Value> {
        self.get("/api/orders").await.as_array().unwrap().clone()
    }

    pub async fn signals(&self) -> Vec<Value> {
        self.get("/api/signals").await.as_array().unwrap().clone()
    }

    pub async fn positions(&self) -> Vec<Value> {
        self.get("/api/positions").await.as_array().unwrap().clone()
    }

    /// Polls the admin API until `check` returns `Some`, or fails the test after `PATIENCE`.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every order is in a terminal state and returns them.
    pub async fn settled_orders(&self, expected: usize) -> Vec<Value> {
        self.wait_for("orders to settle", || async {
            let orders = self.orders().await;
            let settled = orders.len() == expected
                && orders.iter().all(|o| {
                    matches!(
                        o["status"].as_str(),
                        Some("filled" | "cancelled" | "rejected" | "expired")
                    )
                });
            settled.then_some(orders)
        })
        .await
    }

    /// Stops the bot and starts it again on the same database and ports chosen anew.
    pub async fn restart(&mut self) {
        self.stop_bot().await;
        self.start_again().await;
    }

    /// Stops the bot only (the simulator keeps running), so a test can change its database.
    pub async fn stop_bot(&mut self) {
        if let Some(bot) = self.bot.take() {
            stopped_without_a_death(bot).await;
        }
    }

    /// Starts the bot stopped by `stop_bot` again on the same database.
    pub async fn start_again(&mut self) {
        let (config, strategy) = self.config.clone().expect("restart needs a live-mode app");
        let bot = sigex::app::start(config, strategies_from(&strategy), clock())
            .await
            .unwrap();
        reconciled(&bot).await;
        self.webhook_url = format!("http://{}{WEBHOOK_PATH}", bot.webhook_addr);
        self.admin_url = format!("http://{}", bot.admin_addr);
        self.sim.set_webhook_url(Some(self.webhook_url.clone()));
        self.bot = Some(bot);
    }

    /// Stops the simulator: from now on the venue refuses connections.
    pub fn stop_venue(&self) {
        self.sim_stop.trigger();
    }

    pub async fn stop(self) {
        self.stop_keeping_data().await;
    }

    /// Stops the bot and hands back its data directory, for a restart on the same database.
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        if let Some(bot) = self.bot.take() {
            stopped_without_a_death(bot).await;
        }
        self.sim_stop.trigger();
        self._dir
    }

    pub fn database_url(&self) -> String {
        format!("sqlite://{}", self._dir.path().join("test.db").display())
    }
}

/// Stops `bot`; every test that stops a bot also checks that none of its tasks died meanwhile.
async fn stopped_without_a_death(bot: RunningBot) {
    let stopped = bot.stop().await;
    assert!(
        !matches!(stopped, sigex::app::Stopped::AfterTaskDeath(_)),
        "a task died during the test: {stopped:?}"
    );
}

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
