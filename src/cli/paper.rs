//! `sigex paper reset`: forgets the paper venue's state (and the bot's view of it) in a
//! paper-mode database; it refuses to touch a live-mode one.

use clap::Subcommand;

#[derive(Subcommand)]
pub(super) enum PaperAction {
    /// Forget the paper venue's orders, positions and balances (and the bot's view of them), so the
    /// next start begins again from `[paper] starting_balance`. Stop the bot first.
    Reset {
        #[command(flatten)]
        config: super::config_arg::ConfigArg,
    },
}

pub(super) async fn run(action: PaperAction) -> anyhow::Result<()> {
    let PaperAction::Reset { config } = action;
    let path = config.config;
    let config = super::config_arg::load_config(&path)?;
    if config.mode != crate::config::Mode::Paper {
        anyhow::bail!(
            "{}: mode is {:?}; `paper reset` only touches a paper-mode database",
            path.display(),
            config.mode
        );
    }
    let store = crate::store::Store::open(&config.storage.database_url).await?;
    store.reset_paper().await?;
    store.close().await;
    println!(
        "{}: paper venue reset; the next start begins with {} USD",
        config.storage.database_url, config.paper.starting_balance
    );
    Ok(())
}
