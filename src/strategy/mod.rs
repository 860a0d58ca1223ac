//! Strategy files: which signals become which order intents. No sizing, no I/O.
//!
//! Each `strategies/*.toml` file is one strategy: filters (symbols, recommendations, confidence,
//! horizons, risk levels, signal age, RSI conditions), a sizing method, order type, exits and
//! per-strategy limits. Files are strict: an unknown key, an impossible value or two strategies
//! claiming one symbol stop start-up with the file, the line and the fix. Evaluation is pure and
//! takes `now`.

use crate::model::{Recommendation, Signal, Symbol};
use crate::risk::sizing::{Sizing, SizingMethod};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Strategy {
    pub name: String,
    pub symbols: Vec<Symbol>,
    pub recommendations: Vec<Recommendation>,
    pub min_confidence: u8,
    /// Accepted `timeHorizon` values; empty accepts any (and a missing one).
    pub time_horizons: Vec<String>,
    /// Accepted `riskLevel` values; empty accepts any (and a missing one).
    pub risk_levels: Vec<String>,
    /// Signals older than this (by their timestamp) are ignored.
    pub max_signal_age: Option<Duration>,
    /// Act only when `technicalAnalysis.rsi` is below this.
    pub rsi_below: Option<Decimal>,
    /// Act only when `technicalAnalysis.rsi` is above this.
    pub rsi_above: Option<Decimal>,
    pub sizing: Sizing,
    /// Largest |position + working orders| value on one symbol, in quote currency.
    pub max_position_notional: Option<Decimal>,
    /// Largest number of symbols with a position or working orders at once.
    pub max_concurrent_positions: Option<u32>,
    /// No new opening order on a symbol within this time of the last one.
    pub cooldown: Option<Duration>,
    /// When false (the default) a sell only reduces a long position, never opens a short.
    pub allow_short: bool,
    pub orders: OrderSettings,
    pub exits: Exits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKind {
    Market,
    /// Priced `offset_bps` basis points better than the reference price (below it for buys).
    Limit {
        offset_bps: Decimal,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderSettings {
    pub kind: OrderKind,
    /// `GTC`, `IOC` or `FOK`.
    pub time_in_force: &'static str,
    /// A working order not filled after this long is cancelled.
    pub unfilled_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exits {
    /// An opposite signal closes the position and opens the other way (shorts need allow_short);
    /// when false it only closes.
    pub reverse_on_opposite: bool,
    /// A `hold` signal closes the position.
    pub hold_closes: bool,
    /// After an entry fills, a venue stop order at the signal's support (longs) / resistance
    /// (shorts).
    pub stop_loss: bool,
    /// After an entry fills, a venue limit order at the signal's resistance (longs) / support
    /// (shorts).
    pub take_profit: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StrategyFile {
    name: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    symbols: Vec<Symbol>,
    recommendations: Vec<String>,
    min_confidence: i64,
    #[serde(default)]
    time_horizons: Vec<String>,
    #[serde(default)]
    risk_levels: Vec<String>,
    max_signal_age_secs: Option<i64>,
    #[serde(default)]
    allow_short: bool,
    #[serde(default)]
    conditions: ConditionsSection,
    sizing: SizingSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    orders: OrdersSection,
    #[serde(default)]
    exits: ExitsSection,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionsSection {
    rsi_below: Option<Decimal>,
    rsi_above: Option<Decimal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SizingSection {
    method: String,
    quantity: Option<Decimal>,
    notional: Option<Decimal>,
    percent: Option<Decimal>,
    #[serde(default)]
    scale_by_confidence: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_position_notional: Option<Decimal>,
    max_concurrent_positions: Option<u32>,
    cooldown_secs: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrdersSection {
    #[serde(rename = "type")]
    order_type: Option<String>,
    limit_offset_bps: Option<Decimal>,
    time_in_force: Option<String>,
    unfilled_timeout_secs: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExitsSection {
    on_opposite_signal: Option<String>,
    #[serde(default)]
    hold_closes: bool,
    #[serde(default)]
    stop_loss: bool,
    #[serde(default)]
    take_profit: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct StrategyError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// Which way a strategy wants to go; sizing, exits and limits are the risk manager's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Buy,
    Sell,
    /// Close whatever position there is (a `hold` with `hold_closes`).
    Close,
}

/// Which filter set a signal aside. The reason's text says it with the values compared; the
/// filter is for counting (the backtest report), never parsed back out of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Filter {
    /// The signal's symbol is not traded by this strategy (or by any).
    NotTraded,
    Recommendation,
    MinConfidence,
    MaxSignalAge,
    TimeHorizon,
    RiskLevel,
    RsiBelow,
    RsiAbove,
    /// A `hold` signal while `hold_closes = false`.
    Hold,
}

impl Filter {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotTraded => "not_traded",
            Self::Recommendation => "recommendation",
            Self::MinConfidence => "min_confidence",
            Self::MaxSignalAge => "max_signal_age",
            Self::TimeHorizon => "time_horizon",
            Self::RiskLevel => "risk_level",
            Self::RsiBelow => "rsi_below",
            Self::RsiAbove => "rsi_above",
            Self::Hold => "hold",
        }
    }
}

/// What a strategy makes of a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluation {
    /// Trade this way; sizing and limits come next.
    Intent { direction: Direction },
    /// Not for this strategy, with the filter and the reason shown to the operator.
    Ignored { filter: Filter, reason: String },
}

impl Strategy {
    pub fn trades(&self, symbol: &Symbol) -> bool {
        self.symbols.contains(symbol)
    }

    /// Applies the filters; `now` judges the signal's age.
    pub fn evaluate(&self, signal: &Signal, now: DateTime<Utc>) -> Evaluation {
        let ignored = |filter: Filter, reason: String| Evaluation::Ignored { filter, reason };
        if !self.trades(&signal.symbol) {
            return ignored(
                Filter::NotTraded,
                format!("{} is not traded by {}", signal.symbol, self.name),
            );
        }
        if !self.recommendations.contains(&signal.recommendation) {
            return ignored(
                Filter::Recommendation,
                format!(
                    "recommendation {} is not accepted by {} (accepts {})",
                    signal.recommendation.as_str(),
                    self.name,
                    self.recommendations
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        if signal.confidence < self.min_confidence {
            return ignored(
                Filter::MinConfidence,
                format!(
                    "confidence {} is below the minimum {}",
                    signal.confidence, self.min_confidence
                ),
            );
        }
        if let Some(max) = self.max_signal_age {
            let age = now - signal.generated_at;
            if age > max {
                return ignored(
                    Filter::MaxSignalAge,
                    format!(
                        "signal is {}s old, older than max_signal_age_secs {}",
                        age.num_seconds(),
                        max.num_seconds()
                    ),
                );
            }
        }
        let accepts = |list: &[String], value: &Option<String>| {
            list.is_empty() || value.as_ref().is_some_and(|v| list.contains(v))
        };
        if !accepts(&self.time_horizons, &signal.time_horizon) {
            return ignored(
                Filter::TimeHorizon,
                format!(
                    "time horizon {} is not one of {}",
                    signal.time_horizon.as_deref().unwrap_or("(none)"),
                    self.time_horizons.join(", ")
                ),
            );
        }
        if !accepts(&self.risk_levels, &signal.risk_level) {
            return ignored(
                Filter::RiskLevel,
                format!(
                    "risk level {} is not one of {}",
                    signal.risk_level.as_deref().unwrap_or("(none)"),
                    self.risk_levels.join(", ")
                ),
            );
        }
        let rsi = signal.technical.rsi;
        if let Some(below) = self.rsi_below {
            if rsi.is_none_or(|r| r >= below) {
                return ignored(
                    Filter::RsiBelow,
                    format!(
                        "rsi {} is not below {below}",
                        rsi.map(|r| r.to_string())
                            .unwrap_or_else(|| "(none)".into())
                    ),
                );
            }
        }
        if let Some(above) = self.rsi_above {
            if rsi.is_none_or(|r| r <= above) {
                return ignored(
                    Filter::RsiAbove,
                    format!(
                        "rsi {} is not above {above}",
                        rsi.map(|r| r.to_string())
                            .unwrap_or_else(|| "(none)".into())
                    ),
                );
            }
        }
        match signal.recommendation {
            Recommendation::Buy => Evaluation::Intent {
                direction: Direction::Buy,
            },
            Recommendation::Sell => Evaluation::Intent {
                direction: Direction::Sell,
            },
            Recommendation::Hold if self.exits.hold_closes => Evaluation::Intent {
                direction: Direction::Close,
            },
            Recommendation::Hold => ignored(
                Filter::Hold,
                "hold signals place no order (hold_closes = false)".into(),
            ),
        }
    }
}

/// Parses one strategy file's text; `file` names it in errors.
pub fn parse(text: &str, file: &str, default_name: &str) -> Result<Strategy, StrategyError> {
    let err = |key: Option<&str>, message: String| StrategyError {
        file: file.to_owned(),
        line: key.and_then(|k| line_of(text, k)),
        message,
    };
    let raw: StrategyFile = toml::from_str(text).map_err(|e| {
        let (line, message) = crate::config::describe_toml_error(text, &e);
        StrategyError {
            file: file.to_owned(),
            line,
            message,
        }
    })?;
    let recommendations = raw
        .recommendations
        .iter()
        .map(|r| Recommendation::parse(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            err(
                Some("recommendations"),
                format!("{e}; valid values are \"buy\", \"sell\", \"hold\""),
            )
        })?;
    let min_confidence =
        crate::model::Signal::confidence_checked(raw.min_confidence).map_err(|_| {
            err(
                Some("min_confidence"),
                format!(
                    "min_confidence = {} is impossible; signals carry a confidence from 0 to 100",
                    raw.min_confidence
                ),
            )
        })?;
    if raw.symbols.is_empty() {
        return Err(err(
            Some("symbols"),
            "symbols is empty; list at least one, e.g. symbols = [\"BTC/USD\"]".into(),
        ));
    }
    let positive = |key: &str, v: Option<Decimal>, what: &str| -> Result<Decimal, StrategyError> {
        match v {
            Some(v) if v > Decimal::ZERO => Ok(v),
            Some(v) => Err(err(
                Some(key),
                format!("{key} = {v} must be above zero ({what})"),
            )),
            None => Err(err(
                Some("method"),
                format!("sizing method {:?} needs {key} ({what})", raw.sizing.method),
            )),
        }
    };
    let s = &raw.sizing;
    let used: Vec<&str> = [
        ("quantity", s.quantity.is_some()),
        ("notional", s.notional.is_some()),
        ("percent", s.percent.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| *k)
    .collect();
    let (method, key) = match s.method.as_str() {
        "fixed_quantity" => (
            SizingMethod::FixedQuantity(positive("quantity", s.quantity, "units per order")?),
            "quantity",
        ),
        "fixed_notional" => (
            SizingMethod::FixedNotional(positive("notional", s.notional, "USD per order")?),
            "notional",
        ),
        "percent_of_balance" => (
            SizingMethod::PercentOfBalance(positive(
                "percent",
                s.percent,
                "percent of the available USD balance per order",
            )?),
            "percent",
        ),
        "risk_per_trade" => (
            SizingMethod::RiskPerTrade(positive(
                "percent",
                s.percent,
                "percent of equity lost if the stop at support/resistance is hit",
            )?),
            "percent",
        ),
        other => {
            return Err(err(
                Some("method"),
                format!(
                    "sizing method {other:?} is unknown; valid: \"fixed_quantity\", \
                     \"fixed_notional\", \"percent_of_balance\", \"risk_per_trade\""
                ),
            ))
        }
    };
    if let Some(extra) = used.iter().find(|k| **k != key) {
        return Err(err(
            Some(extra),
            format!(
                "{extra} is not used by sizing method {:?}; remove it",
                s.method
            ),
        ));
    }
    if let SizingMethod::PercentOfBalance(p) | SizingMethod::RiskPerTrade(p) = &method {
        if *p > Decimal::ONE_HUNDRED {
            return Err(err(Some("percent"), format!("percent = {p} is above 100")));
        }
    }
    if let (SizingMethod::FixedNotional(n), Some(max)) = (&method, raw.limits.max_position_notional)
    {
        if max < *n {
            return Err(err(
                Some("max_position_notional"),
                format!(
                    "limits.max_position_notional = {max} is below sizing.notional = {n}: no order \
                     could ever pass; raise the limit or lower the order size"
                ),
            ));
        }
    }
    if let Some(max) = raw.limits.max_position_notional {
        if max <= Decimal::ZERO {
            return Err(err(
                Some("max_position_notional"),
                "must be above zero".into(),
            ));
        }
    }
    if raw.limits.max_concurrent_positions == Some(0) {
        return Err(err(
            Some("max_concurrent_positions"),
            "max_concurrent_positions = 0 would never trade; use at least 1 or remove it".into(),
        ));
    }
    let secs = |key: &str, v: Option<i64>| -> Result<Option<Duration>, StrategyError> {
        match v {
            None => Ok(None),
            Some(n) if n >= 0 => Ok(Some(Duration::seconds(n))),
            Some(n) => Err(err(
                Some(key),
                format!("{key} = {n} must be 0 or more seconds"),
            )),
        }
    };
    let max_signal_age = secs("max_signal_age_secs", raw.max_signal_age_secs)?;
    let cooldown = secs("cooldown_secs", raw.limits.cooldown_secs)?;
    let unfilled_timeout = match secs("unfilled_timeout_secs", raw.orders.unfilled_timeout_secs)? {
        Some(d) if d.is_zero() => {
            return Err(err(
                Some("unfilled_timeout_secs"),
                "unfilled_timeout_secs must be above zero (remove it to never cancel)".into(),
            ))
        }
        d => d,
    };
    for (key, v) in [
        ("rsi_below", raw.conditions.rsi_below),
        ("rsi_above", raw.conditions.rsi_above),
    ] {
        if v.is_some_and(|v| v < Decimal::ZERO || v > Decimal::ONE_HUNDRED) {
            return Err(err(
                Some(key),
                format!("{key} must be between 0 and 100 (RSI)"),
            ));
        }
    }
    let kind = match (
        raw.orders.order_type.as_deref(),
        raw.orders.limit_offset_bps,
    ) {
        (None | Some("market"), None) => OrderKind::Market,
        (Some("market"), Some(_)) => {
            return Err(err(
                Some("limit_offset_bps"),
                "limit_offset_bps only applies to type = \"limit\"".into(),
            ))
        }
        (Some("limit"), offset) => {
            let offset_bps = offset.unwrap_or_default();
            if offset_bps < Decimal::ZERO || offset_bps >= Decimal::from(10_000) {
                return Err(err(
                    Some("limit_offset_bps"),
                    "limit_offset_bps must be from 0 to 9999 basis points".into(),
                ));
            }
            OrderKind::Limit { offset_bps }
        }
        (None, Some(_)) => {
            return Err(err(
                Some("limit_offset_bps"),
                "limit_offset_bps needs type = \"limit\" in [orders]".into(),
            ))
        }
        (Some(other), _) => {
            return Err(err(
                Some("type"),
                format!("order type {other:?} is unknown; valid: \"market\", \"limit\""),
            ))
        }
    };
    let time_in_force = match raw.orders.time_in_force.as_deref() {
        None | Some("GTC") => "GTC",
        Some("IOC") => "IOC",
        Some("FOK") => "FOK",
        Some(other) => {
            return Err(err(
                Some("time_in_force"),
                format!("time_in_force {other:?} is unknown; valid: \"GTC\", \"IOC\", \"FOK\""),
            ))
        }
    };
    let reverse_on_opposite = match raw.exits.on_opposite_signal.as_deref() {
        None | Some("close") => false,
        Some("reverse") => true,
        Some(other) => {
            return Err(err(
                Some("on_opposite_signal"),
                format!("on_opposite_signal {other:?} is unknown; valid: \"close\", \"reverse\""),
            ))
        }
    };
    let name = raw.name.unwrap_or_else(|| default_name.to_owned());
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(err(
            Some("name"),
            format!("name {name:?} may only use letters, digits, '_' and '-'"),
        ));
    }
    if !raw.enabled {
        return Err(StrategyError {
            file: file.to_owned(),
            line: None,
            message: String::from(DISABLED),
        });
    }
    Ok(Strategy {
        name,
        symbols: raw.symbols,
        recommendations,
        min_confidence,
        time_horizons: raw.time_horizons,
        risk_levels: raw.risk_levels,
        max_signal_age,
        rsi_below: raw.conditions.rsi_below,
        rsi_above: raw.conditions.rsi_above,
        sizing: Sizing {
            method,
            scale_by_confidence: raw.sizing.scale_by_confidence,
        },
        max_position_notional: raw.limits.max_position_notional,
        max_concurrent_positions: raw.limits.max_concurrent_positions,
        cooldown,
        allow_short: raw.allow_short,
        orders: OrderSettings {
            kind,
            time_in_force,
            unfilled_timeout,
        },
        exits: Exits {
            reverse_on_opposite,
            hold_closes: raw.exits.hold_closes,
            stop_loss: raw.exits.stop_loss,
            take_profit: raw.exits.take_profit,
        },
    })
}

const DISABLED: &str = "disabled";

/// Loads every `*.toml` in `dir` (sorted by name), skipping files with `enabled = false`.
pub fn load_dir(dir: &Path) -> Result<Vec<Strategy>, StrategyError> {
    let dir_err = |message: String| StrategyError {
        file: dir.display().to_string(),
        line: None,
        message,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        dir_err(format!(
            "cannot read the strategies directory ({e}); set [strategies] dir"
        ))
    })?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut sources = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|e| StrategyError {
            file: path.display().to_string(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        sources.push((path.display().to_string(), stem, text));
    }
    load_sources(&sources).and_then(|s| {
        if s.is_empty() {
            Err(dir_err(
                "no enabled strategy file (*.toml) found; the bot would never trade".into(),
            ))
        } else {
            Ok(s)
        }
    })
}

/// Parses `(file, default name, text)` triples and checks them against each other.
pub fn load_sources(sources: &[(String, String, String)]) -> Result<Vec<Strategy>, StrategyError> {
    let mut strategies: Vec<Strategy> = Vec::new();
    let mut owner: BTreeMap<Symbol, (String, String)> = BTreeMap::new();
    for (file, stem, text) in sources {
        let s = match parse(text, file, stem) {
            Ok(s) => s,
            Err(e) if e.message == DISABLED => continue,
            Err(e) => return Err(e),
        };
        if let Some(other) = strategies.iter().find(|o| o.name == s.name) {
            return Err(StrategyError {
                file: file.clone(),
                line: line_of(text, "name"),
                message: format!(
                    "strategy name {:?} is already used by another file; names must be unique",
                    other.name
                ),
            });
        }
        for symbol in &s.symbols {
            if let Some((other_file, other_name)) = owner.get(symbol) {
                // Two strategies trading one symbol would fight over one position silently.
                return Err(StrategyError {
                    file: file.clone(),
                    line: line_of(text, "symbols"),
                    message: format!(
                        "{symbol} is already traded by strategy {other_name} ({other_file}); \
                         a symbol may belong to one strategy only: remove it from one of them"
                    ),
                });
            }
            owner.insert(symbol.clone(), (file.clone(), s.name.clone()));
        }
        strategies.push(s);
    }
    Ok(strategies)
}

/// The 1-based line where `key = ...` is first written.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TechnicalAnalysis;

    const GOOD: &str = r#"
symbols = ["BTC/USD"]
recommendations = ["buy", "sell"]
min_confidence = 70

[sizing]
method = "fixed_notional"
notional = 500

[limits]
max_position_notional = 2000
"#;

    fn signal(rec: Recommendation, confidence: u8) -> Signal {
        Signal {
            symbol: Symbol::parse("BTC/USD").unwrap(),
            recommendation: rec,
            confidence,
            time_horizon: Some("short_term".into()),
            risk_level: Some("medium".into()),
            reasoning: vec![],
            technical: TechnicalAnalysis {
                rsi: Some("35".parse().unwrap()),
                ..Default::default()
            },
            generated_at: chrono::Utc::now(),
        }
    }

    fn outcome(text: &str, s: &Signal, now: DateTime<Utc>) -> Result<Direction, String> {
        match parse(text, "a.toml", "a").unwrap().evaluate(s, now) {
            Evaluation::Intent { direction } => Ok(direction),
            Evaluation::Ignored { reason, .. } => Err(reason),
        }
    }

    #[test]
    fn an_ignored_signal_names_the_filter_that_set_it_aside() {
        let buy = signal(Recommendation::Buy, 80);
        let now = buy.generated_at;
        let filter = |text: &str, s: &Signal, now| match parse(text, "a.toml", "a")
            .unwrap()
            .evaluate(s, now)
        {
            Evaluation::Ignored { filter, .. } => Some(filter),
            Evaluation::Intent { .. } => None,
        };
        let mut eth = buy.clone();
        eth.symbol = Symbol::parse("ETH/USD").unwrap();
        let cases = [
            (GOOD.to_owned(), eth, now, Filter::NotTraded),
            (
                GOOD.to_owned(),
                signal(Recommendation::Hold, 80),
                now,
                Filter::Recommendation,
            ),
            (
                GOOD.to_owned(),
                signal(Recommendation::Buy, 69),
                now,
                Filter::MinConfidence,
            ),
            (
                format!("max_signal_age_secs = 1\n{GOOD}"),
                buy.clone(),
                now + Duration::seconds(2),
                Filter::MaxSignalAge,
            ),
            (
                format!("time_horizons = [\"x\"]\n{GOOD}"),
                buy.clone(),
                now,
                Filter::TimeHorizon,
            ),
            (
                format!("risk_levels = [\"x\"]\n{GOOD}"),
                buy.clone(),
                now,
                Filter::RiskLevel,
            ),
            (
                format!("{GOOD}[conditions]\nrsi_below = 30\n"),
                buy.clone(),
                now,
                Filter::RsiBelow,
            ),
            (
                format!("{GOOD}[conditions]\nrsi_above = 40\n"),
                buy.clone(),
                now,
                Filter::RsiAbove,
            ),
            (
                GOOD.replace("[\"buy\", \"sell\"]", "[\"hold\"]"),
                signal(Recommendation::Hold, 80),
                now,
                Filter::Hold,
            ),
        ];
        for (text, s, at, want) in cases {
            assert_eq!(filter(&text, &s, at), Some(want), "{}", want.as_str());
        }
    }

    #[test]
    fn signals_pass_or_fail_each_filter_with_the_reason() {
        let buy = signal(Recommendation::Buy, 80);
        let now = buy.generated_at;
        let with = |extra: &str| format!("{extra}\n{GOOD}");
        type Row = (
            &'static str,
            String,
            Signal,
            DateTime<Utc>,
            Result<Direction, &'static str>,
        );
        let cases: Vec<Row> = vec![
            (
                "a confident buy is a buy",
                GOOD.into(),
                buy.clone(),
                now,
                Ok(Direction::Buy),
            ),
            (
                "low confidence is ignored",
                GOOD.into(),
                signal(Recommendation::Buy, 60),
                now,
                Err("below the minimum 70"),
            ),
            (
                "hold is ignored by default",
                with("recommendations = [\"buy\", \"hold\"]")
                    .replace("recommendations = [\"buy\", \"sell\"]\n", ""),
                signal(Recommendation::Hold, 99),
                now,
                Err("hold signals place no order"),
            ),
            (
                "an unlisted time horizon is ignored",
                with("time_horizons = [\"long_term\"]"),
                buy.clone(),
                now,
                Err("time horizon short_term"),
            ),
            (
                "a listed risk level passes",
                with("risk_levels = [\"low\", \"medium\"]"),
                buy.clone(),
                now,
                Ok(Direction::Buy),
            ),
            (
                "an unlisted risk level is ignored",
                with("risk_levels = [\"low\"]"),
                buy.clone(),
                now,
                Err("risk level medium"),
            ),
            (
                "an old signal is ignored",
                with("max_signal_age_secs = 60"),
                buy.clone(),
                now + Duration::seconds(61),
                Err("61s old"),
            ),
            (
                "a fresh signal passes the age filter",
                with("max_signal_age_secs = 60"),
                buy.clone(),
                now + Duration::seconds(60),
                Ok(Direction::Buy),
            ),
            (
                "rsi below passes at 35 < 40",
                format!("{GOOD}\n[conditions]\nrsi_below = 40\n"),
                buy.clone(),
                now,
                Ok(Direction::Buy),
            ),
            (
                "rsi above fails at 35",
                format!("{GOOD}\n[conditions]\nrsi_above = 70\n"),
                buy.clone(),
                now,
                Err("rsi 35 is not above 70"),
            ),
        ];
        for (name, text, s, at, want) in cases {
            let got = outcome(&text, &s, at);
            match (want, got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{name}"),
                (Err(needle), Err(r)) => assert!(r.contains(needle), "{name}: {r}"),
                (w, g) => panic!("{name}: want {w:?}, got {g:?}"),
            }
        }
        let closes = format!(
            "{}\n[exits]\nhold_closes = true\n",
            GOOD.replace("[\"buy\", \"sell\"]", "[\"buy\", \"sell\", \"hold\"]")
        );
        assert_eq!(
            outcome(&closes, &signal(Recommendation::Hold, 99), now),
            Ok(Direction::Close)
        );
    }

    #[test]
    fn every_sizing_order_and_exit_option_is_read() {
        let text = r#"
symbols = ["ETH/USD"]
recommendations = ["buy", "sell"]
min_confidence = 0
allow_short = true

[sizing]
method = "risk_per_trade"
percent = 1.5
scale_by_confidence = true

[limits]
max_concurrent_positions = 2
cooldown_secs = 300

[orders]
type = "limit"
limit_offset_bps = 5
time_in_force = "IOC"
unfilled_timeout_secs = 30

[exits]
on_opposite_signal = "reverse"
"#;
        let s = parse(text, "r.toml", "r").unwrap();
        assert_eq!(
            s.sizing,
            Sizing {
                method: SizingMethod::RiskPerTrade("1.5".parse().unwrap()),
                scale_by_confidence: true
            }
        );
        assert_eq!(
            s.orders.kind,
            OrderKind::Limit {
                offset_bps: Decimal::from(5)
            }
        );
        assert_eq!(s.orders.time_in_force, "IOC");
        assert_eq!(s.orders.unfilled_timeout, Some(Duration::seconds(30)));
        assert!(s.exits.reverse_on_opposite);
        assert_eq!(s.cooldown, Some(Duration::seconds(300)));
        assert_eq!(s.max_concurrent_positions, Some(2));
        assert_eq!(s.max_position_notional, None);
    }

    #[test]
    fn bad_files_name_the_file_line_and_fix() {
        let cases = [
            (
                "unknown key",
                GOOD.replace("min_confidence", "min_confidense"),
                "min_confidense",
                Some(4),
            ),
            (
                "a number written as a string",
                GOOD.replace("= 70", "= \"70\""),
                "min_confidence: invalid type: string \"70\", expected i64",
                Some(4),
            ),
            (
                "confidence out of range",
                GOOD.replace("= 70", "= 140"),
                "impossible",
                Some(4),
            ),
            (
                "bad recommendation",
                GOOD.replace("\"sell\"", "\"short\""),
                "buy",
                Some(3),
            ),
            (
                "bad symbol",
                GOOD.replace("BTC/USD", "btcusd"),
                "BASE/QUOTE",
                Some(2),
            ),
            (
                "limit below order",
                GOOD.replace("2000", "100"),
                "no order",
                Some(11),
            ),
            (
                "unknown sizing method",
                GOOD.replace("fixed_notional", "yolo"),
                "valid: \"fixed_quantity\"",
                Some(7),
            ),
            (
                "method without its number",
                GOOD.replace("notional = 500", "quantity = 1"),
                "needs notional",
                Some(7),
            ),
            (
                "percent above 100",
                GOOD.replace(
                    "\"fixed_notional\"\nnotional = 500",
                    "\"percent_of_balance\"\npercent = 150",
                ),
                "above 100",
                Some(8),
            ),
            (
                "unknown order type",
                format!("{GOOD}\n[orders]\ntype = \"iceberg\"\n"),
                "valid: \"market\", \"limit\"",
                Some(14),
            ),
            (
                "offset without limit",
                format!("{GOOD}\n[orders]\nlimit_offset_bps = 5\n"),
                "needs type = \"limit\"",
                Some(14),
            ),
            (
                "unknown exit",
                format!("{GOOD}\n[exits]\non_opposite_signal = \"flip\"\n"),
                "valid: \"close\", \"reverse\"",
                Some(14),
            ),
            (
                "unknown key in a section",
                format!("{GOOD}\n[exits]\nstop_losss = true\n"),
                "stop_losss",
                Some(14),
            ),
            (
                "rsi out of range",
                format!("{GOOD}\n[conditions]\nrsi_below = 140\n"),
                "between 0 and 100",
                Some(14),
            ),
        ];
        for (name, text, needle, line) in cases {
            let e = parse(&text, "s.toml", "s").unwrap_err();
            assert!(e.message.contains(needle), "{name}: {e}");
            assert_eq!(e.line, line, "{name}: {e}");
            assert!(e.to_string().starts_with("s.toml"), "{name}: {e}");
        }
    }

    #[test]
    fn two_strategies_cannot_share_a_symbol() {
        let sources = vec![
            ("a.toml".to_string(), "a".to_string(), GOOD.to_string()),
            ("b.toml".to_string(), "b".to_string(), GOOD.to_string()),
        ];
        let e = load_sources(&sources).unwrap_err();
        assert_eq!(e.file, "b.toml");
        assert!(e.message.contains("already traded by strategy a"), "{e}");
    }

    #[test]
    fn disabled_files_are_skipped() {
        let off = format!("enabled = false\n{GOOD}");
        let sources = vec![
            ("a.toml".to_string(), "a".to_string(), off),
            ("b.toml".to_string(), "b".to_string(), GOOD.to_string()),
        ];
        let s = load_sources(&sources).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "b");
    }

    #[test]
    fn the_shipped_examples_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/strategies");
        let s = load_dir(std::path::Path::new(dir)).unwrap();
        assert_eq!(
            s.len(),
            3,
            "{:?}",
            s.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
    }
}
