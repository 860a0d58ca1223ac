//! The single writer connection: its write transaction ([`Tx`]), the check that runs whenever it
//! goes back to the pool, and whether the store can commit at all ([`Writable`]).
//!
//! Why this exists (issue 12, a full disk): on `SQLITE_FULL` or `SQLITE_IOERR` SQLite may roll the
//! whole transaction back *by itself*. sqlx does not notice: its count of open transactions on the
//! connection stays at 1 (the failed `COMMIT` did not decrement it, and the `ROLLBACK` it sends on
//! drop fails with "no transaction is active"). From then on sqlx believes it is nested, so the
//! next `begin` sends `SAVEPOINT _sqlx_savepoint_1` (which quietly opens a real transaction) and
//! `commit` sends `RELEASE SAVEPOINT`; the first of those that fails again is undone with
//! `ROLLBACK TO SAVEPOINT`, which leaves that transaction open for good. Every later "commit" only
//! releases an inner savepoint and reports success: webhooks got 200, nothing reached the disk,
//! even after space came back. The unit tests below rebuild that sequence.
//!
//! What holds instead:
//! - A [`Tx`] commit is confirmed or it is an error: it is refused unless sqlx counts exactly one
//!   open transaction (so the statement sent is a real `COMMIT`), and after `COMMIT` SQLite must be
//!   back in autocommit mode (`sqlite3_get_autocommit`).
//! - A [`Tx`] that fails to begin or to commit takes its connection with it: the connection is
//!   closed (SQLite rolls back whatever is open) and the pool opens a fresh one for the next writer.
//! - Every time a writer connection returns to the pool (after a rollback, an uncommitted drop on
//!   an error path, or a plain statement), sqlx's count and SQLite's autocommit state must both say
//!   "no transaction"; otherwise the connection is closed, not reused.
//! - A failure that means the database cannot take writes (disk full, I/O error, busy past the
//!   timeout, a commit not confirmed) marks the store not [`Writable`] until a write round trip
//!   succeeds again (`Store::round_trip`, run by `admin::store_check`).

use super::StoreError;
use chrono::{DateTime, Utc};
use futures_core::future::BoxFuture;
use sqlx::pool::{PoolConnection, PoolConnectionMetadata};
use sqlx::sqlite::{Sqlite, SqliteConnection, SqliteTransactionManager};
use sqlx::{Connection, TransactionManager};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// Whether SQLite itself has a transaction open on `conn` (the ground truth sqlx may disagree with).
async fn sqlite_in_transaction(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    // SAFETY: the handle is a live `sqlite3*` for as long as `handle` holds the connection's lock,
    // and `sqlite3_get_autocommit` only reads a flag of it.
    let autocommit =
        unsafe { libsqlite3_sys::sqlite3_get_autocommit(handle.as_raw_handle().as_ptr()) };
    Ok(autocommit == 0)
}

/// The pool's `after_release` check: keep the connection only when neither sqlx nor SQLite thinks
/// a transaction is open on it.
pub(super) fn after_release(
    writable: Writable,
) -> impl for<'c> Fn(
    &'c mut SqliteConnection,
    PoolConnectionMetadata,
) -> BoxFuture<'c, Result<bool, sqlx::Error>>
       + Send
       + Sync
       + 'static {
    move |conn, _| {
        let writable = writable.clone();
        Box::pin(async move {
            // Locking the handle waits for the commands queued before it (a rollback on drop).
            let sqlite_open = sqlite_in_transaction(conn).await?;
            let sqlx_open = conn.is_in_transaction();
            if sqlite_open || sqlx_open {
                let detail = format!(
                    "writer connection out of step (SQLite in a transaction: {sqlite_open}, sqlx: {sqlx_open}); replaced"
                );
                tracing::error!(%detail, "store");
                writable.fail(&detail);
                return Ok(false);
            }
            Ok(true)
        })
    }
}

/// A write transaction on the writer connection. Derefs to the connection, so the store's
/// functions take `&mut *tx` like any connection.
pub struct Tx {
    conn: PoolConnection<Sqlite>,
    /// Begun and neither committed nor rolled back.
    open: bool,
    writable: Writable,
}

