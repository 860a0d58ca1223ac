//! Who is calling: the client address (through trusted proxies only), the source allowlist and a
//! per-source rate limit. These run before any body is read or any HMAC computed, so a flood from
//! one source costs little and cannot starve the trading path. A flood cannot flood the log either:
//! refusal lines go through a [`LogThrottle`] (the metrics still count every refusal).

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The venue's published webhook source ranges (docs page `api/webhooks`).
pub const VENUE_SOURCE_RANGES: &[&str] = &["203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24"];

/// Parses CIDR ranges (`10.0.0.0/8`) or single addresses (`10.0.0.1`).
pub fn parse_ranges(values: &[String]) -> Result<Vec<IpNet>, String> {
    values
        .iter()
        .map(|v| {
            v.parse::<IpNet>()
                .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("{v:?} is not an address or CIDR range like \"203.0.113.0/24\"")
                })
        })
        .collect()
}

/// The address a request really comes from. The socket peer, unless the peer is a trusted proxy:
/// then the right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries further
/// left were written by the client and prove nothing).
pub fn client_addr(peer: IpAddr, forwarded_for: Option<&str>, trusted_proxies: &[IpNet]) -> IpAddr {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut hops = header.rsplit(',').map(str::trim);
    let mut last = peer;
    for hop in hops.by_ref() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted(&ip) => last = ip,
            Ok(ip) => return ip,
            // A malformed hop ends what we can trust.
            Err(_) => return last,
        }
    }
    last
}

pub fn allowed(addr: IpAddr, allowlist: &[IpNet]) -> bool {
    allowlist.is_empty() || allowlist.iter().any(|n| n.contains(&addr))
}

/// Tokens are counted in millionths, so the bucket is exact integer arithmetic.
const MICRO: u128 = 1_000_000;

/// A token bucket per source address.
pub struct RateLimiter {
    per_second: u128,
    /// Capacity, in millionths of a token.
    burst: u128,
    buckets: Mutex<Buckets>,
}

struct Buckets {
    /// Tokens left (millionths) and when they were last topped up, per source.
    by_source: HashMap<IpAddr, (u128, Instant)>,
    /// The next sweep comes when this many sources are tracked.
    sweep_at: usize,
    /// Buckets looked at by sweeps so far (what keeps a request O(1) amortised; for the tests).
    swept: u64,
}

/// Above this many tracked sources, idle full buckets are forgotten.
const MAX_TRACKED_SOURCES: usize = 10_000;

impl RateLimiter {
    /// `None` when `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        (per_second > 0).then(|| Self {
            per_second: u128::from(per_second),
            burst: u128::from(burst.max(1)) * MICRO,
            buckets: Mutex::new(Buckets {
                by_source: HashMap::new(),
                sweep_at: MAX_TRACKED_SOURCES,
                swept: 0,
            }),
        })
    }

    /// Takes one token for `addr`; false when the source is over its rate.
    ///
    /// Sources whose bucket has refilled completely are idle: forgetting one changes nothing (it
    /// would start again with a full bucket). They are swept out once the map passes
    /// `MAX_TRACKED_SOURCES`, and then only when it has doubled since the last sweep, so a sweep's
    /// cost is spread over as many requests as it looks at: O(1) per request, amortised.
    pub fn allow(&self, addr: IpAddr, now: Instant) -> bool {
        let mut guard = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let b = &mut *guard;
        if b.by_source.len() >= b.sweep_at {
            b.swept += b.by_source.len() as u64;
            b.by_source
                .retain(|_, (tokens, at)| *tokens + self.refill(*at, now) < self.burst);
            b.sweep_at = (2 * b.by_source.len()).max(MAX_TRACKED_SOURCES);
        }
        let (tokens, at) = b.by_source.entry(addr).or_insert((self.burst, now));
        *tokens = (*tokens + self.refill(*at, now)).min(self.burst);
        *at = now;
        if *tokens >= MICRO {
            *tokens -= MICRO;
            true
        } else {
            false
        }
    }

    /// Millionths of a token earned between `since` and `now`.
    fn refill(&self, since: Instant, now: Instant) -> u128 {
        // per_second tokens a second = per_second millionths a microsecond.
        now.saturating_duration_since(since).as_micros() * self.per_second
    }

    /// (sources tracked, buckets looked at by sweeps so far).
    #[cfg(test)]
    fn load(&self) -> (usize, u64) {
        let b = self.buckets.lock().unwrap();
        (b.by_source.len(), b.swept)
    }
}

