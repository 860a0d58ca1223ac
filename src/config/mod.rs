//! Configuration: one TOML file, every key overridable by `SIGEX_<SECTION>__<KEY>` environment
//! variables, secrets only from the environment or from files the config names.
//!
//! Loading is strict: an unknown key, a missing secret or an impossible value stops start-up with a
//! message naming the file, the key and the fix. Secrets are `Secret`s and never reach a log line.

mod env;
mod paper;
mod secret;
mod toml_error;
mod trading;

pub use paper::{parse_candle_line, parse_candles, PaperConfig, PriceSource};
pub use secret::Secret;
pub use toml_error::describe as describe_toml_error;
pub use trading::TradingConfig;

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every event name a target may subscribe to.
pub const NOTIFY_EVENTS: &[&str] = &[
    "fill",
    "halt",
    "resume",
    "drift",
    "dead_letter",
    "maintenance_start",
    "maintenance_end",
    "venue_errors",
    "store_failing",
    "store_recovered",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Orders go to the in-process paper venue; nothing reaches a live order endpoint.
    Paper,
    /// Orders go to `venue.base_url`.
    Live,
}

/// The validated configuration the bot runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub venue: VenueConfig,
    pub webhook: WebhookConfig,
    pub inbox: InboxConfig,
    pub admin: AdminConfig,
    pub storage: StorageConfig,
    pub strategies_dir: PathBuf,
    /// Account limits, maintenance, alert policy, symbol specs and the admin token.
    pub trading: TradingConfig,
    /// The paper venue (used in paper mode only).
    pub paper: PaperConfig,
    /// Outbound notification targets (`[[notify]]`); empty = none.
    pub notify: Vec<NotifyTarget>,
    /// How long a graceful shutdown may take before the remaining work is abandoned (it is
    /// durable: the inbox and the outbox resume it at the next start).
    pub shutdown_deadline: Duration,
    /// Stale-order polling and snapshot comparison (`[reconcile]`).
    pub reconcile: ReconcileConfig,
}

/// `[reconcile]`: how the bot checks its book against the venue's over REST.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// A sent, unfinished order with no news for this long is queried by REST.
    pub stale_after: chrono::Duration,
    /// How often positions and balances are compared with the venue's while trading; 0 = never.
    pub snapshot_interval: Duration,
    /// A position differing from the venue's by more than this quantity is drift.
    pub drift_tolerance: rust_decimal::Decimal,
    /// A closed position whose realized PnL differs from the venue's `position.closed` by more
    /// than this (quote currency) is drift.
    pub pnl_tolerance: rust_decimal::Decimal,
}

pub const DEFAULT_STALE_AFTER_SECS: u64 = 10;
pub const DEFAULT_SNAPSHOT_INTERVAL_SECS: u64 = 60;

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            stale_after: chrono::Duration::seconds(DEFAULT_STALE_AFTER_SECS as i64),
            snapshot_interval: Duration::from_secs(DEFAULT_SNAPSHOT_INTERVAL_SECS),
            drift_tolerance: rust_decimal::Decimal::new(1, 8),
            pnl_tolerance: rust_decimal::Decimal::new(1, 2),
        }
    }
}

#[derive(Debug, Clone)]
pub struct VenueConfig {
    pub base_url: String,
    /// `None` only in paper mode, where the paper venue issues its own credentials.
    pub credentials: Option<Credentials>,
    pub request_timeout: Duration,
    /// Client-side limit on order submissions per second (a burst of one second's worth); 0 = off.
    pub max_orders_per_second: u32,
    /// An order that would open or grow a position and was decided longer ago than this is
    /// dropped at send time, not sent late (`[venue] max_intent_age_secs`).
    pub max_intent_age: chrono::Duration,
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub api_key: Secret,
    pub api_secret: Secret,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    pub path: String,
    pub secret: Secret,
    pub max_body_bytes: usize,
    /// Source ranges allowed to call; empty admits every source.
    pub allow_sources: Vec<ipnet::IpNet>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `(certificate chain, private key)` PEM files: serve TLS directly.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Requests per second per source; 0 turns the limit off.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub header_timeout: Duration,
    pub read_timeout: Duration,
    /// An event with effects signed longer ago than this when it arrives is kept as a dead letter
    /// (`stale`) and never applied (`[webhook] max_event_age_secs`).
    pub max_event_age: chrono::Duration,
    /// Open webhook connections at most, in all and per source address (trusted proxies are held
    /// to the total only); the excess is closed at accept.
    pub max_connections: usize,
    pub max_connections_per_source: usize,
}

impl WebhookConfig {
    /// Defaults for everything but where to listen and the secret (used by the demo and tests).
    pub fn new(listen: SocketAddr, secret: Secret) -> Self {
        Self {
            listen,
            path: DEFAULT_WEBHOOK_PATH.to_owned(),
            secret,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            allow_sources: Vec::new(),
            trusted_proxies: Vec::new(),
            tls: None,
            rate_limit_per_second: DEFAULT_RATE_LIMIT_PER_SECOND,
            rate_limit_burst: DEFAULT_RATE_LIMIT_BURST,
            header_timeout: Duration::from_millis(DEFAULT_HEADER_TIMEOUT_MS),
            read_timeout: Duration::from_millis(DEFAULT_READ_TIMEOUT_MS),
            max_event_age: chrono::Duration::seconds(
                crate::venue::wire::DEFAULT_MAX_EVENT_AGE_SECS as i64,
            ),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
        }
    }
}

#[derive(Debug, Clone)]
pub struct InboxConfig {
    /// Processed events older than this are pruned (the dedupe horizon is the same).
    pub retention: chrono::Duration,
}

