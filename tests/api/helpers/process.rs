//! The rig of the tests that run the real `sigex` binary (crash, chaos, halt, diskfull, flood,
//! cli): a simulator in this process, a config file pointing the bot at it, the bot as a child
//! process with its log in a file, and the watching that makes such a test fail fast, with the
//! bot's log, when the bot dies by itself or a helper task panics.

use super::database::TestDatabase;
use super::{sim_config, start_sim, API_KEY, API_SECRET, TEST_STRATEGY, WEBHOOK_SECRET};
use sigex::sim::{SimConfig, Simulator};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

/// A loopback port free when asked (the bot binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A simulator on a loopback port whose webhooks go to a bot process, and that bot's config file
/// (written under `dir`): what the tests that run the real binary start from.
pub struct Rig {
    pub sim: Simulator,
    pub sim_stop: sigex::shutdown::ShutdownTrigger,
    pub webhook_url: String,
    pub admin_url: String,
    pub config: PathBuf,
    pub database: TestDatabase,
}

/// A rig under `dir` around a simulator configured by `configure`.
pub async fn rig(dir: &Path, configure: impl FnOnce(&mut SimConfig)) -> Rig {
    let mut config = sim_config();
    configure(&mut config);
    let running = start_sim(config).await;
    let (webhook_port, admin_port) = (free_port(), free_port());
    let webhook_url = format!("http://127.0.0.1:{webhook_port}/webhooks/vibe");
    running.sim.set_webhook_url(Some(webhook_url.clone()));
    let database = TestDatabase::fresh(dir);
    Rig {
        config: write_config(dir, &running.url, webhook_port, admin_port, &database),
        sim: running.sim,
        sim_stop: running.stop,
        webhook_url,
        admin_url: format!("http://127.0.0.1:{admin_port}"),
        database,
    }
}

impl Rig {
    /// Rewrites the bot's config file through `edit` (before the bot starts).
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, edit(text)).unwrap();
    }

    /// Adds TOML (whole sections) at the end of the bot's config file.
    pub fn append_config(&self, toml: &str) {
        self.edit_config(|text| text + toml);
    }
}

fn write_config(
    dir: &Path,
    sim_url: &str,
    webhook_port: u16,
    admin_port: u16,
    database: &TestDatabase,
) -> PathBuf {
    std::fs::create_dir_all(dir.join("strategies")).unwrap();
    std::fs::write(dir.join("strategies/test.toml"), TEST_STRATEGY).unwrap();
    let config = dir.join("sigex.toml");
    std::fs::write(
        &config,
        format!(
            r#"mode = "live"
[venue]
base_url = "{sim_url}"
request_timeout_ms = 2000
[webhook]
listen = "127.0.0.1:{webhook_port}"
rate_limit_per_second = 0
[admin]
listen = "127.0.0.1:{admin_port}"
[storage]
database_url = "{}"
[strategies]
dir = "strategies"
"#,
            database.url()
        ),
    )
    .unwrap();
    config
}

/// What starts `sigex`: the binary itself, or a launcher in front of it (a shell that lowers
/// the descriptor limit, `nsenter` into a namespace); `run --config ...` is appended.
type Launcher = Arc<dyn Fn() -> Command + Send + Sync>;

/// The `sigex run` process of a rig, started, killed, restarted and watched by the test.
pub struct Bot {
    pub config: PathBuf,
    pub log: PathBuf,
    launcher: Launcher,
    child: Option<Child>,
    patience: Duration,
}

impl Bot {
    /// A bot process on `config` (not started yet), logging to `dir/bot.log`, run as the binary
    /// itself, that [`Bot::until`] waits 30 s for.
    pub fn new(config: PathBuf, dir: &Path) -> Self {
        Self {
            config,
            log: dir.join("bot.log"),
            launcher: Arc::new(|| Command::new(env!("CARGO_BIN_EXE_sigex"))),
            child: None,
            patience: Duration::from_secs(30),
        }
    }

    /// A bot process on `config`, logging to `dir/bot.log`, started, to be shared with the
    /// tasks that kill and restart it.
    pub fn started(config: PathBuf, dir: &Path) -> Arc<Mutex<Bot>> {
        let mut bot = Bot::new(config, dir);
        bot.start();
        Arc::new(Mutex::new(bot))
    }

    /// Starts the bot through `launcher` instead of running the binary directly.
    pub fn launched_by(mut self, launcher: impl Fn() -> Command + Send + Sync + 'static) -> Self {
        self.launcher = Arc::new(launcher);
        self
    }

