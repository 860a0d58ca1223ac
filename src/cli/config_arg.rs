//! `--config FILE`: the argument every command that reads the config file takes, and how that
//! file is loaded (with the environment's overrides, warning about stray `SIGEX_*` variables).

use std::path::PathBuf;

/// `--config FILE`, shared by every command that reads the config file.
#[derive(clap::Args)]
pub(super) struct ConfigArg {
    /// The sigex config file (TOML; see sigex.example.toml). Any key can be overridden by an
    /// environment variable SIGEX_<SECTION>__<KEY>.
    #[arg(long, short, value_name = "FILE")]
    pub(super) config: PathBuf,
}

/// Loads the config file with the environment's overrides, and says which `SIGEX_*` variables it
/// ignored (neither a config key nor one sigex reads elsewhere: often a typo).
pub(super) fn load_config(path: &std::path::Path) -> anyhow::Result<crate::config::Config> {
    let config = crate::config::Config::load(path, std::env::vars())?;
    for name in crate::config::Config::stray_variables(std::env::vars()) {
        tracing::warn!(
            variable = %name,
            "ignored: not a config key (overrides are SIGEX_<SECTION>__<KEY>, e.g. SIGEX_WEBHOOK__LISTEN)"
        );
    }
    Ok(config)
}