impl Default for InboxConfig {
    fn default() -> Self {
        Self {
            retention: chrono::Duration::days(DEFAULT_RETENTION_DAYS),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token for admin mutations; `None` disables them.
    pub token: Option<Secret>,
    /// How often market prices of held symbols are read and PnL is sampled (the dashboard's curve).
    pub pnl_sample_interval: Duration,
}

pub const DEFAULT_PNL_SAMPLE_SECS: u64 = 15;

impl AdminConfig {
    /// Listen on `listen` with mutations disabled.
    pub fn read_only(listen: SocketAddr) -> Self {
        Self {
            listen,
            token: None,
            pnl_sample_interval: Duration::from_secs(DEFAULT_PNL_SAMPLE_SECS),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// `{"event", "text", "at"}` to any URL.
    Webhook,
    /// Slack incoming webhook: `{"text"}`.
    Slack,
    /// Discord webhook: `{"content"}`.
    Discord,
    /// Telegram Bot API `sendMessage`: `{"chat_id", "text"}`.
    Telegram,
}

/// One `[[notify]]` target.
#[derive(Debug, Clone)]
pub struct NotifyTarget {
    pub kind: NotifyKind,
    /// May embed a token (Slack, Discord, Telegram URLs do), hence a `Secret`.
    pub url: Secret,
    /// Telegram's chat id.
    pub chat_id: Option<String>,
    /// Subscribed event names (`NOTIFY_EVENTS`); `None` = all.
    pub events: Option<Vec<String>>,
}

impl NotifyTarget {
    pub fn wants(&self, event: &str) -> bool {
        self.events
            .as_ref()
            .is_none_or(|e| e.iter().any(|x| x == event))
    }
}

pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub database_url: String,
}

// ---- the file's shape ------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    mode: Option<Mode>,
    #[serde(default)]
    venue: RawVenue,
    #[serde(default)]
    webhook: RawWebhook,
    #[serde(default)]
    inbox: RawInbox,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    strategies: RawStrategies,
    #[serde(default)]
    limits: trading::RawLimits,
    #[serde(default)]
    maintenance: trading::RawMaintenance,
    #[serde(default)]
    alerts: std::collections::BTreeMap<String, trading::RawAlert>,
    #[serde(default)]
    symbols: std::collections::BTreeMap<String, trading::RawSymbol>,
    #[serde(default)]
    symbol_defaults: trading::RawSymbol,
    #[serde(default)]
    paper: paper::RawPaper,
    #[serde(default)]
    shutdown: RawShutdown,
    #[serde(default)]
    notify: Vec<RawNotify>,
    #[serde(default)]
    reconcile: RawReconcile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReconcile {
    stale_after_secs: Option<u64>,
    snapshot_interval_secs: Option<u64>,
    drift_tolerance: Option<rust_decimal::Decimal>,
    pnl_tolerance: Option<rust_decimal::Decimal>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShutdown {
    deadline_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    kind: NotifyKind,
    /// Only for URLs without a token (a generic webhook on your own network).
    url: Option<String>,
    /// Name of an environment variable holding the URL.
    url_env: Option<String>,
    url_file: Option<PathBuf>,
    chat_id: Option<String>,
    events: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVenue {
    base_url: Option<String>,
    api_key: Option<String>,
    api_key_file: Option<PathBuf>,
    api_secret: Option<String>,
    api_secret_file: Option<PathBuf>,
    request_timeout_ms: Option<u64>,
    max_orders_per_second: Option<u32>,
    max_intent_age_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    listen: Option<String>,
    path: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    #[serde(default)]
    allow_sources: Vec<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    rate_limit_per_second: Option<u32>,
    rate_limit_burst: Option<u32>,
    header_timeout_ms: Option<u64>,
    read_timeout_ms: Option<u64>,
    max_event_age_secs: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_source: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbox {
    retention_days: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    pnl_sample_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    database_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrategies {
    dir: Option<PathBuf>,
}

/// Keys whose values are secrets: they may come from the environment or a `*_file`, never from
/// the config file itself (config files end up in backups, tickets and screenshots).
const SECRET_KEYS: &[(&str, &str)] = &[
    ("venue", "api_key"),
    ("venue", "api_secret"),
    ("webhook", "secret"),
    ("admin", "token"),
];

pub const DEFAULT_WEBHOOK_PATH: &str = "/webhooks/vibe";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://sigex.db";
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
pub const DEFAULT_RATE_LIMIT_PER_SECOND: u32 = 1000;
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 2000;
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_READ_TIMEOUT_MS: u64 = 10_000;
/// Far more than the venue's deliveries need, far less than `LimitNOFILE` in deploy/sigex.service.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The venue delivers from a few addresses with a few connections each; the load generator of
/// the benchmarks uses 64 from one.
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 64;
pub const DEFAULT_RETENTION_DAYS: i64 = 30;
/// The venue publishes no rate limit; this keeps a bot that goes wild from flooding it while
/// staying far above what the strategies place.
pub const DEFAULT_MAX_ORDERS_PER_SECOND: u32 = 50;
/// An intent normally leaves within milliseconds; one still waiting after two minutes (a venue
/// outage, a restart) was decided on a market that has moved on.
pub const DEFAULT_MAX_INTENT_AGE: chrono::Duration = chrono::Duration::seconds(120);

impl Config {
    /// Reads `path`, applies `SIGEX_*` overrides from `env`, resolves secrets and validates.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string(), env)
    }

    pub fn from_toml(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        from_toml_with(text, origin, env, resolve)
    }

    /// `SIGEX_*` variables in `env` that are neither config keys nor variables sigex reads
    /// elsewhere (`SIGEX_ADMIN_URL`, `SIGEX_SIM_*`): they are ignored; say so.
    pub fn stray_variables(env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
        env::stray(&schema(), env)
    }
}

/// What `sigex backtest` takes from a config file: the trading rules (`[limits]`, `[symbols]`,
/// `[maintenance]`, `[alerts]`), the paper venue's engine, account and candles (`[paper]`), and
/// the venue's URL and credentials for `--prices venue`. The file is read as strictly as for
/// `run`, but the secrets only a running bot needs are not required.
#[derive(Debug, Clone)]
pub struct BacktestSettings {
    pub trading: TradingConfig,
    pub paper: PaperConfig,
    pub venue_base_url: String,
    /// From `SIGEX_VENUE__API_KEY` / `SIGEX_VENUE__API_SECRET` (or the `*_file` keys) when set.
    pub credentials: Option<Credentials>,
    pub request_timeout: Duration,
    /// `[webhook] max_event_age_secs`: a recorded event older than this when received is a
    /// dead letter in the replay, as it was live.
    pub freshness: crate::model::events::Freshness,
}

impl BacktestSettings {
    /// Reads `path`, or with none the defaults; `SIGEX_*` overrides from `env` apply either way
    /// (so `SIGEX_VENUE__API_KEY` and friends reach `--prices venue` without a config file).
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (origin, text) = match path {
            Some(path) => {
                let origin = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: origin.clone(),
                    source,
                })?;
                (origin, text)
            }
            None => ("(no config file)".to_owned(), String::new()),
        };
        from_toml_with(&text, &origin, env, resolve_backtest)
    }
}

/// `[webhook] max_event_age_secs`, checked.
fn max_event_age_secs(written: Option<u64>) -> Result<u64, String> {
    let secs = written.unwrap_or(crate::venue::wire::DEFAULT_MAX_EVENT_AGE_SECS);
    if !(60..=7 * 86_400).contains(&secs) {
        return Err(format!(
            "[webhook] max_event_age_secs = {secs} is out of range; use 60 to 604800 (the \
             venue's retries must fit inside it)"
        ));
    }
    Ok(secs)
}

fn resolve_backtest(raw: RawConfig, origin: &str) -> Result<BacktestSettings, String> {
    let base_dir = Path::new(origin).parent().unwrap_or(Path::new("."));
    let api_key = read_secret(
        "venue",
        "api_key",
        raw.venue.api_key,
        raw.venue.api_key_file,
        base_dir,
    )?;
    let api_secret = read_secret(
        "venue",
        "api_secret",
        raw.venue.api_secret,
        raw.venue.api_secret_file,
        base_dir,
    )?;
    let credentials = match (api_key, api_secret) {
        (Some(api_key), Some(api_secret)) => Some(Credentials {
            api_key,
            api_secret,
        }),
        _ => None,
    };
    let max_event_age = max_event_age_secs(raw.webhook.max_event_age_secs)?;
    Ok(BacktestSettings {
        freshness: crate::model::events::Freshness::new(chrono::Duration::seconds(
            max_event_age as i64,
        )),
        trading: trading::resolve(trading::RawTrading {
            limits: raw.limits,
            maintenance: raw.maintenance,
            alerts: raw.alerts,
            symbols: raw.symbols,
            symbol_defaults: raw.symbol_defaults,
        })?,
        paper: paper::resolve(raw.paper, base_dir)?,
        venue_base_url: raw
            .venue
            .base_url
            .unwrap_or_else(|| crate::venue::wire::DEFAULT_BASE_URL.to_owned())
            .trim_end_matches('/')
            .to_owned(),
        credentials,
        request_timeout: Duration::from_millis(raw.venue.request_timeout_ms.unwrap_or(10_000)),
    })
}

/// The file's text with its `SIGEX_*` overrides applied, in the file's shape, then `resolve`d:
/// refused (naming the line of the file, or the environment variable) when it holds a secret,
/// an unknown key, a value of the wrong type or one `resolve` rejects.
fn from_toml_with<T>(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
    resolve: impl FnOnce(RawConfig, &str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: origin.to_owned(),
        message,
    };
    // Errors name where the value came from: the line of the file (the table has lost the
    // spans, so a mistake is looked up again in the text), or the environment variable.
    let at_line = |line: Option<usize>, message: String| ConfigError::Invalid {
        path: match line {
            Some(l) => format!("{origin}:{l}"),
            None => origin.to_owned(),
        },
        message,
    };
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let (line, message) = toml_error::describe(text, &e);
        at_line(line, message)
    })?;
    for (section, key) in SECRET_KEYS {
        if table.get(*section).and_then(|s| s.get(*key)).is_some() {
            return Err(invalid(format!(
                "[{section}] {key} must not be written in the config file; set the environment \
                 variable SIGEX_{}__{} or point [{section}] {key}_file at a file holding it",
                section.to_uppercase(),
                key.to_uppercase()
            )));
        }
    }
    let file_table = table.clone();
    let overrides = env::overrides(&schema(), env)?;
    for o in &overrides {
        o.apply(&mut table)?;
    }
    let raw: RawConfig = match table.try_into() {
        Ok(raw) => raw,
        Err(e) => {
            return Err(shape_error(
                text,
                &file_table,
                &overrides,
                e.message(),
                at_line,
            ))
        }
    };
    resolve(raw, origin).map_err(|m| {
        let from_env = named_key(&m)
            .and_then(|(section, key)| overrides.iter().find(|o| o.names(section, key)));
        match from_env {
            Some(o) => o.error(m),
            None => at_line(locate(text, &m), m),
        }
    })
}

/// The config file's keys, from its serde types (the allow-list of environment overrides).
fn schema() -> env::Schema {
    env::Schema::of::<RawConfig>()
}

/// A value of the wrong shape: in the file (its line and key), else in one environment variable.
fn shape_error(
    text: &str,
    file_table: &toml::Table,
    overrides: &[env::Override],
    message: &str,
    at_line: impl Fn(Option<usize>, String) -> ConfigError,
) -> ConfigError {
    if let Err(e) = toml::from_str::<RawConfig>(text) {
        let (line, message) = toml_error::describe(text, &e);
        return at_line(line, message);
    }
    for o in overrides {
        let mut alone = file_table.clone();
        if o.apply(&mut alone).is_err() {
            continue;
        }
        if let Err(e) = alone.try_into::<RawConfig>() {
            let at = match &o.section {
                Some(s) => format!("[{s}] {}", o.key),
                None => o.key.clone(),
            };
            return o.error(format!("{at}: {}", e.message()));
        }
    }
    at_line(None, message.to_owned())
}

/// The `[section] key` (or top-level `key`) a validation message starts with.
fn named_key(message: &str) -> Option<(Option<&str>, &str)> {
    fn key_of(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    }
    match message.strip_prefix('[') {
        Some(rest) => {
            let (section, after) = rest.split_once(']')?;
            Some((Some(section), key_of(after.trim_start())))
        }
        None => Some((None, key_of(message))),
    }
}

/// The line of the `[section] key` a validation message starts with, when the file has it.
fn locate(text: &str, message: &str) -> Option<usize> {
    let rest = message.strip_prefix('[')?;
    let (section, after) = rest.split_once(']')?;
    let key: String = after
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.trim() == format!("[{section}]"))?;
    let key_line = lines[header + 1..]
        .iter()
        .take_while(|l| !l.trim_start().starts_with('['))
        .position(|l| {
            !key.is_empty()
                && l.trim_start()
                    .strip_prefix(key.as_str())
                    .is_some_and(|r| r.trim_start().starts_with('='))
        });
    Some(key_line.map_or(header + 1, |k| header + k + 2))
}

