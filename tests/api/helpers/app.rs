//! [`TestApp`]: the bot under test, in process, on loopback ports with a database of its own,
//! driven over HTTP exactly as the venue and an operator would; and [`TestAppBuilder`], the one
//! way to start it (zero2prod's `spawn_app`, with options).

use super::database::TestDatabase;
use super::{
    signal_body, sim_config, start_sim, ADMIN_TOKEN, API_KEY, API_SECRET, PATIENCE, TEST_STRATEGY,
    WEBHOOK_PATH, WEBHOOK_SECRET,
};
use serde_json::Value;
use sigex::app::RunningBot;
use sigex::clock::{ManualClock, SharedClock, SystemClock};
use sigex::config::{
    AdminConfig, Config, Credentials, InboxConfig, Mode, PaperConfig, Secret, StorageConfig,
    TradingConfig, VenueConfig, WebhookConfig,
};
use sigex::shutdown::ShutdownTrigger;
use sigex::sim::{Faults, Probability, SimConfig, Simulator};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where a paper bot's `[venue] base_url` points unless a test says otherwise: unroutable, so a
/// paper bot that called the live venue would fail loudly.
const UNROUTABLE_VENUE: &str = "http://127.0.0.1:9/api/v1";

/// A test's directory and database, which outlive a stopped bot so the next one starts on them.
pub struct TestData {
    /// Removed (with a SQLite database in it) when the last bot of the test is done with it.
    dir: tempfile::TempDir,
    database: TestDatabase,
}

impl TestData {
    /// A new directory and database. Which engine and where is [`TestDatabase::fresh`]'s choice
    /// alone: an engine option (or variable) goes there, and every test and rig follows it.
    fn fresh() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::fresh(dir.path());
        Self { dir, database }
    }

    /// The test's own directory, for the files a test writes beside the bot's.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn database(&self) -> &TestDatabase {
        &self.database
    }
}

/// A change to a configuration, applied before the bot (or its simulator) starts.
type Setup<'a, T> = Box<dyn FnOnce(&mut T) + 'a>;

/// How to start a [`TestApp`]; see [`TestApp::builder`]. Options compose: `sim` and `tweak` may be
/// given several times and apply in order.
#[must_use = "nothing starts until `spawn`"]
pub struct TestAppBuilder<'a> {
    mode: Mode,
    strategy: String,
    sim: Vec<Setup<'a, SimConfig>>,
    tweaks: Vec<Setup<'a, Config>>,
    wait_for_reconciliation: bool,
    manual_clock: bool,
    data: Option<TestData>,
    live_url: Option<String>,
}

impl<'a> TestAppBuilder<'a> {
    /// Paper mode: no venue credentials, no simulator of the test's own; the bot's in-process
    /// paper venue is `app.sim`.
    pub fn paper(mut self) -> Self {
        self.mode = Mode::Paper;
        self
    }

    /// Trades under this strategy file text instead of [`TEST_STRATEGY`].
    pub fn strategy(mut self, text: &str) -> Self {
        text.clone_into(&mut self.strategy);
        self
    }

    /// Account limits, maintenance and alert settings.
    pub fn trading(self, trading: TradingConfig) -> Self {
        self.tweak(move |c| c.trading = trading)
    }

    /// Configures the simulator (faults, engine, seed...) before it starts. Live mode only.
    pub fn sim(mut self, configure: impl FnOnce(&mut SimConfig) + 'a) -> Self {
        self.sim.push(Box::new(configure));
        self
    }

