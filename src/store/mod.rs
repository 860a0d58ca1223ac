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
use crate::model::events::VenuePosition;
use crate::order::{OrderStatus, Progress};
use crate::portfolio::Position;
use crate::risk::{OrderPlan, RiskApproved};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

mod cancel;
mod fills;
mod pnl;
mod recorded;
mod risk;
mod writer;
pub use cancel::{CancelState, CancelTask, CancelView};
pub use fills::{CashView, ClosedPositionRow, RecordedFills};
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

    // ---- inbox ------------------------------------------------------------------------------

    /// Inserts a batch of raw events in one statement and one transaction (group commit).
    /// Returns, per event, `Some(seq)` when new and `None` when its dedupe key was already stored
    /// (or appears earlier in the same batch).
    pub async fn insert_events(&self, events: &[NewEvent]) -> Result<Vec<Option<i64>>, StoreError> {
        let mut out = Vec::with_capacity(events.len());
        let mut tx = self.begin().await?;
        // SQLite allows 32766 bound values; 5 per row.
        for chunk in events.chunks(4096) {
            let mut sql = String::with_capacity(140 + chunk.len() * 16);
            sql.push_str(
                "INSERT INTO inbox (dedupe_key, event_type, received_at, body, webhook_id) VALUES ",
            );
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 {
                    "(?,?,?,?,?)"
                } else {
                    ",(?,?,?,?,?)"
                });
            }
            sql.push_str(" ON CONFLICT (dedupe_key) DO NOTHING RETURNING seq, dedupe_key");
            let mut query = sqlx::query(&sql);
            for e in chunk {
                query = query
                    .bind(&e.dedupe_key)
                    .bind(&e.event_type)
                    .bind(ts(e.received_at))
                    .bind(&e.body[..])
                    .bind(e.webhook_id.as_deref());
            }
            let inserted: std::collections::HashMap<String, i64> = query
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|r| (r.get("dedupe_key"), r.get("seq")))
                .collect();
            let mut claimed = std::collections::HashSet::new();
            for e in chunk {
                // The first occurrence of a key in the batch is the one that was inserted.
                let seq = inserted
                    .get(&e.dedupe_key)
                    .filter(|_| claimed.insert(e.dedupe_key.as_str()))
                    .copied();
                out.push(seq);
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    pub async fn pending_events(&self, limit: i64) -> Result<Vec<InboxEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, COALESCE(legacy_key, dedupe_key) AS identity, event_type, body, attempts,
                    received_at
             FROM inbox WHERE status = 'pending' ORDER BY seq LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        rows.into_iter()
            .map(|r| {
                let received_at: String = r.get("received_at");
                Ok(InboxEvent {
                    seq: r.get("seq"),
                    identity: r.get("identity"),
                    event_type: r.get("event_type"),
                    body: r.get("body"),
                    attempts: r.get("attempts"),
                    received_at: crate::venue::wire::parse_timestamp(&received_at).ok_or(
                        StoreError::Corrupt {
                            column: "received_at",
                            value: received_at,
                        },
                    )?,
                })
            })
            .collect()
    }

    /// Once after the upgrade that changed the dedupe rule (migration 0010): gives the events
    /// stored before it and received since `since` the new dedupe key, keeping the old one as
    /// their identity, so a venue retry of one of them is still a duplicate. Older events need
    /// nothing: a retry of them is past the freshness window and never applied. Newest first, in
    /// small transactions; a row whose new key another row already holds (the same event stored
    /// twice under the old rule) keeps its old key. Returns how many rows were rekeyed.
    pub async fn rekey_legacy_events(
        &self,
        since: DateTime<Utc>,
        key_of: impl Fn(&[u8]) -> String,
    ) -> Result<u64, StoreError> {
        const BATCH: i64 = 500;
        let through: Option<i64> = sqlx::query_scalar("SELECT MAX(through_seq) FROM inbox_rekey")
            .fetch_one(&self.writer)
            .await?;
        let Some(mut through) = through else {
            return Ok(0);
        };
        let since = ts(since);
        let mut rekeyed = 0;
        loop {
            let rows = sqlx::query(
                "SELECT seq, body, received_at FROM inbox WHERE seq <= ? ORDER BY seq DESC LIMIT ?",
            )
            .bind(through)
            .bind(BATCH)
            .fetch_all(&self.writer)
            .await?;
            let mut tx = self.begin().await?;
            let mut done = rows.len() < BATCH as usize;
            for r in &rows {
                let seq: i64 = r.get("seq");
                through = seq - 1;
                if r.get::<String, _>("received_at") < since {
                    done = true;
                    break;
                }
                let key = key_of(&r.get::<Vec<u8>, _>("body"));
                rekeyed += sqlx::query(
                    "UPDATE inbox SET legacy_key = dedupe_key, dedupe_key = ?1
                     WHERE seq = ?2 AND legacy_key IS NULL
                       AND NOT EXISTS (SELECT 1 FROM inbox WHERE dedupe_key = ?1)",
                )
                .bind(&key)
                .bind(seq)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            if done {
                sqlx::query("DELETE FROM inbox_rekey")
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            if done {
                return Ok(rekeyed);
            }
        }
    }

    pub async fn set_event_status(
        tx: &mut SqliteConnection,
        seq: i64,
        status: EventStatus,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE inbox SET status = ?, error = ?, attempts = attempts + 1, processed_at = ?
             WHERE seq = ?",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(ts(now))
        .bind(seq)
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Gives many events the same status in one statement per 10,000.
    pub async fn set_events_status(
        tx: &mut SqliteConnection,
        seqs: &[i64],
        status: EventStatus,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for chunk in seqs.chunks(10_000) {
            let mut sql = String::from(
                "UPDATE inbox SET status = ?, error = ?, attempts = attempts + 1, processed_at = ?
                 WHERE seq IN (",
            );
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 { "?" } else { ",?" });
            }
            sql.push(')');
            let mut q = sqlx::query(&sql)
                .bind(status.as_str())
                .bind(error)
                .bind(ts(now));
            for seq in chunk {
                q = q.bind(seq);
            }
            q.execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Puts deferred events (news about orders not yet known locally) back in the queue.
    pub async fn requeue_deferred(tx: &mut SqliteConnection) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("UPDATE inbox SET status = 'pending' WHERE status = 'deferred'")
                .execute(tx)
                .await?
                .rows_affected(),
        )
    }

    pub async fn event_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM inbox GROUP BY status")
            .fetch_all(&self.reader)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get("status"), r.get("n")))
            .collect())
    }

    /// `(decision, count)` over all signal decisions.
    pub async fn decision_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT decision, COUNT(*) AS n FROM signal_decisions GROUP BY decision")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get("decision"), r.get("n")))
            .collect())
    }

    /// `(status, count)` over all orders.
    pub async fn order_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM orders GROUP BY status")
            .fetch_all(&self.reader)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get("status"), r.get("n")))
            .collect())
    }

    /// Events, newest first, optionally only those with `status`.
    pub async fn list_events(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, event_type, status, attempts, received_at, processed_at, error, dedupe_key,
                    webhook_id
             FROM inbox WHERE (?1 IS NULL OR status = ?1) ORDER BY seq DESC LIMIT ?2",
        )
        .bind(status)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(EventSummary::from_row).collect())
    }

    /// One event with its raw body.
    pub async fn event(&self, seq: i64) -> Result<Option<(EventSummary, Vec<u8>)>, StoreError> {
        let row = sqlx::query(
            "SELECT seq, event_type, status, attempts, received_at, processed_at, error, dedupe_key,
                    webhook_id, body
             FROM inbox WHERE seq = ?",
        )
        .bind(seq)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| (EventSummary::from_row(&r), r.get("body"))))
    }

    /// Puts an event back in the queue to be processed again (its effects are idempotent).
    /// Returns false when there is no such event or it is already waiting.
    pub async fn replay_event(&self, seq: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE inbox SET status = 'pending', attempts = 0, error = NULL, processed_at = NULL
             WHERE seq = ? AND status IN ('dead', 'processed')",
        )
        .bind(seq)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The highest event sequence number received before `before` (a read, off the writer).
    pub async fn last_seq_before(&self, before: DateTime<Utc>) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT MAX(seq) FROM inbox WHERE received_at < ?")
                .bind(ts(before))
                .fetch_one(&self.reader)
                .await?,
        )
    }

    /// Deletes up to `batch` processed events with `seq <= through`; returns how many.
    /// Small batches keep each write short, so ingestion never waits long behind pruning.
    pub async fn prune_processed(&self, through: i64, batch: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM inbox WHERE seq IN (
                 SELECT seq FROM inbox WHERE seq <= ? AND status = 'processed' ORDER BY seq LIMIT ?)",
        )
        .bind(through)
        .bind(batch)
        .execute(&self.writer)
        .await?
        .rows_affected())
    }

    /// `(event type, count)` over the inbox: unknown types show up here.
    pub async fn event_type_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT event_type, COUNT(*) AS n FROM inbox GROUP BY event_type ORDER BY 1",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get("event_type"), r.get("n")))
            .collect())
    }

    /// Records a deposit or withdrawal; true the first time this transaction id is seen (later
    /// reports only update its status).
    pub async fn save_transaction(
        tx: &mut SqliteConnection,
        t: &crate::model::events::AccountTransaction,
        event_seq: i64,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO account_transactions (transaction_id, kind, asset, amount, method, status,
                 occurred_at, event_seq)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (transaction_id) DO NOTHING",
        )
        .bind(&t.transaction_id)
        .bind(t.kind)
        .bind(&t.asset)
        .bind(t.amount.to_string())
        .bind(&t.method)
        .bind(&t.status)
        .bind(&t.occurred_at)
        .bind(event_seq)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            sqlx::query("UPDATE account_transactions SET status = ? WHERE transaction_id = ?")
                .bind(&t.status)
                .bind(&t.transaction_id)
                .execute(&mut *tx)
                .await?;
        }
        Ok(inserted)
    }

    pub async fn list_transactions(&self) -> Result<Vec<TransactionView>, StoreError> {
        let rows = sqlx::query(
            "SELECT transaction_id, kind, asset, amount, method, status, occurred_at
             FROM account_transactions ORDER BY event_seq DESC",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TransactionView {
                    transaction_id: r.get("transaction_id"),
                    kind: r.get("kind"),
                    asset: r.get("asset"),
                    amount: dec(r, "amount")?,
                    method: r.get("method"),
                    status: r.get("status"),
                    occurred_at: r.get("occurred_at"),
                })
            })
            .collect()
    }

    /// Whether the database answers a query (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// When the oldest event still waiting to be processed arrived (`received_at`).
    pub async fn oldest_pending_event(&self) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT MIN(received_at) FROM inbox WHERE status = 'pending'")
                .fetch_one(&self.reader)
                .await?,
        )
    }

    /// The newest inbox events, optionally only those with `status`, newest first.
    pub async fn recent_events(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventView>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, event_type, status, attempts, error, received_at, processed_at FROM inbox
             WHERE (?1 IS NULL OR status = ?1) ORDER BY seq DESC LIMIT ?2",
        )
        .bind(status)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| EventView {
                seq: r.get("seq"),
                event_type: r.get("event_type"),
                status: r.get("status"),
                attempts: r.get("attempts"),
                error: r.get("error"),
                received_at: r.get("received_at"),
                processed_at: r.get("processed_at"),
            })
            .collect())
    }

    /// Puts a dead letter back in the queue. `false` when `seq` is not a dead letter.
    pub async fn replay_dead_letter(&self, seq: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE inbox SET status = 'pending', attempts = 0, error = NULL, processed_at = NULL
             WHERE seq = ? AND status = 'dead'",
        )
        .bind(seq)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- signals ------------------------------------------------------------------------------

    pub async fn insert_decision(
        tx: &mut SqliteConnection,
        d: &Decision<'_>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO signal_decisions (inbox_seq, strategy, received_at, symbol, recommendation,
                 confidence, decision, reason, client_order_id)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(d.inbox_seq)
        .bind(d.strategy)
        .bind(ts(d.received_at))
        .bind(d.symbol)
        .bind(d.recommendation)
        .bind(i64::from(d.confidence))
        .bind(d.decision)
        .bind(&d.reason)
        .bind(d.client_order_id)
        .execute(tx)
        .await?;
        Ok(())
    }

    pub async fn list_decisions(&self, limit: i64) -> Result<Vec<DecisionView>, StoreError> {
        let rows = sqlx::query(
            "SELECT inbox_seq, strategy, received_at, symbol, recommendation, confidence, decision,
                    reason, client_order_id
             FROM signal_decisions ORDER BY inbox_seq DESC, strategy LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DecisionView {
                event_seq: r.get("inbox_seq"),
                strategy: r.get("strategy"),
                received_at: r.get("received_at"),
                symbol: r.get("symbol"),
                recommendation: r.get("recommendation"),
                confidence: r.get("confidence"),
                decision: r.get("decision"),
                reason: r.get("reason"),
                client_order_id: r.get("client_order_id"),
            })
            .collect())
    }

    // ---- orders -------------------------------------------------------------------------------

    /// Writes an approved order as an intent. Idempotent: the same `clientOrderId` twice is one row.
    pub async fn insert_intent(
        tx: &mut SqliteConnection,
        plan: &RiskApproved<OrderPlan>,
        client_order_id: &str,
        signal_seq: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let p = plan.get();
        sqlx::query(
            "INSERT INTO orders (client_order_id, strategy, signal_seq, symbol, side, order_type,
                 quantity, price, time_in_force, status, created_at, updated_at, role,
                 parent_client_order_id, stop_price, protect_stop, protect_target)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'intent', ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (client_order_id) DO NOTHING",
        )
        .bind(client_order_id)
        .bind(&p.strategy)
        .bind(signal_seq)
        .bind(p.symbol.as_str())
        .bind(p.side.as_str())
        .bind(p.order_type)
        .bind(p.quantity.get().to_string())
        .bind(p.limit_price.map(|l| l.get().to_string()))
        .bind(p.time_in_force)
        .bind(ts(now))
        .bind(ts(now))
        .bind(p.role.as_str())
        .bind(p.parent.as_deref())
        .bind(p.stop_price.map(|l| l.get().to_string()))
        .bind(p.protect.stop.map(|l| l.get().to_string()))
        .bind(p.protect.target.map(|l| l.get().to_string()))
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Orders to send now: intents, and unknown outcomes, whose (retry) time has come.
    /// Read through the reader pool: a WAL reader sees every committed intent, and the executor's
    /// pick-up then does not queue behind write transactions and their fsyncs on the one writer.
    pub async fn orders_to_submit(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OrderRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE (status = 'intent' AND (next_attempt_at IS NULL OR next_attempt_at <= ?1))
                OR (status = 'unknown' AND next_attempt_at <= ?1)
             ORDER BY created_at, client_order_id LIMIT ?2"
        ))
        .bind(ts(now))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(OrderRow::from_row).collect()
    }

    /// The earliest time an unknown (or waiting) order is due for another look.
    pub async fn next_retry_at(&self) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM orders WHERE status IN ('intent', 'unknown')",
        )
        .fetch_one(&self.reader)
        .await?)
    }

    /// An order that may not be sent now: looked at again at `retry_at`, its status unchanged.
    pub async fn mark_waiting(
        conn: &mut SqliteConnection,
        client_order_id: &str,
        why: &str,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE orders SET last_error = ?, next_attempt_at = ?, updated_at = ?
             WHERE client_order_id = ? AND status IN ('intent', 'unknown')",
        )
        .bind(why)
        .bind(ts(retry_at))
        .bind(ts(now))
        .bind(client_order_id)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// An order that will never be sent (the venue has confirmed it does not have it): it ends
    /// `cancelled` with the reason.
    pub async fn mark_dropped(
        conn: &mut SqliteConnection,
        client_order_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE orders SET status = 'cancelled', dropped_reason = ?, next_attempt_at = NULL,
                 updated_at = ?
             WHERE client_order_id = ? AND status IN ('intent', 'unknown')",
        )
        .bind(reason)
        .bind(ts(now))
        .bind(client_order_id)
        .execute(conn)
        .await?;
        Ok(())
    }

    pub async fn order_by_client_id(
        tx: &mut SqliteConnection,
        client_order_id: &str,
    ) -> Result<Option<OrderRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE client_order_id = ?"
        ))
        .bind(client_order_id)
        .fetch_optional(tx)
        .await?;
        row.as_ref().map(OrderRow::from_row).transpose()
    }

    pub async fn order_by_venue_id(
        tx: &mut SqliteConnection,
        venue_order_id: &str,
    ) -> Result<Option<OrderRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE venue_order_id = ?"
        ))
        .bind(venue_order_id)
        .fetch_optional(tx)
        .await?;
        row.as_ref().map(OrderRow::from_row).transpose()
    }

    pub async fn save_progress(
        tx: &mut SqliteConnection,
        client_order_id: &str,
        venue_order_id: Option<&str>,
        progress: &Progress,
        venue_status: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE orders SET venue_order_id = COALESCE(venue_order_id, ?), status = ?,
                 venue_status = COALESCE(?, venue_status), filled_quantity = ?, average_price = ?,
                 next_attempt_at = NULL, updated_at = ?
             WHERE client_order_id = ?",
        )
        .bind(venue_order_id)
        .bind(progress.status.as_str())
        .bind(venue_status)
        .bind(progress.filled_quantity.to_string())
        .bind(progress.average_price.map(|p| p.to_string()))
        .bind(ts(now))
        .bind(client_order_id)
        .execute(tx)
        .await?;
        Ok(())
    }

    pub async fn mark_rejected(
        conn: &mut SqliteConnection,
        client_order_id: &str,
        code: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE orders SET status = 'rejected', reject_code = ?, reject_message = ?,
                 submit_attempts = submit_attempts + 1, next_attempt_at = NULL, updated_at = ?
             WHERE client_order_id = ? AND status IN ('intent', 'unknown')",
        )
        .bind(code)
        .bind(message)
        .bind(ts(now))
        .bind(client_order_id)
        .execute(conn)
        .await?;
        Ok(())
    }

    pub async fn mark_unknown(
        conn: &mut SqliteConnection,
        client_order_id: &str,
        error: &str,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE orders SET status = 'unknown', last_error = ?, next_attempt_at = ?,
                 submit_attempts = submit_attempts + 1, updated_at = ?
             WHERE client_order_id = ? AND status IN ('intent', 'unknown')",
        )
        .bind(error)
        .bind(ts(retry_at))
        .bind(ts(now))
        .bind(client_order_id)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Position and the unfilled remainder of working orders on one symbol.
    pub async fn exposure(
        tx: &mut SqliteConnection,
        symbol: &str,
    ) -> Result<crate::risk::Exposure, StoreError> {
        let position = Self::position(&mut *tx, symbol).await?.quantity;
        let rows = sqlx::query(
            "SELECT side, quantity, filled_quantity FROM orders
             WHERE symbol = ? AND status NOT IN ('filled', 'cancelled', 'rejected', 'expired')",
        )
        .bind(symbol)
        .fetch_all(tx)
        .await?;
        let mut exposure = crate::risk::Exposure {
            position,
            ..Default::default()
        };
        for r in rows {
            let remaining = dec(&r, "quantity")? - dec(&r, "filled_quantity")?;
            match r.get::<String, _>("side").as_str() {
                "buy" => exposure.working_buy += remaining,
                _ => exposure.working_sell += remaining,
            }
        }
        Ok(exposure)
    }

    pub async fn list_orders(&self, limit: i64) -> Result<Vec<OrderRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders ORDER BY created_at DESC, client_order_id LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(OrderRow::from_row).collect()
    }

    /// Orders not yet in a final state, newest first.
    pub async fn open_orders(&self) -> Result<Vec<OrderRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE status NOT IN ('filled', 'cancelled', 'rejected', 'expired')
             ORDER BY created_at DESC, client_order_id"
        ))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(OrderRow::from_row).collect()
    }

    pub async fn find_order(&self, client_order_id: &str) -> Result<Option<OrderRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE client_order_id = ?"
        ))
        .bind(client_order_id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(OrderRow::from_row).transpose()
    }

    /// Orders with any fill, in the order their last fill was recorded: the input of the PnL curve.
    pub async fn filled_orders_by_time(&self) -> Result<Vec<OrderRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE average_price IS NOT NULL ORDER BY updated_at, client_order_id"
        ))
        .fetch_all(&self.reader)
        .await?;
        let orders: Result<Vec<OrderRow>, _> = rows.iter().map(OrderRow::from_row).collect();
        Ok(orders?
            .into_iter()
            .filter(|o| !o.filled_quantity.is_zero())
            .collect())
    }

    // ---- positions and balances --------------------------------------------------------------

    pub async fn position(tx: &mut SqliteConnection, symbol: &str) -> Result<Position, StoreError> {
        let row = sqlx::query(
            "SELECT quantity, average_price, realized_pnl, fees, episode_realized
             FROM positions WHERE symbol = ?",
        )
        .bind(symbol)
        .fetch_optional(tx)
        .await?;
        match row {
            None => Ok(Position::default()),
            Some(r) => Ok(Position {
                quantity: dec(&r, "quantity")?,
                average_price: dec(&r, "average_price")?,
                realized_pnl: dec(&r, "realized_pnl")?,
                fees: dec(&r, "fees")?,
                episode_realized: dec(&r, "episode_realized")?,
            }),
        }
    }

    pub async fn save_position(
        tx: &mut SqliteConnection,
        symbol: &str,
        p: &Position,
        last_price: Option<Decimal>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO positions (symbol, quantity, average_price, realized_pnl, fees,
                 episode_realized, last_price, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (symbol) DO UPDATE SET quantity = excluded.quantity,
                 average_price = excluded.average_price, realized_pnl = excluded.realized_pnl,
                 fees = excluded.fees, episode_realized = excluded.episode_realized,
                 last_price = COALESCE(excluded.last_price, last_price),
                 updated_at = excluded.updated_at",
        )
        .bind(symbol)
        .bind(p.quantity.normalize().to_string())
        .bind(p.average_price.normalize().to_string())
        .bind(p.realized_pnl.normalize().to_string())
        .bind(p.fees.normalize().to_string())
        .bind(p.episode_realized.normalize().to_string())
        .bind(last_price.map(|d| d.normalize().to_string()))
        .bind(ts(now))
        .execute(tx)
        .await?;
        Ok(())
    }

    pub async fn list_positions(&self) -> Result<Vec<PositionView>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.symbol, p.quantity, p.average_price, p.realized_pnl, p.fees, p.last_price,
                    p.updated_at,
                    v.quantity AS venue_quantity, v.side AS venue_side, v.mark_price, v.unrealized_pnl
             FROM positions p LEFT JOIN venue_positions v ON v.symbol = p.symbol
             ORDER BY p.symbol",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PositionView {
                    symbol: r.get("symbol"),
                    quantity: dec(r, "quantity")?,
                    average_price: dec(r, "average_price")?,
                    realized_pnl: dec(r, "realized_pnl")?,
                    fees: dec(r, "fees")?,
                    net_realized_pnl: dec(r, "realized_pnl")? - dec(r, "fees")?,
                    last_price: opt_dec(r, "last_price")?,
                    venue_quantity: opt_dec(r, "venue_quantity")?,
                    venue_side: r.get("venue_side"),
                    venue_mark_price: opt_dec(r, "mark_price")?,
                    venue_unrealized_pnl: opt_dec(r, "unrealized_pnl")?,
                    updated_at: r.get("updated_at"),
                })
            })
            .collect()
    }

    /// Records the venue's view of a position, unless what is held is newer (by `reported_at`).
    /// Returns whether it was recorded.
    pub async fn save_venue_position(
        tx: &mut SqliteConnection,
        v: &VenuePosition,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO venue_positions (symbol, side, quantity, average_price, unrealized_pnl,
                 mark_price, realized_pnl, updated_at, as_of)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (symbol) DO UPDATE SET side = COALESCE(excluded.side, side),
                 quantity = excluded.quantity,
                 average_price = COALESCE(excluded.average_price, average_price),
                 unrealized_pnl = COALESCE(excluded.unrealized_pnl, unrealized_pnl),
                 mark_price = COALESCE(excluded.mark_price, mark_price),
                 realized_pnl = COALESCE(excluded.realized_pnl, realized_pnl),
                 updated_at = excluded.updated_at, as_of = excluded.as_of
             WHERE venue_positions.as_of IS NULL OR excluded.as_of >= venue_positions.as_of",
        )
        .bind(&v.symbol)
        .bind(&v.side)
        .bind(v.quantity.to_string())
        .bind(v.average_price.map(|d| d.to_string()))
        .bind(v.unrealized_pnl.map(|d| d.to_string()))
        .bind(v.mark_price.map(|d| d.to_string()))
        .bind(v.realized_pnl.map(|d| d.to_string()))
        .bind(ts(now))
        .bind(ts(v.reported_at))
        .execute(tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a balance as the venue reported it `as_of`, unless the balance held is newer.
    /// Returns whether it was recorded.
    pub async fn save_balance(
        tx: &mut SqliteConnection,
        balance: &BalanceReport<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO balances (asset, available, locked, total, updated_at, as_of)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (asset) DO UPDATE SET available = excluded.available,
                 locked = excluded.locked, total = excluded.total, updated_at = excluded.updated_at,
                 as_of = excluded.as_of
             WHERE balances.as_of IS NULL OR excluded.as_of >= balances.as_of",
        )
        .bind(balance.asset)
        .bind(balance.available.to_string())
        .bind(balance.locked.to_string())
        .bind(balance.total.to_string())
        .bind(ts(now))
        .bind(ts(balance.as_of))
        .execute(tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn list_balances(&self) -> Result<Vec<BalanceView>, StoreError> {
        let rows = sqlx::query(
            "SELECT asset, available, locked, total, updated_at FROM balances ORDER BY asset",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BalanceView {
                    asset: r.get("asset"),
                    available: dec(r, "available")?,
                    locked: dec(r, "locked")?,
                    total: dec(r, "total")?,
                    updated_at: r.get("updated_at"),
                })
            })
            .collect()
    }
}

