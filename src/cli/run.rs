//! `sigex check` and `sigex run`: the config and every strategy file are validated first (a
//! mistake stops start-up naming the file, the line and the fix); `run` then runs the bot until
//! Ctrl-C or SIGTERM (also what stops `sim`), and fails (so a service manager restarts it) when
//! one of its tasks died.

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::strategy::Strategy;
use std::path::PathBuf;
use std::sync::Arc;

pub(super) fn check(path: PathBuf) -> anyhow::Result<(Config, Vec<Strategy>)> {
    let config = super::config_arg::load_config(&path)?;
    let strategies = crate::strategy::load_dir(&config.strategies_dir)?;
    println!(
        "{}: ok ({:?} mode, {} strateg{}: {})",
        path.display(),
        config.mode,
        strategies.len(),
        if strategies.len() == 1 { "y" } else { "ies" },
        strategies
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok((config, strategies))
}

pub(super) async fn run(path: PathBuf) -> anyhow::Result<()> {
    let (config, strategies) = check(path)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let bot = crate::app::start(config, strategies, clock).await?;
    tokio::select! {
        _ = wait_for_signal() => tracing::info!("signal received: draining and shutting down"),
        death = bot.died() => tracing::error!(task = %death.task, why = %death.why, "a task died: draining and shutting down"),
    }
    match bot.stop().await {
        // A non-zero exit: the service manager restarts sigex.
        crate::app::Stopped::AfterTaskDeath(dead) => {
            let dead: Vec<String> = dead
                .iter()
                .map(|d| format!("{} {}", d.task, d.why))
                .collect();
            anyhow::bail!("stopped because a task died: {}", dead.join("; "))
        }
        _ => Ok(()),
    }
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM: what `run` and `sim` stop on.
pub(super) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
