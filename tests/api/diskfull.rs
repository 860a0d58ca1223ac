//! A full disk, for real: the `sigex` binary runs with its database on a small tmpfs (mounted in a
//! private user and mount namespace, so no privileges are needed and nothing leaks to the host),
//! the tmpfs is filled until SQLite answers `SQLITE_FULL`, then freed, and the bot restarted.
//! Every webhook that got a 200 must be in the inbox and processed exactly once; while the disk is
//! full webhooks get 503, `/readyz` names the store, the operator hears once and no order goes out.

use crate::helpers::database::TestDatabase;
use crate::helpers::process::{assert_one_venue_order_per_intent, rig, Bot, Rig};
use crate::helpers::{get_json, signed_request, spawn_receiver};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long any one wait may take before the test fails; generous for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// A tmpfs of `size` mounted on `dir` inside a user + mount namespace held open by a sleeping
/// process. Outside the namespace `dir` stays an empty directory; the namespace's view is reached
/// through `/proc/<holder>/root`, and programs run inside it with `nsenter`.
struct Tmpfs {
    holder: Child,
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        let mut holder = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
            .arg("mount -t tmpfs -o size=\"$1\" tmpfs \"$0\" && echo mounted && exec sleep 3600")
            .arg(dir)
            .arg(size)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("`unshare` (util-linux) runs; this test needs unprivileged user namespaces");
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.trim() != "mounted" {
            let out = holder.wait_with_output().unwrap();
            panic!(
                "could not mount a tmpfs in a user namespace: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self {
            holder,
            dir: dir.to_owned(),
        }
    }

    /// `rel` inside the tmpfs, as this process can reach it.
    fn path(&self, rel: &str) -> PathBuf {
        let inside = self.dir.strip_prefix("/").unwrap();
        Path::new(&format!("/proc/{}/root", self.holder.id()))
            .join(inside)
            .join(rel)
    }

