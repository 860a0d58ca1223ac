//! The risk manager's tables: trading state, maintenance windows, alert size scales, the realized
//! PnL ledger and the equity peak, plus the account numbers a decision needs. No business rules.

use super::{dec, opt_dec, ts, OrderRow, Store, StoreError, ORDER_COLUMNS};
use crate::risk::maintenance::Window;
use crate::risk::state::{SetBy, StateEntry, TradingState};
use crate::risk::Exposure;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{Row, SqliteConnection};
use std::collections::BTreeMap;

fn time(column: &'static str, s: String) -> Result<DateTime<Utc>, StoreError> {
    crate::venue::wire::parse_timestamp(&s).ok_or(StoreError::Corrupt { column, value: s })
}

fn state_row(r: &sqlx::sqlite::SqliteRow) -> Result<StateEntry, StoreError> {
    let scope: String = r.get("scope");
    let state: String = r.get("state");
    let set_by: String = r.get("set_by");
    Ok(StateEntry {
        symbol: (!scope.is_empty()).then_some(scope),
        state: TradingState::parse(&state).ok_or(StoreError::Corrupt {
            column: "state",
            value: state,
        })?,
        reason: r.get("reason"),
        since: time("since", r.get("since"))?,
        set_by: SetBy::parse(&set_by).ok_or(StoreError::Corrupt {
            column: "set_by",
            value: set_by,
        })?,
    })
}

fn window_row(r: &sqlx::sqlite::SqliteRow) -> Result<Window, StoreError> {
    let services: String = r.get("services");
    Ok(Window {
        key: r.get("window_key"),
        start: time("start_at", r.get("start_at"))?,
        end: time("end_at", r.get("end_at"))?,
        services: serde_json::from_str(&services).map_err(|_| StoreError::Corrupt {
            column: "services",
            value: services,
        })?,
        description: r.get("description"),
        reconciled_at: r
            .get::<Option<String>, _>("reconciled_at")
            .map(|s| time("reconciled_at", s))
            .transpose()?,
    })
}

/// Every symbol's position and working orders, with the last price we know for it.
#[derive(Debug, Clone, Default)]
pub struct SymbolBook {
    pub exposure: Exposure,
    pub last_price: Option<Decimal>,
    /// Strategies with working orders on it.
    pub strategies: Vec<String>,
}

impl Store {
    // ---- trading state ------------------------------------------------------------------------

