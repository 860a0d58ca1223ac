//! `sigex backtest`: recorded signals replayed through strategy files, the risk gate and the paper
//! venue's matching engine; a summary on stdout and `report.html`/`report.json` on disk.

use super::time_arg::parse_time;
use std::path::PathBuf;

#[derive(clap::Args)]
pub(super) struct BacktestArgs {
    /// The strategy files to test (a directory of *.toml, as `[strategies] dir`).
    #[arg(long)]
    strategies: PathBuf,
    /// Recorded events: a sigex database (its inbox), a `sigex events export` JSON Lines file,
    /// or a directory of webhook JSON files.
    #[arg(long)]
    signals: String,
    /// Prices: SYMBOL=FILE.csv (repeatable; the candles CSV of `[paper.candles]`), candles (the
    /// config's [paper.candles]), venue (the venue's 1m candles, fetched once and cached), or
    /// random-walk[:SEED].
    #[arg(long, required = true, num_args = 1..)]
    prices: Vec<String>,
    /// Limits, symbol specs, maintenance and alert policy, and the paper venue (fees, book,
    /// latency, starting balance, seed) from this config; no secret is needed.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Trade only signals from this time (RFC 3339, or a date for its 00:00 UTC).
    #[arg(long, value_parser = parse_time)]
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// Replay nothing after this time; open positions are marked at its prices.
    #[arg(long, value_parser = parse_time)]
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// A second strategy directory, run over the same signals and prices, side by side.
    #[arg(long, conflicts_with = "sweep")]
    compare: Option<PathBuf>,
    /// One run per value of a strategy number: KEY=FROM..TO:STEP, e.g. min_confidence=60..95:5
    /// (keys: min_confidence, cooldown_secs, max_signal_age_secs, max_position_notional,
    /// notional, quantity, percent).
    #[arg(long)]
    sweep: Option<String>,
    /// Where report.html and report.json are written.
    #[arg(long, default_value = "backtest-report")]
    out: PathBuf,
    /// Where --prices venue caches candles (default $XDG_CACHE_HOME/sigex/candles or
    /// ~/.cache/sigex/candles).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

pub(super) async fn run(args: BacktestArgs) -> anyhow::Result<()> {
    let opts = crate::backtest::Options {
        strategies: args.strategies,
        compare: args.compare,
        config: args.config,
        signals: args.signals,
        prices: args.prices,
        from: args.from,
        to: args.to,
        sweep: args.sweep,
        cache_dir: args.cache_dir,
    };
    let report = crate::backtest::run(&opts, std::env::vars()).await?;
    let (json, html) = report.write(&args.out)?;
    print!("{}", report.text());
    println!("\nreport: {}\n        {}", html.display(), json.display());
    Ok(())
}
