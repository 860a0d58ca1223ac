//! The alert policy: what a `system.alert` does, per level, as configured. Pure: it turns an alert
//! into actions; the dispatcher persists them (size scales, trading states).

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// What one alert level does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertAction {
    /// Record it, nothing else.
    Ignore,
    /// Multiply new order sizes on the affected symbols (all symbols when none are listed) by
    /// `factor` for `duration`.
    Scale { factor: Decimal, duration: Duration },
    /// Only position-reducing orders on the affected symbols (or the account).
    Reduce,
    /// No new orders on the affected symbols (or the account).
    Halt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPolicy {
    /// Keyed by level (`info`, `warning`, `critical`, or any level the venue sends).
    pub levels: BTreeMap<String, AlertAction>,
    /// For levels not listed.
    pub unknown_level: AlertAction,
}

impl Default for AlertPolicy {
    /// info: ignore; warning: halve sizes for an hour; critical: halt; unknown levels: halve sizes.
    fn default() -> Self {
        let half = AlertAction::Scale {
            factor: Decimal::new(5, 1),
            duration: Duration::hours(1),
        };
        Self {
            levels: BTreeMap::from([
                ("info".to_owned(), AlertAction::Ignore),
                ("warning".to_owned(), half.clone()),
                ("critical".to_owned(), AlertAction::Halt),
            ]),
            unknown_level: half,
        }
    }
}

/// What to persist for one alert. `symbol: None` means the whole account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertEffect {
    Scale {
        symbol: Option<String>,
        factor: Decimal,
        until: DateTime<Utc>,
    },
    Reduce {
        symbol: Option<String>,
    },
    Halt {
        symbol: Option<String>,
    },
}

impl AlertPolicy {
    pub fn effects(&self, level: &str, symbols: &[String], now: DateTime<Utc>) -> Vec<AlertEffect> {
        let action = self
            .levels
            .get(&level.to_ascii_lowercase())
            .unwrap_or(&self.unknown_level);
        let scopes: Vec<Option<String>> = if symbols.is_empty() {
            vec![None]
        } else {
            symbols.iter().cloned().map(Some).collect()
        };
        scopes
            .into_iter()
            .filter_map(|symbol| match action {
                AlertAction::Ignore => None,
                AlertAction::Scale { factor, duration } => Some(AlertEffect::Scale {
                    symbol,
                    factor: *factor,
                    until: now + *duration,
                }),
                AlertAction::Reduce => Some(AlertEffect::Reduce { symbol }),
                AlertAction::Halt => Some(AlertEffect::Halt { symbol }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_maps_to_its_configured_effect() {
        let p = AlertPolicy::default();
        let now = Utc::now();
        let btc = vec!["BTC/USD".to_owned()];
        let half = Decimal::new(5, 1);
        let cases: Vec<(&str, &str, Vec<String>, Vec<AlertEffect>)> = vec![
            ("info is only recorded", "info", btc.clone(), vec![]),
            (
                "warning scales the listed symbol for an hour",
                "warning",
                btc.clone(),
                vec![AlertEffect::Scale {
                    symbol: Some("BTC/USD".into()),
                    factor: half,
                    until: now + Duration::hours(1),
                }],
            ),
            (
                "critical halts the listed symbol",
                "critical",
                btc.clone(),
                vec![AlertEffect::Halt {
                    symbol: Some("BTC/USD".into()),
                }],
            ),
            (
                "critical without symbols halts everything",
                "CRITICAL",
                vec![],
                vec![AlertEffect::Halt { symbol: None }],
            ),
            (
                "an unknown level is treated like a warning",
                "severe",
                vec![],
                vec![AlertEffect::Scale {
                    symbol: None,
                    factor: half,
                    until: now + Duration::hours(1),
                }],
            ),
        ];
        for (name, level, symbols, want) in cases {
            assert_eq!(p.effects(level, &symbols, now), want, "{name}");
        }
    }
}
