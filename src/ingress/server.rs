//! The webhook listener's connection loop: plain HTTP or TLS (rustls), a header read timeout
//! (slow-header clients are cut off), the peer address handed to the router, and a graceful stop
//! that lets requests in flight finish.
//!
//! Connections are capped in total and per source address ([`ConnectionLimits`]): the excess is
//! closed right at accept, before any byte is read or any TLS handshake done, so a flood of idle
//! sockets costs one accept each and cannot use up the process's file descriptors. When accept
//! itself fails (out of descriptors, or the like) the loop backs off exponentially, and says so
//! in one log line per burst, not one per failure.

use super::guard::LogThrottle;
use super::REFUSAL_LOG_EVERY;
use crate::telemetry::metrics::Metrics;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long a stopping server waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);
/// Backoff after a failed accept: doubles from the first to the last.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// How many webhook connections may be open at once.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub total: usize,
    /// Per socket peer address.
    pub per_source: usize,
    /// Peers exempt from the per-source cap (trusted proxies carry many clients' connections).
    pub exempt: Vec<IpNet>,
}

/// The open connections, in total and per source; a [`Slot`] is one of them.
struct Open {
    limits: ConnectionLimits,
    by_source: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
}

/// One open connection's place in [`Open`]; given back when dropped.
struct Slot {
    open: Arc<Open>,
    source: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.total.fetch_sub(1, Ordering::Relaxed);
        let mut by_source = self
            .open
            .by_source
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                by_source.remove(&self.source);
            }
        }
    }
}

impl Open {
    /// A slot for a connection from `peer`, or the metrics reason it is refused.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, &'static str> {
        let proxy = self.limits.exempt.iter().any(|n| n.contains(&peer));
        if self.total.load(Ordering::Relaxed) >= self.limits.total {
            return Err("too_many_connections");
        }
        let mut by_source = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        let mine = by_source.entry(peer).or_insert(0);
        if !proxy && *mine >= self.limits.per_source {
            return Err("too_many_connections_from_source");
        }
        *mine += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            open: self.clone(),
            source: peer,
        })
    }
}

/// Loads a PEM certificate chain and private key into a rustls server configuration.
pub fn load_tls(cert_file: &Path, key_file: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let certs = CertificateDer::pem_slice_iter(&read(cert_file)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain ({e})", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key_file)?)
        .map_err(|e| format!("{}: not a PEM private key ({e})", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not form a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// File descriptors kept back from webhook connections: the database (a file, its WAL and
/// shared memory per connection), the listeners, outbound HTTP to the venue and the notifiers.
pub const FD_RESERVE: usize = 256;

/// Raises this process's soft limit on open files to its hard limit (the soft limit is often
/// 1024 while the hard one, or systemd's `LimitNOFILE`, allows far more) and returns the soft
/// limit now in force; `None` if it cannot be read.
pub fn raise_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Some(limit.rlim_cur)
}

/// The connection cap that fits in `fd_limit` descriptors next to [`FD_RESERVE`].
pub fn fitting_cap(configured: usize, fd_limit: Option<u64>) -> usize {
    match fd_limit.and_then(|n| usize::try_from(n).ok()) {
        Some(n) if n < configured.saturating_add(FD_RESERVE) => n.saturating_sub(FD_RESERVE).max(1),
        _ => configured,
    }
}

/// Where the listener reports what it refused.
pub struct Edge {
    pub limits: ConnectionLimits,
    pub metrics: Metrics,
}

pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    header_timeout: Duration,
    edge: Edge,
    mut shutdown: crate::shutdown::Shutdown,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let open = Arc::new(Open {
        limits: edge.limits,
        by_source: Mutex::new(HashMap::new()),
        total: AtomicUsize::new(0),
    });
    let shed_log = LogThrottle::new(REFUSAL_LOG_EVERY);
    let mut accept_failures: u32 = 0;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    if accept_failures > 0 {
                        tracing::warn!(failures = accept_failures, "accepting connections again");
                        accept_failures = 0;
                    }
                    a
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning, and
                    // log the first failure of a burst only.
                    if accept_failures == 0 {
                        tracing::warn!(error = %e, "accept failed; backing off (one line until it recovers)");
                    }
                    let wait = ACCEPT_BACKOFF
                        .0
                        .saturating_mul(1 << accept_failures.min(16))
                        .min(ACCEPT_BACKOFF.1);
                    accept_failures = accept_failures.saturating_add(1);
                    if shutdown.sleep(wait).await {
                        break;
                    }
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        let slot = match open.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(reason) => {
                // Closed before reading a byte: the cheapest refusal there is.
                drop(stream);
                edge.metrics.webhook_rejected(reason);
                if let Some(more) = shed_log.allow(std::time::Instant::now()) {
                    tracing::warn!(%peer, reason, refused_since_last_line = more, "webhook connection closed at accept");
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        ));
        match &acceptor {
            None => {
                let conn = http.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _slot = slot;
                    let _ = conn.await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let http = http.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _slot = slot;
                    let tls =
                        match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let conn = http.serve_connection(TokioIo::new(tls), service);
                    let _ = watcher.watch(conn).await;
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("webhook connections still open after the drain period; closing");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(total: usize, per_source: usize, exempt: &[&str]) -> Arc<Open> {
        Arc::new(Open {
            limits: ConnectionLimits {
                total,
                per_source,
                exempt: exempt.iter().map(|s| s.parse().unwrap()).collect(),
            },
            by_source: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connections_are_capped_per_source_and_in_total_and_slots_come_back() {
        let open = open(3, 2, &["10.0.0.1/32"]);
        let a1 = open.admit(ip("1.1.1.1")).unwrap();
        let _a2 = open.admit(ip("1.1.1.1")).unwrap();
        assert_eq!(
            open.admit(ip("1.1.1.1")).err(),
            Some("too_many_connections_from_source")
        );
        let _b = open.admit(ip("2.2.2.2")).unwrap();
        assert_eq!(
            open.admit(ip("3.3.3.3")).err(),
            Some("too_many_connections")
        );
        drop(a1);
        assert!(
            open.admit(ip("1.1.1.1")).is_ok(),
            "a closed connection frees its slot"
        );
        assert!(open.by_source.lock().unwrap().len() <= 2);
    }

    #[test]
    fn the_cap_leaves_room_for_the_database_and_the_venue_under_a_low_fd_limit() {
        assert_eq!(fitting_cap(1024, Some(65536)), 1024);
        assert_eq!(fitting_cap(1024, None), 1024);
        assert_eq!(fitting_cap(1024, Some(1024)), 1024 - FD_RESERVE);
        assert_eq!(fitting_cap(1024, Some(100)), 1);
    }

    #[test]
    fn a_trusted_proxy_is_held_to_the_total_only() {
        let open = open(3, 1, &["10.0.0.1/32"]);
        let _p1 = open.admit(ip("10.0.0.1")).unwrap();
        let _p2 = open.admit(ip("10.0.0.1")).unwrap();
        let _v = open.admit(ip("203.0.113.5")).unwrap();
        assert_eq!(
            open.admit(ip("10.0.0.1")).err(),
            Some("too_many_connections")
        );
    }
}