/// The database URL alone, for `sigex halt` / `sigex resume`: they must work in an emergency even
/// when the secrets the bot needs are not in this shell's environment.
pub fn database_url_only(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<String, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: origin.clone(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Invalid {
            path: origin,
            message: e.to_string(),
        })?;
    let from_env = env
        .into_iter()
        .find(|(k, _)| k == "SIGEX_STORAGE__DATABASE_URL")
        .map(|(_, v)| v);
    Ok(from_env
        .or_else(|| {
            table
                .get("storage")
                .and_then(|s| s.get("database_url"))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()))
}

fn resolve(raw: RawConfig, origin: &str) -> Result<Config, String> {
    let mode = raw.mode.ok_or_else(|| {
        "mode is required: add `mode = \"paper\"` (orders go to the paper venue) or \
         `mode = \"live\"` (real orders) at the top of the file"
            .to_owned()
    })?;
    let base_dir = Path::new(origin).parent().unwrap_or(Path::new("."));
    let secret = |section: &str, key: &str, inline: Option<String>, file: Option<PathBuf>| {
        read_secret(section, key, inline, file, base_dir)
    };

    let api_key = secret(
        "venue",
        "api_key",
        raw.venue.api_key,
        raw.venue.api_key_file,
    )?;
    let api_secret = secret(
        "venue",
        "api_secret",
        raw.venue.api_secret,
        raw.venue.api_secret_file,
    )?;
    let credentials = match (api_key, api_secret, mode) {
        (Some(api_key), Some(api_secret), _) => Some(Credentials {
            api_key,
            api_secret,
        }),
        (None, None, Mode::Paper) => None,
        (k, _, _) => {
            let missing = if k.is_none() { "api_key" } else { "api_secret" };
            return Err(format!(
                "[venue] {missing} is missing: live mode signs every order with it. Set \
                 SIGEX_VENUE__{} or [venue] {missing}_file",
                missing.to_uppercase()
            ));
        }
    };
    let webhook_secret = secret(
        "webhook",
        "secret",
        raw.webhook.secret,
        raw.webhook.secret_file,
    )?
    .ok_or_else(|| {
        "[webhook] secret is missing: without it no webhook can be verified. Set \
         SIGEX_WEBHOOK__SECRET or [webhook] secret_file"
            .to_owned()
    })?;
    if webhook_secret.expose().len() < 16 {
        return Err(
            "[webhook] secret is shorter than 16 characters; use the secret the venue \
                    issued when the webhook was registered"
                .to_owned(),
        );
    }

    let base_url = raw
        .venue
        .base_url
        .unwrap_or_else(|| crate::venue::wire::DEFAULT_BASE_URL.to_owned());
    let parsed = reqwest::Url::parse(&base_url)
        .map_err(|e| format!("[venue] base_url {base_url:?} is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "[venue] base_url {base_url:?} must start with https://"
        ));
    }

    let path = raw
        .webhook
        .path
        .unwrap_or_else(|| DEFAULT_WEBHOOK_PATH.to_owned());
    if !path.starts_with('/') {
        return Err(format!("[webhook] path {path:?} must start with '/'"));
    }

    let ranges = |key: &str, values: &[String]| {
        crate::ingress::guard::parse_ranges(values).map_err(|e| format!("[webhook] {key}: {e}"))
    };
    let tls = match (raw.webhook.tls_cert_file, raw.webhook.tls_key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let abs = |p: PathBuf| if p.is_relative() { base_dir.join(p) } else { p };
            Some((abs(cert), abs(key)))
        }
        _ => {
            return Err(
                "[webhook] tls_cert_file and tls_key_file go together: set both to serve \
                        TLS, or neither to run behind a TLS-terminating proxy"
                    .to_owned(),
            )
        }
    };
    let retention_days = raw.inbox.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
    if !(1..=3650).contains(&retention_days) {
        return Err(format!(
            "[inbox] retention_days = {retention_days} is out of range; use 1 to 3650"
        ));
    }
    let max_event_age_secs = max_event_age_secs(raw.webhook.max_event_age_secs)?;
    // Dedupe records must outlive the freshness window: a replay older than retention is then
    // always stale, and one younger is always a duplicate.
    let horizon = max_event_age_secs as i64 + crate::venue::wire::WEBHOOK_MAX_FUTURE_SKEW_SECS;
    if retention_days * 86_400 <= horizon {
        return Err(format!(
            "[inbox] retention_days = {retention_days} must be longer than [webhook] \
             max_event_age_secs = {max_event_age_secs} (plus {} s of clock skew): an event pruned \
             before it is stale could be replayed and applied again. Raise [inbox] retention_days \
             or lower [webhook] max_event_age_secs",
            crate::venue::wire::WEBHOOK_MAX_FUTURE_SKEW_SECS
        ));
    }
    let max_intent_age = match raw.venue.max_intent_age_secs {
        None => DEFAULT_MAX_INTENT_AGE,
        Some(secs @ 1..=86_400) => chrono::Duration::seconds(secs as i64),
        Some(secs) => {
            return Err(format!(
                "[venue] max_intent_age_secs = {secs} is out of range; use 1 to 86400"
            ))
        }
    };
    let max_body_bytes = raw.webhook.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if !(1024..=16 * 1024 * 1024).contains(&max_body_bytes) {
        return Err(format!(
            "[webhook] max_body_bytes = {max_body_bytes} is out of range; use 1024 to 16777216"
        ));
    }
    let pnl_sample_secs = raw.admin.pnl_sample_secs.unwrap_or(DEFAULT_PNL_SAMPLE_SECS);
    if !(1..=3600).contains(&pnl_sample_secs) {
        return Err(format!(
            "[admin] pnl_sample_secs = {pnl_sample_secs} is out of range; use 1 to 3600"
        ));
    }
    let max_connections = raw
        .webhook
        .max_connections
        .unwrap_or(DEFAULT_MAX_CONNECTIONS);
    let max_connections_per_source = raw
        .webhook
        .max_connections_per_source
        .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_SOURCE);
    if !(1..=1_000_000).contains(&max_connections) {
        return Err(format!(
            "[webhook] max_connections = {max_connections} is out of range; use 1 to 1000000"
        ));
    }
    if !(1..=max_connections).contains(&max_connections_per_source) {
        return Err(format!(
            "[webhook] max_connections_per_source = {max_connections_per_source} is out of range; use 1 to max_connections ({max_connections})"
        ));
    }
    let admin_token = secret("admin", "token", raw.admin.token, raw.admin.token_file)?;
    if admin_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
        return Err("[admin] token is shorter than 16 characters; use a long random token".into());
    }
    let trading = trading::resolve(trading::RawTrading {
        limits: raw.limits,
        maintenance: raw.maintenance,
        alerts: raw.alerts,
        symbols: raw.symbols,
        symbol_defaults: raw.symbol_defaults,
    })?;
    let paper = paper::resolve(raw.paper, base_dir)?;
    // Wherever the venue's address is called with the API key, it must be https (or loopback).
    if mode == Mode::Live || matches!(paper.price_source, PriceSource::Venue { .. }) {
        crate::venue::wire::check_base_url(&base_url)?;
    }
    let notify = raw
        .notify
        .into_iter()
        .enumerate()
        .map(|(i, n)| resolve_notify(i, n, base_dir))
        .collect::<Result<Vec<_>, _>>()?;

    Ok(Config {
        trading,
        mode,
        venue: VenueConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            credentials,
            request_timeout: Duration::from_millis(raw.venue.request_timeout_ms.unwrap_or(10_000)),
            max_orders_per_second: raw
                .venue
                .max_orders_per_second
                .unwrap_or(DEFAULT_MAX_ORDERS_PER_SECOND),
            max_intent_age,
        },
        webhook: WebhookConfig {
            listen: parse_addr("webhook", "listen", raw.webhook.listen, "0.0.0.0:8080")?,
            path,
            secret: webhook_secret,
            max_body_bytes,
            allow_sources: ranges("allow_sources", &raw.webhook.allow_sources)?,
            trusted_proxies: ranges("trusted_proxies", &raw.webhook.trusted_proxies)?,
            tls,
            rate_limit_per_second: raw
                .webhook
                .rate_limit_per_second
                .unwrap_or(DEFAULT_RATE_LIMIT_PER_SECOND),
            rate_limit_burst: raw
                .webhook
                .rate_limit_burst
                .unwrap_or(DEFAULT_RATE_LIMIT_BURST),
            header_timeout: Duration::from_millis(
                raw.webhook
                    .header_timeout_ms
                    .unwrap_or(DEFAULT_HEADER_TIMEOUT_MS),
            ),
            read_timeout: Duration::from_millis(
                raw.webhook
                    .read_timeout_ms
                    .unwrap_or(DEFAULT_READ_TIMEOUT_MS),
            ),
            max_event_age: chrono::Duration::seconds(max_event_age_secs as i64),
            max_connections,
            max_connections_per_source,
        },
        inbox: InboxConfig {
            retention: chrono::Duration::days(retention_days),
        },
        admin: AdminConfig {
            listen: parse_addr("admin", "listen", raw.admin.listen, "127.0.0.1:8081")?,
            token: admin_token,
            pnl_sample_interval: Duration::from_secs(pnl_sample_secs),
        },
        storage: StorageConfig {
            database_url: sqlite_relative_to(
                &raw.storage
                    .database_url
                    .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
                base_dir,
            ),
        },
        strategies_dir: raw
            .strategies
            .dir
            .map(|d| if d.is_relative() { base_dir.join(d) } else { d })
            .unwrap_or_else(|| base_dir.join("strategies")),
        paper,
        notify,
        shutdown_deadline: raw
            .shutdown
            .deadline_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_SHUTDOWN_DEADLINE),
        reconcile: resolve_reconcile(raw.reconcile)?,
    })
}

