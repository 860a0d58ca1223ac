//! Persistence: every SQL statement of the bot, and the migrations. No business rules.
//!
//! SQLite (WAL, `synchronous = FULL`: a commit is on disk before anyone is told it happened) with
//! one writer connection, so write transactions queue instead of failing with "database is locked",
//! and a small reader pool for the admin API. Decimals are stored as exact text. Migrations live in
//! `migrations/sqlite/`; a PostgreSQL dialect gets its own folder beside it.
//!
//! The writer connection is never trusted after an error: `writer` explains how SQLite and sqlx
//! can disagree about an open transaction after a full disk (every later "commit" then commits
//! nothing), and how a commit is confirmed, a failed connection replaced and the store marked not
//! [`Writable`] until a write round trip ([`Store::round_trip`]) succeeds again.

use crate::clock::ts;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

mod account;
mod cancel;
mod decisions;
mod fills;
mod inbox;
mod orders;
mod paper;
mod pnl;
mod recorded;
mod risk;
mod writer;
pub use account::{BalanceReport, BalanceView, PositionView};
pub use cancel::{CancelState, CancelTask, CancelView};
pub use decisions::{Decision, DecisionView};
pub use fills::{CashView, ClosedPositionRow, RecordedFills};
pub use inbox::{EventStatus, EventSummary, EventView, InboxEvent, NewEvent, TransactionView};
pub use orders::OrderRow;
pub use pnl::{FillMark, PnlSample, PnlTotals};
pub use recorded::{RecordedEvent, RecordedFilter, Recording};
pub use risk::{FilledEntryRow, SendView, SymbolBook, WorkingEntry};
pub use writer::{Failure, Tx, Writable};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt value in column {column}: {value:?}")]
    Corrupt { column: &'static str, value: String },
    /// A commit SQLite did not confirm (see `writer`): nothing of it may be acknowledged.
    #[error("commit not confirmed: {0}")]
    Unconfirmed(String),
    /// A write round trip whose row a reader does not see.
    #[error("a committed write is not visible to readers")]
    NotVisible,
    /// A venue number the bot cannot compute with: the event carrying it is a dead letter.
    #[error(transparent)]
    Overflow(#[from] crate::model::Overflow),
}

impl StoreError {
    /// The database cannot take writes right now (disk full, I/O error, locked past the timeout,
    /// a connection gone, a commit not confirmed): nothing is wrong with the data being written,
    /// so it must be retried once the store recovers, never dead-lettered or given up on.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Db(sqlx::Error::Database(e)) => {
                let code = e
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .map(|c| c & 0xff);
                // SQLITE_BUSY, LOCKED, NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL.
                matches!(code, Some(5 | 6 | 7 | 8 | 10 | 11 | 13 | 14 | 15))
            }
            Self::Db(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_),
            ) => true,
            Self::Unconfirmed(_) | Self::NotVisible => true,
            _ => false,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    writer: SqlitePool,
    reader: SqlitePool,
    writable: Writable,
}