    /// Adjusts the bot's configuration before it starts.
    pub fn tweak(mut self, tweak: impl FnOnce(&mut Config) + 'a) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// Enables the admin mutations under [`ADMIN_TOKEN`].
    pub fn token(self) -> Self {
        self.tweak(|c| c.admin.token = Some(Secret::new(ADMIN_TOKEN)))
    }

    /// Every simulator callback is lost: the bot learns what became of its orders only by REST.
    /// Signals still arrive: the tests send them, not the simulator.
    pub fn without_callbacks(self) -> Self {
        self.sim(|c| {
            c.faults = Faults {
                webhook_drop: Probability::ALWAYS,
                ..Faults::default()
            }
        })
    }

    /// The bot runs on a [`ManualClock`] (starting at the real time) that moves only by
    /// [`TestApp::advance`]: whatever the bot decides by the clock (timeouts, staleness,
    /// maintenance windows, retry times) happens when the test says so. What its tasks pace by
    /// tokio timers (poll and sampling intervals) still runs in real time. The simulator keeps
    /// real time, so it is told to accept request timestamps a standing clock makes old.
    pub fn manual_clock(mut self) -> Self {
        self.manual_clock = true;
        self
    }

    /// Returns as soon as the bot runs, without waiting for its start-up reconciliation.
    pub fn unreconciled(mut self) -> Self {
        self.wait_for_reconciliation = false;
        self
    }

    /// Starts on the directory and database of a bot stopped by [`TestApp::stop_keeping_data`].
    pub fn data(mut self, data: TestData) -> Self {
        self.data = Some(data);
        self
    }

    /// Paper mode: the `[venue] base_url` the bot is given (which it must not trade through).
    pub fn live_url(mut self, url: impl Into<String>) -> Self {
        self.live_url = Some(url.into());
        self
    }

    pub async fn spawn(self) -> TestApp {
        let data = self.data.unwrap_or_else(TestData::fresh);
        let clock = if self.manual_clock {
            TestClock::Manual(ManualClock::new(chrono::Utc::now()))
        } else {
            TestClock::System
        };
        let (sim, sim_stop, base_url, credentials) = match self.mode {
            Mode::Live => {
                assert!(self.live_url.is_none(), "live_url is for paper mode");
                let mut config = sim_config();
                if self.manual_clock {
                    // The bot signs with its standing clock; the venue checks against real time.
                    config.timestamp_tolerance_secs = 86_400;
                }
                for configure in self.sim {
                    configure(&mut config);
                }
                let running = start_sim(config).await;
                let credentials = Credentials {
                    api_key: Secret::new(API_KEY),
                    api_secret: Secret::new(API_SECRET),
                };
                (
                    Some(running.sim),
                    running.stop,
                    running.url,
                    Some(credentials),
                )
            }
            Mode::Paper => {
                assert!(self.sim.is_empty(), "paper mode has no simulator to set up");
                let url = self.live_url.unwrap_or_else(|| UNROUTABLE_VENUE.into());
                (None, sigex::shutdown::shutdown_pair().0, url, None)
            }
        };
        let mut config = test_config(&data.database, self.mode, credentials, base_url.clone());
        for tweak in self.tweaks {
            tweak(&mut config);
        }
        let bot = start_bot(&config, &self.strategy, &clock).await;
        let sim = match sim {
            Some(sim) => sim,
            None => paper_venue(&bot),
        };
        let app = TestApp {
            webhook_url: format!("http://{}{WEBHOOK_PATH}", bot.webhook_addr),
            admin_url: format!("http://{}", bot.admin_addr),
            bot: Some(bot),
            sim,
            sim_stop,
            http: reqwest::Client::new(),
            sim_url: base_url,
            config,
            strategy: self.strategy,
            clock,
            data,
        };
        if app.config.mode == Mode::Live {
            app.sim.set_webhook_url(Some(app.webhook_url.clone()));
        }
        if self.wait_for_reconciliation {
            reconciled(app.bot.as_ref().unwrap()).await;
        }
        app
    }
}

/// The clock a test bot runs on.
#[derive(Clone)]
enum TestClock {
    System,
    Manual(ManualClock),
}

impl TestClock {
    fn shared(&self) -> SharedClock {
        match self {
            TestClock::System => Arc::new(SystemClock),
            TestClock::Manual(c) => Arc::new(c.clone()),
        }
    }
}

pub struct TestApp {
    pub bot: Option<RunningBot>,
    /// The simulated venue (live mode) or the bot's paper venue (paper mode).
    pub sim: Simulator,
    sim_stop: ShutdownTrigger,
    pub webhook_url: String,
    pub admin_url: String,
    pub http: reqwest::Client,
    /// The bot's `[venue] base_url`: the simulator's REST API in live mode.
    pub sim_url: String,
    /// The config and strategy the bot runs with, for a restart on the same database.
    config: Config,
    strategy: String,
    clock: TestClock,
    data: TestData,
}

impl TestApp {
    /// A live-mode bot against a fresh simulator, trading [`TEST_STRATEGY`] on the system clock,
    /// started once its start-up reconciliation has succeeded; the options change that.
    pub fn builder<'a>() -> TestAppBuilder<'a> {
        TestAppBuilder {
            mode: Mode::Live,
            strategy: TEST_STRATEGY.to_owned(),
            sim: Vec::new(),
            tweaks: Vec::new(),
            wait_for_reconciliation: true,
            manual_clock: false,
            data: None,
            live_url: None,
        }
    }

    /// `TestApp::builder().spawn()`: the common case.
    pub async fn spawn() -> TestApp {
        Self::builder().spawn().await
    }

    /// POSTs `body` signed with the webhook secret.
    pub async fn post_signed(&self, body: &str) -> reqwest::Response {
        self.post_signed_with(body, &[]).await
    }

    /// POSTs `body` signed with the webhook secret, with extra headers.
    pub async fn post_signed_with(
        &self,
        body: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = super::signed_request(&self.http, &self.webhook_url, body);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.expect("webhook endpoint reachable")
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

    /// GETs an admin path, which must answer 200, as JSON.
    pub async fn get(&self, path: &str) -> Value {
        let r = self.admin_get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.admin_url))
            .send()
            .await
            .expect("admin API reachable")
    }

    /// POSTs to an admin endpoint, with `Authorization: Bearer token` when given.
    pub async fn admin_post(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{path}", self.admin_url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("admin API reachable")
    }