/// At most one log line per `every` for a kind of refusal, saying how many were not logged.
pub struct LogThrottle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were held back since the last
    /// one; `None` when this one is held back (and counted).
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, held) = &mut *state;
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.every) {
            *held += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn client_address_comes_from_trusted_proxies_only() {
        let proxies = parse_ranges(&["10.0.0.0/8".into()]).unwrap();
        let cases = [
            (
                "direct peer ignores the header",
                "198.51.100.7",
                Some("1.2.3.4"),
                "198.51.100.7",
            ),
            (
                "trusted proxy passes the client on",
                "10.0.0.1",
                Some("203.0.113.9"),
                "203.0.113.9",
            ),
            (
                "spoofed left-most entry is ignored",
                "10.0.0.1",
                Some("6.6.6.6, 203.0.113.9"),
                "203.0.113.9",
            ),
            (
                "chained trusted proxies are skipped",
                "10.0.0.1",
                Some("203.0.113.9, 10.0.0.2"),
                "203.0.113.9",
            ),
            (
                "proxy without header is the client",
                "10.0.0.1",
                None,
                "10.0.0.1",
            ),
            (
                "garbage hop stops at the last trusted",
                "10.0.0.1",
                Some("nonsense"),
                "10.0.0.1",
            ),
        ];
        for (name, peer, header, want) in cases {
            assert_eq!(client_addr(ip(peer), header, &proxies), ip(want), "{name}");
        }
    }

    #[test]
    fn the_allowlist_admits_the_venue_ranges_only() {
        let venue: Vec<String> = VENUE_SOURCE_RANGES.iter().map(|s| s.to_string()).collect();
        let list = parse_ranges(&venue).unwrap();
        assert!(allowed(ip("203.0.113.50"), &list));
        assert!(allowed(ip("192.0.2.1"), &list));
        assert!(!allowed(ip("8.8.8.8"), &list));
        assert!(allowed(ip("8.8.8.8"), &[]), "an empty list admits everyone");
        assert!(parse_ranges(&["300.1.1.1/8".into()]).is_err());
        assert_eq!(parse_ranges(&["::1".into()]).unwrap().len(), 1);
    }

    #[test]
    fn forgetting_idle_sources_costs_o1_per_request_and_changes_no_decision() {
        let rl = RateLimiter::new(10, 2).unwrap();
        let t0 = Instant::now();
        let busy = ip("192.0.2.1");
        assert!(rl.allow(busy, t0) && rl.allow(busy, t0));
        let n: u32 = 100_000;
        for i in 0..n {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            // Each new source is allowed; the busy one stays empty while time does not move.
            assert!(rl.allow(a, t0));
            if i % 1000 == 0 {
                assert!(!rl.allow(busy, t0), "an emptied bucket is never forgotten");
            }
        }
        let (tracked, swept) = rl.load();
        // Every source used a token: none is idle, nothing can be forgotten yet ...
        assert_eq!(tracked, n as usize + 1);
        // ... and sweeps looked at fewer buckets than twice the requests (not 90,000 x 10,000).
        assert!(
            swept < 2 * u64::from(n),
            "swept {swept} buckets for {n} requests"
        );
        // Later everyone has refilled: the next sweep forgets them all, the busy one included,
        // whose next request is allowed as a full bucket would allow it.
        let later = t0 + Duration::from_secs(1);
        for i in 0..(tracked as u32) {
            rl.allow(
                IpAddr::from(std::net::Ipv4Addr::from(0x0B00_0000 + i)),
                later,
            );
        }
        assert!(rl.load().0 < tracked + 10, "idle sources were forgotten");
        assert!(rl.allow(busy, later) && rl.allow(busy, later) && !rl.allow(busy, later));
    }

    #[test]
    fn a_throttled_log_line_says_how_many_it_held_back() {
        let t = LogThrottle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.allow(t0), Some(0));
        for _ in 0..999 {
            assert_eq!(t.allow(t0 + Duration::from_secs(1)), None);
        }
        assert_eq!(t.allow(t0 + Duration::from_secs(10)), Some(999));
        assert_eq!(t.allow(t0 + Duration::from_secs(11)), None);
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_refills() {
        let rl = RateLimiter::new(10, 3).unwrap();
        let t0 = Instant::now();
        let a = ip("1.1.1.1");
        assert!((0..3).all(|_| rl.allow(a, t0)));
        assert!(!rl.allow(a, t0), "burst exhausted");
        assert!(rl.allow(ip("2.2.2.2"), t0), "other sources are unaffected");
        assert!(
            rl.allow(a, t0 + Duration::from_millis(100)),
            "one token refilled"
        );
        assert!(RateLimiter::new(0, 5).is_none());
    }
}