    /// How long [`Bot::until`] waits before failing the test.
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// Starts `sigex run --config config` with the rig's secrets, its log appended to `log`.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = (self.launcher)()
            .args(["run", "--config"])
            .arg(&self.config)
            .env("SIGEX_WEBHOOK__SECRET", WEBHOOK_SECRET)
            .env("SIGEX_VENUE__API_KEY", API_KEY)
            .env("SIGEX_VENUE__API_SECRET", API_SECRET)
            .env("RUST_LOG", "warn")
            // Variables sigex must leave alone (README recipes set them in the same shell).
            .env("SIGEX_ADMIN_URL", "http://127.0.0.1:9")
            .env("SIGEX_SIM_API_KEY", "not-a-config-key")
            .env("SIGEX_CHAOS_SEED", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the sigex binary starts");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for the graceful stop; returns whether it exited with status 0.
    pub fn terminate(&mut self) -> bool {
        let mut child = self.child.take().expect("the bot runs");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        child.wait().unwrap().success()
    }

    /// `Some(why)` when the process ended without the test killing it: its exit status and the
    /// start and end of its log.
    pub fn died(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        let log = self.log_text();
        let lines: Vec<&str> = log.lines().collect();
        // The start (where an error at start-up is) and the end (what it did last).
        let shown = if lines.len() <= 80 {
            lines.join("\n")
        } else {
            format!(
                "{}\n[...]\n{}",
                lines[..20].join("\n"),
                lines[lines.len() - 40..].join("\n")
            )
        };
        Some(format!(
            "the sigex bot exited by itself ({status}); its log ({}):\n{shown}",
            self.log.display()
        ))
    }

    /// Fails the test, with the bot's log, if the process has ended by itself.
    pub fn check_alive(&mut self) {
        if let Some(why) = self.died() {
            panic!("{why}");
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `check` until it returns `Some`, failing (with the bot's log) when the bot dies or
    /// `what` takes longer than the bot's patience.
    pub async fn until<T, F, Fut>(&mut self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            self.check_alive();
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; the bot's log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every order intent of ours (`ours`: client order ids) exists exactly once at the venue, under
/// its own clientOrderId, and the run placed some.
pub fn assert_one_venue_order_per_intent(sim: &Simulator, ours: &HashSet<String>) {
    let at_venue: Vec<String> = sim
        .orders()
        .into_iter()
        .filter_map(|o| o.client_order_id)
        .collect();
    assert_eq!(at_venue.len(), ours.len(), "one venue order per intent");
    assert_eq!(at_venue.into_iter().collect::<HashSet<_>>(), *ours);
    assert!(!ours.is_empty(), "the run placed orders");
}

/// Once `acked` reaches `at`, SIGKILLs the bot and starts it again.
pub async fn kill_and_restart_at(bot: &Arc<Mutex<Bot>>, acked: &AtomicUsize, at: usize) {
    while acked.load(Ordering::SeqCst) < at {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let bot = bot.clone();
    tokio::task::spawn_blocking(move || {
        let mut bot = bot.lock().unwrap();
        bot.kill();
        bot.start();
    })
    .await
    .unwrap();
}

/// Runs `work` while watching `bot`: when the bot process dies on its own, the test fails at
/// once with its log instead of waiting for webhooks that will never be answered.
pub async fn while_running<T>(
    bot: &Arc<Mutex<Bot>>,
    work: impl std::future::Future<Output = T>,
) -> T {
    let watch = async {
        loop {
            // Kills and restarts happen under this lock, so a killed bot is never seen here.
            if let Some(why) = bot.lock().unwrap().died() {
                return why;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        out = work => out,
        why = watch => panic!("{why}"),
    }
}

/// Runs `work` (a kill loop waiting for acknowledgements, say) alongside the `tasks` it depends
/// on: when one of them fails (a sender's "never acknowledged"), the test fails at once with
/// that task's panic instead of `work` waiting forever for what the task would have done.
pub async fn alongside<T>(
    tasks: &mut JoinSet<()>,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            Some(ended) = tasks.join_next() => failed_at_once(ended),
        }
    }
}

/// Waits for every task of `tasks`, failing the test with the first panic among them.
pub async fn join_all(tasks: &mut JoinSet<()>) {
    while let Some(ended) = tasks.join_next().await {
        failed_at_once(ended);
    }
}

fn failed_at_once(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("a task of the test ended: {e}"),
        }
    }
}
