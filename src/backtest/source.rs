//! Where a backtest's recorded events come from, and `sigex events export`.
//!
//! Three sources, told apart by what the path is: a sigex database (its inbox, opened read-only),
//! JSON Lines as `sigex events export` writes them (one recorded event a line, or a bare webhook
//! body a line), or a directory of webhook JSON files (one body a file). Every event is parsed by
//! the same `ingress::events::parse` the dispatcher uses, in a producer thread, so reading and
//! parsing overlap the replay on a second core.
//!
//! Guarantees: events come in arrival order (database and JSON Lines: as recorded; a directory:
//! by the envelope's `timestamp`, then by file name), each at the instant it was received (an
//! instant earlier than the one before it is taken as the one before it: the dispatcher handles
//! events in arrival order); a webhook recorded twice (same dedupe key, as the inbox computes it)
//! within the inbox's default retention (30 days) is replayed once; only the events that can change a decision are replayed (signals, alerts,
//! maintenance notices, deposits and withdrawals), the rest is counted; a line or file that
//! cannot be read is an error naming it and its line, while a signed body that is unusable is
//! replayed as the dead letter it was.

use super::BacktestError;
use crate::model::events::{self, Event, Freshness, ParseError};
use crate::store::{RecordedEvent, RecordedFilter, Recording};
use crate::venue::wire;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// The event types a replay applies; everything else a recording holds is the recorded account's
/// own state, which the backtest's simulated account replaces.
pub const REPLAYED: [&str; 5] = [
    "signal.generated",
    "system.alert",
    "system.maintenance",
    "account.deposit_received",
    "account.withdrawal_processed",
];

/// Where one event was read from, for error messages and the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of a JSON Lines file.
    Line { file: Arc<str>, line: usize },
    /// A row of a database's inbox.
    Seq { database: Arc<str>, seq: i64 },
    /// A webhook file of a directory.
    File(Arc<str>),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Line { file, line } => write!(f, "{file}:{line}"),
            Self::Seq { database, seq } => write!(f, "{database} (inbox seq {seq})"),
            Self::File(file) => f.write_str(file),
        }
    }
}

/// One recorded event, ready to replay.
#[derive(Debug)]
pub struct Replayed {
    /// When it was received: the replay's clock for it.
    pub at: DateTime<Utc>,
    /// The inbox's dedupe key: client order ids derive from it, as in the live bot.
    pub key: String,
    pub origin: Origin,
    /// As the dispatcher would see it; an `Err` is a dead letter.
    pub event: Result<Event, ParseError>,
}

/// Recorded events that are not replayed, by type.
pub type Skipped = BTreeMap<String, u64>;

/// A signal source as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalSource {
    /// `sqlite://path` or a file starting with SQLite's header.
    Database { url: String, shown: String },
    /// JSON Lines.
    Lines(PathBuf),
    /// A directory of webhook JSON files.
    Directory(PathBuf),
}

impl SignalSource {
    /// Tells the source apart by what the path is.
    pub fn detect(arg: &str) -> Result<Self, BacktestError> {
        if let Some(path) = arg.strip_prefix("sqlite://") {
            return Ok(Self::Database {
                url: arg.to_owned(),
                shown: path.to_owned(),
            });
        }
        let path = PathBuf::from(arg);
        let meta = std::fs::metadata(&path).map_err(|e| BacktestError::io(&path, e))?;
        if meta.is_dir() {
            return Ok(Self::Directory(path));
        }
        let mut head = [0u8; 16];
        let n = std::fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            .map_err(|e| BacktestError::io(&path, e))?;
        if head[..n] == *b"SQLite format 3\0" {
            return Ok(Self::Database {
                url: format!("sqlite://{}", path.display()),
                shown: path.display().to_string(),
            });
        }
        Ok(Self::Lines(path))
    }

