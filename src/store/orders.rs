//! Orders: intents written before any request, the executor's due list and outcomes, the venue's
//! progress applied to them, and the views the admin API and reconciliation read.

use super::{dec, opt_dec, CancelView, Store, StoreError, ORDER_COLUMNS};
use crate::clock::ts;
use crate::order::{OrderStatus, Progress};
use crate::risk::{OrderPlan, RiskApproved};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{Row, SqliteConnection};

impl Store {
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
    pub(super) fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Self, StoreError> {
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