impl Store {
    // ---- paper venue ------------------------------------------------------------------------

    /// The paper venue's saved state, if any.
    pub async fn load_paper_state(&self) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT state FROM paper_state WHERE id = 1")
                .fetch_optional(&self.writer)
                .await?,
        )
    }

    /// Replaces the paper venue's saved state.
    pub async fn save_paper_state(
        &self,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO paper_state (id, state, updated_at) VALUES (1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
        )
        .bind(state)
        .bind(ts(now))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Forgets the paper venue's state and the trading view built from it (orders, positions,
    /// balances), in one transaction. The inbox and the signal decisions stay as history.
    pub async fn reset_paper(&self) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for table in [
            "paper_state",
            "orders",
            "fills",
            "closed_positions",
            "positions",
            "venue_positions",
            "balances",
        ] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
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

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub seq: i64,
    pub event_type: String,
    pub status: String,
    pub attempts: i64,
    pub error: Option<String>,
    pub received_at: String,
    pub processed_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    /// From the signed bytes only (`crate::inbox::dedupe_key`).
    pub dedupe_key: String,
    pub event_type: String,
    pub received_at: DateTime<Utc>,
    pub body: axum::body::Bytes,
    /// The unsigned `X-Webhook-Id` header, kept for display only.
    pub webhook_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct InboxEvent {
    pub seq: i64,
    /// What identities derived from this event (a signal's `clientOrderId`s) are computed from:
    /// its dedupe key, or for an event stored before the dedupe rule changed, the key it was
    /// first decided under (so processing it again derives the same ids).
    pub identity: String,
    pub event_type: String,
    pub body: Vec<u8>,
    pub attempts: i64,
    /// When ingress committed it: an event's age is measured against this.
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSummary {
    pub seq: i64,
    pub event_type: String,
    pub status: String,
    pub attempts: i64,
    pub received_at: String,
    pub processed_at: Option<String>,
    pub error: Option<String>,
    pub dedupe_key: String,
    /// The venue's `X-Webhook-Id` header, if it sent one: shown, never a key (it is not signed).
    pub webhook_id: Option<String>,
}

impl EventSummary {
    fn from_row(r: &sqlx::sqlite::SqliteRow) -> Self {
        Self {
            seq: r.get("seq"),
            event_type: r.get("event_type"),
            status: r.get("status"),
            attempts: r.get("attempts"),
            received_at: r.get("received_at"),
            processed_at: r.get("processed_at"),
            error: r.get("error"),
            dedupe_key: r.get("dedupe_key"),
            webhook_id: r.get("webhook_id"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionView {
    pub transaction_id: String,
    pub kind: String,
    pub asset: String,
    pub amount: Decimal,
    pub method: Option<String>,
    pub status: Option<String>,
    pub occurred_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    Processed,
    /// Waiting for something else first (e.g. news about an order whose POST has not returned).
    Deferred,
    /// Signed but unusable, or failed too often: kept for the operator.
    Dead,
    /// Failed; will be tried again.
    Pending,
}

impl EventStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Deferred => "deferred",
            Self::Dead => "dead",
            Self::Pending => "pending",
        }
    }
}

pub struct Decision<'a> {
    pub inbox_seq: i64,
    pub strategy: &'a str,
    pub received_at: DateTime<Utc>,
    pub symbol: &'a str,
    pub recommendation: &'a str,
    pub confidence: u8,
    /// `ordered`, `refused` or `ignored`.
    pub decision: &'a str,
    pub reason: String,
    pub client_order_id: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionView {
    pub event_seq: i64,
    pub strategy: String,
    pub received_at: String,
    pub symbol: String,
    pub recommendation: String,
    pub confidence: i64,
    pub decision: String,
    pub reason: String,
    pub client_order_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRow {
    pub client_order_id: String,
    pub order_id: Option<String>,
    pub strategy: String,
    pub symbol: String,
    pub side: String,
    #[serde(rename = "type")]
    pub order_type: String,
    pub quantity: Decimal,
    pub price: Option<Decimal>,
    pub time_in_force: String,
    pub status: String,
    pub venue_status: Option<String>,
    pub filled_quantity: Decimal,
    pub average_price: Option<Decimal>,
    pub reject_code: Option<String>,
    pub reject_message: Option<String>,
    pub submit_attempts: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// `entry`, or a protective `stop_loss` / `take_profit` placed after its entry filled.
    pub role: String,
    pub parent_client_order_id: Option<String>,
    pub stop_price: Option<Decimal>,
    /// Fees booked for this order's fills so far.
    pub fees: Decimal,
    /// The order's cancel request, if one was ever made.
    pub cancel: Option<CancelView>,
    /// Why it was never sent (it is `cancelled`): a halt, maintenance or the reducing state at
    /// send time, or an opening order grown too old to send.
    pub dropped_reason: Option<String>,
}

impl OrderRow {
    fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Self, StoreError> {
        Ok(Self {
            client_order_id: r.get("client_order_id"),
            order_id: r.get("venue_order_id"),
            strategy: r.get("strategy"),
            symbol: r.get("symbol"),
            side: r.get("side"),
            order_type: r.get("order_type"),
            quantity: dec(r, "quantity")?,
            price: opt_dec(r, "price")?,
            time_in_force: r.get("time_in_force"),
            status: r.get("status"),
            venue_status: r.get("venue_status"),
            filled_quantity: dec(r, "filled_quantity")?,
            average_price: opt_dec(r, "average_price")?,
            reject_code: r.get("reject_code"),
            reject_message: r.get("reject_message"),
            submit_attempts: r.get("submit_attempts"),
            last_error: r.get("last_error"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
            role: r.get("role"),
            parent_client_order_id: r.get("parent_client_order_id"),
            stop_price: opt_dec(r, "stop_price")?,
            fees: dec(r, "fees_booked")?,
            cancel: CancelView::from_row(r),
            dropped_reason: r.get("dropped_reason"),
        })
    }

    pub fn status(&self) -> Result<OrderStatus, StoreError> {
        OrderStatus::parse(&self.status).ok_or_else(|| StoreError::Corrupt {
            column: "status",
            value: self.status.clone(),
        })
    }

    pub fn progress(&self) -> Result<Progress, StoreError> {
        Ok(Progress {
            status: self.status()?,
            filled_quantity: self.filled_quantity,
            average_price: self.average_price,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PositionView {
    pub symbol: String,
    pub quantity: Decimal,
    pub average_price: Decimal,
    /// Before fees.
    pub realized_pnl: Decimal,
    /// Fees paid on this symbol: reported by the venue, or estimated until it reports them.
    pub fees: Decimal,
    /// `realized_pnl - fees`.
    pub net_realized_pnl: Decimal,
    pub last_price: Option<Decimal>,
    /// What the venue last reported (`position.*` events), for comparison.
    pub venue_quantity: Option<Decimal>,
    /// `long` / `short` as the venue reported it; its quantity may be unsigned.
    pub venue_side: Option<String>,
    pub venue_mark_price: Option<Decimal>,
    pub venue_unrealized_pnl: Option<Decimal>,
    pub updated_at: String,
}

/// One asset's balance as the venue reported it at `as_of`.
#[derive(Debug, Clone, Copy)]
pub struct BalanceReport<'a> {
    pub asset: &'a str,
    pub available: Decimal,
    pub locked: Decimal,
    pub total: Decimal,
    pub as_of: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BalanceView {
    pub asset: String,
    pub available: Decimal,
    pub locked: Decimal,
    pub total: Decimal,
    pub updated_at: String,
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