    /// Starts reading in a producer thread. `until` bounds the events read (inclusive); a
    /// database is read through `runtime`.
    pub fn stream(
        &self,
        until: Option<DateTime<Utc>>,
        freshness: Freshness,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Stream, BacktestError> {
        let (tx, rx) = sync_channel(8);
        let producer = Producer {
            tx,
            until,
            freshness,
        };
        match self.clone() {
            Self::Lines(path) => {
                let file = std::fs::File::open(&path).map_err(|e| BacktestError::io(&path, e))?;
                std::thread::spawn(move || producer.finish(read_lines(&path, file, &producer)));
            }
            Self::Directory(path) => {
                let files = list_dir(&path)?;
                std::thread::spawn(move || producer.finish(read_dir(files, &producer)));
            }
            Self::Database { url, shown } => {
                let runtime = runtime.clone();
                let recording =
                    runtime
                        .block_on(Recording::open(&url))
                        .map_err(|e| BacktestError::Input {
                            at: shown.clone(),
                            message: format!("cannot open the database: {e}"),
                        })?;
                std::thread::spawn(move || {
                    let result = read_database(&recording, &shown, &runtime, &producer);
                    runtime.block_on(recording.close());
                    producer.finish(result)
                });
            }
        }
        Ok(Stream {
            rx,
            buffer: VecDeque::new(),
            skipped: None,
        })
    }
}

enum Message {
    Batch(Vec<Replayed>),
    Done(Skipped),
    Failed(BacktestError),
}

struct Producer {
    tx: SyncSender<Message>,
    until: Option<DateTime<Utc>>,
    /// The dispatcher's freshness rule: a stale event is a dead letter.
    freshness: Freshness,
}

/// What a reader loop says: go on, or the consumer is gone / the time bound is passed.
#[derive(PartialEq, Eq)]
enum Flow {
    More,
    Stop,
}

impl Producer {
    fn send(&self, batch: Vec<Replayed>) -> Flow {
        if batch.is_empty() {
            return Flow::More;
        }
        match self.tx.send(Message::Batch(batch)) {
            Ok(()) => Flow::More,
            Err(_) => Flow::Stop,
        }
    }

    fn finish(&self, result: Result<Skipped, BacktestError>) {
        let _ = self.tx.send(match result {
            Ok(skipped) => Message::Done(skipped),
            Err(e) => Message::Failed(e),
        });
    }

    fn past(&self, at: DateTime<Utc>) -> bool {
        self.until.is_some_and(|u| at > u)
    }
}

/// The replayed events in order; `skipped` is known once the stream has ended.
pub struct Stream {
    rx: Receiver<Message>,
    buffer: VecDeque<Replayed>,
    skipped: Option<Skipped>,
}

impl Stream {
    /// The events not replayed, by type (empty until the stream has ended).
    pub fn skipped(&self) -> Skipped {
        self.skipped.clone().unwrap_or_default()
    }
}

impl Iterator for Stream {
    type Item = Result<Replayed, BacktestError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.buffer.pop_front() {
                return Some(Ok(r));
            }
            if self.skipped.is_some() {
                return None;
            }
            match self.rx.recv() {
                Ok(Message::Batch(b)) => self.buffer.extend(b),
                Ok(Message::Done(skipped)) => self.skipped = Some(skipped),
                Ok(Message::Failed(e)) => {
                    self.skipped = Some(Skipped::new());
                    return Some(Err(e));
                }
                Err(_) => {
                    self.skipped = Some(Skipped::new());
                    return Some(Err(BacktestError::Other(
                        "the event reader stopped without finishing".into(),
                    )));
                }
            }
        }
    }
}

const BATCH: usize = 1024;

/// The arrival-order clock: never earlier than the event before.
#[derive(Default)]
struct Arrival(Option<DateTime<Utc>>);

impl Arrival {
    fn at(&mut self, t: DateTime<Utc>) -> DateTime<Utc> {
        let t = self.0.map_or(t, |last| last.max(t));
        self.0 = Some(t);
        t
    }
}

/// Dedupe keys already replayed, as 128-bit digests, for as long as the inbox keeps them (its
/// default `[inbox] retention_days`): a webhook seen again within that time is a duplicate.
#[derive(Default)]
struct Seen {
    keys: HashSet<u128>,
    order: VecDeque<(DateTime<Utc>, u128)>,
}

const DEDUPE_HORIZON_DAYS: i64 = crate::config::DEFAULT_RETENTION_DAYS;

impl Seen {
    fn first(&mut self, key: &str, at: DateTime<Utc>) -> bool {
        let horizon = at - chrono::Duration::days(DEDUPE_HORIZON_DAYS);
        while let Some((t, k)) = self.order.front() {
            if *t >= horizon {
                break;
            }
            self.keys.remove(k);
            self.order.pop_front();
        }
        let digest = Sha256::digest(key.as_bytes());
        let mut short = [0u8; 16];
        short.copy_from_slice(&digest[..16]);
        let short = u128::from_be_bytes(short);
        let new = self.keys.insert(short);
        if new {
            self.order.push_back((at, short));
        }
        new
    }
}

