//! Fault injection: the ways a real venue misbehaves, each switched on by a probability.
//!
//! Owns the fault settings and the seeded generator that decides, per webhook and per REST request,
//! which fault (if any) strikes. Guarantees:
//! - with every probability at zero (the default) nothing is injected and no random number is drawn,
//!   so a fault-free run is identical to one without this module;
//! - decisions come from generators seeded by the simulator's seed, one for webhooks and one for
//!   REST requests (so concurrent deliveries do not shift which requests are struck): the same
//!   sequence of requests meets the same faults, and so does the same sequence of events;
//! - probabilities are exact decimals in `[0, 1]`, kept as parts per million (no floating point);
//! - with a schedule (`windows`), faults strike only inside the windows, counted from the start of
//!   `serve`; outside them nothing is drawn.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

const MILLION: u32 = 1_000_000;

/// A probability in `[0, 1]`, exact to one part per million.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Probability(u32);

impl Probability {
    pub const NEVER: Self = Self(0);
    pub const ALWAYS: Self = Self(MILLION);

    /// `p` must be between 0 and 1 inclusive.
    pub fn parse(p: Decimal) -> Result<Self, String> {
        if p < Decimal::ZERO || p > Decimal::ONE {
            return Err(format!("a probability is between 0 and 1, got {p}"));
        }
        let ppm = (p * Decimal::from(MILLION)).round();
        u32::try_from(ppm.mantissa() / 10i128.pow(ppm.scale()))
            .map(Self)
            .map_err(|_| format!("a probability is between 0 and 1, got {p}"))
    }

    /// `n` in a thousand (`per_mille(5)` is 0.5%).
    pub const fn per_mille(n: u32) -> Self {
        Self(n * 1_000)
    }

    pub fn is_never(self) -> bool {
        self.0 == 0
    }

    fn hit(self, rng: &mut StdRng) -> bool {
        self.0 > 0 && rng.gen_range(0..MILLION) < self.0
    }
}

impl FromStr for Probability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let d = Decimal::from_str_exact(s.trim())
            .map_err(|_| format!("{s:?} is not a probability like 0.05"))?;
        Self::parse(d)
    }
}

impl fmt::Display for Probability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let percent = Decimal::new(i64::from(self.0), 4).normalize();
        write!(f, "{percent}%")
    }
}

/// Every fault the simulator can inject. All off by default.
#[derive(Debug, Clone)]
pub struct Faults {
    /// A webhook is never sent (no attempt at all, as if the venue lost it).
    pub webhook_drop: Probability,
    /// A webhook is delivered twice, the same bytes.
    pub webhook_duplicate: Probability,
    /// A webhook waits up to `webhook_delay_max` before its first attempt (and so do those behind it).
    pub webhook_delay: Probability,
    pub webhook_delay_max: Duration,
    /// A webhook is held back and delivered after the next one.
    pub webhook_reorder: Probability,
    /// A REST request gets a 5xx without being processed.
    pub rest_5xx: Probability,
    /// A REST request gets 429 with `Retry-After: rest_retry_after_secs` without being processed.
    pub rest_429: Probability,
    pub rest_retry_after_secs: u64,
    /// A REST request gets no answer for `rest_timeout_after` (then 504), without being processed.
    pub rest_timeout: Probability,
    pub rest_timeout_after: Duration,
    /// An order request (`POST /orders`, `DELETE /orders/{id}`) is processed (the order exists, or
    /// is cancelled) but the connection drops before the answer.
    pub order_lost_response: Probability,
    /// An order request is processed (the order is booked, or cancelled), then answers 500: the
    /// "500 after acceptance" a client must not take for a failure.
    pub processed_5xx: Probability,
    /// An order request is processed (the order is booked, or cancelled), then its answer is held
    /// back for `rest_timeout_after`: a slow venue the client may give up on, or die waiting for.
    pub order_slow_response: Probability,
    /// Which requests REST faults strike; by default only `POST /orders`.
    pub rest_routes: RestRoutes,
    /// When set, at most this many REST faults are injected in all; later requests are normal.
    pub rest_fault_limit: Option<u64>,
    /// When not empty, faults strike only inside these windows `(from, until)`, counted from the
    /// start of `serve`; when empty, all the time.
    pub windows: Vec<(Duration, Duration)>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            webhook_drop: Probability::NEVER,
            webhook_duplicate: Probability::NEVER,
            webhook_delay: Probability::NEVER,
            webhook_delay_max: Duration::from_millis(500),
            webhook_reorder: Probability::NEVER,
            rest_5xx: Probability::NEVER,
            rest_429: Probability::NEVER,
            rest_retry_after_secs: 1,
            rest_timeout: Probability::NEVER,
            rest_timeout_after: Duration::from_secs(30),
            order_lost_response: Probability::NEVER,
            processed_5xx: Probability::NEVER,
            order_slow_response: Probability::NEVER,
            rest_routes: RestRoutes::OrderPosts,
            rest_fault_limit: None,
            windows: Vec::new(),
        }
    }
}

