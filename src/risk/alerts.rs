//! The alert policy: what a `system.alert` does, per level, as configured. Pure: it turns an alert
//! into changes (size scales, trading states) that the caller persists (the dispatcher in SQL, the
//! backtest in memory), and says which stored size scale applies to an order.

use super::state::{SetBy, StateEntry, TradingState};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
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

/// A stored size scale, for the account (`symbol: None`) or one symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeScale {
    pub symbol: Option<String>,
    pub factor: Decimal,
    pub until: DateTime<Utc>,
    pub reason: String,
}

/// What one alert changes, to be persisted: a size scale replaces the one of its scope; a state
/// is written as the scope's trading state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertChange {
    Scale(SizeScale),
    State(StateEntry),
}

/// The factor that applies to an order on `symbol` at `now`, with its description: the smallest
/// unexpired one among the account's and the symbol's scales.
pub fn applicable_scale<'a>(
    scales: impl IntoIterator<Item = &'a SizeScale>,
    symbol: &str,
    now: DateTime<Utc>,
) -> Option<(Decimal, String)> {
    scales
        .into_iter()
        .filter(|s| s.symbol.as_deref().is_none_or(|x| x == symbol) && s.until > now)
        .fold(None::<&SizeScale>, |best, s| match best {
            Some(b) if b.factor <= s.factor => Some(b),
            _ => Some(s),
        })
        .map(|s| {
            let until = s.until.to_rfc3339_opts(SecondsFormat::Millis, true);
            (s.factor, format!("{} (until {until})", s.reason))
        })
}

impl AlertPolicy {
    /// What an alert changes, given the stored trading states: scales replace their scope's;
    /// `reduce` and `halt` apply only where they are stricter than the current state (an alert
    /// never loosens one).
    pub fn changes(
        &self,
        level: &str,
        symbols: &[String],
        title: &str,
        states: &[StateEntry],
        now: DateTime<Utc>,
    ) -> Vec<AlertChange> {
        let reason = format!("system.alert {level}: {title}");
        self.effects(level, symbols, now)
            .into_iter()
            .filter_map(|effect| {
                let (symbol, state) = match effect {
                    AlertEffect::Scale {
                        symbol,
                        factor,
                        until,
                    } => {
                        return Some(AlertChange::Scale(SizeScale {
                            symbol,
                            factor,
                            until,
                            reason: reason.clone(),
                        }))
                    }
                    AlertEffect::Reduce { symbol } => (symbol, TradingState::Reducing),
                    AlertEffect::Halt { symbol } => (symbol, TradingState::Halted),
                };
                let current = states
                    .iter()
                    .find(|s| s.symbol == symbol)
                    .map(|s| s.state)
                    .unwrap_or(TradingState::Active);
                (current < state).then(|| {
                    AlertChange::State(StateEntry {
                        symbol,
                        state,
                        reason: reason.clone(),
                        since: now,
                        set_by: SetBy::Alert,
                    })
                })
            })
            .collect()
    }

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

    #[test]
    fn an_alert_never_loosens_a_state_and_the_smallest_live_scale_applies() {
        let p = AlertPolicy::default();
        let now = Utc::now();
        let halted_btc = StateEntry {
            symbol: Some("BTC/USD".into()),
            state: TradingState::Halted,
            reason: "operator".into(),
            since: now,
            set_by: SetBy::Operator,
        };
        let symbols = vec!["BTC/USD".to_owned(), "ETH/USD".to_owned()];
        let changes = p.changes("critical", &symbols, "feed down", &[halted_btc], now);
        let [AlertChange::State(eth)] = changes.as_slice() else {
            panic!("only ETH/USD changes: {changes:?}");
        };
        assert_eq!(eth.symbol.as_deref(), Some("ETH/USD"));
        assert_eq!(eth.reason, "system.alert critical: feed down");
        let scale = |symbol: Option<&str>, factor: &str, mins: i64| SizeScale {
            symbol: symbol.map(str::to_owned),
            factor: factor.parse().unwrap(),
            until: now + Duration::minutes(mins),
            reason: format!("s{factor}"),
        };
        let scales = [
            scale(None, "0.5", 10),
            scale(Some("BTC/USD"), "0.25", 10),
            scale(Some("ETH/USD"), "0.1", 10),
            scale(Some("SOL/USD"), "0.1", -1),
        ];
        let pick = |s: &str| applicable_scale(&scales, s, now).map(|(f, _)| f.to_string());
        assert_eq!(pick("BTC/USD").as_deref(), Some("0.25"));
        assert_eq!(pick("ETH/USD").as_deref(), Some("0.1"));
        assert_eq!(
            pick("SOL/USD").as_deref(),
            Some("0.5"),
            "expired scales do not apply"
        );
        assert!(applicable_scale(&scales, "BTC/USD", now)
            .unwrap()
            .1
            .starts_with("s0.25 (until "));
    }
}
