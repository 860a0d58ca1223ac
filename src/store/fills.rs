//! Fills by fill id, fees, the configured fee rates and closed positions (ours beside the
//! venue's `position.closed`). No business rules.

use super::{dec, opt_dec, Store, StoreError};
use crate::clock::ts;
use crate::model::checked;
use crate::model::events::Fill;
use crate::portfolio::ClosedPosition;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{Row, SqliteConnection};

/// What is known about an order's fills from the venue's fill lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordedFills {
    /// Quantity and notional of every recorded fill.
    pub quantity: Decimal,
    pub notional: Decimal,
    /// Notional and fees of the recorded fills whose fee the venue reported.
    pub reported_notional: Decimal,
    pub reported_fees: Decimal,
}

/// A closed position: our realized PnL beside the venue's, once its `position.closed` matched.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClosedPositionRow {
    pub seq: i64,
    pub symbol: String,
    pub side: String,
    pub entry_price: Decimal,
    /// Ours, from our fills, before fees.
    pub realized_pnl: Decimal,
    pub closed_at: String,
    /// The venue's `position.closed` realizedPnl; `None` until it arrived and matched.
    pub venue_realized_pnl: Option<Decimal>,
    pub venue_event_seq: Option<i64>,
    pub drift: bool,
}

impl ClosedPositionRow {
    fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Self, StoreError> {
        Ok(Self {
            seq: r.get("seq"),
            symbol: r.get("symbol"),
            side: r.get("side"),
            entry_price: dec(r, "entry_price")?,
            realized_pnl: dec(r, "realized_pnl")?,
            closed_at: r.get("closed_at"),
            venue_realized_pnl: opt_dec(r, "venue_realized")?,
            venue_event_seq: r.get("venue_seq"),
            drift: r.get::<i64, _>("drift") != 0,
        })
    }
}

const CLOSED_COLUMNS: &str =
    "seq, symbol, side, entry_price, realized_pnl, closed_at, venue_realized, venue_seq, drift";

impl Store {
    /// Replaces the stored fee rates with the configuration's (`""` is the default rate).
    pub async fn set_fee_rates(&self, rates: &[(String, Decimal)]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM fee_rates")
            .execute(&mut *tx)
            .await?;
        for (symbol, bps) in rates {
            sqlx::query("INSERT INTO fee_rates (symbol, fee_bps) VALUES (?, ?)")
                .bind(symbol)
                .bind(bps.normalize().to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The fee rate of `symbol` in basis points: its own, else the default, else zero.
    pub async fn fee_bps(conn: &mut SqliteConnection, symbol: &str) -> Result<Decimal, StoreError> {
        let row = sqlx::query(
            "SELECT fee_bps FROM fee_rates WHERE symbol IN (?, '') ORDER BY symbol DESC LIMIT 1",
        )
        .bind(symbol)
        .fetch_optional(conn)
        .await?;
        Ok(row
            .map(|r| dec(&r, "fee_bps"))
            .transpose()?
            .unwrap_or_default())
    }

    /// Records the fills of an order the venue listed; a fill id already recorded is ignored.
    /// Returns how many were new.
    pub async fn record_fills(
        conn: &mut SqliteConnection,
        client_order_id: &str,
        fills: &[Fill],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut new = 0;
        for f in fills {
            new += sqlx::query(
                "INSERT INTO fills (client_order_id, fill_id, quantity, price, fee, filled_at, recorded_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(client_order_id)
            .bind(&f.fill_id)
            .bind(f.quantity.normalize().to_string())
            .bind(f.price.normalize().to_string())
            .bind(f.fee.map(|d| d.normalize().to_string()))
            .bind(&f.at)
            .bind(ts(now))
            .execute(&mut *conn)
            .await?
            .rows_affected();
        }
        Ok(new)
    }

    /// Totals of an order's recorded fills.
    pub async fn recorded_fills(
        conn: &mut SqliteConnection,
        client_order_id: &str,
    ) -> Result<RecordedFills, StoreError> {
        let rows = sqlx::query("SELECT quantity, price, fee FROM fills WHERE client_order_id = ?")
            .bind(client_order_id)
            .fetch_all(conn)
            .await?;
        let mut t = RecordedFills::default();
        for r in &rows {
            let (q, p) = (dec(r, "quantity")?, dec(r, "price")?);
            t.quantity += q;
            t.notional += q * p;
            if let Some(fee) = opt_dec(r, "fee")? {
                t.reported_notional += q * p;
                t.reported_fees += fee;
            }
        }
        Ok(t)
    }

    pub async fn set_fees_booked(
        conn: &mut SqliteConnection,
        client_order_id: &str,
        fees: Decimal,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE orders SET fees_booked = ? WHERE client_order_id = ?")
            .bind(fees.normalize().to_string())
            .bind(client_order_id)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The order's fills and fees are final (its fill list was read after it ended, or it ended
    /// without a fill).
    pub async fn mark_fills_settled(
        conn: &mut SqliteConnection,
        client_order_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE orders SET fills_settled_at = ? WHERE client_order_id = ? AND fills_settled_at IS NULL",
        )
        .bind(ts(now))
        .bind(client_order_id)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Ended orders with fills whose fill list has not been read yet: `(client id, venue id)`,
    /// oldest first.
    pub async fn orders_to_settle(&self, limit: i64) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_order_id, venue_order_id FROM orders
             WHERE fills_settled_at IS NULL AND average_price IS NOT NULL
               AND venue_order_id IS NOT NULL
               AND status IN ('filled', 'cancelled', 'rejected', 'expired')
             ORDER BY updated_at LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("client_order_id"), r.get("venue_order_id")))
            .collect())
    }

    pub async fn record_closed_position(
        conn: &mut SqliteConnection,
        symbol: &str,
        closed: &ClosedPosition,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO closed_positions (symbol, side, entry_price, realized_pnl, closed_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(symbol)
        .bind(closed.side)
        .bind(closed.entry_price.normalize().to_string())
        .bind(closed.realized_pnl.normalize().to_string())
        .bind(ts(now))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Closed positions of `symbol` no `position.closed` has matched yet, oldest first.
    pub async fn unmatched_closed_positions(
        conn: &mut SqliteConnection,
        symbol: &str,
    ) -> Result<Vec<ClosedPositionRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CLOSED_COLUMNS} FROM closed_positions
             WHERE symbol = ? AND venue_realized IS NULL ORDER BY seq"
        ))
        .bind(symbol)
        .fetch_all(conn)
        .await?;
        rows.iter().map(ClosedPositionRow::from_row).collect()
    }

    /// Records the venue's view of a closed position beside ours.
    pub async fn match_closed_position(
        conn: &mut SqliteConnection,
        seq: i64,
        venue_realized: Decimal,
        venue_event_seq: i64,
        drift: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE closed_positions SET venue_realized = ?, venue_seq = ?, drift = ? WHERE seq = ?",
        )
        .bind(venue_realized.normalize().to_string())
        .bind(venue_event_seq)
        .bind(drift)
        .bind(seq)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The latest closed positions, newest first.
    pub async fn list_closed_positions(
        &self,
        limit: i64,
    ) -> Result<Vec<ClosedPositionRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CLOSED_COLUMNS} FROM closed_positions ORDER BY seq DESC LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(ClosedPositionRow::from_row).collect()
    }
}

