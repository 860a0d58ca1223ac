//! Trading state: `active`, `reducing` (only orders that shrink a position) or `halted` (no new
//! orders; cancels are still allowed), for the whole account and per symbol, each with its reason
//! and since-when. The store persists it, so it survives a restart; this module only says what a
//! state allows.

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TradingState {
    Active,
    Reducing,
    Halted,
}

impl TradingState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Reducing => "reducing",
            Self::Halted => "halted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "reducing" => Some(Self::Reducing),
            "halted" => Some(Self::Halted),
            _ => None,
        }
    }
}

/// Who set a state; automatic rules only undo what they set themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SetBy {
    Operator,
    DailyLoss,
    Drawdown,
    MarginRatio,
    Alert,
    /// The reconciliation with the venue: drift between our book and the venue's.
    Reconciliation,
}

impl SetBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::DailyLoss => "daily_loss",
            Self::Drawdown => "drawdown",
            Self::MarginRatio => "margin_ratio",
            Self::Alert => "alert",
            Self::Reconciliation => "reconciliation",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "operator" => Self::Operator,
            "daily_loss" => Self::DailyLoss,
            "drawdown" => Self::Drawdown,
            "margin_ratio" => Self::MarginRatio,
            "alert" => Self::Alert,
            "reconciliation" => Self::Reconciliation,
            _ => return None,
        })
    }
}

/// One stored state: for the account (`symbol: None`) or one symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateEntry {
    pub symbol: Option<String>,
    pub state: TradingState,
    pub reason: String,
    pub since: DateTime<Utc>,
    pub set_by: SetBy,
}

/// The state that applies to one symbol: the stricter of the account's and the symbol's.
pub fn effective<'a>(
    account: Option<&'a StateEntry>,
    symbol: Option<&'a StateEntry>,
) -> Option<&'a StateEntry> {
    match (account, symbol) {
        (Some(a), Some(s)) => Some(if s.state > a.state { s } else { a }),
        (a, s) => a.or(s),
    }
    .filter(|e| e.state != TradingState::Active)
}

impl StateEntry {
    pub fn describe(&self) -> String {
        let scope = match &self.symbol {
            None => "account".to_owned(),
            Some(s) => s.clone(),
        };
        format!(
            "trading is {} ({scope}) since {} by {}: {}",
            self.state.as_str(),
            self.since.format("%Y-%m-%d %H:%M:%S UTC"),
            self.set_by.as_str(),
            self.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(symbol: Option<&str>, state: TradingState) -> StateEntry {
        StateEntry {
            symbol: symbol.map(str::to_owned),
            state,
            reason: "r".into(),
            since: Utc::now(),
            set_by: SetBy::Operator,
        }
    }

    #[test]
    fn the_stricter_of_account_and_symbol_state_applies() {
        use TradingState::*;
        let cases = [
            ("nothing stored is active", None, None, None),
            (
                "account halt applies to every symbol",
                Some(Halted),
                None,
                Some(Halted),
            ),
            (
                "symbol reducing applies",
                None,
                Some(Reducing),
                Some(Reducing),
            ),
            (
                "halted beats reducing",
                Some(Reducing),
                Some(Halted),
                Some(Halted),
            ),
            (
                "halted account beats active symbol",
                Some(Halted),
                Some(Active),
                Some(Halted),
            ),
            (
                "active everywhere is active",
                Some(Active),
                Some(Active),
                None,
            ),
        ];
        for (name, a, s, want) in cases {
            let a = a.map(|st| entry(None, st));
            let s = s.map(|st| entry(Some("BTC/USD"), st));
            let got = effective(a.as_ref(), s.as_ref()).map(|e| e.state);
            assert_eq!(got, want, "{name}");
        }
    }
}
