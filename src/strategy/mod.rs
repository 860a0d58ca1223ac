//! Strategy files: which signals become which order intents. No sizing, no I/O.
//!
//! Each `strategies/*.toml` file is one strategy. Files are strict: an unknown key, an impossible
//! value or two strategies claiming one symbol stop start-up with the file, the line and the fix.

use crate::model::{Recommendation, Side, Signal, Symbol};
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
    /// Quote-currency value of one order.
    pub order_notional: Decimal,
    /// Largest absolute position value, in quote currency, including working orders.
    pub max_position_notional: Decimal,
    /// Quantities are rounded down to this many decimal places.
    pub quantity_decimals: u32,
    /// When false (the default) a sell only reduces a long position, never opens a short.
    pub allow_short: bool,
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
    allow_short: bool,
    sizing: SizingSection,
    limits: LimitsSection,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SizingSection {
    order_notional: Decimal,
    #[serde(default = "default_quantity_decimals")]
    quantity_decimals: u32,
}

fn default_quantity_decimals() -> u32 {
    6
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_position_notional: Decimal,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct StrategyError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// What a strategy makes of a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluation {
    /// Trade this side; sizing and limits come next.
    Intent { side: Side },
    /// Not for this strategy, with the reason shown to the operator.
    Ignored { reason: String },
}

impl Strategy {
    pub fn trades(&self, symbol: &Symbol) -> bool {
        self.symbols.contains(symbol)
    }

    pub fn evaluate(&self, signal: &Signal) -> Evaluation {
        let ignored = |reason: String| Evaluation::Ignored { reason };
        if !self.trades(&signal.symbol) {
            return ignored(format!("{} is not traded by {}", signal.symbol, self.name));
        }
        if !self.recommendations.contains(&signal.recommendation) {
            return ignored(format!(
                "recommendation {} is not accepted by {} (accepts {})",
                signal.recommendation.as_str(),
                self.name,
                self.recommendations
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if signal.confidence < self.min_confidence {
            return ignored(format!(
                "confidence {} is below the minimum {}",
                signal.confidence, self.min_confidence
            ));
        }
        match signal.recommendation {
            Recommendation::Buy => Evaluation::Intent { side: Side::Buy },
            Recommendation::Sell => Evaluation::Intent { side: Side::Sell },
            Recommendation::Hold => ignored("hold signals place no order".into()),
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
    let raw: StrategyFile = toml::from_str(text).map_err(|e| StrategyError {
        file: file.to_owned(),
        line: e.span().map(|s| text[..s.start].matches('\n').count() + 1),
        message: e.message().to_owned(),
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
    if raw.sizing.order_notional <= Decimal::ZERO {
        return Err(err(
            Some("order_notional"),
            "sizing.order_notional must be above zero (the quote-currency value of one order)"
                .into(),
        ));
    }
    if raw.limits.max_position_notional < raw.sizing.order_notional {
        return Err(err(
            Some("max_position_notional"),
            format!(
                "limits.max_position_notional = {} is below sizing.order_notional = {}: no order \
                 could ever pass; raise the limit or lower the order size",
                raw.limits.max_position_notional, raw.sizing.order_notional
            ),
        ));
    }
    if raw.sizing.quantity_decimals > 12 {
        return Err(err(
            Some("quantity_decimals"),
            "sizing.quantity_decimals must be between 0 and 12".into(),
        ));
    }
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
        order_notional: raw.sizing.order_notional,
        max_position_notional: raw.limits.max_position_notional,
        quantity_decimals: raw.sizing.quantity_decimals,
        allow_short: raw.allow_short,
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
order_notional = 500

[limits]
max_position_notional = 2000
"#;

    fn signal(rec: Recommendation, confidence: u8) -> Signal {
        Signal {
            symbol: Symbol::parse("BTC/USD").unwrap(),
            recommendation: rec,
            confidence,
            time_horizon: None,
            risk_level: None,
            reasoning: vec![],
            technical: TechnicalAnalysis::default(),
            generated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn signals_are_filtered_by_recommendation_and_confidence() {
        let s = parse(GOOD, "a.toml", "a").unwrap();
        assert_eq!(s.name, "a");
        assert_eq!(
            s.evaluate(&signal(Recommendation::Buy, 80)),
            Evaluation::Intent { side: Side::Buy }
        );
        assert!(matches!(
            s.evaluate(&signal(Recommendation::Buy, 60)),
            Evaluation::Ignored { reason } if reason.contains("below the minimum 70")
        ));
        assert!(matches!(
            s.evaluate(&signal(Recommendation::Hold, 99)),
            Evaluation::Ignored { .. }
        ));
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
                Some(10),
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
}