/// The numbers the cash check compares, read together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CashView {
    /// The venue's last reported `total` of the quote asset.
    pub venue_total: Option<Decimal>,
    /// Realized PnL after fees, over every symbol, by our fills.
    pub net_realized: Decimal,
    /// Completed deposits minus withdrawals of the quote asset.
    pub transfers: Decimal,
    /// Fees booked for orders whose fill list has not been read yet (estimates).
    pub unsettled_fees: Decimal,
}

impl Store {
    /// Read in one transaction on the reader pool, so the numbers belong together.
    pub async fn cash_view(&self, asset: &str) -> Result<CashView, StoreError> {
        let mut conn = self.reader.begin().await?;
        let venue_total = Self::balance(&mut conn, asset)
            .await?
            .map(|(_, total)| total);
        let mut view = CashView {
            venue_total,
            ..CashView::default()
        };
        for r in sqlx::query("SELECT realized_pnl, fees FROM positions")
            .fetch_all(&mut *conn)
            .await?
        {
            let net = checked::sub(dec(&r, "realized_pnl")?, dec(&r, "fees")?)?;
            view.net_realized = checked::add(view.net_realized, net)?;
        }
        for r in sqlx::query(
            "SELECT kind, amount FROM account_transactions
             WHERE asset = ? AND (status IS NULL OR status = 'completed')",
        )
        .bind(asset)
        .fetch_all(&mut *conn)
        .await?
        {
            let amount = dec(&r, "amount")?;
            match r.get::<String, _>("kind").as_str() {
                // Venue amounts: their sum may not fit (the caller reports it).
                "deposit" => view.transfers = checked::add(view.transfers, amount)?,
                _ => view.transfers = checked::sub(view.transfers, amount)?,
            }
        }
        for r in sqlx::query(
            "SELECT fees_booked FROM orders
             WHERE fills_settled_at IS NULL AND average_price IS NOT NULL",
        )
        .fetch_all(&mut *conn)
        .await?
        {
            view.unsettled_fees = checked::add(view.unsettled_fees, dec(&r, "fees_booked")?)?;
        }
        conn.commit().await?;
        Ok(view)
    }
}

impl Store {
    /// The cash check's stored numbers (`cash_*` risk values): name → (value, updated at).
    pub async fn cash_check_values(
        &self,
    ) -> Result<std::collections::BTreeMap<String, (Decimal, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, value, updated_at FROM risk_values WHERE name LIKE 'cash\\_%' ESCAPE '\\'",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| Ok((r.get("name"), (dec(r, "value")?, r.get("updated_at")))))
            .collect()
    }
}
