//! The maintenance calendar: which `system.maintenance` windows stop new orders, and when trading
//! may resume. Pure: the dispatcher stores windows, the reconciler marks them reconciled, and this
//! module answers "may an order be placed at `now`?".
//!
//! Rules:
//! - a window blocks when its `affectedServices` include `trading` or `api`;
//! - it blocks from `start - lead` until `end + settle` **and** until a full reconciliation pass
//!   has completed after that point (a venue that was down may have changed orders behind our back);
//! - a notice with the same key (its `id`, else its `startTime`) updates the stored window;
//!   overlapping windows each block on their own; a notice whose `end + settle` is already past
//!   when it arrives is recorded but blocks nothing; a notice whose times are unreadable or whose
//!   end is before its start is refused (a dead letter, with the reason).

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceSettings {
    /// Stop placing orders this long before a window starts.
    pub lead: Duration,
    /// Keep not placing orders this long after a window ends.
    pub settle: Duration,
    /// Cancel open orders when a window's lead time begins.
    pub cancel_open_orders: bool,
}

impl Default for MaintenanceSettings {
    fn default() -> Self {
        Self {
            lead: Duration::minutes(5),
            settle: Duration::minutes(5),
            cancel_open_orders: false,
        }
    }
}

/// A stored maintenance window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    pub key: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub services: Vec<String>,
    pub description: String,
    /// Set once a full reconciliation completed after `end + settle`.
    pub reconciled_at: Option<DateTime<Utc>>,
}

impl Window {
    /// Builds a window from a notice's fields; `Err` says why the notice is unusable.
    pub fn from_notice(
        id: Option<&str>,
        start: Option<&str>,
        end: Option<&str>,
        services: Vec<String>,
        description: Option<String>,
    ) -> Result<Self, String> {
        let time = |name: &str, v: Option<&str>| {
            let v = v.ok_or_else(|| format!("{name} is missing"))?;
            crate::venue::wire::parse_timestamp(v)
                .ok_or_else(|| format!("{name} {v:?} is not an RFC 3339 time"))
        };
        let start_at = time("startTime", start)?;
        let end_at = time("endTime", end)?;
        if end_at < start_at {
            return Err(format!(
                "endTime {end_at} is before startTime {start_at}; the notice is unusable"
            ));
        }
        Ok(Self {
            key: id
                .map(str::to_owned)
                .unwrap_or_else(|| crate::clock::ts(start_at)),
            start: start_at,
            end: end_at,
            services,
            description: description.unwrap_or_default(),
            reconciled_at: None,
        })
    }

    /// Whether it stops order placement at all.
    pub fn affects_trading(&self) -> bool {
        self.services
            .iter()
            .any(|s| s.eq_ignore_ascii_case("trading") || s.eq_ignore_ascii_case("api"))
    }

    /// Already over (end + settle passed) when we heard of it.
    pub fn is_past(&self, s: &MaintenanceSettings, now: DateTime<Utc>) -> bool {
        self.end + s.settle <= now
    }

    /// Its blocking period has begun.
    pub fn has_begun(&self, s: &MaintenanceSettings, now: DateTime<Utc>) -> bool {
        self.start - s.lead <= now
    }

    /// With `cancel_open_orders`: working orders are to be cancelled now (the lead time has
    /// begun, the window is not over, and it was not reconciled already).
    pub fn cancels_open_orders(&self, s: &MaintenanceSettings, now: DateTime<Utc>) -> bool {
        s.cancel_open_orders
            && self.affects_trading()
            && self.reconciled_at.is_none()
            && self.has_begun(s, now)
            && !self.is_past(s, now)
    }

    /// Needs a reconciliation pass before trading resumes.
    pub fn awaits_reconciliation(&self, s: &MaintenanceSettings, now: DateTime<Utc>) -> bool {
        self.affects_trading() && self.reconciled_at.is_none() && self.is_past(s, now)
    }
}