fn resolve_reconcile(raw: RawReconcile) -> Result<ReconcileConfig, String> {
    let defaults = ReconcileConfig::default();
    let stale_secs = raw.stale_after_secs.unwrap_or(DEFAULT_STALE_AFTER_SECS);
    if stale_secs == 0 || stale_secs > 86_400 {
        return Err(format!(
            "[reconcile] stale_after_secs = {stale_secs}: use between 1 and 86400 seconds"
        ));
    }
    let drift_tolerance = raw.drift_tolerance.unwrap_or(defaults.drift_tolerance);
    if drift_tolerance.is_sign_negative() {
        return Err(format!(
            "[reconcile] drift_tolerance = {drift_tolerance}: a tolerance cannot be negative"
        ));
    }
    let pnl_tolerance = raw.pnl_tolerance.unwrap_or(defaults.pnl_tolerance);
    if pnl_tolerance.is_sign_negative() {
        return Err(format!(
            "[reconcile] pnl_tolerance = {pnl_tolerance}: a tolerance cannot be negative"
        ));
    }
    Ok(ReconcileConfig {
        pnl_tolerance,
        stale_after: chrono::Duration::seconds(stale_secs as i64),
        snapshot_interval: raw
            .snapshot_interval_secs
            .map(Duration::from_secs)
            .unwrap_or(defaults.snapshot_interval),
        drift_tolerance,
    })
}

