//! Floods against the real binary. Idle connections, with the bot held to the common default of
//! 1024 file descriptors: the excess is closed at accept (per source), the accept loop never runs
//! out of descriptors or floods the log, and signed webhooks from elsewhere keep getting their
//! 200. Forged signatures: every one is counted, a few are logged.

use crate::helpers::process::{rig, Bot, Rig};
use crate::helpers::signed_request;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

/// Sources of the flood (127.0.0.2 ...) and idle connections each: far past the per-source cap,
/// not past the total one, so what is tested is the shedding and the descriptors.
const SOURCES: u8 = 8;
const PER_SOURCE: usize = 400;

/// Raises this test process's soft descriptor limit to its hard one (it holds the flood's client
/// ends); returns the new soft limit.
fn raise_own_fd_limit() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
    }
    l.rlim_cur
}

fn rejected(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("sigex_webhooks_rejected_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The real bot, started through `launcher` on a rig of its own, with a minute for everything.
struct Flood {
    rig: Rig,
    bot: Bot,
    http: reqwest::Client,
    deadline: tokio::time::Instant,
    _dir: tempfile::TempDir,
}

impl Flood {
    async fn start(launcher: impl Fn() -> Command + Send + Sync + 'static) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(dir.path(), |_| {}).await;
        let mut bot = Bot::new(rig.config.clone(), dir.path()).launched_by(launcher);
        bot.start();
        let mut flood = Self {
            rig,
            bot,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            deadline: tokio::time::Instant::now() + Duration::from_secs(60),
            _dir: dir,
        };
        loop {
            flood.alive();
            let ready = flood.http.get(flood.admin("/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return flood;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn admin(&self, path: &str) -> String {
        format!("{}{path}", self.rig.admin_url)
    }

    /// Fails the test, with the bot's log, if the bot has exited or time is up.
    fn alive(&mut self) {
        self.bot.check_alive();
        assert!(
            tokio::time::Instant::now() < self.deadline,
            "timed out; the bot's log:\n{}",
            self.log_text()
        );
    }

    async fn metrics(&self) -> String {
        match self.http.get(self.admin("/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    fn log_text(&self) -> String {
        self.bot.log_text()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.bot.kill();
        self.rig.sim_stop.trigger();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_neither_exhaust_descriptors_nor_stop_signed_webhooks() {
    let needed = SOURCES as usize * PER_SOURCE + 512;
    assert!(
        raise_own_fd_limit() as usize >= needed,
        "this test needs {needed} file descriptors (ulimit -Hn)"
    );
    // The bot runs under `ulimit -n 1024` (soft and hard), the default of many systems.
    let mut bot = Flood::start(|| {
        let mut launcher = Command::new("sh");
        launcher
            .args(["-c", "ulimit -n 1024 && exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_sigex"));
        launcher
    })
    .await;
    let webhook_url = bot.rig.webhook_url.clone();

    let addr: SocketAddr = webhook_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut idle = Vec::with_capacity(SOURCES as usize * PER_SOURCE);
    for source in 0..SOURCES {
        for _ in 0..PER_SOURCE {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2 + source), 0)))
                .unwrap();
            // The kernel completes the handshake before the bot accepts: connecting succeeds.
            idle.push(socket.connect(addr).await.expect("connect"));
        }
    }
    // The bot has dealt with the flood once it has shed what is past the per-source cap.
    let shed_at_least = (SOURCES as usize * (PER_SOURCE - 64)) as u64;
    loop {
        bot.alive();
        if rejected(&bot.metrics().await, "too_many_connections_from_source") >= shed_at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // With the flood still connected, signed webhooks from another address get their 200.
    for n in 0..20 {
        let body = format!(
            r#"{{"event":"test","timestamp":"{}","data":{{"message":"flood {n}"}}}}"#,
            chrono::Utc::now().to_rfc3339()
        );
        let r = signed_request(&bot.http, &webhook_url, &body)
            .send()
            .await
            .expect("the webhook is answered within the client's timeout");
        assert_eq!(r.status(), 200);
        bot.alive();
    }
    let text = bot.log_text();
    let accept_failures = text.matches("accept failed").count();
    assert!(
        accept_failures <= 1,
        "the accept loop ran out of descriptors {accept_failures} times:\n{text}"
    );
    let shed_lines = text.matches("webhook connection closed at accept").count();
    assert!(
        shed_lines <= 2,
        "{shed_lines} log lines for the shed connections:\n{text}"
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_signatures_is_counted_exactly_but_logged_only_now_and_then() {
    let bot = Flood::start(|| Command::new(env!("CARGO_BIN_EXE_sigex"))).await;
    const FORGED: u64 = 300;
    for n in 0..FORGED {
        let r = bot
            .http
            .post(&bot.rig.webhook_url)
            .header("Content-Type", "application/json")
            .header("X-Webhook-Signature", "00".repeat(32))
            .body(format!(r#"{{"event":"test","data":{{"n":{n}}}}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let metrics = bot.metrics().await;
    assert_eq!(
        rejected(&metrics, "mismatch"),
        FORGED,
        "every refusal counted"
    );
    let text = bot.log_text();
    let lines = text.matches("webhook refused: bad signature").count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} log lines for {FORGED} forged webhooks:\n{text}"
    );
}
