//! Liveness and readiness: a shared `Health` handle that the parts report into, and the pure
//! readiness verdict computed from it on `GET /readyz`.
//!
//! Guarantees: reporting never blocks and never fails (atomics, and a lock taken only when a task
//! dies), so instrumenting a hot path costs nothing; the verdict names every failing check, so an
//! operator sees why at a glance.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// A venue answer older than this makes the bot not ready.
pub const VENUE_STALE_AFTER: chrono::Duration = chrono::Duration::seconds(60);
/// The oldest unprocessed inbox event may be at most this old.
pub const MAX_INBOX_LAG: chrono::Duration = chrono::Duration::seconds(30);

/// What the parts report; cheap to clone (one `Arc`).
#[derive(Clone, Default)]
pub struct Health(Arc<Inner>);

#[derive(Default)]
struct Inner {
    reconciled: AtomicBool,
    draining: AtomicBool,
    /// Unix milliseconds of the last complete venue answer; 0 = never.
    venue_ok_at: AtomicI64,
    /// Venue failures since the last success.
    venue_failures: AtomicU32,
    /// Long-lived tasks that ended unexpectedly (`supervise`).
    dead: watch::Sender<Vec<TaskDeath>>,
}

/// A long-lived task that ended before it was told to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskDeath {
    pub task: String,
    /// `panicked: <message>` or `returned before shutdown`.
    pub why: String,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// The start-up reconciliation finished (the bot's book agrees with the venue's).
    pub fn mark_reconciled(&self) {
        self.0.reconciled.store(true, Ordering::Relaxed);
    }

    pub fn is_reconciled(&self) -> bool {
        self.0.reconciled.load(Ordering::Relaxed)
    }

    /// Shutdown has begun: webhooks get 503 and `/readyz` says so.
    pub fn start_draining(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    /// The venue answered successfully: reachable, and any error streak is over.
    pub fn venue_ok(&self, now: DateTime<Utc>) {
        self.venue_reachable(now);
        self.0.venue_failures.store(0, Ordering::Relaxed);
    }

    /// The venue gave a complete answer, possibly an error status: it is reachable.
    pub fn venue_reachable(&self, now: DateTime<Utc>) {
        self.0
            .venue_ok_at
            .store(now.timestamp_millis(), Ordering::Relaxed);
    }

    /// The venue could not be reached; returns the number of failures in a row.
    pub fn venue_failed(&self) -> u32 {
        self.0.venue_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A supervised task died: readiness fails and whoever waits in [`Health::wait_for_death`]
    /// wakes up.
    pub fn task_died(&self, death: TaskDeath) {
        self.0.dead.send_modify(|dead| dead.push(death));
    }

    pub fn dead_tasks(&self) -> Vec<TaskDeath> {
        self.0.dead.borrow().clone()
    }

    /// Resolves with the first task that died (at once if one has).
    pub async fn wait_for_death(&self) -> TaskDeath {
        let mut rx = self.0.dead.subscribe();
        if let Ok(dead) = rx.wait_for(|d| !d.is_empty()).await {
            if let Some(first) = dead.first() {
                return first.clone();
            }
        }
        // The sender lives in `self`, so the wait above cannot fail; never resolve if it did.
        std::future::pending().await
    }

    pub fn venue_ok_at(&self) -> Option<DateTime<Utc>> {
        match self.0.venue_ok_at.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }
}

/// Inputs of the readiness verdict that come from outside the handle.
pub struct Observed {
    pub now: DateTime<Utc>,
    /// `Err` with the reason when the store is not known to commit (no recent write round trip,
    /// a failed write, or a reader that does not answer).
    pub store: Result<(), String>,
    /// Age of the oldest pending inbox event, if any.
    pub inbox_lag: Option<chrono::Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedCheck {
    pub check: &'static str,
    pub detail: String,
}

/// The readiness verdict: every failing check, by name. Empty means ready.
pub fn failing_checks(health: &Health, seen: &Observed) -> Vec<FailedCheck> {
    let mut failing = Vec::new();
    let mut fail = |check, detail: String| failing.push(FailedCheck { check, detail });
    if health.is_draining() {
        fail("draining", "shutting down: webhooks are refused".into());
    }
    if let Err(e) = &seen.store {
        fail("store", e.clone());
    }
    for death in health.dead_tasks() {
        fail(
            "tasks",
            format!(
                "task {} died ({}); sigex is stopping",
                death.task, death.why
            ),
        );
    }
    if !health.is_reconciled() {
        fail(
            "reconciliation",
            "start-up reconciliation has not finished".into(),
        );
    }
    match health.venue_ok_at() {
        None => fail("venue", "no answer from the venue yet".into()),
        Some(at) if seen.now - at > VENUE_STALE_AFTER => fail(
            "venue",
            format!(
                "last venue answer {} s ago (bound {} s)",
                (seen.now - at).num_seconds(),
                VENUE_STALE_AFTER.num_seconds()
            ),
        ),
        Some(_) => {}
    }
    if let Some(lag) = seen.inbox_lag {
        if lag > MAX_INBOX_LAG {
            fail(
                "inbox_lag",
                format!(
                    "oldest unprocessed event is {} s old (bound {} s)",
                    lag.num_seconds(),
                    MAX_INBOX_LAG.num_seconds()
                ),
            );
        }
    }
    failing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn readiness_names_every_failing_check() {
        struct Case {
            name: &'static str,
            reconciled: bool,
            draining: bool,
            venue_ok: Option<i64>,
            store: Result<(), String>,
            lag_secs: Option<i64>,
            failing: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "all good is ready",
                reconciled: true,
                draining: false,
                venue_ok: Some(95),
                store: Ok(()),
                lag_secs: Some(1),
                failing: &[],
            },
            Case {
                name: "a fresh bot that never heard the venue and has not reconciled",
                reconciled: false,
                draining: false,
                venue_ok: None,
                store: Ok(()),
                lag_secs: None,
                failing: &["reconciliation", "venue"],
            },
            Case {
                name: "a stale venue answer and a lagging inbox",
                reconciled: true,
                draining: false,
                venue_ok: Some(0),
                store: Ok(()),
                lag_secs: Some(31),
                failing: &["venue", "inbox_lag"],
            },
            Case {
                name: "a store that cannot commit, while draining",
                reconciled: true,
                draining: true,
                venue_ok: Some(100),
                store: Err("cannot commit: database or disk is full".into()),
                lag_secs: None,
                failing: &["draining", "store"],
            },
        ];
        for case in cases {
            let h = Health::new();
            if case.reconciled {
                h.mark_reconciled();
            }
            if case.draining {
                h.start_draining();
            }
            if let Some(s) = case.venue_ok {
                h.venue_ok(at(s));
            }
            let seen = Observed {
                now: at(100),
                store: case.store,
                inbox_lag: case.lag_secs.map(chrono::Duration::seconds),
            };
            let names: Vec<_> = failing_checks(&h, &seen).iter().map(|f| f.check).collect();
            assert_eq!(names, case.failing, "{}", case.name);
        }
    }

    #[test]
    fn a_dead_task_fails_readiness_by_name() {
        let h = Health::new();
        h.mark_reconciled();
        h.venue_ok(at(100));
        let seen = || Observed {
            now: at(100),
            store: Ok(()),
            inbox_lag: None,
        };
        assert!(failing_checks(&h, &seen()).is_empty());
        h.task_died(TaskDeath {
            task: "dispatcher".into(),
            why: "panicked: boom".into(),
        });
        let failing = failing_checks(&h, &seen());
        assert_eq!(failing.len(), 1);
        assert_eq!(failing[0].check, "tasks");
        assert!(failing[0].detail.contains("dispatcher"), "{failing:?}");
    }

    #[test]
    fn venue_failures_count_in_a_row_until_a_success() {
        let h = Health::new();
        assert_eq!(h.venue_failed(), 1);
        assert_eq!(h.venue_failed(), 2);
        h.venue_ok(at(0));
        assert_eq!(h.venue_failed(), 1);
    }
}
