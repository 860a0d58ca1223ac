//! `sigex halt` and `sigex resume`: the trading state written straight to the database (only
//! `[storage] database_url` is read, no secrets), where a running bot applies it from its next
//! signal.

use crate::risk::state::TradingState;
use anyhow::Context;
use std::path::PathBuf;

pub(super) async fn halt(
    path: PathBuf,
    symbol: Option<String>,
    reason: String,
    reduce_only: bool,
) -> anyhow::Result<()> {
    let state = if reduce_only {
        TradingState::Reducing
    } else {
        TradingState::Halted
    };
    set_state(path, symbol, Some(reason), state).await
}

pub(super) async fn resume(
    path: PathBuf,
    symbol: Option<String>,
    reason: Option<String>,
) -> anyhow::Result<()> {
    set_state(path, symbol, reason, TradingState::Active).await
}

async fn set_state(
    path: PathBuf,
    symbol: Option<String>,
    reason: Option<String>,
    state: TradingState,
) -> anyhow::Result<()> {
    let url = crate::config::database_url_only(&path, std::env::vars())?;
    let entry = crate::admin::control::build_entry_from(symbol, reason, state, chrono::Utc::now())
        .map_err(anyhow::Error::msg)?;
    let store = crate::store::Store::open(&url)
        .await
        .with_context(|| format!("opening {url}"))?;
    store.set_trading_state_now(&entry).await?;
    let states = store.list_trading_states().await?;
    store.close().await;
    println!(
        "{} is now {}",
        entry.symbol.as_deref().unwrap_or("the account"),
        entry.state.as_str()
    );
    for s in states {
        println!(
            "  {}: {} since {} ({}: {})",
            s.symbol.as_deref().unwrap_or("account"),
            s.state.as_str(),
            s.since,
            s.set_by.as_str(),
            s.reason
        );
    }
    Ok(())
}
