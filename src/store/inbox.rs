//! The inbox: raw webhook events, committed before the venue gets its 200 (group commit), their
//! statuses as the dispatcher applies them, retention, and the operator's views and replays. The
//! deposit and withdrawal records and the admin API's counts live here too for now.

use super::{dec, Store, StoreError};
use crate::clock::ts;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{Row, SqliteConnection};

impl Store {
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
    pub(super) fn from_row(r: &sqlx::sqlite::SqliteRow) -> Self {
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
