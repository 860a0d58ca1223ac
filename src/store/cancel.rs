//! Cancel requests, kept on the order's row (`migrations/sqlite/0007_cancel.sql`). No business
//! rules: the executor's canceller decides; this module only records.
//!
//! Guarantees: a request is written before its `DELETE` is sent, so a restart resumes it; an open
//! request (`requested` or `unknown`) has a `cancel_next_at` and is the only kind that does; a
//! closed request (`accepted` or `rejected`) is never reopened except by an explicit new request.

use super::{Store, StoreError};
use crate::clock::ts;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

/// Where a cancel request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelState {
    /// Recorded, no `DELETE` sent yet (or the order has no venue id yet).
    Requested,
    /// A `DELETE` (or the lookup after it) got no usable answer: ask the venue before sending again.
    Unknown,
    /// The order is no longer working at the venue (cancelled, or already final).
    Accepted,
    /// The venue refused to cancel an order it still reports working.
    Rejected,
}

impl CancelState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Unknown => "unknown",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "requested" => Self::Requested,
            "unknown" => Self::Unknown,
            "accepted" => Self::Accepted,
            "rejected" => Self::Rejected,
            _ => return None,
        })
    }
}

/// An order's cancel request as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelView {
    pub state: CancelState,
    pub reason: Option<String>,
    pub requested_at: Option<String>,
    /// Requests (`DELETE` or lookups) that ended without a usable answer.
    pub attempts: i64,
    /// The last error, or the venue's refusal (`code: message`).
    pub error: Option<String>,
    pub done_at: Option<String>,
}

impl CancelView {
    /// Reads the cancel columns of an `ORDER_COLUMNS` row; `None` when no cancel was requested.
    pub(super) fn from_row(r: &sqlx::sqlite::SqliteRow) -> Option<Self> {
        let state: Option<String> = r.get("cancel_state");
        Some(Self {
            state: CancelState::parse(&state?)?,
            reason: r.get("cancel_reason"),
            requested_at: r.get("cancel_requested_at"),
            attempts: r.get("cancel_attempts"),
            error: r.get("cancel_error"),
            done_at: r.get("cancel_done_at"),
        })
    }
}

/// One open cancel request that is due.
#[derive(Debug, Clone)]
pub struct CancelTask {
    pub client_order_id: String,
    pub state: CancelState,
    pub attempts: i64,
}

const FINAL_STATUSES: &str = "('filled', 'cancelled', 'rejected', 'expired')";

impl Store {
    /// Records that an order is to be cancelled, due at once. Does nothing when the order is final
    /// or already has a request (`reopen_rejected`: unless that request was refused, so an
    /// operator can ask again). Returns whether a request was recorded.
    pub async fn request_cancel(
        &self,
        client_order_id: &str,
        reason: &str,
        reopen_rejected: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE orders SET cancel_state = 'requested', cancel_reason = ?,
                 cancel_requested_at = ?, cancel_attempts = 0, cancel_next_at = ?,
                 cancel_error = NULL, cancel_done_at = NULL
             WHERE client_order_id = ? AND status NOT IN {FINAL_STATUSES}
               AND (cancel_state IS NULL OR (? AND cancel_state = 'rejected'))"
        ))
        .bind(reason)
        .bind(ts(now))
        .bind(ts(now))
        .bind(client_order_id)
        .bind(reopen_rejected)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Open cancel requests due by `now`, the longest waiting first.
    pub async fn cancels_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<CancelTask>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_order_id, cancel_state, cancel_attempts FROM orders
             WHERE cancel_next_at IS NOT NULL AND cancel_next_at <= ?
             ORDER BY cancel_next_at, client_order_id LIMIT ?",
        )
        .bind(ts(now))
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.get("cancel_state");
                Ok(CancelTask {
                    client_order_id: r.get("client_order_id"),
                    state: CancelState::parse(&state).ok_or(StoreError::Corrupt {
                        column: "cancel_state",
                        value: state,
                    })?,
                    attempts: r.get("cancel_attempts"),
                })
            })
            .collect()
    }

    /// The open request of one order, if it has one.
    pub async fn cancel_task(
        &self,
        client_order_id: &str,
    ) -> Result<Option<CancelTask>, StoreError> {
        let row = sqlx::query(
            "SELECT cancel_state, cancel_attempts FROM orders
             WHERE client_order_id = ? AND cancel_next_at IS NOT NULL",
        )
        .bind(client_order_id)
        .fetch_optional(&self.writer)
        .await?;
        row.map(|r| {
            let state: String = r.get("cancel_state");
            Ok(CancelTask {
                client_order_id: client_order_id.to_owned(),
                state: CancelState::parse(&state).ok_or(StoreError::Corrupt {
                    column: "cancel_state",
                    value: state,
                })?,
                attempts: r.get("cancel_attempts"),
            })
        })
        .transpose()
    }

    /// A request got no usable answer: ask the venue at `retry_at` before sending again.
    pub async fn cancel_unknown(
        &self,
        client_order_id: &str,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE orders SET cancel_state = 'unknown', cancel_error = ?,
                 cancel_attempts = cancel_attempts + 1, cancel_next_at = ?
             WHERE client_order_id = ? AND cancel_next_at IS NOT NULL",
        )
        .bind(error)
        .bind(ts(retry_at))
        .bind(client_order_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Nothing can be sent yet (no venue id): look again at `retry_at`, state unchanged.
    pub async fn cancel_later(
        &self,
        client_order_id: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE orders SET cancel_next_at = ?
             WHERE client_order_id = ? AND cancel_next_at IS NOT NULL",
        )
        .bind(ts(retry_at))
        .bind(client_order_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Closes an open request as `accepted` or `rejected`, with the venue's word in `error`.
    pub async fn cancel_closed(
        &self,
        client_order_id: &str,
        state: CancelState,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE orders SET cancel_state = ?, cancel_error = COALESCE(?, cancel_error),
                 cancel_next_at = NULL, cancel_done_at = ?
             WHERE client_order_id = ? AND cancel_next_at IS NOT NULL",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(ts(now))
        .bind(client_order_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}