impl Store {
    /// Opens (creating if missing) and migrates the database at `url` (`sqlite://path`).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            // Decisions outlive the inbox rows they came from (retention prunes those), so the
            // one reference between them is documentation, not a constraint.
            .foreign_keys(false);
        let writable = Writable::default();
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .after_release(writer::after_release(writable.clone()))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            writer,
            reader,
            writable,
        })
    }

    /// A write transaction on the writer connection; its commit is confirmed or an error.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Tx::begin(&self.writer, &self.writable).await
    }

    /// Whether the store can commit (see `writer`).
    pub fn writable(&self) -> &Writable {
        &self.writable
    }

    /// Proves that a write reaches the database: writes a fresh token through the writer
    /// connection, with `headroom` bytes of padding, commits, and reads the token back through a
    /// reader. Success marks the store writable again; failure marks it failing. The padding lets
    /// a recovering store prove real room: on a nearly full disk a one-row write can fit where a
    /// batch of webhooks does not.
    pub async fn round_trip(&self, now: DateTime<Utc>, headroom: u32) -> Result<(), StoreError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let result = async {
            let mut tx = self.begin().await?;
            sqlx::query(
                "INSERT INTO store_probe (id, token, written_at, padding)
                 VALUES (1, ?, ?, zeroblob(?))
                 ON CONFLICT (id) DO UPDATE SET token = excluded.token,
                     written_at = excluded.written_at, padding = excluded.padding",
            )
            .bind(&token)
            .bind(ts(now))
            .bind(headroom)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            let seen: Option<String> =
                sqlx::query_scalar("SELECT token FROM store_probe WHERE id = 1")
                    .fetch_optional(&self.reader)
                    .await?;
            if seen.as_deref() != Some(token.as_str()) {
                return Err(StoreError::NotVisible);
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                self.writable.round_trip_ok(now);
                Ok(())
            }
            Err(e) => {
                // Whatever the error, a write that did not come back means the store is failing.
                self.writable.fail(&e.to_string());
                Err(e)
            }
        }
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

const ORDER_COLUMNS: &str = "client_order_id, venue_order_id, strategy, symbol, side, order_type,
    quantity, price, time_in_force, status, venue_status, filled_quantity, average_price,
    reject_code, reject_message, submit_attempts, last_error, created_at, updated_at, role,
    parent_client_order_id, stop_price, fees_booked, cancel_state, cancel_reason,
    cancel_requested_at, cancel_attempts, cancel_error, cancel_done_at, dropped_reason";

fn dec(row: &sqlx::sqlite::SqliteRow, column: &'static str) -> Result<Decimal, StoreError> {
    let s: String = row.get(column);
    Decimal::from_str(&s).map_err(|_| StoreError::Corrupt { column, value: s })
}

