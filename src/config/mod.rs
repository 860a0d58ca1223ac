//! Configuration: one TOML file, every key overridable by `SIGEX_<SECTION>__<KEY>` environment
//! variables, secrets only from the environment or from files the config names.
//!
//! Loading is strict: an unknown key, a missing secret or an impossible value stops start-up with a
//! message naming the file, the key and the fix. Secrets are `Secret`s and never reach a log line.

mod secret;

pub use secret::Secret;

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    pub admin: AdminConfig,
    pub storage: StorageConfig,
    pub strategies_dir: PathBuf,
    /// Outbound notification targets (`[[notify]]`); empty = none.
    pub notify: Vec<NotifyTarget>,
    /// How long a graceful shutdown may take before the remaining work is abandoned (it is
    /// durable: the inbox and the outbox resume it at the next start).
    pub shutdown_deadline: Duration,
}

#[derive(Debug, Clone)]
pub struct VenueConfig {
    pub base_url: String,
    /// `None` only in paper mode, where the paper venue issues its own credentials.
    pub credentials: Option<Credentials>,
    pub request_timeout: Duration,
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
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token for admin mutations; `None` disables them.
    pub token: Option<Secret>,
}

impl AdminConfig {
    /// Listen on `listen` with mutations disabled.
    pub fn read_only(listen: SocketAddr) -> Self {
        Self {
            listen,
            token: None,
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
    /// Subscribed event names (`crate::notify::EVENTS`); `None` = all.
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
    admin: RawAdmin,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    strategies: RawStrategies,
    #[serde(default)]
    shutdown: RawShutdown,
    #[serde(default)]
    notify: Vec<RawNotify>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    listen: Option<String>,
    path: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    max_body_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
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
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_owned(),
            message,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| invalid(e.to_string()))?;
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
        apply_env_overrides(&mut table, env).map_err(invalid)?;
        let raw: RawConfig = table
            .try_into()
            .map_err(|e: toml::de::Error| invalid(e.to_string()))?;
        resolve(raw, origin).map_err(invalid)
    }
}

/// `SIGEX_MODE=live` sets `mode`; `SIGEX_VENUE__BASE_URL=...` sets `[venue] base_url`. Values are
/// strings except where the key is known to be a number.
fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), String> {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("SIGEX_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        let (section, key) = match rest.split_once("__") {
            Some((s, k)) => (Some(s.to_owned()), k.to_owned()),
            None => (None, rest),
        };
        let value = if key.ends_with("_ms") || key.ends_with("_bytes") {
            toml::Value::Integer(
                value
                    .parse()
                    .map_err(|_| format!("environment variable {name} must be a whole number"))?,
            )
        } else {
            toml::Value::String(value)
        };
        match section {
            None => {
                table.insert(key, value);
            }
            Some(section) => {
                let entry = table
                    .entry(section.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let toml::Value::Table(t) = entry else {
                    return Err(format!(
                        "{section} is not a section, but {name} treats it as one"
                    ));
                };
                t.insert(key, value);
            }
        }
    }
    Ok(())
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

    let admin_token = secret("admin", "token", raw.admin.token, raw.admin.token_file)?;
    if admin_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
        return Err(
            "[admin] token is shorter than 16 characters; generate one, e.g. \
             `openssl rand -hex 24`"
                .to_owned(),
        );
    }
    let notify = raw
        .notify
        .into_iter()
        .enumerate()
        .map(|(i, n)| resolve_notify(i, n, base_dir))
        .collect::<Result<Vec<_>, _>>()?;

    Ok(Config {
        mode,
        venue: VenueConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            credentials,
            request_timeout: Duration::from_millis(raw.venue.request_timeout_ms.unwrap_or(10_000)),
        },
        webhook: WebhookConfig {
            listen: parse_addr("webhook", "listen", raw.webhook.listen, "0.0.0.0:8080")?,
            path,
            secret: webhook_secret,
            max_body_bytes: raw.webhook.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        },
        admin: AdminConfig {
            listen: parse_addr("admin", "listen", raw.admin.listen, "127.0.0.1:8081")?,
            token: admin_token,
        },
        storage: StorageConfig {
            database_url: raw
                .storage
                .database_url
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
        },
        strategies_dir: raw
            .strategies
            .dir
            .map(|d| if d.is_relative() { base_dir.join(d) } else { d })
            .unwrap_or_else(|| base_dir.join("strategies")),
        notify,
        shutdown_deadline: raw
            .shutdown
            .deadline_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_SHUTDOWN_DEADLINE),
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
        if let Some(bad) = events
            .iter()
            .find(|e| !crate::notify::EVENTS.contains(&e.as_str()))
        {
            return Err(format!(
                "{at}: unknown event {bad:?}; known: {}",
                crate::notify::EVENTS.join(", ")
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