impl Tx {
    pub(super) async fn begin(
        pool: &sqlx::SqlitePool,
        writable: &Writable,
    ) -> Result<Self, StoreError> {
        let result = async {
            let mut conn = pool.acquire().await?;
            if let Err(e) = SqliteTransactionManager::begin(&mut conn, None).await {
                conn.close_on_drop();
                return Err(e);
            }
            Ok(conn)
        }
        .await;
        match result {
            Ok(conn) => Ok(Self {
                conn,
                open: true,
                writable: writable.clone(),
            }),
            Err(e) => Err(writable.noted(StoreError::Db(e))),
        }
    }

    /// Commits, and returns `Ok` only once SQLite has confirmed it (see the module doc).
    pub async fn commit(mut self) -> Result<(), StoreError> {
        let result = self.commit_confirmed().await;
        if let Err(e) = &result {
            // Whatever the reason, the transaction did not reach the disk: the store is failing
            // until a round trip proves otherwise, and this connection is not used again.
            self.writable.fail(&e.to_string());
            self.conn.close_on_drop();
            self.open = false;
        }
        result
    }

    async fn commit_confirmed(&mut self) -> Result<(), StoreError> {
        // sqlx sends `COMMIT` only when it counts one open transaction; at any other depth it
        // would send `RELEASE SAVEPOINT`, which commits nothing.
        let depth = SqliteTransactionManager::get_transaction_depth(&self.conn);
        if depth != 1 {
            return Err(StoreError::Unconfirmed(format!(
                "sqlx counts {depth} open transactions on the writer; a commit now would not be a COMMIT"
            )));
        }
        SqliteTransactionManager::commit(&mut self.conn).await?;
        self.open = false;
        if sqlite_in_transaction(&mut self.conn).await? {
            return Err(StoreError::Unconfirmed(
                "COMMIT returned but SQLite is still inside a transaction".into(),
            ));
        }
        Ok(())
    }

    /// Rolls back; the connection goes back to the pool (after the usual check).
    pub async fn rollback(mut self) -> Result<(), StoreError> {
        match SqliteTransactionManager::rollback(&mut self.conn).await {
            Ok(()) => {
                self.open = false;
                Ok(())
            }
            Err(e) => Err(self.writable.noted(StoreError::Db(e))),
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.open {
            // Dropped uncommitted (an error on the way, or a read that needed no commit). The
            // rollback is queued before the connection goes back to the pool, where the release
            // check replaces it if SQLite and sqlx still disagree afterwards.
            SqliteTransactionManager::start_rollback(&mut self.conn);
        }
    }
}

impl Deref for Tx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

/// Why the store cannot take writes, since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub since: DateTime<Utc>,
    pub error: String,
}

/// Whether the store can commit: set failing by any write that could not be made durable, back to
/// writable only by a successful write round trip. Cheap to clone; waiting on it never polls.
#[derive(Clone)]
pub struct Writable(Arc<WritableInner>);

struct WritableInner {
    state: watch::Sender<Option<Failure>>,
    /// Unix milliseconds of the last successful write round trip; 0 = none yet.
    round_trip_at: AtomicI64,
    /// Unix milliseconds of the round trip that ended the last failure; 0 = never failed.
    recovered_at: AtomicI64,
}

impl Default for Writable {
    fn default() -> Self {
        Self(Arc::new(WritableInner {
            state: watch::Sender::new(None),
            round_trip_at: AtomicI64::new(0),
            recovered_at: AtomicI64::new(0),
        }))
    }
}

impl Writable {
    /// Marks the store failing (keeps the first failure's time, updates the error).
    pub fn fail(&self, error: &str) {
        self.0.state.send_modify(|state| match state {
            Some(f) => f.error = error.to_owned(),
            None => {
                *state = Some(Failure {
                    since: Utc::now(),
                    error: error.to_owned(),
                })
            }
        });
    }

    /// Marks the store failing when `e` says it cannot take writes; hands `e` back.
    pub fn noted(&self, e: StoreError) -> StoreError {
        if e.is_unavailable() {
            self.fail(&e.to_string());
        }
        e
    }

    /// A write round trip succeeded at `at`.
    pub fn round_trip_ok(&self, at: DateTime<Utc>) {
        self.0
            .round_trip_at
            .store(at.timestamp_millis(), Ordering::Relaxed);
        if self
            .0
            .state
            .send_if_modified(|state| state.take().is_some())
        {
            self.0
                .recovered_at
                .store(at.timestamp_millis(), Ordering::Relaxed);
        }
    }

    /// When the last failure ended (a round trip succeeded after it), if the store ever failed.
    pub fn recovered_at(&self) -> Option<DateTime<Utc>> {
        match self.0.recovered_at.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }

