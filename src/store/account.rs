//! Positions (ours, from our fills, and the venue's) and balances.

use super::{dec, opt_dec, Store, StoreError};
use crate::clock::ts;
use crate::model::events::VenuePosition;
use crate::portfolio::Position;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{Row, SqliteConnection};

impl Store {
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