/// Why no order may be placed at `now`, if a window forbids it.
pub fn blocking(windows: &[Window], s: &MaintenanceSettings, now: DateTime<Utc>) -> Option<String> {
    let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    for w in windows.iter().filter(|w| w.affects_trading()) {
        if w.reconciled_at.is_some() || !w.has_begun(s, now) {
            continue;
        }
        if !w.is_past(s, now) {
            return Some(format!(
                "maintenance window {} to {} ({}): no new orders from {} until {} and a \
                 reconciliation",
                fmt(w.start),
                fmt(w.end),
                w.services.join(", "),
                fmt(w.start - s.lead),
                fmt(w.end + s.settle)
            ));
        }
        return Some(format!(
            "maintenance window {} to {} is over, waiting for the reconciliation pass before \
             trading resumes",
            fmt(w.start),
            fmt(w.end)
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, h, m, 0).unwrap()
    }

    fn window(start: (u32, u32), end: (u32, u32), services: &[&str]) -> Window {
        Window {
            key: format!("{start:?}"),
            start: t(start.0, start.1),
            end: t(end.0, end.1),
            services: services.iter().map(|s| s.to_string()).collect(),
            description: String::new(),
            reconciled_at: None,
        }
    }

    #[test]
    fn a_window_blocks_from_lead_to_settle_and_until_reconciled() {
        let s = MaintenanceSettings::default();
        let w = window((20, 0), (22, 0), &["trading", "webhooks"]);
        let mut done = w.clone();
        done.reconciled_at = Some(t(22, 6));
        let webhooks_only = window((20, 0), (22, 0), &["webhooks"]);
        type Row = (
            &'static str,
            Vec<Window>,
            DateTime<Utc>,
            Option<&'static str>,
        );
        let cases: Vec<Row> = vec![
            (
                "before the lead time trading goes on",
                vec![w.clone()],
                t(19, 54),
                None,
            ),
            (
                "inside the lead time it stops",
                vec![w.clone()],
                t(19, 55),
                Some("no new orders"),
            ),
            (
                "during the window it stops",
                vec![w.clone()],
                t(21, 0),
                Some("no new orders"),
            ),
            (
                "during the settle time it stops",
                vec![w.clone()],
                t(22, 4),
                Some("no new orders"),
            ),
            (
                "after settle it waits for reconciliation",
                vec![w.clone()],
                t(22, 10),
                Some("waiting for the reconciliation"),
            ),
            (
                "after reconciliation it resumes",
                vec![done.clone()],
                t(22, 10),
                None,
            ),
            (
                "a window for webhooks only blocks nothing",
                vec![webhooks_only],
                t(21, 0),
                None,
            ),
            (
                "overlapping windows: the later one still blocks",
                vec![done, window((22, 0), (23, 0), &["api"])],
                t(22, 30),
                Some("no new orders"),
            ),
        ];
        for (name, windows, now, want) in cases {
            let got = blocking(&windows, &s, now);
            match (want, got) {
                (None, None) => {}
                (Some(needle), Some(reason)) => {
                    assert!(reason.contains(needle), "{name}: {reason}")
                }
                (w, g) => panic!("{name}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn malformed_notices_are_refused_with_the_reason() {
        let ok = Window::from_notice(
            None,
            Some("2026-11-27T20:00:00Z"),
            Some("2026-11-27T22:00:00Z"),
            vec!["trading".into()],
            None,
        )
        .unwrap();
        assert_eq!(ok.key, "2026-11-27T20:00:00.000Z");
        let cases = [
            (
                "missing start",
                None,
                Some("2026-11-27T22:00:00Z"),
                "startTime is missing",
            ),
            (
                "unreadable end",
                Some("2026-11-27T20:00:00Z"),
                Some("tomorrow"),
                "not an RFC 3339",
            ),
            (
                "end before start",
                Some("2026-11-27T22:00:00Z"),
                Some("2026-11-27T20:00:00Z"),
                "before startTime",
            ),
        ];
        for (name, start, end, needle) in cases {
            let e = Window::from_notice(None, start, end, vec![], None).unwrap_err();
            assert!(e.contains(needle), "{name}: {e}");
        }
    }
}