fn opt_dec(
    row: &sqlx::sqlite::SqliteRow,
    column: &'static str,
) -> Result<Option<Decimal>, StoreError> {
    let s: Option<String> = row.get(column);
    s.map(|s| Decimal::from_str(&s).map_err(|_| StoreError::Corrupt { column, value: s }))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str, at: DateTime<Utc>) -> NewEvent {
        NewEvent {
            dedupe_key: key.to_owned(),
            event_type: "test".to_owned(),
            received_at: at,
            body: axum::body::Bytes::from(format!("{{\"k\":\"{key}\"}}")),
            webhook_id: None,
        }
    }

    #[tokio::test]
    async fn events_stored_under_the_old_dedupe_rule_keep_their_identity_and_recent_ones_dedupe_by_body(
    ) {
        let (store, _dir) = store().await;
        let now = Utc::now();
        // What a database written by the previous version holds: keys from an unsigned header,
        // `data.id` and the raw body; one event too old for the venue to still retry.
        let legacy = [
            (
                "hdr:w-2",
                r#"{"event":"signal.generated","data":{"n":2}}"#,
                now - chrono::Duration::days(3),
            ),
            (
                "hdr:w-1",
                r#"{"event":"signal.generated","data":{"n":1}}"#,
                now,
            ),
            (
                "id:m-1",
                r#"{"event":"system.maintenance","data":{"id":"m-1"}}"#,
                now,
            ),
        ];
        for (key, body, at) in legacy {
            sqlx::query("INSERT INTO inbox (dedupe_key, event_type, received_at, body) VALUES (?, 't', ?, ?)")
                .bind(key)
                .bind(ts(at))
                .bind(body.as_bytes())
                .execute(&store.writer)
                .await
                .unwrap();
        }
        sqlx::query("INSERT INTO inbox_rekey (through_seq) VALUES (3)")
            .execute(&store.writer)
            .await
            .unwrap();

        let rekeyed = store
            .rekey_legacy_events(now - chrono::Duration::hours(2), crate::inbox::dedupe_key)
            .await
            .unwrap();
        assert_eq!(rekeyed, 2, "the two recent events");
        assert_eq!(
            store
                .rekey_legacy_events(now, crate::inbox::dedupe_key)
                .await
                .unwrap(),
            0,
            "once only"
        );

        // A venue retry of a recent one, re-serialised, is a duplicate; of the old one it is new
        // (and the freshness rule keeps it from being applied).
        let retry = |body: &str| NewEvent {
            dedupe_key: crate::inbox::dedupe_key(body.as_bytes()),
            event_type: "t".into(),
            received_at: now,
            body: axum::body::Bytes::from(body.to_owned()),
            webhook_id: Some("w-9".into()),
        };
        let stored = store
            .insert_events(&[
                retry(r#"{ "data": {"n": 1}, "event": "signal.generated" }"#),
                retry(r#"{"event":"signal.generated","data":{"n":2}}"#),
            ])
            .await
            .unwrap();
        assert_eq!(stored[0], None);
        assert!(stored[1].is_some());
        // Identities stay what the old version decided under, so clientOrderIds do too.
        let identities: Vec<String> = store
            .pending_events(10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.identity)
            .collect();
        assert_eq!(identities[..3], ["hdr:w-2", "hdr:w-1", "id:m-1"]);
        assert!(identities[3].starts_with("json:"));
    }

    /// A fresh store in a temporary directory (kept alive by the returned handle).
    pub(super) async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        (Store::open(&url).await.unwrap(), dir)
    }

    #[tokio::test]
    async fn a_group_commit_stores_each_key_once_even_within_one_batch() {
        let (store, _dir) = store().await;
        let now = Utc::now();
        let first = store
            .insert_events(&[event("a", now), event("b", now), event("a", now)])
            .await
            .unwrap();
        assert!(first[0].is_some() && first[1].is_some());
        assert_eq!(
            first[2], None,
            "second 'a' in the same batch is a duplicate"
        );
        let second = store
            .insert_events(&[event("b", now), event("c", now)])
            .await
            .unwrap();
        assert_eq!(second[0], None, "'b' was stored by an earlier batch");
        assert!(second[1].is_some());
        assert_eq!(store.pending_events(10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn many_events_get_one_status_in_one_statement() {
        let (store, _dir) = store().await;
        let now = Utc::now();
        let seqs: Vec<i64> = store
            .insert_events(&[event("a", now), event("b", now), event("c", now)])
            .await
            .unwrap()
            .into_iter()
            .map(Option::unwrap)
            .collect();
        let mut tx = store.begin().await.unwrap();
        Store::set_events_status(&mut tx, &seqs[..2], EventStatus::Processed, None, now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let pending: Vec<i64> = store
            .pending_events(10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(pending, vec![seqs[2]]);
        let done = store.list_events(Some("processed"), 10).await.unwrap();
        assert_eq!(done.len(), 2);
        assert!(done
            .iter()
            .all(|e| e.attempts == 1 && e.processed_at.is_some()));
    }

    #[tokio::test]
    async fn pruning_removes_old_processed_events_only() {
        let (store, _dir) = store().await;
        let now = Utc::now();
        let old = now - chrono::Duration::days(40);
        let seqs = store
            .insert_events(&[
                event("old-done", old),
                event("old-dead", old),
                event("new-done", now),
            ])
            .await
            .unwrap();
        let mut tx = store.begin().await.unwrap();
        for (seq, status) in [
            (seqs[0], EventStatus::Processed),
            (seqs[1], EventStatus::Dead),
            (seqs[2], EventStatus::Processed),
        ] {
            Store::set_event_status(&mut tx, seq.unwrap(), status, None, now)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        let through = store
            .last_seq_before(now - chrono::Duration::days(30))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(store.prune_processed(through, 1000).await.unwrap(), 1);
        let left: Vec<String> = store
            .list_events(None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.dedupe_key)
            .collect();
        assert_eq!(left, vec!["new-done".to_owned(), "old-dead".to_owned()]);
    }
}
