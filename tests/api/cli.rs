//! The `sigex` command line as an operator uses it.

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

#[test]
fn events_can_be_listed_shown_and_replayed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("strategies")).unwrap();
    std::fs::write(
        dir.path().join("sigex.toml"),
        "mode = \"paper\"\n[storage]\ndatabase_url = \"sqlite://bot.db\"\n",
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
    let app = crate::helpers::spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("strategies")).unwrap();
    std::fs::write(
        dir.path().join("sigex.toml"),
        format!(
            "mode = \"live\"\n[venue]\nbase_url = \"{}\"\n[storage]\ndatabase_url = \"sqlite://bot.db\"\n",
            app.sim_url
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
                .env("SIGEX_WEBHOOK__SECRET", crate::helpers::WEBHOOK_SECRET)
                .env("SIGEX_VENUE__API_KEY", "test-key")
                .env("SIGEX_VENUE__API_SECRET", "test-api-secret")
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
