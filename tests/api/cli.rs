//! The `sigex` command line as an operator uses it.

use crate::helpers::database::TestDatabase;
use crate::helpers::{TestApp, API_KEY, API_SECRET, WEBHOOK_SECRET};
use std::process::Command;

fn sigex(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sigex"))
        .args(args)
        .current_dir(dir)
        .env("SIGEX_WEBHOOK__SECRET", "whsec_0123456789abcdef")
        .env_remove("SIGEX_VENUE__API_KEY")
        .env_remove("SIGEX_VENUE__API_SECRET")
        .output()
        .unwrap()
}

#[test]
fn the_shipped_example_config_and_strategies_pass_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = sigex(&["check", "--config", "sigex.example.toml"], root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("momentum"), "{stdout}");
}

#[test]
fn a_bad_strategy_file_stops_startup_naming_the_file_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("strategies")).unwrap();
    std::fs::write(dir.path().join("sigex.toml"), "mode = \"paper\"\n").unwrap();
    std::fs::write(
        dir.path().join("strategies/bad.toml"),
        "symbols = [\"BTC/USD\"]\nrecommendations = [\"buy\"]\nmin_confidence = 140\n[sizing]\nmethod = \"fixed_notional\"\nnotional = 10\n[limits]\nmax_position_notional = 100\n",
    )
    .unwrap();
    for command in ["check", "run"] {
        let out = sigex(&[command, "--config", "sigex.toml"], dir.path());
        assert!(!out.status.success(), "{command} accepted a bad strategy");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("bad.toml:3"), "{command}: {stderr}");
        assert!(stderr.contains("0 to 100"), "{command}: {stderr}");
    }
}

/// `RUST_BACKTRACE=1` is common in a shell (and set on many servers): a start-up error must still
/// read as its message and causes, not as thirty frames of backtrace after them.
#[test]
fn a_start_up_error_is_its_message_and_causes_without_a_backtrace_even_under_rust_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sigex.toml"),
        "mode = \"paper\"\n[webhook]\nlisten = \"not an address\"\n",
    )
    .unwrap();
    for command in ["check", "run"] {
        let out = Command::new(env!("CARGO_BIN_EXE_sigex"))
            .args([command, "--config", "sigex.toml"])
            .current_dir(dir.path())
            .env("SIGEX_WEBHOOK__SECRET", "whsec_0123456789abcdef")
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.starts_with("Error: ") && stderr.contains("[webhook] listen"),
            "{command}: the message first: {stderr}"
        );
        assert!(
            !stderr.to_lowercase().contains("backtrace"),
            "{command}: a backtrace after the message: {stderr}"
        );
        assert!(
            stderr.lines().count() < 10,
            "{command}: {} lines for one error: {stderr}",
            stderr.lines().count()
        );
    }
}

#[test]
fn events_can_be_listed_shown_and_replayed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("strategies")).unwrap();
    std::fs::write(
        dir.path().join("sigex.toml"),
        format!(
            "mode = \"paper\"\n[storage]\ndatabase_url = \"{}\"\n",
            TestDatabase::fresh(dir.path()).url()
        ),
    )
    .unwrap();
    // An empty inbox lists nothing; a missing event cannot be replayed.
    let out = sigex(
        &["events", "--config", "sigex.toml", "list", "--dead"],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no events"));
    let out = sigex(
        &["events", "--config", "sigex.toml", "replay", "7"],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("event 7 does not exist"));
}

#[tokio::test]
async fn webhooks_are_registered_listed_updated_tested_and_deleted_through_the_venue_api() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("strategies")).unwrap();
    std::fs::write(
        dir.path().join("sigex.toml"),
        format!(
            "mode = \"live\"\n[venue]\nbase_url = \"{}\"\n[storage]\ndatabase_url = \"{}\"\n",
            app.sim_url,
            TestDatabase::fresh(dir.path()).url()
        ),
    )
    .unwrap();
    let run = |args: Vec<String>| {
        let dir = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            let out = Command::new(env!("CARGO_BIN_EXE_sigex"))
                .args(["webhooks", "--config", "sigex.toml"])
                .args(&args)
                .current_dir(&dir)
                .env("SIGEX_WEBHOOK__SECRET", WEBHOOK_SECRET)
                .env("SIGEX_VENUE__API_KEY", API_KEY)
                .env("SIGEX_VENUE__API_SECRET", API_SECRET)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        })
    };
    let url = app.webhook_url.clone();
    let registered = run(vec![
        "register".into(),
        "--url".into(),
        url.clone(),
        "--events".into(),
        "test,signal.generated".into(),
    ])
    .await
    .unwrap();
    let id = registered
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert!(
        registered.contains(&url) && registered.contains("active=true"),
        "{registered}"
    );
    let listed = run(vec!["list".into()]).await.unwrap();
    assert!(
        listed.contains(&id) && listed.contains("test,signal.generated"),
        "{listed}"
    );
    // The venue delivers its test event, signed with the secret we registered, to our endpoint.
    run(vec!["test".into(), id.clone()]).await.unwrap();
    app.wait_for("the venue's test event", || async {
        app.get("/api/event-types").await.get("test").cloned()
    })
    .await;
    let updated = run(vec![
        "update".into(),
        id.clone(),
        "--active".into(),
        "false".into(),
    ])
    .await
    .unwrap();
    assert!(updated.contains("active=false"), "{updated}");
    let deleted = run(vec!["delete".into(), id.clone()]).await.unwrap();
    assert!(deleted.contains(&id), "{deleted}");
    let listed = run(vec!["list".into()]).await.unwrap();
    assert!(!listed.contains(&id), "{listed}");
    app.stop().await;
}