    /// POSTs `body` as JSON to an admin endpoint under [`ADMIN_TOKEN`].
    pub async fn admin_post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.admin_url))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .expect("admin API reachable")
    }

    /// GETs an admin path and returns the status and the body text.
    pub async fn admin_get_raw(&self, path: &str) -> (u16, String) {
        let r = self.admin_get(path).await;
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// This test's database (the one the bot uses, across restarts).
    pub fn database(&self) -> &TestDatabase {
        &self.data.database
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

    /// Polls until `check` returns `Some`, or fails the test after `PATIENCE`.
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
            (orders.len() == expected && orders.iter().all(is_terminal)).then_some(orders)
        })
        .await
    }

    /// The time on the bot's clock: the manual clock's reading, or the real time.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        match &self.clock {
            TestClock::System => chrono::Utc::now(),
            TestClock::Manual(c) => sigex::clock::Clock::now(c),
        }
    }

    /// Moves the bot's [`ManualClock`] forward (see [`TestAppBuilder::manual_clock`]).
    pub fn advance(&self, by: chrono::Duration) {
        match &self.clock {
            TestClock::Manual(c) => c.advance(by),
            TestClock::System => panic!("advance needs TestApp::builder().manual_clock()"),
        }
    }

    /// With callbacks lost and a manual clock: waits until all `expected` orders are at the venue
    /// (they have venue ids), then makes them stale ([`Config`]'s `stale_after`) until the
    /// supervisor's poll has found each terminal; returns them. A poll that finds an order still
    /// working marks it fresh, so the clock moves again while any is left.
    pub async fn settled_by_stale_poll(&self, expected: usize) -> Vec<Value> {
        self.wait_for("every order at the venue", || async {
            let orders = self.orders().await;
            (orders.len() == expected && orders.iter().all(|o| o["orderId"].is_string()))
                .then_some(())
        })
        .await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            self.advance(self.config.reconcile.stale_after);
            // The supervisor polls stale orders at most once a second (real time).
            let round = tokio::time::Instant::now() + Duration::from_millis(2500);
            while tokio::time::Instant::now() < round {
                let orders = self.orders().await;
                if orders.len() == expected && orders.iter().all(is_terminal) {
                    return orders;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for the stale-order poll to settle {expected} orders"
            );
        }
    }

    /// A venue client with the bot's credentials: "someone else" trading on the same account.
    pub fn venue_client(&self) -> sigex::venue::VenueClient {
        super::venue_client(&self.sim_url)
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

    /// Starts the bot stopped by `stop_bot` again on the same database and clock.
    pub async fn start_again(&mut self) {
        let bot = start_bot(&self.config, &self.strategy, &self.clock).await;
        reconciled(&bot).await;
        self.webhook_url = format!("http://{}{WEBHOOK_PATH}", bot.webhook_addr);
        self.admin_url = format!("http://{}", bot.admin_addr);
        match self.config.mode {
            Mode::Live => self.sim.set_webhook_url(Some(self.webhook_url.clone())),
            Mode::Paper => self.sim = paper_venue(&bot),
        }
        self.bot = Some(bot);
    }

    /// Stops the simulator: from now on the venue refuses connections.
    pub fn stop_venue(&self) {
        self.sim_stop.trigger();
    }

    pub async fn stop(self) {
        self.stop_keeping_data().await;
    }

    /// Stops the bot and the simulator and hands back the test's directory and database, for
    /// [`TestAppBuilder::data`].
    pub async fn stop_keeping_data(mut self) -> TestData {
        if let Some(bot) = self.bot.take() {
            stopped_without_a_death(bot).await;
        }
        self.sim_stop.trigger();
        self.data
    }
}

fn is_terminal(order: &Value) -> bool {
    matches!(
        order["status"].as_str(),
        Some("filled" | "cancelled" | "rejected" | "expired")
    )
}

fn test_config(
    database: &TestDatabase,
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
            database_url: database.url().to_owned(),
        },
        strategies_dir: PathBuf::from("unused"),
        trading: Default::default(),
        paper: PaperConfig::default(),
        notify: Vec::new(),
        shutdown_deadline: sigex::config::DEFAULT_SHUTDOWN_DEADLINE,
        reconcile: sigex::config::ReconcileConfig::default(),
    }
}

async fn start_bot(config: &Config, strategy: &str, clock: &TestClock) -> RunningBot {
    let strategies =
        sigex::strategy::load_sources(&[("test.toml".into(), "test".into(), strategy.into())])
            .unwrap();
    sigex::app::start(config.clone(), strategies, clock.shared())
        .await
        .unwrap()
}

fn paper_venue(bot: &RunningBot) -> Simulator {
    bot.paper_venue
        .clone()
        .expect("paper mode runs a paper venue")
}

/// Waits until the bot's start-up reconciliation has succeeded: before that it refuses signals.
pub async fn reconciled(bot: &RunningBot) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !bot.health.is_reconciled() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the start-up reconciliation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
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