/// The dedupe key the inbox gives a webhook (from its signed bytes only).
fn key_of(body: &[u8]) -> String {
    crate::inbox::dedupe_key(body)
}

/// The envelope's event name and timestamp, for a body read without its recorded metadata.
fn envelope_of(body: &[u8]) -> Option<(String, Option<DateTime<Utc>>)> {
    #[derive(serde::Deserialize)]
    struct Head {
        event: String,
        #[serde(default)]
        timestamp: Option<String>,
    }
    let head: Head = serde_json::from_slice(body).ok()?;
    let at = head.timestamp.as_deref().and_then(wire::parse_timestamp);
    Some((head.event, at))
}

/// One line of `sigex events export`.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<i64>,
    #[serde(default)]
    received_at: Option<String>,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    dedupe_key: Option<String>,
    /// The signed body, exactly as received (when it is UTF-8, as webhooks are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    /// A body that is not UTF-8, in hex, so its bytes survive the export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_hex: Option<String>,
}

fn read_lines(path: &Path, file: std::fs::File, out: &Producer) -> Result<Skipped, BacktestError> {
    let shown: Arc<str> = path.display().to_string().into();
    let mut skipped = Skipped::new();
    let mut arrival = Arrival::default();
    let mut seen = Seen::default();
    let mut batch = Vec::with_capacity(BATCH);
    let reader = std::io::BufReader::with_capacity(1 << 16, file);
    for (n, line) in reader.lines().enumerate() {
        let origin = Origin::Line {
            file: shown.clone(),
            line: n + 1,
        };
        let line = line.map_err(|e| BacktestError::Input {
            at: origin.to_string(),
            message: format!("cannot read the line: {e}"),
        })?;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let bad = |message: String| BacktestError::Input {
            at: origin.to_string(),
            message,
        };
        let parsed: ExportLine = serde_json::from_str(text).map_err(|e| {
            bad(format!(
                "not a JSON object ({e}); each line must be one event of `sigex events export` \
                 or one webhook body"
            ))
        })?;
        let body = match (parsed.body, parsed.body_hex) {
            (Some(b), _) => Some(b.into_bytes()),
            (None, Some(h)) => {
                Some(hex::decode(h.trim()).map_err(|_| bad("bodyHex is not hexadecimal".into()))?)
            }
            (None, None) => None,
        };
        let (body, event_type, at, key) = match body {
            Some(body) => {
                let received = parsed.received_at.ok_or_else(|| {
                    bad("receivedAt is missing: the line has a body but no time".into())
                })?;
                let at = wire::parse_timestamp(&received)
                    .ok_or_else(|| bad(format!("receivedAt {received:?} is not RFC 3339")))?;
                let event_type = match parsed.event_type {
                    Some(t) => t,
                    // As the inbox records a signed body it cannot read.
                    None => envelope_of(&body).map_or_else(|| "(unreadable)".to_owned(), |e| e.0),
                };
                let key = parsed.dedupe_key.unwrap_or_else(|| key_of(&body));
                (body, event_type, at, key)
            }
            None => {
                let body = text.as_bytes().to_vec();
                let (event_type, at) = envelope_of(&body).ok_or_else(|| {
                    bad("neither an exported event (no body) nor a webhook (no event)".into())
                })?;
                let at = at.ok_or_else(|| {
                    bad(
                        "a webhook line needs its envelope timestamp: it is the replay's clock"
                            .into(),
                    )
                })?;
                let key = key_of(&body);
                (body, event_type, at, key)
            }
        };
        if out.past(at) {
            break;
        }
        let at = arrival.at(at);
        if !REPLAYED.contains(&event_type.as_str()) {
            *skipped.entry(event_type).or_default() += 1;
            continue;
        }
        if !seen.first(&key, at) {
            *skipped.entry("duplicate".into()).or_default() += 1;
            continue;
        }
        batch.push(Replayed {
            at,
            key,
            origin,
            event: events::parse_fresh(&body, at, &out.freshness),
        });
        if batch.len() == BATCH && out.send(std::mem::take(&mut batch)) == Flow::Stop {
            return Ok(skipped);
        }
    }
    out.send(batch);
    Ok(skipped)
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, BacktestError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| BacktestError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(BacktestError::Input {
            at: dir.display().to_string(),
            message: "no webhook file (*.json) in this directory".into(),
        });
    }
    Ok(files)
}