fn resolve_notify(i: usize, n: RawNotify, base_dir: &Path) -> Result<NotifyTarget, String> {
    let at = format!("[[notify]] #{} ({:?})", i + 1, n.kind);
    let url = match (n.url, n.url_env, n.url_file) {
        (Some(url), None, None) => {
            if n.kind != NotifyKind::Webhook {
                return Err(format!(
                    "{at}: url must not be written in the config file for {:?}: its URL carries a \
                     token. Use url_env = \"VARIABLE\" or url_file = \"/path\"",
                    n.kind
                ));
            }
            Secret::new(url)
        }
        (None, Some(var), None) => match std::env::var(&var) {
            Ok(v) if !v.is_empty() => Secret::new(v),
            _ => return Err(format!("{at}: url_env names {var}, which is not set")),
        },
        (None, None, Some(file)) => read_secret("notify", "url", None, Some(file), base_dir)?
            .ok_or_else(|| format!("{at}: url_file is empty"))?,
        _ => {
            return Err(format!(
                "{at}: give exactly one of url, url_env or url_file"
            ))
        }
    };
    if reqwest::Url::parse(url.expose()).is_err() {
        return Err(format!("{at}: the URL is not a valid http(s) URL"));
    }
    if n.kind == NotifyKind::Telegram && n.chat_id.is_none() {
        return Err(format!("{at}: telegram needs chat_id"));
    }
    if let Some(events) = &n.events {
        if let Some(bad) = events.iter().find(|e| !NOTIFY_EVENTS.contains(&e.as_str())) {
            return Err(format!(
                "{at}: unknown event {bad:?}; known: {}",
                NOTIFY_EVENTS.join(", ")
            ));
        }
    }
    Ok(NotifyTarget {
        kind: n.kind,
        url,
        chat_id: n.chat_id,
        events: n.events,
    })
}

/// A relative SQLite path is relative to the config file, like every other path in it.
fn sqlite_relative_to(url: &str, base_dir: &Path) -> String {
    match url.strip_prefix("sqlite://") {
        Some(path)
            if !path.starts_with('/')
                && !path.starts_with(':')
                && !base_dir.as_os_str().is_empty() =>
        {
            format!("sqlite://{}", base_dir.join(path).display())
        }
        _ => url.to_owned(),
    }
}

fn parse_addr(
    section: &str,
    key: &str,
    value: Option<String>,
    default: &str,
) -> Result<SocketAddr, String> {
    let value = value.unwrap_or_else(|| default.to_owned());
    value.parse().map_err(|_| {
        format!("[{section}] {key} {value:?} is not an address like \"127.0.0.1:8080\"")
    })
}

fn read_secret(
    section: &str,
    key: &str,
    from_env: Option<String>,
    file: Option<PathBuf>,
    base_dir: &Path,
) -> Result<Option<Secret>, String> {
    if let Some(v) = from_env {
        return non_empty(section, key, v).map(Some);
    }
    let Some(file) = file else { return Ok(None) };
    let file = if file.is_relative() {
        base_dir.join(file)
    } else {
        file
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        format!(
            "[{section}] {key}_file {}: cannot read it ({e})",
            file.display()
        )
    })?;
    non_empty(section, key, text.trim().to_owned()).map(Some)
}