impl Faults {
    pub fn is_none(&self) -> bool {
        [
            self.webhook_drop,
            self.webhook_duplicate,
            self.webhook_delay,
            self.webhook_reorder,
            self.rest_5xx,
            self.rest_429,
            self.rest_timeout,
            self.order_lost_response,
            self.processed_5xx,
            self.order_slow_response,
        ]
        .iter()
        .all(|p| p.is_never())
    }

    /// One line naming every fault that is on, for logs and the demo's header.
    pub fn describe(&self) -> String {
        if self.is_none() {
            return "no faults injected".into();
        }
        let scope = self.rest_routes.describe();
        let mut parts = Vec::new();
        let mut add = |p: Probability, what: String| {
            if !p.is_never() {
                parts.push(format!("{p} {what}"));
            }
        };
        add(self.webhook_drop, "webhooks dropped".into());
        add(self.webhook_duplicate, "webhooks duplicated".into());
        add(
            self.webhook_delay,
            format!(
                "webhooks delayed up to {} ms",
                self.webhook_delay_max.as_millis()
            ),
        );
        add(self.webhook_reorder, "webhooks reordered".into());
        add(self.rest_5xx, format!("5xx on {scope}"));
        add(
            self.rest_429,
            format!(
                "429 (Retry-After {} s) on {scope}",
                self.rest_retry_after_secs
            ),
        );
        add(
            self.rest_timeout,
            format!(
                "no answer for {} s on {scope}",
                self.rest_timeout_after.as_secs()
            ),
        );
        add(
            self.order_lost_response,
            format!("order requests processed with the response lost on {scope}"),
        );
        add(
            self.processed_5xx,
            format!("order requests processed, then answered 500 on {scope}"),
        );
        add(
            self.order_slow_response,
            format!(
                "order requests processed, then answered after {} s on {scope}",
                self.rest_timeout_after.as_secs()
            ),
        );
        let mut text = parts.join(", ");
        if let Some(limit) = self.rest_fault_limit {
            text.push_str(&format!("; at most {limit} REST faults"));
        }
        if !self.windows.is_empty() {
            let windows: Vec<String> = self
                .windows
                .iter()
                .map(|(from, until)| format!("{}-{} s", from.as_secs(), until.as_secs()))
                .collect();
            text.push_str(&format!("; only during {}", windows.join(", ")));
        }
        text
    }

    /// Whether faults may strike `elapsed` after the start of `serve`.
    pub fn active_at(&self, elapsed: Duration) -> bool {
        self.windows.is_empty()
            || self
                .windows
                .iter()
                .any(|(from, until)| elapsed >= *from && elapsed < *until)
    }
}

/// Which REST requests the REST faults strike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestRoutes {
    /// `POST /orders` only.
    #[default]
    OrderPosts,
    /// `DELETE /orders/{id}` only.
    Cancels,
    /// `POST /orders` and `DELETE /orders/{id}`.
    OrderRequests,
    /// Every route (lookups, positions, balances, webhooks...).
    All,
}

impl RestRoutes {
    fn covers(self, kind: RouteKind) -> bool {
        match self {
            Self::OrderPosts => kind == RouteKind::OrderPost,
            Self::Cancels => kind == RouteKind::Cancel,
            Self::OrderRequests => kind != RouteKind::Other,
            Self::All => true,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::OrderPosts => "POST /orders",
            Self::Cancels => "DELETE /orders/{id}",
            Self::OrderRequests => "POST /orders and DELETE /orders/{id}",
            Self::All => "every REST route",
        }
    }
}

impl FromStr for RestRoutes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "orders" => Ok(Self::OrderPosts),
            "cancels" => Ok(Self::Cancels),
            "order-requests" => Ok(Self::OrderRequests),
            "all" => Ok(Self::All),
            _ => Err(format!(
                "{s:?} is not one of orders, cancels, order-requests, all"
            )),
        }
    }
}

/// The kind of one REST request, as far as faults care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteKind {
    OrderPost,
    Cancel,
    Other,
}