fn read_dir(files: Vec<PathBuf>, out: &Producer) -> Result<Skipped, BacktestError> {
    let mut read = Vec::with_capacity(files.len());
    for path in files {
        let body = std::fs::read(&path).map_err(|e| BacktestError::io(&path, e))?;
        let shown = path.display().to_string();
        let (event_type, at) = envelope_of(&body).ok_or_else(|| BacktestError::Input {
            at: format!("{shown}:1"),
            message: "not a webhook: a JSON object with \"event\" is expected".into(),
        })?;
        let at = at.ok_or_else(|| BacktestError::Input {
            at: format!("{shown}:1"),
            message: "the webhook has no RFC 3339 \"timestamp\": it is the replay's clock".into(),
        })?;
        read.push((at, shown, event_type, body));
    }
    // No arrival order is recorded for loose files: the venue's timestamps stand in for it.
    read.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut skipped = Skipped::new();
    let mut seen = Seen::default();
    let mut batch = Vec::new();
    for (at, shown, event_type, body) in read {
        if out.past(at) {
            break;
        }
        if !REPLAYED.contains(&event_type.as_str()) {
            *skipped.entry(event_type).or_default() += 1;
            continue;
        }
        let key = key_of(&body);
        if !seen.first(&key, at) {
            *skipped.entry("duplicate".into()).or_default() += 1;
            continue;
        }
        batch.push(Replayed {
            at,
            key,
            origin: Origin::File(shown.into()),
            event: events::parse_fresh(&body, at, &out.freshness),
        });
    }
    out.send(batch);
    Ok(skipped)
}

const PAGE: i64 = 4096;

fn read_database(
    recording: &Recording,
    shown: &str,
    runtime: &tokio::runtime::Handle,
    out: &Producer,
) -> Result<Skipped, BacktestError> {
    let database: Arc<str> = shown.into();
    let filter = RecordedFilter {
        to: out.until.map(crate::clock::ts),
        ..RecordedFilter::default()
    };
    let mut skipped = Skipped::new();
    let mut arrival = Arrival::default();
    let mut after = 0;
    loop {
        let page = runtime
            .block_on(recording.events(after, &filter, PAGE))
            .map_err(|e| BacktestError::Input {
                at: shown.to_owned(),
                message: format!("cannot read the inbox: {e}"),
            })?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let mut batch = Vec::with_capacity(page.len());
        for e in page {
            let origin = Origin::Seq {
                database: database.clone(),
                seq: e.seq,
            };
            let at = wire::parse_timestamp(&e.received_at).ok_or_else(|| BacktestError::Input {
                at: origin.to_string(),
                message: format!("received_at {:?} is not RFC 3339", e.received_at),
            })?;
            let at = arrival.at(at);
            if !REPLAYED.contains(&e.event_type.as_str()) {
                *skipped.entry(e.event_type).or_default() += 1;
                continue;
            }
            batch.push(Replayed {
                at,
                event: events::parse_fresh(&e.body, at, &out.freshness),
                key: e.dedupe_key,
                origin,
            });
        }
        if out.send(batch) == Flow::Stop {
            break;
        }
    }
    Ok(skipped)
}

