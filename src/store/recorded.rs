//! Reading a recorded inbox back for replay (`sigex backtest`, `sigex events export`): the raw
//! signed events in arrival order, page by page. The database is opened read-only and never
//! migrated, so a replay cannot change it, and it may be the file of a bot that is running.

use super::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// One stored webhook, as it was received.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    pub seq: i64,
    pub dedupe_key: String,
    pub event_type: String,
    /// RFC 3339 with milliseconds, UTC (as stored).
    pub received_at: String,
    /// The signed body, byte for byte.
    pub body: Vec<u8>,
}

/// Which recorded events to read; every bound is optional.
#[derive(Debug, Clone, Default)]
pub struct RecordedFilter {
    /// Only these event types (`signal.generated`, ...); empty reads every type.
    pub types: Vec<String>,
    /// Received at or after (RFC 3339 text as stored, so it compares as text).
    pub from: Option<String>,
    /// Received at or before.
    pub to: Option<String>,
}

/// A sigex database opened for reading its inbox.
pub struct Recording {
    pool: SqlitePool,
}

impl Recording {
    /// Opens the database at `url` (`sqlite://path`) read-only; it must exist.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Up to `limit` events with `seq` above `after`, in `seq` (arrival) order.
    pub async fn events(
        &self,
        after: i64,
        filter: &RecordedFilter,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut sql = String::from(
            "SELECT seq, dedupe_key, event_type, received_at, body FROM inbox WHERE seq > ?",
        );
        if !filter.types.is_empty() {
            sql.push_str(" AND event_type IN (");
            sql.push_str(&vec!["?"; filter.types.len()].join(","));
            sql.push(')');
        }
        if filter.from.is_some() {
            sql.push_str(" AND received_at >= ?");
        }
        if filter.to.is_some() {
            sql.push_str(" AND received_at <= ?");
        }
        sql.push_str(" ORDER BY seq LIMIT ?");
        let mut query = sqlx::query(&sql).bind(after);
        for t in &filter.types {
            query = query.bind(t);
        }
        for bound in [&filter.from, &filter.to].into_iter().flatten() {
            query = query.bind(bound);
        }
        let rows = query.bind(limit).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|r| RecordedEvent {
                seq: r.get("seq"),
                dedupe_key: r.get("dedupe_key"),
                event_type: r.get("event_type"),
                received_at: r.get("received_at"),
                body: r.get("body"),
            })
            .collect())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