    pub async fn trading_states(
        conn: &mut SqliteConnection,
    ) -> Result<Vec<StateEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT scope, state, reason, since, set_by FROM trading_state ORDER BY scope",
        )
        .fetch_all(conn)
        .await?;
        rows.iter().map(state_row).collect()
    }

    pub async fn list_trading_states(&self) -> Result<Vec<StateEntry>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        Self::trading_states(&mut conn).await
    }

    /// Stores a state; `active` removes the row (no row means active).
    pub async fn set_trading_state(
        conn: &mut SqliteConnection,
        entry: &StateEntry,
    ) -> Result<(), StoreError> {
        let scope = entry.symbol.as_deref().unwrap_or("");
        if entry.state == TradingState::Active {
            sqlx::query("DELETE FROM trading_state WHERE scope = ?")
                .bind(scope)
                .execute(conn)
                .await?;
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO trading_state (scope, state, reason, since, set_by) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (scope) DO UPDATE SET state = excluded.state, reason = excluded.reason,
                 since = excluded.since, set_by = excluded.set_by",
        )
        .bind(scope)
        .bind(entry.state.as_str())
        .bind(&entry.reason)
        .bind(ts(entry.since))
        .bind(entry.set_by.as_str())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// For the CLI and the admin endpoint: one transaction of its own.
    pub async fn set_trading_state_now(&self, entry: &StateEntry) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        Self::set_trading_state(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- maintenance --------------------------------------------------------------------------

    /// Inserts or updates (same key) a window. An update of the times clears `reconciled_at`.
    pub async fn upsert_window(
        conn: &mut SqliteConnection,
        w: &Window,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO maintenance_windows (window_key, start_at, end_at, services, description,
                 received_at, reconciled_at) VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (window_key) DO UPDATE SET start_at = excluded.start_at,
                 end_at = excluded.end_at, services = excluded.services,
                 description = excluded.description, received_at = excluded.received_at,
                 reconciled_at = CASE WHEN end_at = excluded.end_at AND start_at = excluded.start_at
                                      THEN COALESCE(reconciled_at, excluded.reconciled_at)
                                      ELSE excluded.reconciled_at END",
        )
        .bind(&w.key)
        .bind(ts(w.start))
        .bind(ts(w.end))
        .bind(serde_json::to_string(&w.services).unwrap_or_else(|_| "[]".into()))
        .bind(&w.description)
        .bind(ts(now))
        .bind(w.reconciled_at.map(ts))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Windows that may still matter: not yet reconciled, or ending after `since`.
    pub async fn open_windows(
        conn: &mut SqliteConnection,
        since: DateTime<Utc>,
    ) -> Result<Vec<Window>, StoreError> {
        let rows = sqlx::query(
            "SELECT window_key, start_at, end_at, services, description, reconciled_at
             FROM maintenance_windows WHERE reconciled_at IS NULL OR end_at >= ? ORDER BY start_at",
        )
        .bind(ts(since))
        .fetch_all(conn)
        .await?;
        rows.iter().map(window_row).collect()
    }

    pub async fn list_windows(&self) -> Result<Vec<Window>, StoreError> {
        let rows = sqlx::query(
            "SELECT window_key, start_at, end_at, services, description, reconciled_at
             FROM maintenance_windows ORDER BY start_at DESC LIMIT 100",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(window_row).collect()
    }

    /// Marks windows reconciled, unless a notice changed their times meanwhile.
    pub async fn mark_reconciled(
        &self,
        windows: &[Window],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for w in windows {
            sqlx::query(
                "UPDATE maintenance_windows SET reconciled_at = ?
                 WHERE window_key = ? AND end_at = ? AND reconciled_at IS NULL",
            )
            .bind(ts(now))
            .bind(&w.key)
            .bind(ts(w.end))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// For the maintenance task (reads through the writer, so it sees the latest commit).
    pub async fn windows_now(&self, since: DateTime<Utc>) -> Result<Vec<Window>, StoreError> {
        let mut conn = self.writer.acquire().await?;
        Self::open_windows(&mut conn, since).await
    }

    // ---- alert size scales --------------------------------------------------------------------

    pub async fn set_size_scale(
        conn: &mut SqliteConnection,
        symbol: Option<&str>,
        factor: Decimal,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO size_scales (scope, factor, until, reason) VALUES (?, ?, ?, ?)
             ON CONFLICT (scope) DO UPDATE SET factor = excluded.factor, until = excluded.until,
                 reason = excluded.reason",
        )
        .bind(symbol.unwrap_or(""))
        .bind(factor.to_string())
        .bind(ts(until))
        .bind(reason)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The smallest unexpired factor for `symbol` (its own or the account-wide one).
    pub async fn size_scale(
        conn: &mut SqliteConnection,
        symbol: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Decimal, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT factor, until, reason FROM size_scales WHERE scope IN ('', ?) AND until > ?",
        )
        .bind(symbol)
        .bind(ts(now))
        .fetch_all(conn)
        .await?;
        let mut best: Option<(Decimal, String)> = None;
        for r in rows {
            let f = dec(&r, "factor")?;
            let until: String = r.get("until");
            let reason: String = r.get("reason");
            if best.as_ref().is_none_or(|(b, _)| f < *b) {
                best = Some((f, format!("{reason} (until {until})")));
            }
        }
        Ok(best)
    }

    // ---- PnL, equity, balances ------------------------------------------------------------------

    pub async fn record_realized(
        conn: &mut SqliteConnection,
        symbol: &str,
        amount: Decimal,
        client_order_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO realized_pnl (at, symbol, amount, client_order_id) VALUES (?, ?, ?, ?)",
        )
        .bind(ts(now))
        .bind(symbol)
        .bind(amount.normalize().to_string())
        .bind(client_order_id)
        .execute(conn)
        .await?;
        Ok(())
    }

    pub async fn realized_since(
        conn: &mut SqliteConnection,
        since: DateTime<Utc>,
    ) -> Result<Decimal, StoreError> {
        let rows = sqlx::query("SELECT amount FROM realized_pnl WHERE at >= ?")
            .bind(ts(since))
            .fetch_all(conn)
            .await?;
        rows.iter()
            .try_fold(Decimal::ZERO, |acc, r| Ok(acc + dec(r, "amount")?))
    }

    pub async fn risk_value(
        conn: &mut SqliteConnection,
        name: &str,
    ) -> Result<Option<Decimal>, StoreError> {
        let row = sqlx::query("SELECT value FROM risk_values WHERE name = ?")
            .bind(name)
            .fetch_optional(conn)
            .await?;
        row.map(|r| dec(&r, "value")).transpose()
    }

    pub async fn set_risk_value(
        conn: &mut SqliteConnection,
        name: &str,
        value: Decimal,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO risk_values (name, value, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(value.to_string())
        .bind(ts(now))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// `(available, total)` of one asset, when known.
    pub async fn balance(
        conn: &mut SqliteConnection,
        asset: &str,
    ) -> Result<Option<(Decimal, Decimal)>, StoreError> {
        let row = sqlx::query("SELECT available, total FROM balances WHERE asset = ?")
            .bind(asset)
            .fetch_optional(conn)
            .await?;
        row.map(|r| Ok((dec(&r, "available")?, dec(&r, "total")?)))
            .transpose()
    }

    pub async fn save_margin_ratio(
        conn: &mut SqliteConnection,
        symbol: &str,
        ratio: Decimal,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE venue_positions SET margin_ratio = ? WHERE symbol = ?")
            .bind(ratio.to_string())
            .bind(symbol)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The largest margin ratio any venue position reported.
    pub async fn max_margin_ratio(
        conn: &mut SqliteConnection,
    ) -> Result<Option<Decimal>, StoreError> {
        let rows = sqlx::query(
            "SELECT margin_ratio FROM venue_positions WHERE margin_ratio IS NOT NULL AND quantity NOT IN ('0', '0.0')",
        )
        .fetch_all(conn)
        .await?;
        let mut max: Option<Decimal> = None;
        for r in rows {
            if let Some(v) = opt_dec(&r, "margin_ratio")? {
                max = Some(max.map_or(v, |m| m.max(v)));
            }
        }
        Ok(max)
    }

    // ---- what a decision looks at ---------------------------------------------------------------

    /// Every symbol with a position or working orders.
    pub async fn books(
        conn: &mut SqliteConnection,
    ) -> Result<BTreeMap<String, SymbolBook>, StoreError> {
        let mut out: BTreeMap<String, SymbolBook> = BTreeMap::new();
        let rows = sqlx::query("SELECT symbol, quantity, last_price FROM positions")
            .fetch_all(&mut *conn)
            .await?;
        for r in rows {
            let b = out.entry(r.get("symbol")).or_default();
            b.exposure.position = dec(&r, "quantity")?;
            b.last_price = opt_dec(&r, "last_price")?;
        }
        // Protective orders are contingent closes: they do not count as working exposure.
        let rows = sqlx::query(
            "SELECT symbol, strategy, side, quantity, filled_quantity FROM orders
             WHERE status NOT IN ('filled', 'cancelled', 'rejected', 'expired') AND role = 'entry'",
        )
        .fetch_all(conn)
        .await?;
        for r in rows {
            let b = out.entry(r.get("symbol")).or_default();
            let remaining = dec(&r, "quantity")? - dec(&r, "filled_quantity")?;
            match r.get::<String, _>("side").as_str() {
                "buy" => b.exposure.working_buy += remaining,
                _ => b.exposure.working_sell += remaining,
            }
            let strategy: String = r.get("strategy");
            if !b.strategies.contains(&strategy) {
                b.strategies.push(strategy);
            }
        }
        out.retain(|_, b| !b.exposure.worst_case().is_zero());
        Ok(out)
    }

    /// `(orders not in a terminal state, orders created at or after since)`.
    pub async fn order_counts_since(
        conn: &mut SqliteConnection,
        since: DateTime<Utc>,
    ) -> Result<(u32, u32), StoreError> {
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM orders WHERE status NOT IN ('filled', 'cancelled', 'rejected', 'expired')",
        )
        .fetch_one(&mut *conn)
        .await?;
        let recent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE created_at >= ?")
            .bind(ts(since))
            .fetch_one(conn)
            .await?;
        Ok((open as u32, recent as u32))
    }

    pub async fn last_order_at(
        conn: &mut SqliteConnection,
        strategy: &str,
        symbol: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<String> = sqlx::query_scalar(
            "SELECT MAX(created_at) FROM orders WHERE strategy = ? AND symbol = ?",
        )
        .bind(strategy)
        .bind(symbol)
        .fetch_one(conn)
        .await?;
        at.map(|s| time("created_at", s)).transpose()
    }

    /// Orders that are not in a terminal state and were sent (for the reconciliation pass).
    pub async fn working_orders(&self) -> Result<Vec<OrderRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE status NOT IN ('intent', 'filled', 'cancelled', 'rejected', 'expired')
             ORDER BY created_at"
        ))
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(OrderRow::from_row).collect()
    }

    /// Sent orders, not terminal, whose venue id is known and that had no news since `cutoff`
    /// (the stale-order poll), oldest news first.
    pub async fn stale_orders(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OrderRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE status NOT IN ('intent', 'unknown', 'filled', 'cancelled', 'rejected', 'expired')
               AND venue_order_id IS NOT NULL AND updated_at <= ?
             ORDER BY updated_at LIMIT ?"
        ))
        .bind(ts(cutoff))
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(OrderRow::from_row).collect()
    }

    /// Inserts an order found at the venue that no local row knows, under strategy `adopted`,
    /// as `pending` with nothing filled; the caller then applies the venue's report to it (which
    /// books its fills). Returns the local `clientOrderId` it was given.
    pub async fn insert_adopted(
        conn: &mut SqliteConnection,
        o: &crate::venue::wire::OrderResponse,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let cid = o
            .client_order_id
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| format!("adopted-{}", o.order_id));
        sqlx::query(
            "INSERT INTO orders (client_order_id, strategy, symbol, side, order_type, quantity,
                 price, stop_price, time_in_force, status, created_at, updated_at)
             VALUES (?, 'adopted', ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)
             ON CONFLICT (client_order_id) DO NOTHING",
        )
        .bind(&cid)
        .bind(&o.symbol)
        .bind(&o.side)
        .bind(o.order_type.as_deref().unwrap_or("limit"))
        .bind(o.quantity.unwrap_or_default().to_string())
        .bind(o.price.map(|p| p.to_string()))
        .bind(o.stop_price.map(|p| p.to_string()))
        .bind(o.time_in_force.as_deref().unwrap_or("GTC"))
        .bind(ts(now))
        .bind(ts(now))
        .execute(conn)
        .await?;
        Ok(cid)
    }

    /// Records that an order was looked at without news, so the stale poll waits again.
    pub async fn touch_order(
        &self,
        client_order_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE orders SET updated_at = ? WHERE client_order_id = ?")
            .bind(ts(now))
            .bind(client_order_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    // ---- protective exits -------------------------------------------------------------------

    /// Entries that are done filling, carry protective levels, and have none placed yet.
    pub async fn entries_needing_protection(&self) -> Result<Vec<FilledEntryRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_order_id, strategy, symbol, side, filled_quantity, protect_stop,
                    protect_target FROM orders
             WHERE role = 'entry' AND protection_done = 0
               AND (protect_stop IS NOT NULL OR protect_target IS NOT NULL)
               AND status IN ('filled', 'cancelled', 'expired') AND filled_quantity NOT IN ('0', '0.0')
             ORDER BY created_at",
        )
        .fetch_all(&self.writer)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FilledEntryRow {
                    client_order_id: r.get("client_order_id"),
                    strategy: r.get("strategy"),
                    symbol: r.get("symbol"),
                    side: r.get("side"),
                    filled: dec(r, "filled_quantity")?,
                    stop: opt_dec(r, "protect_stop")?,
                    target: opt_dec(r, "protect_target")?,
                })
            })
            .collect()
    }

    pub async fn mark_protection_done(
        conn: &mut SqliteConnection,
        client_order_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE orders SET protection_done = 1 WHERE client_order_id = ?")
            .bind(client_order_id)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Protective orders not in a terminal state, newest first.
    pub async fn working_protective(&self) -> Result<Vec<OrderRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE role != 'entry' AND status NOT IN ('filled', 'cancelled', 'rejected', 'expired')
             ORDER BY created_at DESC, client_order_id"
        ))
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(OrderRow::from_row).collect()
    }

    /// Whether another protective order of the same entry has (partly) filled.
    pub async fn sibling_filled(&self, order: &OrderRow) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM orders WHERE parent_client_order_id = ? AND client_order_id != ?
               AND filled_quantity NOT IN ('0', '0.0')",
        )
        .bind(&order.parent_client_order_id)
        .bind(&order.client_order_id)
        .fetch_one(&self.writer)
        .await?;
        Ok(n > 0)
    }

    /// Our signed position on every symbol.
    pub async fn positions_now(&self) -> Result<BTreeMap<String, Decimal>, StoreError> {
        let rows = sqlx::query("SELECT symbol, quantity FROM positions")
            .fetch_all(&self.writer)
            .await?;
        rows.iter()
            .map(|r| Ok((r.get("symbol"), dec(r, "quantity")?)))
            .collect()
    }
}

/// A filled entry with protective levels, as stored.
#[derive(Debug, Clone)]
pub struct FilledEntryRow {
    pub client_order_id: String,
    pub strategy: String,
    pub symbol: String,
    pub side: String,
    pub filled: Decimal,
    pub stop: Option<Decimal>,
    pub target: Option<Decimal>,
}
