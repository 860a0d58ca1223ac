//! Marks and PnL samples: the market prices the bot last read for the symbols it holds, and the
//! PnL totals it took at regular times (the dashboard's curve). Plain rows; the arithmetic is in
//! `portfolio` and `admin::pnl`.

use super::{dec, Store, StoreError};
use crate::clock::ts;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::Row;
use std::collections::HashMap;

/// PnL totals over every symbol at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PnlTotals {
    /// Before fees.
    pub realized_pnl: Decimal,
    pub unrealized_pnl: Decimal,
    pub fees: Decimal,
}

impl PnlTotals {
    /// Realized plus unrealized, after fees: the headline number.
    pub fn net(&self) -> Decimal {
        self.realized_pnl + self.unrealized_pnl - self.fees
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PnlSample {
    pub at: String,
    #[serde(flatten)]
    pub totals: PnlTotals,
    /// `realized + unrealized - fees`.
    pub net_pnl: Decimal,
}

/// An order with fills, as a point in time on the PnL curve.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FillMark {
    pub at: String,
    pub client_order_id: String,
    pub symbol: String,
    pub side: String,
    pub filled_quantity: Decimal,
    pub average_price: Decimal,
}

impl Store {
    pub async fn save_mark(
        &self,
        symbol: &str,
        price: Decimal,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO marks (symbol, price, at) VALUES (?, ?, ?)
             ON CONFLICT (symbol) DO UPDATE SET price = excluded.price, at = excluded.at",
        )
        .bind(symbol)
        .bind(price.normalize().to_string())
        .bind(ts(at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The last market price read per symbol.
    pub async fn marks(&self) -> Result<HashMap<String, Decimal>, StoreError> {
        let rows = sqlx::query("SELECT symbol, price FROM marks")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| Ok((r.get("symbol"), dec(r, "price")?)))
            .collect()
    }

    /// Records `totals` at `at` and forgets samples older than `keep_after`.
    pub async fn save_pnl_sample(
        &self,
        at: DateTime<Utc>,
        totals: &PnlTotals,
        keep_after: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO pnl_samples (at, realized, unrealized, fees) VALUES (?, ?, ?, ?)
             ON CONFLICT (at) DO UPDATE SET realized = excluded.realized,
                 unrealized = excluded.unrealized, fees = excluded.fees",
        )
        .bind(ts(at))
        .bind(totals.realized_pnl.normalize().to_string())
        .bind(totals.unrealized_pnl.normalize().to_string())
        .bind(totals.fees.normalize().to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM pnl_samples WHERE at < ?")
            .bind(ts(keep_after))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest `limit` samples, oldest first.
    pub async fn recent_pnl_samples(&self, limit: i64) -> Result<Vec<PnlSample>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, realized, unrealized, fees FROM
                 (SELECT * FROM pnl_samples ORDER BY at DESC LIMIT ?)
             ORDER BY at",
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                let totals = PnlTotals {
                    realized_pnl: dec(r, "realized")?,
                    unrealized_pnl: dec(r, "unrealized")?,
                    fees: dec(r, "fees")?,
                };
                Ok(PnlSample {
                    at: r.get("at"),
                    net_pnl: totals.net(),
                    totals,
                })
            })
            .collect()
    }

    /// Orders with fills whose last change is at or after `since`, oldest first.
    pub async fn fill_marks_since(&self, since: &str) -> Result<Vec<FillMark>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_order_id, symbol, side, filled_quantity, average_price, updated_at
             FROM orders WHERE average_price IS NOT NULL AND updated_at >= ?
             ORDER BY updated_at, client_order_id",
        )
        .bind(since)
        .fetch_all(&self.reader)
        .await?;
        let marks: Result<Vec<FillMark>, StoreError> = rows
            .iter()
            .map(|r| {
                Ok(FillMark {
                    at: r.get("updated_at"),
                    client_order_id: r.get("client_order_id"),
                    symbol: r.get("symbol"),
                    side: r.get("side"),
                    filled_quantity: dec(r, "filled_quantity")?,
                    average_price: dec(r, "average_price")?,
                })
            })
            .collect();
        Ok(marks?
            .into_iter()
            .filter(|m| !m.filled_quantity.is_zero())
            .collect())
    }
}