#[test]
fn sigex_variables_that_are_not_config_keys_are_ignored_and_a_stray_one_is_warned_about() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_sigex"))
        .args(["check", "--config", "sigex.example.toml"])
        .current_dir(root)
        .env("SIGEX_WEBHOOK__SECRET", "whsec_0123456789abcdef")
        .env("SIGEX_ADMIN_URL", "http://127.0.0.1:8081")
        .env("SIGEX_SIM_API_KEY", "sim-key")
        .env("SIGEX_CHAOS_SEED", "42")
        .env("SIGEX_WEBHOOK_LISTEN", "typo: one underscore")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("SIGEX_WEBHOOK_LISTEN") && stderr.contains("not a config key"),
        "{stderr}"
    );
    for quiet in ["SIGEX_ADMIN_URL", "SIGEX_SIM_API_KEY", "SIGEX_CHAOS_SEED"] {
        assert!(!stderr.contains(quiet), "{quiet} warned about: {stderr}");
    }
    // stderr is a pipe here, not a terminal: no colour codes in the log line.
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escapes in piped stderr: {stderr:?}"
    );
}

#[test]
fn a_bad_value_from_the_environment_is_reported_against_the_variable() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, value, expected) in [
        (
            "SIGEX_WEBHOOK__SECRET",
            "whsec_...",
            "environment variable SIGEX_WEBHOOK__SECRET: [webhook] secret is shorter",
        ),
        (
            "SIGEX_MODE",
            "papr",
            "environment variable SIGEX_MODE: mode: unknown variant `papr`",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sigex"))
            .args(["check", "--config", "sigex.example.toml"])
            .current_dir(root)
            .env("SIGEX_WEBHOOK__SECRET", "whsec_0123456789abcdef")
            .env(name, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: accepted");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(!stderr.contains("sigex.example.toml:"), "{name}: {stderr}");
    }
}

/// The `export SIGEX_...='...'` lines of README's "Running the bot", as a newcomer pastes them.
fn readme_exports() -> Vec<(String, String)> {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## Running the bot")
        .nth(1)
        .expect("README has a Running the bot section");
    let block = section.split("```").nth(1).expect("with a shell block");
    block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| {
            let (name, rest) = l.split_once('=')?;
            let value = rest.split('\'').nth(1)?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

#[test]
fn the_readme_recipe_for_running_the_bot_passes_check_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let exports = readme_exports();
    assert!(
        exports.iter().any(|(k, _)| k == "SIGEX_WEBHOOK__SECRET"),
        "{exports:?}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sigex"))
        .args(["check", "--config", "sigex.example.toml"])
        .current_dir(root)
        .env_remove("SIGEX_WEBHOOK__SECRET")
        .envs(exports)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_becomes_ready_with_sigex_variables_that_are_not_config_keys_set() {
    use crate::helpers::process::{rig, while_running, Bot, Rig};
    let dir = tempfile::tempdir().unwrap();
    let Rig {
        sim_stop,
        admin_url,
        config,
        ..
    } = rig(dir.path(), |_| {}).await;
    // Bot::start sets SIGEX_ADMIN_URL, SIGEX_SIM_API_KEY and SIGEX_CHAOS_SEED.
    let bot = Bot::started(config, dir.path());
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while_running(&bot, async {
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the bot never became ready"
            );
            let ready = http.get(format!("{admin_url}/readyz")).send().await;
            if matches!(&ready, Ok(r) if r.status() == 200) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    bot.lock().unwrap().kill();
    sim_stop.trigger();
}
