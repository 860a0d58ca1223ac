//! The load generator: raw HTTP/1.1 over keep-alive connections, closed-loop (saturation) and
//! open-loop (fixed rate, latency from the scheduled send time so stalls are not hidden), plus a
//! null server to measure the generator's own ceiling.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Default)]
pub struct Outcome {
    pub ok: usize,
    pub failed: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    /// When the run started; request `i` of a fixed-rate run was scheduled at
    /// `started + i / rate`.
    pub started: Option<Instant>,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        self.latencies.sort_unstable();
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1000.0
    }

    fn absorb(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.latencies.extend(other.latencies);
    }
}

/// What one request got back.
enum Answer {
    Ok { close: bool },
    Failed,
}

async fn round_trip(stream: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> Answer {
    if stream.write_all(request).await.is_err() {
        return Answer::Failed;
    }
    buf.clear();
    let mut chunk = [0u8; 2048];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Answer::Failed,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            if !head.starts_with("http/1.1 200") && !head.starts_with("http/1.0 200") {
                return Answer::Failed;
            }
            let close = head
                .lines()
                .any(|l| l.starts_with("connection:") && l.contains("close"));
            return Answer::Ok { close };
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    loop {
        if let Ok(s) = TcpStream::connect(addr).await {
            let _ = s.set_nodelay(true);
            return s;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One request on `stream`, reconnecting when the server closes (counted only if it failed).
async fn send(
    addr: SocketAddr,
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
    out: &mut Outcome,
    started: Instant,
) {
    match round_trip(stream, request, buf).await {
        Answer::Ok { close } => {
            out.ok += 1;
            out.latencies.push(started.elapsed());
            if close {
                *stream = connect(addr).await;
            }
        }
        Answer::Failed => {
            out.failed += 1;
            *stream = connect(addr).await;
        }
    }
}

/// The generator's own runtime, apart from anything it measures.
pub struct Load {
    rt: tokio::runtime::Runtime,
}

impl Load {
    pub fn new(threads: usize) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("load")
            .enable_all()
            .build()
            .unwrap();
        Self { rt }
    }

    /// Closed loop: every connection sends as fast as answers come back.
    pub fn saturate(
        &self,
        addr: SocketAddr,
        reqs: &[Vec<u8>],
        connections: usize,
        seconds: u64,
    ) -> Outcome {
        let reqs: Arc<Vec<Vec<u8>>> = Arc::new(reqs.to_vec());
        self.rt.block_on(async move {
            let next = Arc::new(AtomicUsize::new(0));
            let start = Instant::now();
            let deadline = start + Duration::from_secs(seconds);
            let tasks: Vec<_> = (0..connections)
                .map(|_| {
                    let (reqs, next) = (reqs.clone(), next.clone());
                    tokio::spawn(async move {
                        let mut stream = connect(addr).await;
                        let (mut out, mut buf) = (Outcome::default(), Vec::with_capacity(512));
                        while Instant::now() < deadline {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= reqs.len() {
                                break;
                            }
                            send(
                                addr,
                                &mut stream,
                                &reqs[i],
                                &mut buf,
                                &mut out,
                                Instant::now(),
                            )
                            .await;
                        }
                        out
                    })
                })
                .collect();
            let mut total = Outcome::default();
            for t in tasks {
                total.absorb(t.await.unwrap());
            }
            total.elapsed = start.elapsed();
            total
        })
    }

    /// Open loop at `rate` requests per second.
    pub fn fixed_rate(
        &self,
        addr: SocketAddr,
        reqs: &[Vec<u8>],
        rate: u64,
        seconds: u64,
    ) -> Outcome {
        let total = ((rate * seconds) as usize).min(reqs.len());
        let reqs: Arc<Vec<Vec<u8>>> = Arc::new(reqs[..total].to_vec());
        self.rt.block_on(async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<(usize, Instant)>(total.max(1));
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            let start = Instant::now();
            let workers: Vec<_> = (0..32)
                .map(|_| {
                    let (reqs, rx) = (reqs.clone(), rx.clone());
                    tokio::spawn(async move {
                        let mut stream = connect(addr).await;
                        let (mut out, mut buf) = (Outcome::default(), Vec::with_capacity(512));
                        loop {
                            let next = rx.lock().await.recv().await;
                            let Some((i, scheduled)) = next else { break };
                            send(addr, &mut stream, &reqs[i], &mut buf, &mut out, scheduled).await;
                        }
                        out
                    })
                })
                .collect();
            let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
            for i in 0..total {
                let at = start + interval * i as u32;
                tokio::time::sleep_until(at.into()).await;
                tx.send((i, at)).await.unwrap();
            }
            drop(tx);
            let mut sum = Outcome::default();
            for w in workers {
                sum.absorb(w.await.unwrap());
            }
            sum.elapsed = start.elapsed();
            sum.started = Some(start);
            sum
        })
    }
}

/// A blocking GET; the status code, or `None` when nothing answered.
pub fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 16];
    let n = s.read(&mut head).ok()?;
    std::str::from_utf8(&head[..n])
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// An HTTP server that answers every request with 200 and a tiny body, on its own runtime.
/// `body` as a raw HTTP/1.1 webhook request to `path`, signed with `secret`.
pub fn signed_request(secret: &str, path: &str, body: &str) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nX-Webhook-Signature: {sig}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The body of a reference receiver's answer, and the answer with `status`.
pub fn answer(status: u16) -> hyper::Response<http_body_util::Full<axum::body::Bytes>> {
    let mut r = hyper::Response::new(http_body_util::Full::new(axum::body::Bytes::from_static(
        b"{\"status\":\"accepted\"}",
    )));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r
}

/// A loopback HTTP/1.1 server on its own two-thread runtime, every connection served by a clone
/// of `service`; the reference receivers the generator is measured against.
pub struct Served {
    pub addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

impl Served {
    pub fn start<S>(name: &str, service: S) -> Self
    where
        S: hyper::service::Service<
                hyper::Request<hyper::body::Incoming>,
                Response = hyper::Response<http_body_util::Full<axum::body::Bytes>>,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, _rt: rt }
    }
}

/// A server that reads each request and answers 200: the generator's own ceiling.
pub fn null_server() -> Served {
    Served::start(
        "null",
        hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
            use http_body_util::BodyExt;
            let _ = req.into_body().collect().await;
            Ok::<_, std::convert::Infallible>(answer(200))
        }),
    )
}