fn non_empty(section: &str, key: &str, v: String) -> Result<Secret, String> {
    if v.is_empty() {
        Err(format!("[{section}] {key} is empty"))
    } else {
        Ok(Secret::new(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::alerts::AlertAction;
    use crate::risk::sizing::SymbolSpec;
    use rust_decimal::Decimal;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SECRET_ENV: &[(&str, &str)] = &[
        ("SIGEX_WEBHOOK__SECRET", "whsec_0123456789abcdef"),
        ("SIGEX_VENUE__API_KEY", "key"),
        ("SIGEX_VENUE__API_SECRET", "shh"),
    ];

    #[test]
    fn environment_overrides_file_values() {
        let mut e = env(SECRET_ENV);
        e.push((
            "SIGEX_VENUE__BASE_URL".into(),
            "http://127.0.0.1:9/api/v1".into(),
        ));
        e.push(("SIGEX_VENUE__REQUEST_TIMEOUT_MS".into(), "250".into()));
        let c = Config::from_toml(
            "mode = \"live\"\n[venue]\nbase_url = \"https://x/api/v1\"\n",
            "c.toml",
            e,
        )
        .unwrap();
        assert_eq!(c.venue.base_url, "http://127.0.0.1:9/api/v1");
        assert_eq!(c.venue.request_timeout, Duration::from_millis(250));
        assert_eq!(c.webhook.path, DEFAULT_WEBHOOK_PATH);
    }

    #[test]
    fn lists_and_numbers_can_come_from_the_environment() {
        let mut e = env(SECRET_ENV);
        e.push((
            "SIGEX_WEBHOOK__ALLOW_SOURCES".into(),
            "203.0.113.0/24, 10.1.2.3".into(),
        ));
        e.push(("SIGEX_WEBHOOK__RATE_LIMIT_PER_SECOND".into(), "0".into()));
        let c = Config::from_toml("mode = \"paper\"\n", "c.toml", e).unwrap();
        assert_eq!(c.webhook.allow_sources.len(), 2);
        assert_eq!(c.webhook.rate_limit_per_second, 0);
        let mut e = env(SECRET_ENV);
        e.push((
            "SIGEX_WEBHOOK__TRUSTED_PROXIES".into(),
            "10.0.0.0/33".into(),
        ));
        let err = Config::from_toml("mode = \"paper\"\n", "c.toml", e).unwrap_err();
        assert!(err.to_string().contains("trusted_proxies"), "{err}");
    }

    #[test]
    fn a_relative_database_path_is_relative_to_the_config_file() {
        let c = Config::from_toml(
            "mode = \"paper\"\n",
            "/etc/sigex/sigex.toml",
            env(SECRET_ENV),
        )
        .unwrap();
        assert_eq!(c.storage.database_url, "sqlite:///etc/sigex/sigex.db");
        let c = Config::from_toml(
            "mode = \"paper\"\n[storage]\ndatabase_url = \"sqlite:///var/lib/sigex/a.db\"\n",
            "/etc/sigex/sigex.toml",
            env(SECRET_ENV),
        )
        .unwrap();
        assert_eq!(c.storage.database_url, "sqlite:///var/lib/sigex/a.db");
    }

    #[test]
    fn tls_needs_both_files() {
        let err = Config::from_toml(
            "mode = \"paper\"\n[webhook]\ntls_cert_file = \"c.pem\"\n",
            "c.toml",
            env(SECRET_ENV),
        )
        .unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
    }

    #[test]
    fn trading_sections_are_read_and_checked() {
        let text = r#"
mode = "paper"
[limits]
max_order_notional = 1000
max_open_orders = 5
daily_loss_limit = 250
[maintenance]
lead_secs = 60
[alerts.warning]
action = "scale"
factor = 0.25
duration_secs = 600
[alerts.critical]
action = "reduce"
[symbols."BTC/USD"]
lot_step = 0.001
"#;
        let c = Config::from_toml(text, "c.toml", env(SECRET_ENV)).unwrap();
        let t = &c.trading;
        assert_eq!(t.limits.max_order_notional, Some(Decimal::from(1000)));
        assert_eq!(t.limits.max_open_orders, Some(5));
        assert_eq!(t.maintenance.lead, chrono::Duration::seconds(60));
        assert_eq!(t.maintenance.settle, chrono::Duration::minutes(5));
        assert_eq!(t.alerts.levels["critical"], AlertAction::Reduce);
        assert_eq!(t.spec("BTC/USD").lot_step, "0.001".parse().unwrap());
        assert_eq!(t.spec("XRP/USD"), SymbolSpec::default());
        assert!(c.admin.token.is_none());

        let bad = [
            (
                "[limits]\nmax_order_notional = 0\n",
                "max_order_notional = 0 must be above zero",
            ),
            (
                "[limits]\nmax_open_orders = 0\n",
                "would refuse every order",
            ),
            ("[limits]\nmax_orders = 3\n", "max_orders"),
            (
                "[alerts.warning]\naction = \"panic\"\n",
                "valid: \"ignore\", \"scale\"",
            ),
            ("[alerts.warning]\naction = \"scale\"\n", "needs factor"),
            (
                "[alerts.critical]\naction = \"halt\"\nfactor = 0.5\n",
                "only apply to action = \"scale\"",
            ),
            ("[maintenance]\nlead_secs = -1\n", "from 0 to 86400"),
            ("[symbols.\"btc\"]\nlot_step = 1\n", "BASE/QUOTE"),
            (
                "[symbol_defaults]\nfee_bps = -1\n",
                "[symbol_defaults] fee_bps = -1: a fee is between 0 and 1000 basis points",
            ),
            (
                "[reconcile]\npnl_tolerance = -0.5\n",
                "pnl_tolerance = -0.5",
            ),
            (
                "[admin]\ntoken = \"0123456789abcdef\"\n",
                "SIGEX_ADMIN__TOKEN",
            ),
        ];
        // The line each mistake is on (0: a secret refused before the file is read as a config).
        let lines = [3, 3, 3, 3, 3, 4, 3, 2, 3, 3, 0];
        for ((section, needle), line) in bad.into_iter().zip(lines) {
            let err = Config::from_toml(
                &format!("mode = \"paper\"\n{section}"),
                "c.toml",
                env(SECRET_ENV),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(needle) && err.contains("c.toml"),
                "{section}: {err}"
            );
            if line > 0 {
                assert!(err.starts_with(&format!("c.toml:{line}: ")), "{err}");
            }
        }
        let mut e = env(SECRET_ENV);
        e.push(("SIGEX_ADMIN__TOKEN".into(), "short".into()));
        let err = Config::from_toml("mode = \"paper\"\n", "c.toml", e)
            .unwrap_err()
            .to_string();
        assert!(err.contains("shorter than 16"), "{err}");
    }

    #[test]
    fn trading_keys_can_be_overridden_from_the_environment() {
        let mut e = env(SECRET_ENV);
        e.push(("SIGEX_LIMITS__MAX_OPEN_ORDERS".into(), "7".into()));
        e.push(("SIGEX_LIMITS__DAILY_LOSS_LIMIT".into(), "250.5".into()));
        e.push(("SIGEX_MAINTENANCE__LEAD_SECS".into(), "30".into()));
        e.push((
            "SIGEX_MAINTENANCE__CANCEL_OPEN_ORDERS".into(),
            "true".into(),
        ));
        let c = Config::from_toml("mode = \"paper\"\n", "c.toml", e).unwrap();
        assert_eq!(c.trading.limits.max_open_orders, Some(7));
        assert_eq!(
            c.trading.limits.daily_loss_limit,
            Some("250.5".parse().unwrap())
        );
        assert_eq!(c.trading.maintenance.lead, chrono::Duration::seconds(30));
        assert!(c.trading.maintenance.cancel_open_orders);
    }

    #[test]
    fn a_retention_not_longer_than_the_freshness_window_is_refused_naming_both_keys() {
        let c = Config::from_toml("mode = \"paper\"\n", "c.toml", env(SECRET_ENV)).unwrap();
        assert_eq!(c.webhook.max_event_age, chrono::Duration::hours(1));
        let text = "mode = \"paper\"\n[webhook]\nmax_event_age_secs = 86400\n[inbox]\nretention_days = 1\n";
        let err = Config::from_toml(text, "c.toml", env(SECRET_ENV))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[inbox] retention_days = 1")
                && err.contains("[webhook] max_event_age_secs = 86400"),
            "{err}"
        );
        let text = "mode = \"paper\"\n[webhook]\nmax_event_age_secs = 86000\n[inbox]\nretention_days = 2\n";
        let c = Config::from_toml(text, "c.toml", env(SECRET_ENV)).unwrap();
        assert_eq!(c.webhook.max_event_age, chrono::Duration::seconds(86000));
        let mut e = env(SECRET_ENV);
        e.push(("SIGEX_WEBHOOK__MAX_EVENT_AGE_SECS".into(), "10".into()));
        let err = Config::from_toml("mode = \"paper\"\n", "c.toml", e).unwrap_err();
        assert!(
            err.to_string()
                .contains("max_event_age_secs = 10 is out of range"),
            "{err}"
        );
    }

    #[test]
    fn sigex_variables_that_are_not_config_keys_change_nothing() {
        let mut e = env(SECRET_ENV);
        for (name, value) in [
            ("SIGEX_ADMIN_URL", "http://127.0.0.1:8081"),
            ("SIGEX_SIM_API_KEY", "sim-key"),
            ("SIGEX_SIM_API_SECRET", "sim-secret"),
            ("SIGEX_CHAOS_SEED", "12345"),
            ("SIGEX_SOMETHING_ELSE", "x"),
            ("SIGEX_NOT_A_SECTION__KEY", "x"),
        ] {
            e.push((name.into(), value.into()));
        }
        let c = Config::from_toml("mode = \"paper\"\n", "c.toml", e.clone()).unwrap();
        assert_eq!(c.admin.listen.to_string(), "127.0.0.1:8081");
        // Only the names that are neither config keys nor read by sigex elsewhere are worth a
        // warning.
        assert_eq!(
            Config::stray_variables(e),
            vec![
                "SIGEX_SOMETHING_ELSE".to_owned(),
                "SIGEX_NOT_A_SECTION__KEY".to_owned()
            ]
        );
    }

    #[test]
    fn every_section_of_the_file_can_be_overridden_with_its_own_types() {
        let s = schema();
        let kinds = |section: &str| s.sections_for_test(section);
        assert_eq!(
            kinds("webhook")["rate_limit_per_second"],
            env::Kind::Integer
        );
        assert_eq!(kinds("webhook")["allow_sources"], env::Kind::List);
        assert_eq!(kinds("webhook")["secret"], env::Kind::Text);
        assert_eq!(kinds("reconcile")["stale_after_secs"], env::Kind::Integer);
        assert_eq!(kinds("paper")["starting_balance"], env::Kind::Text);
        assert!(kinds("limits").contains_key("max_open_orders"));
        assert!(kinds("storage").contains_key("database_url"));
    }

    #[test]
    fn a_bad_value_from_the_environment_names_the_variable_not_a_line() {
        let file = "mode = \"paper\"\n\n[webhook]\nlisten = \"127.0.0.1:8080\"\n";
        let cases = [
            (
                "SIGEX_WEBHOOK__SECRET",
                "whsec_short",
                "[webhook] secret is shorter than 16 characters",
            ),
            ("SIGEX_MODE", "papr", "unknown variant `papr`"),
            (
                "SIGEX_WEBHOOK__LISTEN",
                "localhost",
                "[webhook] listen \"localhost\" is not an address",
            ),
            (
                "SIGEX_WEBHOOK__MAX_BODY_BYTES",
                "lots",
                "[webhook] max_body_bytes must be a whole number",
            ),
            (
                "SIGEX_WEBHOOK__SECRT",
                "whsec_0123456789abcdef",
                "[webhook] has no key \"secrt\"",
            ),
        ];
        for (name, value, expected) in cases {
            let mut e = env(SECRET_ENV);
            e.retain(|(k, _)| k != name);
            e.push((name.into(), value.into()));
            let err = Config::from_toml(file, "sigex.toml", e)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("environment variable {name}: "))
                    && err.contains(expected),
                "{name}: {err}"
            );
            assert!(!err.contains("sigex.toml:"), "{name}: {err}");
        }
        // The same mistake written in the file is reported at its line.
        let err = Config::from_toml("mode = \"papr\"\n", "sigex.toml", env(SECRET_ENV))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("sigex.toml:1: mode: unknown variant `papr`"),
            "{err}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_in_the_file_names_the_key_and_the_line() {
        let err = Config::from_toml(
            "mode = \"paper\"\n[limits]\nmax_order_notional = 100\n[reconcile]\nstale_after_secs = \"70\"\n",
            "sigex.toml",
            env(SECRET_ENV),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "sigex.toml:5: [reconcile] stale_after_secs: invalid type: string \"70\""
            ),
            "{err}"
        );
    }

    #[test]
    fn live_mode_refuses_a_plain_http_venue_except_on_loopback() {
        let live = |url: &str| {
            Config::from_toml(
                &format!("mode = \"live\"\n[venue]\nbase_url = \"{url}\"\n"),
                "c.toml",
                env(SECRET_ENV),
            )
        };
        for url in [
            "http://api.vibetrading.tech/api/v1",
            "http://10.0.0.5:8080/api/v1",
            "ftp://api.vibetrading.tech/api/v1",
        ] {
            let err = live(url).unwrap_err().to_string();
            assert!(
                err.starts_with("c.toml:3: ") && err.contains("must start with https://"),
                "{url}: {err}"
            );
        }
        for url in [
            "https://api.vibetrading.tech/api/v1",
            "http://127.0.0.1:9090/api/v1",
            "http://localhost:9090/api/v1",
            "http://[::1]:9090/api/v1",
        ] {
            assert!(live(url).is_ok(), "{url}");
        }
        // Paper mode never calls it, unless it follows the venue's prices.
        let paper = |extra: &str| {
            Config::from_toml(
                &format!(
                    "mode = \"paper\"\n[venue]\nbase_url = \"http://10.0.0.5/api/v1\"\n{extra}"
                ),
                "c.toml",
                env(SECRET_ENV),
            )
        };
        assert!(paper("").is_ok());
        assert!(paper("[paper]\nprice_source = \"venue\"\n").is_err());
    }

    #[test]
    fn mode_has_no_default() {
        let err = Config::from_toml("", "c.toml", env(SECRET_ENV)).unwrap_err();
        assert!(err.to_string().contains("mode is required"), "{err}");
    }

    #[test]
    fn unknown_keys_stop_startup_naming_the_key() {
        let err = Config::from_toml(
            "mode = \"paper\"\n[webhook]\nlisten_addr = \"x\"\n",
            "c.toml",
            env(SECRET_ENV),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("listen_addr") && err.contains("c.toml"),
            "{err}"
        );
    }

    #[test]
    fn secrets_in_the_file_are_refused() {
        let err = Config::from_toml(
            "mode = \"paper\"\n[webhook]\nsecret = \"whsec_0123456789abcdef\"\n",
            "c.toml",
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("SIGEX_WEBHOOK__SECRET"), "{err}");
        assert!(!err.contains("whsec_0123456789abcdef"), "{err}");
    }

    #[test]
    fn a_missing_secret_stops_startup_with_the_fix() {
        let err = Config::from_toml("mode = \"live\"\n", "c.toml", env(&SECRET_ENV[..1]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("api_key is missing"), "{err}");
        let err = Config::from_toml("mode = \"paper\"\n", "c.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[webhook] secret is missing"), "{err}");
    }

    #[test]
    fn secrets_are_read_from_files_and_never_debug_printed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wh"), "whsec_from_file_123456\n").unwrap();
        let cfg_path = dir.path().join("sigex.toml");
        std::fs::write(
            &cfg_path,
            "mode = \"paper\"\n[webhook]\nsecret_file = \"wh\"\n",
        )
        .unwrap();
        let c = Config::load(&cfg_path, env(&[])).unwrap();
        assert_eq!(c.webhook.secret.expose(), "whsec_from_file_123456");
        assert!(!format!("{c:?}").contains("whsec_from_file"));
    }

    #[test]
    fn the_paper_section_is_exact_and_strict() {
        let ok = Config::from_toml(
            "mode = \"paper\"\n[paper]\nstarting_balance = 25000\ntaker_fee_bps = \"2.5\"\nseed = 7\n\
             latency_ms = 20\nposition_limit_notional = 5000\n[paper.symbols]\n\"BTC/USD\" = 60000\n\
             [paper.walks.\"BTC/USD\"]\ntrend_bps = \"-0.5\"\n",
            "c.toml",
            env(SECRET_ENV),
        )
        .unwrap();
        assert_eq!(ok.paper.starting_balance, Decimal::new(25_000, 0));
        assert_eq!(ok.paper.engine.taker_fee_bps, Decimal::new(25, 1));
        assert_eq!(ok.paper.seed, 7);
        assert_eq!(ok.paper.latency, Duration::from_millis(20));
        assert_eq!(
            ok.paper.symbols,
            vec![("BTC/USD".to_string(), Decimal::new(60_000, 0))]
        );
        assert_eq!(
            ok.paper.engine.walks["BTC/USD"].trend_bps,
            Decimal::new(-5, 1)
        );
        let cases = [
            ("taker_fee_bps = 2.5", "as a string"),
            ("fee_bps = 2", "fee_bps"),
            ("starting_balance = 0", "starting_balance must be positive"),
            ("price_source = \"exchange\"", "price_source"),
            ("venue_price_interval_ms = 500", "price_source is not"),
            ("price_source = \"candles\"", "needs [paper.candles]"),
            ("depth_levels = 0", "depth_levels"),
            ("seed = \"-1\"", "seed"),
        ];
        for (line, expected) in cases {
            let err = Config::from_toml(
                &format!("mode = \"paper\"\n[paper]\n{line}\n"),
                "c.toml",
                env(SECRET_ENV),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(expected), "{line}: {err}");
        }
    }

    #[test]
    fn candle_files_are_read_and_checked() {
        let good = "timestamp,open,high,low,close,volume\n2026-01-01T00:00:00Z,100,110,95,105,12.5\n1767225660,105,106,90,92,3\n";
        let bars = parse_candles(good).unwrap();
        assert_eq!(bars.len(), 2);
        assert_eq!(bars[1].close, Decimal::new(92, 0));
        for bad in [
            "",
            "2026-01-01T00:00:00Z,100,90,95,105,1\n",
            "x,1,2,3,4,5\n",
            "1,2,3\n",
        ] {
            assert!(parse_candles(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn admin_token_and_notify_targets_are_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tg"),
            "https://example.invalid/botX/sendMessage\n",
        )
        .unwrap();
        let base = "mode = \"paper\"\n";
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a [(&'a str, &'a str)],
            Result<(), &'a str>,
        );
        let cases: &[Case] = &[
            ("no token: mutations disabled", "", &[], Ok(())),
            (
                "token from the environment",
                "",
                &[("SIGEX_ADMIN__TOKEN", "0123456789abcdef0123")],
                Ok(()),
            ),
            (
                "short token",
                "",
                &[("SIGEX_ADMIN__TOKEN", "short")],
                Err("[admin] token is shorter than 16"),
            ),
            (
                "token written in the file",
                "[admin]\ntoken = \"0123456789abcdef0123\"\n",
                &[],
                Err("SIGEX_ADMIN__TOKEN"),
            ),
            (
                "generic webhook with an inline url",
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\n",
                &[],
                Ok(()),
            ),
            (
                "slack url inline is refused",
                "[[notify]]\nkind = \"slack\"\nurl = \"https://hooks.example.invalid/T/B/x\"\n",
                &[],
                Err("url_env"),
            ),
            (
                "telegram from a file needs a chat id",
                "[[notify]]\nkind = \"telegram\"\nurl_file = \"tg\"\n",
                &[],
                Err("telegram needs chat_id"),
            ),
            (
                "telegram from a file with a chat id",
                "[[notify]]\nkind = \"telegram\"\nurl_file = \"tg\"\nchat_id = \"-1\"\n",
                &[],
                Ok(()),
            ),
            (
                "unknown event name",
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\nevents = [\"fills\"]\n",
                &[],
                Err("unknown event \"fills\""),
            ),
            (
                "url_env that is not set",
                "[[notify]]\nkind = \"discord\"\nurl_env = \"SIGEX_CONFIG_TEST_SURELY_UNSET\"\n",
                &[],
                Err("which is not set"),
            ),
        ];
        for (name, extra, vars, expected) in cases {
            let path = dir.path().join("sigex.toml");
            std::fs::write(&path, format!("{base}{extra}")).unwrap();
            let mut e = env(&SECRET_ENV[..1]);
            e.extend(env(vars));
            match (Config::load(&path, e), expected) {
                (Ok(_), Ok(())) => {}
                (Err(err), Err(want)) => {
                    assert!(err.to_string().contains(want), "{name}: {err}")
                }
                (got, want) => panic!("{name}: got {:?}, want {want:?}", got.map(|_| ())),
            }
        }
    }
}