    /// Writable, and for at least `for_at_least` by `now`.
    pub fn is_steady(&self, now: DateTime<Utc>, for_at_least: chrono::Duration) -> bool {
        self.is_writable()
            && self
                .recovered_at()
                .is_none_or(|at| now - at >= for_at_least)
    }

    pub fn failure(&self) -> Option<Failure> {
        self.0.state.borrow().clone()
    }

    pub fn is_writable(&self) -> bool {
        self.0.state.borrow().is_none()
    }

    /// When the last write round trip succeeded.
    pub fn last_round_trip(&self) -> Option<DateTime<Utc>> {
        match self.0.round_trip_at.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }

    /// Resolves once the store is writable (at once when it is).
    pub async fn wait_writable(&self) {
        let mut rx = self.0.state.subscribe();
        let _ = rx.wait_for(Option::is_none).await;
    }

    /// Resolves once the store is marked failing (at once when it is).
    pub async fn wait_failing(&self) {
        let mut rx = self.0.state.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::store;
    use super::super::{NewEvent, Store};
    use chrono::Utc;

    fn event(key: &str) -> NewEvent {
        NewEvent {
            dedupe_key: key.to_owned(),
            event_type: "test".to_owned(),
            received_at: Utc::now(),
            body: axum::body::Bytes::from(format!("{{\"k\":\"{key}\"}}")),
            webhook_id: None,
        }
    }

    async fn stored(store: &Store) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM inbox")
            .fetch_one(&store.reader)
            .await
            .unwrap()
    }

    /// What SQLite does by itself when a commit hits `SQLITE_FULL` / `SQLITE_IOERR`: the whole
    /// transaction is gone, behind sqlx's back. A raw `ROLLBACK` does exactly that.
    async fn lose_transaction_behind_sqlx(store: &Store) -> super::Tx {
        let mut tx = store.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO inbox (dedupe_key, event_type, received_at, body) VALUES ('x', 't', 'now', x'00')",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query("ROLLBACK").execute(&mut *tx).await.unwrap();
        tx
    }

    #[tokio::test]
    async fn after_sqlite_rolls_back_by_itself_every_acknowledged_commit_is_real() {
        let (store, dir) = store().await;
        let tx = lose_transaction_behind_sqlx(&store).await;
        assert!(
            tx.commit().await.is_err(),
            "a lost transaction never commits"
        );
        assert!(
            !store.writable().is_writable(),
            "the store is marked failing"
        );
        // The disk is still full: the next batch fails too and is dropped. Before the fix this
        // left sqlx one savepoint deep inside a transaction that never ended.
        drop(store.begin().await.unwrap());
        let inserted = store
            .insert_events(&[event("a"), event("b")])
            .await
            .unwrap();
        assert!(inserted.iter().all(Option::is_some));
        assert_eq!(stored(&store).await, 2, "readers see what was acknowledged");
        store.close().await;
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let reopened = Store::open(&url).await.unwrap();
        assert_eq!(stored(&reopened).await, 2, "and it survives a restart");
    }

    #[tokio::test]
    async fn a_writer_dropped_after_sqlite_rolled_back_is_replaced_before_reuse() {
        let (store, _dir) = store().await;
        // An error on the way out: the transaction is dropped, its ROLLBACK fails ("no
        // transaction is active") and sqlx still counts one open transaction.
        drop(lose_transaction_behind_sqlx(&store).await);
        for key in ["a", "b", "c"] {
            store.insert_events(&[event(key)]).await.unwrap();
        }
        assert_eq!(stored(&store).await, 3);
        assert!(
            !store.writable().is_writable(),
            "a connection out of step marks the store failing until a round trip succeeds"
        );
        store.round_trip(Utc::now(), 0).await.unwrap();
        assert!(store.writable().is_writable());
        assert!(store.writable().last_round_trip().is_some());
    }

    #[tokio::test]
    async fn a_write_round_trip_proves_the_reader_sees_the_writer() {
        let (store, _dir) = store().await;
        assert!(store.writable().last_round_trip().is_none());
        store.writable().fail("disk full");
        let failure = store.writable().failure().unwrap();
        store.writable().fail("still full");
        assert_eq!(
            store.writable().failure().unwrap().since,
            failure.since,
            "the outage keeps its start"
        );
        store.round_trip(Utc::now(), 0).await.unwrap();
        assert!(store.writable().failure().is_none());
        store.round_trip(Utc::now(), 0).await.unwrap();
    }
}