impl RouteKind {
    fn of(method: &str, path: &str) -> Self {
        let path = path.trim_end_matches('/');
        match (method, path.strip_prefix("/api/v1/orders")) {
            ("POST", Some("")) => Self::OrderPost,
            ("DELETE", Some(rest)) if rest.len() > 1 && !rest[1..].contains('/') => Self::Cancel,
            _ => Self::Other,
        }
    }
}

/// What happens to one webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WebhookFate {
    pub drop: bool,
    pub duplicate: bool,
    pub delay: Option<Duration>,
    pub reorder: bool,
}

/// What happens to one REST request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestFate {
    Normal,
    ServerError,
    RateLimited,
    TimedOut,
    /// Processed, then the answer is lost.
    LoseResponse,
    /// Processed, then answered 500.
    ProcessedServerError,
    /// Processed, then answered after `rest_timeout_after`.
    ProcessedSlow,
}

/// The faults and the generator deciding them.
pub(crate) struct Injector {
    pub faults: Faults,
    /// When `serve` started; the schedule counts from here (no faults before).
    started: Mutex<Option<tokio::time::Instant>>,
    webhook_rng: Mutex<StdRng>,
    rest_rng: Mutex<StdRng>,
    /// REST faults injected so far (for `rest_fault_limit`).
    rest_struck: std::sync::atomic::AtomicU64,
}