    /// What starts `sigex` inside the namespace (where the tmpfs is mounted on `dir`).
    fn launcher(&self) -> impl Fn() -> Command + Send + Sync + 'static {
        let holder = self.holder.id().to_string();
        move || {
            let mut c = Command::new("nsenter");
            c.arg("--target")
                .arg(&holder)
                .args(["--user", "--mount", "--preserve-credentials", "--"])
                .arg(env!("CARGO_BIN_EXE_sigex"));
            c
        }
    }

    /// Fills the tmpfs until the kernel says ENOSPC, then gives back `leave` bytes.
    fn fill_leaving(&self, leave: u64) {
        let path = self.path("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        let _ = f.sync_all();
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(leave)).unwrap();
    }

    fn free(&self) {
        std::fs::remove_file(self.path("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Webhook `n`: a `test` event, a signal on a symbol no strategy trades, or a traded signal
/// (buys and sells alternate so orders keep being placed). Dated now, so none is stale.
fn body(n: usize) -> (String, bool) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let signal = |symbol: &str, recommendation: &str| {
        serde_json::json!({
            "event": "signal.generated",
            "timestamp": now,
            "data": {
                "symbol": symbol,
                "recommendation": recommendation,
                "confidence": 90,
                "timeHorizon": "short_term",
                "riskLevel": "medium",
                "reasoning": [format!("disk full test {n}")],
                "technicalAnalysis": {"rsi": 35.2, "support": 48500.0, "resistance": 50200.0}
            }
        })
        .to_string()
    };
    match n % 3 {
        0 => (
            serde_json::json!({"event": "test", "timestamp": now, "data": {"message": format!("m{n}")}})
                .to_string(),
            false,
        ),
        1 => (signal("SOL/USD", "buy"), true),
        _ => (
            signal("BTC/USD", if n % 6 == 2 { "buy" } else { "sell" }),
            true,
        ),
    }
}

struct Client {
    http: reqwest::Client,
    webhook_url: String,
    admin_url: String,
}

impl Client {
    async fn post(&self, body: &str) -> u16 {
        signed_request(&self.http, &self.webhook_url, body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// `/readyz`: (status, names of the failing checks); `None` while it does not answer.
    async fn readyz(&self) -> Option<(u16, Vec<String>)> {
        let r = self
            .http
            .get(format!("{}/readyz", self.admin_url))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().await.ok()?;
        let failing = v["failing"]
            .as_array()?
            .iter()
            .filter_map(|f| f["check"].as_str().map(str::to_owned))
            .collect();
        Some((status, failing))
    }

    async fn get(&self, path: &str) -> Option<serde_json::Value> {
        get_json(&self.http, format!("{}{path}", self.admin_url)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_acknowledges_a_lost_webhook_and_the_bot_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("db");
    std::fs::create_dir(&mnt).unwrap();
    let tmpfs = Tmpfs::mount(&mnt, "8m");
    let rig = rig(dir.path(), |_| {}).await;
    let (notify_url, notified) = spawn_receiver(0).await;
    // This test is about SQLite's own file on a full disk, whatever engine the others run on.
    let on_tmpfs = TestDatabase::sqlite(&mnt.join("bot.db"));
    rig.edit_config(|text| {
        text.replace(rig.database.url(), on_tmpfs.url())
            + &format!("[[notify]]\nkind = \"webhook\"\nurl = \"{notify_url}/n\"\n")
    });
    let Rig {
        sim,
        sim_stop,
        webhook_url,
        admin_url,
        config,
        ..
    } = rig;
    let mut bot = Bot::new(config, dir.path())
        .launched_by(tmpfs.launcher())
        .patience(PATIENCE);
    bot.start();
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap(),
        webhook_url,
        admin_url,
    };
    bot.until("the bot to be ready", || async {
        client.readyz().await.filter(|r| r.0 == 200).map(|_| ())
    })
    .await;

    // Fill the disk, leaving a little room, and stream webhooks until one is refused.
    tmpfs.fill_leaving(512 * 1024);
    let mut acked: Vec<(String, bool)> = Vec::new();
    let mut refused: Vec<(String, bool)> = Vec::new();
    let mut n = 0;
    while refused.is_empty() {
        assert!(n < 5000, "the disk never filled up");
        let (b, is_signal) = body(n);
        n += 1;
        match client.post(&b).await {
            200 => acked.push((b, is_signal)),
            503 => refused.push((b, is_signal)),
            other => panic!("unexpected answer {other}; log:\n{}", bot.log_text()),
        }
    }
    bot.check_alive();
    // While the disk stays full: what readiness says, what is acknowledged, what is sent.
    let ready_when_full = client.readyz().await;
    let posts_when_full = sim.requests("POST", "/api/v1/orders");
    let mut acked_while_full = 0;
    for _ in 0..40 {
        let (b, is_signal) = body(n);
        n += 1;
        match client.post(&b).await {
            200 => {
                acked_while_full += 1;
                acked.push((b, is_signal));
            }
            503 => refused.push((b, is_signal)),
            other => panic!("unexpected answer {other}; log:\n{}", bot.log_text()),
        }
    }
    let ready_still_full = client.readyz().await;
    let posts_still_full = sim.requests("POST", "/api/v1/orders");

    // Space comes back; the venue retries what was refused, until the bot takes it by itself.
    tmpfs.free();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for (b, is_signal) in refused {
        while client.post(&b).await != 200 {
            bot.check_alive();
            assert!(
                tokio::time::Instant::now() < deadline,
                "a refused webhook was never taken after space came back; log:\n{}",
                bot.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        acked.push((b, is_signal));
    }
    bot.until("readiness after space came back", || async {
        client.readyz().await.filter(|r| r.0 == 200).map(|_| ())
    })
    .await;
    let stopped_cleanly = bot.terminate();

    // Restart on the same database: everything acknowledged is processed, each order settles.
    bot.start();
    bot.until("the inbox to drain and orders to settle", || async {
        let counts = client.get("/api/events").await?;
        let orders = client.get("/api/orders?limit=10000").await?;
        let unsettled = orders
            .as_array()?
            .iter()
            .any(|o| o["orderId"].is_null() || o["status"] == "intent" || o["status"] == "unknown");
        (counts.get("pending").is_none() && !unsettled).then_some(())
    })
    .await;
    assert!(bot.terminate(), "the restarted bot stopped with status 0");

    // Read the database the bot left on the tmpfs.
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for f in ["bot.db", "bot.db-wal"] {
        if tmpfs.path(f).exists() {
            std::fs::copy(tmpfs.path(f), copy.join(f)).unwrap();
        }
    }
    let db = sqlx::sqlite::SqlitePoolOptions::new()
        .connect(&format!(
            "sqlite://{}?mode=ro",
            copy.join("bot.db").display()
        ))
        .await
        .unwrap();
    let rows: Vec<(i64, Vec<u8>, String)> = sqlx::query_as("SELECT seq, body, status FROM inbox")
        .fetch_all(&db)
        .await
        .unwrap();
    let mut stored: HashMap<Vec<u8>, Vec<(i64, String)>> = HashMap::new();
    for (seq, body, status) in rows {
        stored.entry(body).or_default().push((seq, status));
    }
    let mut signal_seqs = HashSet::new();
    for (b, is_signal) in &acked {
        let found = stored
            .get(b.as_bytes())
            .unwrap_or_else(|| panic!("acknowledged with 200 but never stored: {b}"));
        assert_eq!(found.len(), 1, "stored once: {b}");
        assert_eq!(found[0].1, "processed", "processed: {b}");
        if *is_signal {
            signal_seqs.insert(found[0].0);
        }
    }
    let decided: Vec<i64> = sqlx::query_scalar("SELECT inbox_seq FROM signal_decisions")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(decided.len(), signal_seqs.len(), "one decision per signal");
    assert_eq!(decided.into_iter().collect::<HashSet<_>>(), signal_seqs);
    let ours: HashSet<String> = sqlx::query_scalar("SELECT client_order_id FROM orders")
        .fetch_all(&db)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_one_venue_order_per_intent(&sim, &ours);

    // What the bot said while the disk was full.
    assert_eq!(
        acked_while_full, 0,
        "nothing is acknowledged while the disk is full"
    );
    for seen in [&ready_when_full, &ready_still_full] {
        let (status, failing) = seen.clone().expect("/readyz answers");
        assert_eq!(status, 503);
        assert!(failing.iter().any(|c| c == "store"), "{failing:?}");
    }
    assert_eq!(
        posts_when_full, posts_still_full,
        "no order is sent while the store cannot commit"
    );
    let failing_notes = notified
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, body)| body["event"] == "store_failing")
        .count();
    assert_eq!(failing_notes, 1, "the operator hears once");
    assert!(stopped_cleanly, "the bot stopped with status 0");
    drop(bot);
    sim_stop.trigger();
}