/// `sigex events export`: the recorded events of `database` (a `sqlite://` URL) as JSON Lines,
/// in arrival order, each with its sequence number, arrival time, type, dedupe key and the signed
/// body byte for byte (as a JSON string). Returns how many lines were written.
pub async fn export(
    database: &str,
    filter: &RecordedFilter,
    out: &mut impl Write,
) -> Result<u64, BacktestError> {
    let failed = |e: crate::store::StoreError| BacktestError::Input {
        at: database.to_owned(),
        message: format!("cannot read the inbox: {e}"),
    };
    let recording = Recording::open(database).await.map_err(failed)?;
    let mut after = 0;
    let mut written = 0;
    loop {
        let page = recording
            .events(after, filter, PAGE)
            .await
            .map_err(failed)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for RecordedEvent {
            seq,
            dedupe_key,
            event_type,
            received_at,
            body,
        } in page
        {
            let (text, hex) = match String::from_utf8(body) {
                Ok(text) => (Some(text), None),
                Err(e) => (None, Some(hex::encode(e.into_bytes()))),
            };
            let line = ExportLine {
                seq: Some(seq),
                received_at: Some(received_at),
                event_type: Some(event_type),
                dedupe_key: Some(dedupe_key),
                body: text,
                body_hex: hex,
            };
            serde_json::to_writer(&mut *out, &line)
                .map_err(|e| BacktestError::Other(format!("writing the export: {e}")))?;
            out.write_all(b"\n")
                .map_err(|e| BacktestError::Other(format!("writing the export: {e}")))?;
            written += 1;
        }
    }
    recording.close().await;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(path: &Path) -> (Vec<Replayed>, Skipped) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let source = SignalSource::detect(&path.display().to_string()).unwrap();
        let mut s = source
            .stream(None, Freshness::default(), runtime.handle())
            .unwrap();
        let events: Vec<Replayed> = (&mut s).map(|r| r.unwrap()).collect();
        (events, s.skipped())
    }

    fn body(at: &str, confidence: u32) -> String {
        serde_json::json!({"event": "signal.generated", "timestamp": at, "data": {
            "symbol": "BTC/USD", "recommendation": "buy", "confidence": confidence}})
        .to_string()
    }

    #[test]
    fn json_lines_hold_exported_events_or_bare_webhooks_in_arrival_order_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.jsonl");
        let exported = |at: &str, b: &str, key: &str| {
            serde_json::json!({"seq": 1, "receivedAt": at, "eventType": "signal.generated",
                "dedupeKey": key, "body": b})
            .to_string()
        };
        let first = body("2026-01-01T00:00:00Z", 80);
        let lines = [
            exported("2026-01-01T00:00:01Z", &first, "k1"),
            String::new(),
            // Received earlier than the line before: the arrival order stands.
            exported("2026-01-01T00:00:00.500Z", &body("2026-01-01T00:00:00Z", 81), "k2"),
            exported("2026-01-01T00:00:02Z", &first, "k1"),
            body("2026-01-01T00:00:03Z", 82),
            body("2026-01-01T00:00:03Z", 82),
            serde_json::json!({"receivedAt": "2026-01-01T00:00:04Z", "eventType": "order.updated",
                "body": "{}"})
            .to_string(),
            serde_json::json!({"receivedAt": "2026-01-01T00:00:05Z", "bodyHex": hex::encode(b"\xff{")})
            .to_string(),
        ];
        std::fs::write(&file, lines.join("\n")).unwrap();
        let (events, skipped) = stream(&file);
        let seen: Vec<(String, String, bool)> = events
            .iter()
            .map(|e| {
                (
                    crate::clock::ts(e.at),
                    e.origin.to_string(),
                    e.event.is_ok(),
                )
            })
            .collect();
        let shown = file.display().to_string();
        assert_eq!(
            seen,
            vec![
                (
                    "2026-01-01T00:00:01.000Z".into(),
                    format!("{shown}:1"),
                    true
                ),
                (
                    "2026-01-01T00:00:01.000Z".into(),
                    format!("{shown}:3"),
                    true
                ),
                (
                    "2026-01-01T00:00:03.000Z".into(),
                    format!("{shown}:5"),
                    true
                ),
            ]
        );
        assert_eq!(
            events[2].key,
            key_of(body("2026-01-01T00:00:03Z", 82).as_bytes())
        );
        assert_eq!(skipped.get("duplicate"), Some(&2));
        assert_eq!(skipped.get("order.updated"), Some(&1));
        // A body that is not UTF-8 has no event name: counted, not replayed.
        assert_eq!(skipped.get("(unreadable)"), Some(&1));
    }

    #[test]
    fn a_directory_of_webhooks_is_replayed_by_timestamp_then_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.json"), body("2026-01-01T00:00:01Z", 80)).unwrap();
        std::fs::write(dir.path().join("a.json"), body("2026-01-01T00:00:02Z", 81)).unwrap();
        std::fs::write(dir.path().join("c.json"), body("2026-01-01T00:00:01Z", 82)).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a webhook").unwrap();
        let (events, _) = stream(dir.path());
        let names: Vec<String> = events
            .iter()
            .map(|e| e.origin.to_string().rsplit('/').next().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["b.json", "c.json", "a.json"]);
    }
}
