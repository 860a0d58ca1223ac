//! Watches the stored trading state and the maintenance calendar and tells the operator when they
//! change, whoever changed them: a circuit breaker, an alert, the margin rule, the admin endpoint,
//! or `sigex halt` writing straight into the database while the bot runs. It also keeps the
//! `trading_state` and `maintenance_active` gauges current. Polling the database once a second
//! makes it independent of every writer; the first read only sets the baseline.

use super::{Notification, Notifier};
use crate::clock::SharedClock;
use crate::risk::maintenance::{self, MaintenanceSettings};
use crate::risk::state::{StateEntry, TradingState};
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;
use std::time::Duration;

const EVERY: Duration = Duration::from_secs(1);

fn scope(e: &StateEntry) -> &str {
    e.symbol.as_deref().unwrap_or("account")
}

/// What changed between two readings of the trading states, as notifications: a stricter state
/// is a halt, a looser one a resume. An entry that disappeared counts as active.
pub fn state_changes(before: &[StateEntry], after: &[StateEntry]) -> Vec<Notification> {
    let state_of = |entries: &[StateEntry], symbol: &Option<String>| {
        entries
            .iter()
            .find(|e| &e.symbol == symbol)
            .map_or(TradingState::Active, |e| e.state)
    };
    let mut out = Vec::new();
    for e in after {
        let was = state_of(before, &e.symbol);
        let detail = format!(
            "{}: {} (was {}), set by {}: {}",
            scope(e),
            e.state.as_str(),
            was.as_str(),
            e.set_by.as_str(),
            e.reason
        );
        if e.state > was {
            out.push(Notification::Halted { reason: detail });
        } else if e.state < was {
            out.push(Notification::Resumed { reason: detail });
        }
    }
    for e in before {
        if e.state != TradingState::Active && !after.iter().any(|a| a.symbol == e.symbol) {
            out.push(Notification::Resumed {
                reason: format!("{}: active (was {})", scope(e), e.state.as_str()),
            });
        }
    }
    out
}

/// The strictest state anywhere, for the gauge.
fn strictest(states: &[StateEntry]) -> TradingState {
    states
        .iter()
        .map(|e| e.state)
        .max()
        .unwrap_or(TradingState::Active)
}

pub async fn run(
    store: Store,
    notifier: Notifier,
    metrics: Metrics,
    settings: MaintenanceSettings,
    clock: SharedClock,
    mut shutdown: Shutdown,
) {
    let mut last_states: Option<Vec<StateEntry>> = None;
    let mut last_block: Option<Option<String>> = None;
    loop {
        if let Ok(states) = store.list_trading_states().await {
            if let Some(before) = &last_states {
                for n in state_changes(before, &states) {
                    notifier.send(n);
                }
            }
            metrics.set_trading_state(strictest(&states).as_str());
            last_states = Some(states);
        }
        if let Ok(windows) = store.list_windows().await {
            let block = maintenance::blocking(&windows, &settings, clock.now());
            match (&last_block, &block) {
                (Some(None), Some(why)) => notifier.send(Notification::MaintenanceStarted {
                    detail: why.clone(),
                }),
                (Some(Some(_)), None) => notifier.send(Notification::MaintenanceEnded {
                    detail: "the window is over and the books are reconciled; trading may resume"
                        .into(),
                }),
                _ => {}
            }
            metrics.set_maintenance_active(block.is_some());
            last_block = Some(block);
        }
        if shutdown.sleep(EVERY).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::state::SetBy;

    fn entry(symbol: Option<&str>, state: TradingState) -> StateEntry {
        StateEntry {
            symbol: symbol.map(str::to_owned),
            state,
            reason: "because".into(),
            since: chrono::Utc::now(),
            set_by: SetBy::Operator,
        }
    }

    #[test]
    fn stricter_states_are_halts_and_looser_ones_resumes() {
        use TradingState::*;
        /// (name, states before, states after, notifications expected)
        type Case = (
            &'static str,
            Vec<StateEntry>,
            Vec<StateEntry>,
            &'static [&'static str],
        );
        let cases: &[Case] = &[
            (
                "nothing changed",
                vec![entry(None, Halted)],
                vec![entry(None, Halted)],
                &[],
            ),
            (
                "account halted",
                vec![],
                vec![entry(None, Halted)],
                &["halt"],
            ),
            (
                "symbol to reducing",
                vec![],
                vec![entry(Some("BTC/USD"), Reducing)],
                &["halt"],
            ),
            (
                "reducing to halted",
                vec![entry(None, Reducing)],
                vec![entry(None, Halted)],
                &["halt"],
            ),
            (
                "resumed",
                vec![entry(None, Halted)],
                vec![entry(None, Active)],
                &["resume"],
            ),
            (
                "entry removed",
                vec![entry(Some("ETH/USD"), Halted)],
                vec![],
                &["resume"],
            ),
            (
                "one up, one down",
                vec![entry(None, Halted)],
                vec![entry(None, Active), entry(Some("SOL/USD"), Halted)],
                &["resume", "halt"],
            ),
        ];
        for (name, before, after, want) in cases {
            let got: Vec<&str> = state_changes(before, after)
                .iter()
                .map(|n| n.event())
                .collect();
            let mut got = got;
            got.sort();
            let mut want = want.to_vec();
            want.sort();
            assert_eq!(got, want, "{name}");
        }
    }
}
