//! Prometheus metrics (`GET /metrics`, OpenMetrics text format, which Prometheus scrapes natively)
//! through the maintained `prometheus-client` crate.
//!
//! Owns one registry and every metric family. Parts hold a cheap clone of `Metrics` and record with
//! one-liners (`metrics.webhook_received(..)`); counting never blocks and never fails. Gauges that
//! describe stored state (inbox depth and lag, orders by status, drift) are set from the database
//! at scrape time, so they cannot drift from the truth.
//!
//! Floating point appears here only for metric values (seconds), never for money.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OrderRequestLabel {
    request: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// Every order status the store can hold, so a status that empties out reads 0, not its last value.
const ORDER_STATUSES: &[&str] = &[
    "intent",
    "unknown",
    "pending",
    "open",
    "partially_filled",
    "filled",
    "cancelled",
    "rejected",
    "expired",
];
const INBOX_STATUSES: &[&str] = &["pending", "processed", "deferred", "dead"];
const TRADING_STATES: &[&str] = &["active", "reducing", "halted"];

/// The bot's metrics; clone freely (every family is shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    webhooks_received: Family<EventLabel, Counter>,
    webhooks_rejected: Family<ReasonLabel, Counter>,
    webhooks_duplicate: Family<EventLabel, Counter>,
    inbox_depth: Family<StatusLabel, Gauge>,
    inbox_lag_secs: Gauge<f64, AtomicU64>,
    orders: Family<StatusLabel, Gauge>,
    submit_latency: Histogram,
    order_requests: Family<OrderRequestLabel, Counter>,
    venue_errors: Family<ClassLabel, Counter>,
    drift_symbols: Gauge,
    trading_state: Family<StateLabel, Gauge>,
    maintenance_active: Gauge,
    notifications_sent: Counter,
    notifications_failed: Counter,
    notifications_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("sigex");
        let m = Self {
            registry: Arc::new(Registry::default()),
            webhooks_received: Family::default(),
            webhooks_rejected: Family::default(),
            webhooks_duplicate: Family::default(),
            inbox_depth: Family::default(),
            inbox_lag_secs: Gauge::default(),
            orders: Family::default(),
            // 5 ms .. ~20 s: submit latency metric buckets.
            submit_latency: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            order_requests: Family::default(),
            venue_errors: Family::default(),
            drift_symbols: Gauge::default(),
            trading_state: Family::default(),
            maintenance_active: Gauge::default(),
            notifications_sent: Counter::default(),
            notifications_failed: Counter::default(),
            notifications_dropped: Counter::default(),
        };
        r.register(
            "webhooks_received",
            "Verified webhooks stored in the inbox, by event type",
            m.webhooks_received.clone(),
        );
        r.register(
            "webhooks_rejected",
            "Webhooks refused, by reason (signature missing/malformed/mismatch, too_large, unreadable_body, draining, inbox_unavailable)",
            m.webhooks_rejected.clone(),
        );
        r.register(
            "webhooks_duplicate",
            "Verified webhooks whose dedupe key was already stored, by event type",
            m.webhooks_duplicate.clone(),
        );
        r.register(
            "inbox_events",
            "Inbox events by processing status",
            m.inbox_depth.clone(),
        );
        r.register(
            "inbox_lag_seconds",
            "Age of the oldest unprocessed inbox event (0 when none)",
            m.inbox_lag_secs.clone(),
        );
        r.register("orders", "Orders by status", m.orders.clone());
        r.register(
            "order_submit_latency_seconds",
            "Time from sending POST /orders to a complete venue answer",
            m.submit_latency.clone(),
        );
        r.register(
            "order_requests",
            "Order-changing requests by kind (place: POST /orders, cancel: DELETE /orders/{id}) and outcome (accepted, rejected, unknown)",
            m.order_requests.clone(),
        );
        r.register(
            "venue_errors",
            "Venue REST failures by class (timeout, connect, transport, rate_limited, server_error, client_error)",
            m.venue_errors.clone(),
        );
        r.register(
            "reconciliation_drift_symbols",
            "Symbols whose position differs from the venue's last report",
            m.drift_symbols.clone(),
        );
        r.register(
            "trading_state",
            "1 for the current trading state (active, reducing, halted)",
            m.trading_state.clone(),
        );
        r.register(
            "maintenance_active",
            "1 while a venue maintenance window is active",
            m.maintenance_active.clone(),
        );
        r.register(
            "notifications_sent",
            "Notifications delivered",
            m.notifications_sent.clone(),
        );
        r.register(
            "notifications_failed",
            "Notifications given up after all retries",
            m.notifications_failed.clone(),
        );
        r.register(
            "notifications_dropped",
            "Notifications dropped because a notifier queue was full",
            m.notifications_dropped.clone(),
        );
        Self {
            registry: Arc::new(r),
            ..m
        }
    }

    pub fn webhook_received(&self, event_type: &str) {
        self.webhooks_received
            .get_or_create(&EventLabel {
                event_type: event_type.to_owned(),
            })
            .inc();
    }

    pub fn webhook_duplicate(&self, event_type: &str) {
        self.webhooks_duplicate
            .get_or_create(&EventLabel {
                event_type: event_type.to_owned(),
            })
            .inc();
    }

    pub fn webhook_rejected(&self, reason: &str) {
        self.webhooks_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records one order submission's round trip (latency metric).
    pub fn submit_latency(&self, elapsed: std::time::Duration) {
        self.submit_latency.observe(elapsed.as_secs_f64());
    }

    /// Counts one order request's outcome: `request` is `place` or `cancel`, `outcome` is
    /// `accepted`, `rejected` or `unknown`.
    pub fn order_request(&self, request: &str, outcome: &str) {
        self.order_requests
            .get_or_create(&OrderRequestLabel {
                request: request.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn venue_error(&self, class: &str) {
        self.venue_errors
            .get_or_create(&ClassLabel {
                class: class.to_owned(),
            })
            .inc();
    }

    /// For the trading-state owner: marks `state` (active, reducing, halted) as the current one.
    pub fn set_trading_state(&self, state: &str) {
        for s in TRADING_STATES {
            self.trading_state
                .get_or_create(&StateLabel {
                    state: (*s).to_owned(),
                })
                .set(i64::from(*s == state));
        }
    }

    /// For the maintenance calendar: whether a maintenance window is active now.
    pub fn set_maintenance_active(&self, active: bool) {
        self.maintenance_active.set(i64::from(active));
    }

    pub fn notification_sent(&self) {
        self.notifications_sent.inc();
    }

    pub fn notification_failed(&self) {
        self.notifications_failed.inc();
    }

    pub fn notification_dropped(&self) {
        self.notifications_dropped.inc();
    }

    /// Sets the gauges that mirror stored state; called at scrape time.
    pub fn observe_store(&self, seen: &StoreSnapshot) {
        for (family, known, counts) in [
            (&self.orders, ORDER_STATUSES, &seen.orders),
            (&self.inbox_depth, INBOX_STATUSES, &seen.inbox),
        ] {
            for s in known {
                family
                    .get_or_create(&StatusLabel {
                        status: (*s).to_owned(),
                    })
                    .set(0);
            }
            for (status, n) in counts {
                family
                    .get_or_create(&StatusLabel {
                        status: status.clone(),
                    })
                    .set(*n);
            }
        }
        let lag_secs = seen.inbox_lag.map_or(0, |d| d.num_milliseconds()) as f64 / 1000.0;
        self.inbox_lag_secs.set(lag_secs);
        self.drift_symbols.set(seen.drift_symbols);
    }

    /// The whole registry in OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Stored state read at scrape time.
#[derive(Debug, Default)]
pub struct StoreSnapshot {
    pub orders: Vec<(String, i64)>,
    pub inbox: Vec<(String, i64)>,
    pub inbox_lag: Option<chrono::Duration>,
    pub drift_symbols: i64,
}

/// The OpenMetrics content type Prometheus negotiates for this format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_appear_in_the_exposition_by_label() {
        let m = Metrics::new();
        m.webhook_received("signal.generated");
        m.webhook_received("signal.generated");
        m.webhook_rejected("mismatch");
        m.webhook_duplicate("order.updated");
        m.venue_error("timeout");
        m.submit_latency(std::time::Duration::from_millis(12));
        m.order_request("cancel", "unknown");
        m.set_trading_state("halted");
        m.observe_store(&StoreSnapshot {
            orders: vec![("filled".into(), 3)],
            inbox: vec![("dead".into(), 1)],
            inbox_lag: Some(chrono::Duration::milliseconds(1500)),
            drift_symbols: 2,
        });
        let text = m.encode();
        for expected in [
            r#"sigex_webhooks_received_total{event_type="signal.generated"} 2"#,
            r#"sigex_webhooks_rejected_total{reason="mismatch"} 1"#,
            r#"sigex_webhooks_duplicate_total{event_type="order.updated"} 1"#,
            r#"sigex_venue_errors_total{class="timeout"} 1"#,
            "sigex_order_submit_latency_seconds_count 1",
            r#"sigex_order_requests_total{request="cancel",outcome="unknown"} 1"#,
            r#"sigex_trading_state{state="halted"} 1"#,
            r#"sigex_trading_state{state="active"} 0"#,
            r#"sigex_orders{status="filled"} 3"#,
            r#"sigex_orders{status="open"} 0"#,
            r#"sigex_inbox_events{status="dead"} 1"#,
            "sigex_inbox_lag_seconds 1.5",
            "sigex_reconciliation_drift_symbols 2",
            "sigex_maintenance_active 0",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }
}