impl Injector {
    pub(crate) fn new(faults: Faults, seed: u64) -> Self {
        Self {
            faults,
            started: Mutex::new(None),
            webhook_rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0xFA17_FA17_FA17_FA17)),
            rest_rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x5E57_5E57_5E57_5E57)),
            rest_struck: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Starts the schedule's clock.
    pub(crate) fn start(&self) {
        *self.started.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(tokio::time::Instant::now());
    }

    fn active(&self) -> bool {
        if self.faults.windows.is_empty() {
            return true;
        }
        let started = *self.started.lock().unwrap_or_else(PoisonError::into_inner);
        started.is_some_and(|t| self.faults.active_at(t.elapsed()))
    }

    pub(crate) fn webhook(&self) -> WebhookFate {
        let f = &self.faults;
        if f.is_none() || !self.active() {
            return WebhookFate::default();
        }
        let mut rng = self
            .webhook_rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let drop = f.webhook_drop.hit(&mut rng);
        let duplicate = f.webhook_duplicate.hit(&mut rng);
        let delay = f.webhook_delay.hit(&mut rng).then(|| {
            let max = u64::try_from(f.webhook_delay_max.as_millis()).unwrap_or(u64::MAX);
            Duration::from_millis(rng.gen_range(0..=max))
        });
        let reorder = f.webhook_reorder.hit(&mut rng);
        WebhookFate {
            drop,
            duplicate,
            delay,
            reorder,
        }
    }

    /// The fate of a request to `method path`.
    pub(crate) fn rest(&self, method: &str, path: &str) -> RestFate {
        use std::sync::atomic::Ordering::Relaxed;
        let f = &self.faults;
        let kind = RouteKind::of(method, path);
        if f.is_none() || !f.rest_routes.covers(kind) || !self.active() {
            return RestFate::Normal;
        }
        if f.rest_fault_limit
            .is_some_and(|limit| self.rest_struck.load(Relaxed) >= limit)
        {
            return RestFate::Normal;
        }
        let changes_orders = kind != RouteKind::Other;
        let mut rng = self.rest_rng.lock().unwrap_or_else(PoisonError::into_inner);
        let fate = if f.rest_5xx.hit(&mut rng) {
            RestFate::ServerError
        } else if f.rest_429.hit(&mut rng) {
            RestFate::RateLimited
        } else if f.rest_timeout.hit(&mut rng) {
            RestFate::TimedOut
        } else if changes_orders && f.order_lost_response.hit(&mut rng) {
            RestFate::LoseResponse
        } else if changes_orders && f.processed_5xx.hit(&mut rng) {
            RestFate::ProcessedServerError
        } else if changes_orders && f.order_slow_response.hit(&mut rng) {
            RestFate::ProcessedSlow
        } else {
            RestFate::Normal
        };
        if fate != RestFate::Normal {
            self.rest_struck.fetch_add(1, Relaxed);
        }
        fate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_parse_exactly_and_refuse_out_of_range() {
        let cases = [
            ("0", Ok(Probability::NEVER)),
            ("1", Ok(Probability::ALWAYS)),
            ("0.05", Ok(Probability::per_mille(50))),
            ("0.0005", Ok(Probability(500))),
            ("1.5", Err(())),
            ("-0.1", Err(())),
            ("often", Err(())),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Probability>().map_err(|_| ()), want, "{text}");
        }
        assert_eq!(Probability::per_mille(25).to_string(), "2.5%");
    }

    #[test]
    fn no_faults_means_every_request_and_webhook_is_normal() {
        let i = Injector::new(Faults::default(), 1);
        for _ in 0..1000 {
            assert_eq!(i.rest("POST", "/api/v1/orders"), RestFate::Normal);
            assert_eq!(i.webhook(), WebhookFate::default());
        }
    }

    #[test]
    fn faults_strike_at_about_their_rate_and_the_same_seed_strikes_the_same_requests() {
        let faults = Faults {
            rest_5xx: Probability::per_mille(100),
            webhook_duplicate: Probability::per_mille(200),
            ..Faults::default()
        };
        let run = |seed| {
            let i = Injector::new(faults.clone(), seed);
            (0..2000)
                .map(|_| (i.rest("POST", "/api/v1/orders"), i.webhook().duplicate))
                .collect::<Vec<_>>()
        };
        let a = run(3);
        assert_eq!(a, run(3));
        let errors = a
            .iter()
            .filter(|(r, _)| *r == RestFate::ServerError)
            .count();
        let dups = a.iter().filter(|(_, d)| *d).count();
        assert!((120..=280).contains(&errors), "{errors}");
        assert!((300..=500).contains(&dups), "{dups}");
        // Only POST /orders is struck unless every route is asked for.
        let i = Injector::new(faults, 3);
        assert!((0..500).all(|_| i.rest("GET", "/api/v1/positions") == RestFate::Normal));
    }

    #[test]
    fn route_scopes_and_the_fault_limit_decide_which_requests_are_struck() {
        let cancels = Faults {
            rest_429: Probability::ALWAYS,
            rest_routes: RestRoutes::Cancels,
            rest_fault_limit: Some(2),
            ..Faults::default()
        };
        let i = Injector::new(cancels, 1);
        assert_eq!(i.rest("POST", "/api/v1/orders"), RestFate::Normal);
        assert_eq!(i.rest("GET", "/api/v1/orders/abc"), RestFate::Normal);
        assert_eq!(
            i.rest("DELETE", "/api/v1/orders/abc"),
            RestFate::RateLimited
        );
        assert_eq!(
            i.rest("DELETE", "/api/v1/orders/abc"),
            RestFate::RateLimited
        );
        // The limit is spent: the third DELETE goes through.
        assert_eq!(i.rest("DELETE", "/api/v1/orders/abc"), RestFate::Normal);

        let processed = Faults {
            processed_5xx: Probability::ALWAYS,
            rest_routes: RestRoutes::All,
            ..Faults::default()
        };
        let i = Injector::new(processed, 1);
        assert_eq!(
            i.rest("POST", "/api/v1/orders"),
            RestFate::ProcessedServerError
        );
        assert_eq!(
            i.rest("DELETE", "/api/v1/orders/abc"),
            RestFate::ProcessedServerError
        );
        // A lookup changes nothing: "processed, then 500" does not apply to it.
        assert_eq!(i.rest("GET", "/api/v1/positions"), RestFate::Normal);
        assert_eq!(
            "order-requests".parse::<RestRoutes>(),
            Ok(RestRoutes::OrderRequests)
        );
        assert!("some".parse::<RestRoutes>().is_err());
    }

    #[test]
    fn a_schedule_confines_faults_to_its_windows() {
        let scheduled = Faults {
            rest_5xx: Probability::ALWAYS,
            windows: vec![
                (Duration::from_secs(10), Duration::from_secs(20)),
                (Duration::from_secs(60), Duration::from_secs(61)),
            ],
            ..Faults::default()
        };
        let cases = [
            (0, false),
            (9, false),
            (10, true),
            (19, true),
            (20, false),
            (60, true),
            (61, false),
        ];
        for (secs, active) in cases {
            assert_eq!(
                scheduled.active_at(Duration::from_secs(secs)),
                active,
                "{secs} s"
            );
        }
        assert!(Faults::default().active_at(Duration::from_secs(12_345)));
        assert!(scheduled
            .describe()
            .ends_with("only during 10-20 s, 60-61 s"));
        // Before `serve` starts the clock, and outside the windows, nothing strikes.
        let i = Injector::new(scheduled, 1);
        assert_eq!(i.rest("POST", "/api/v1/orders"), RestFate::Normal);
        i.start();
        assert_eq!(i.rest("POST", "/api/v1/orders"), RestFate::Normal);
    }
}
