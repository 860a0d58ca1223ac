//! The risk manager's tables: trading state, maintenance windows, alert size scales, the realized
//! PnL ledger and the equity peak, plus the account numbers a decision needs. No business rules.

use super::{dec, opt_dec, OrderRow, Store, StoreError, ORDER_COLUMNS};
use crate::clock::ts;
use crate::risk::alerts::SizeScale;
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

fn parse_dec(column: &'static str, value: String) -> Result<Decimal, StoreError> {
    value
        .parse()
        .map_err(|_| StoreError::Corrupt { column, value })
}

/// The sum of `quantity - filled_quantity` over `amounts` as [`WORKING_ENTRIES`] joins them.
fn remaining_of(amounts: String) -> Result<Decimal, StoreError> {
    let mut sum = Decimal::ZERO;
    for pair in amounts.split(',') {
        let parsed = pair.split_once(':').and_then(|(q, f)| {
            let remaining = q.parse::<Decimal>().ok()?.checked_sub(f.parse().ok()?)?;
            sum.checked_add(remaining)
        });
        match parsed {
            Some(s) => sum = s,
            None => {
                return Err(StoreError::Corrupt {
                    column: "quantity",
                    value: pair.to_owned(),
                })
            }
        }
    }
    Ok(sum)
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

// What a signal's decision asks about orders. Each is served by an index of migration 0006
// (`orders_working` holds only non-terminal orders and is used when a query repeats its exact
// `status NOT IN (...)` term), so its cost follows the working orders, the last minute and one
// strategy's symbol rather than every order ever placed; a test checks the plans.
/// Working entries (protective orders are contingent closes, not working exposure).
/// One row per (symbol, strategy, side): the working entries' quantities as exact decimal text,
/// joined with ',' (`quantity:filled_quantity` each). A decision reads this on every signal, and
/// with thousands of working orders one row per order through sqlx was most of its cost (each
/// row is copied and sent to the caller over a channel); the text is summed exactly in Rust.
const WORKING_ENTRIES: &str = "SELECT symbol, strategy, side,
            group_concat(quantity || ':' || filled_quantity, ',') AS amounts FROM orders
     WHERE status NOT IN ('filled', 'cancelled', 'rejected', 'expired') AND role = 'entry'
     GROUP BY symbol, strategy, side";
const OPEN_ORDER_COUNT: &str =
    "SELECT COUNT(*) FROM orders WHERE status NOT IN ('filled', 'cancelled', 'rejected', 'expired')";
const ORDERS_CREATED_SINCE: &str = "SELECT COUNT(*) FROM orders WHERE created_at >= ?";
const LAST_ORDER_AT: &str = "SELECT MAX(created_at) FROM orders WHERE strategy = ? AND symbol = ?";
#[cfg(test)]
const DECISION_ORDER_QUERIES: [&str; 4] = [
    WORKING_ENTRIES,
    OPEN_ORDER_COUNT,
    ORDERS_CREATED_SINCE,
    LAST_ORDER_AT,
];

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
    /// Records a notice's window, or updates the window with its key, unless the notice held
    /// for it was sent later than this one (`noticed_at`). Returns whether it was recorded.
    pub async fn upsert_window(
        conn: &mut SqliteConnection,
        w: &Window,
        noticed_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO maintenance_windows (window_key, start_at, end_at, services, description,
                 received_at, reconciled_at, notice_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (window_key) DO UPDATE SET start_at = excluded.start_at,
                 end_at = excluded.end_at, services = excluded.services,
                 description = excluded.description, received_at = excluded.received_at,
                 reconciled_at = CASE WHEN end_at = excluded.end_at AND start_at = excluded.start_at
                                      THEN COALESCE(reconciled_at, excluded.reconciled_at)
                                      ELSE excluded.reconciled_at END,
                 notice_at = excluded.notice_at
             WHERE maintenance_windows.notice_at IS NULL
                OR excluded.notice_at >= maintenance_windows.notice_at",
        )
        .bind(&w.key)
        .bind(ts(w.start))
        .bind(ts(w.end))
        .bind(serde_json::to_string(&w.services).unwrap_or_else(|_| "[]".into()))
        .bind(&w.description)
        .bind(ts(now))
        .bind(w.reconciled_at.map(ts))
        .bind(ts(noticed_at))
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
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
            "SELECT scope, factor, until, reason FROM size_scales
             WHERE scope IN ('', ?) AND until > ? ORDER BY scope",
        )
        .bind(symbol)
        .bind(ts(now))
        .fetch_all(conn)
        .await?;
        let scales = rows
            .iter()
            .map(|r| {
                let scope: String = r.get("scope");
                Ok(SizeScale {
                    symbol: (!scope.is_empty()).then_some(scope),
                    factor: dec(r, "factor")?,
                    until: time("until", r.get("until"))?,
                    reason: r.get("reason"),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(crate::risk::alerts::applicable_scale(&scales, symbol, now))
    }

    // ---- PnL, equity, balances ------------------------------------------------------------------

    /// Appends to the realized-PnL ledger and adds the amount to its day's total
    /// (`realized_daily`), in the caller's transaction. This is the only writer of the ledger, so
    /// the two stay in step: a day's total, when not NULL, is the exact sum of its ledger rows.
    pub async fn record_realized(
        conn: &mut SqliteConnection,
        symbol: &str,
        amount: Decimal,
        client_order_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let at = ts(now);
        sqlx::query(
            "INSERT INTO realized_pnl (at, symbol, amount, client_order_id) VALUES (?, ?, ?, ?)",
        )
        .bind(&at)
        .bind(symbol)
        .bind(amount.normalize().to_string())
        .bind(client_order_id)
        .execute(&mut *conn)
        .await?;
        let day = &at[..10];
        let known: Option<Option<String>> =
            sqlx::query_scalar("SELECT amount FROM realized_daily WHERE day = ?")
                .bind(day)
                .fetch_optional(&mut *conn)
                .await?;
        let total = match known.flatten() {
            Some(text) => parse_dec("realized_daily.amount", text)? + amount,
            // No total yet (or one from before the table existed): sum the day's ledger, which
            // already holds the row just written.
            None => Self::ledger_sum_of_day(&mut *conn, day).await?,
        };
        sqlx::query(
            "INSERT INTO realized_daily (day, amount) VALUES (?, ?)
             ON CONFLICT (day) DO UPDATE SET amount = excluded.amount",
        )
        .bind(day)
        .bind(total.normalize().to_string())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The exact sum of the ledger rows of one UTC day (`YYYY-MM-DD`).
    async fn ledger_sum_of_day(
        conn: &mut SqliteConnection,
        day: &str,
    ) -> Result<Decimal, StoreError> {
        // Timestamps are RFC 3339 UTC text: the day's rows are those from `day` up to (not
        // including) `day` followed by a character after 'T'.
        let rows = sqlx::query("SELECT amount FROM realized_pnl WHERE at >= ? AND at < ?")
            .bind(day)
            .bind(format!("{day}U"))
            .fetch_all(conn)
            .await?;
        rows.iter()
            .try_fold(Decimal::ZERO, |acc, r| Ok(acc + dec(r, "amount")?))
    }

    /// Realized PnL booked at or after `since`. From 00:00 UTC (what the daily loss limit asks)
    /// it reads one total per day, so its cost does not grow with the number of fills; from any
    /// other instant it sums the ledger.
    pub async fn realized_since(
        conn: &mut SqliteConnection,
        since: DateTime<Utc>,
    ) -> Result<Decimal, StoreError> {
        if since.time() != chrono::NaiveTime::MIN {
            let rows = sqlx::query("SELECT amount FROM realized_pnl WHERE at >= ?")
                .bind(ts(since))
                .fetch_all(conn)
                .await?;
            return rows
                .iter()
                .try_fold(Decimal::ZERO, |acc, r| Ok(acc + dec(r, "amount")?));
        }
        let first_day = since.format("%Y-%m-%d").to_string();
        let rows = sqlx::query("SELECT day, amount FROM realized_daily WHERE day >= ?")
            .bind(&first_day)
            .fetch_all(&mut *conn)
            .await?;
        let mut total = Decimal::ZERO;
        for r in rows {
            total += match r.get::<Option<String>, _>("amount") {
                Some(text) => parse_dec("realized_daily.amount", text)?,
                None => Self::ledger_sum_of_day(&mut *conn, r.get::<&str, _>("day")).await?,
            };
        }
        Ok(total)
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
        let rows = sqlx::query(WORKING_ENTRIES).fetch_all(conn).await?;
        for r in rows {
            let b = out.entry(r.get("symbol")).or_default();
            let remaining = remaining_of(r.get("amounts"))?;
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

    /// [`Store::books`] read through the reader pool: a snapshot for work outside a write
    /// transaction, which must not hold the writer (fetching prices before a decision).
    pub async fn read_books(&self) -> Result<BTreeMap<String, SymbolBook>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        Self::books(&mut conn).await
    }

    /// `(orders not in a terminal state, orders created at or after since)`.
    pub async fn order_counts_since(
        conn: &mut SqliteConnection,
        since: DateTime<Utc>,
    ) -> Result<(u32, u32), StoreError> {
        let open: i64 = sqlx::query_scalar(OPEN_ORDER_COUNT)
            .fetch_one(&mut *conn)
            .await?;
        let recent: i64 = sqlx::query_scalar(ORDERS_CREATED_SINCE)
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
        let at: Option<String> = sqlx::query_scalar(LAST_ORDER_AT)
            .bind(strategy)
            .bind(symbol)
            .fetch_one(conn)
            .await?;
        at.map(|s| time("created_at", s)).transpose()
    }

    /// Orders not in a terminal state, intents included (for the reconciliation passes: an
    /// intent may have reached the venue just before a crash, before its outcome was recorded).
    pub async fn working_orders(&self) -> Result<Vec<OrderRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE status NOT IN ('filled', 'cancelled', 'rejected', 'expired')
             ORDER BY created_at"
        ))
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(OrderRow::from_row).collect()
    }

    /// Symbols with an order whose existence at the venue is not known yet (`intent`, or
    /// `unknown` after an ambiguous answer): their positions are not compared with the venue's
    /// until it is, since such an order may have filled there already.
    pub async fn symbols_with_unresolved_orders(
        &self,
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT symbol FROM orders WHERE status IN ('intent', 'unknown')",
        )
        .fetch_all(&self.writer)
        .await?;
        Ok(rows.into_iter().collect())
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
    /// What the last check before sending looks at (`crate::risk::release`), read in one
    /// snapshot: trading states, maintenance windows that may still matter, positions, and every
    /// working entry.
    pub async fn send_view(&self, windows_since: DateTime<Utc>) -> Result<SendView, StoreError> {
        let mut tx = self.reader.begin().await?;
        let states = Self::trading_states(&mut tx).await?;
        let windows = Self::open_windows(&mut tx, windows_since).await?;
        let positions = sqlx::query("SELECT symbol, quantity FROM positions")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.get("symbol"), dec(r, "quantity")?)))
            .collect::<Result<_, StoreError>>()?;
        let working = sqlx::query(
            "SELECT client_order_id, symbol, side, quantity, filled_quantity, created_at
             FROM orders
             WHERE status NOT IN ('filled', 'cancelled', 'rejected', 'expired') AND role = 'entry'",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok(WorkingEntry {
                client_order_id: r.get("client_order_id"),
                symbol: r.get("symbol"),
                side: r.get("side"),
                remaining: dec(r, "quantity")? - dec(r, "filled_quantity")?,
                created_at: r.get("created_at"),
            })
        })
        .collect::<Result<_, StoreError>>()?;
        tx.rollback().await?;
        Ok(SendView {
            states,
            windows,
            positions,
            working,
        })
    }

    pub async fn positions_now(&self) -> Result<BTreeMap<String, Decimal>, StoreError> {
        let rows = sqlx::query("SELECT symbol, quantity FROM positions")
            .fetch_all(&self.writer)
            .await?;
        rows.iter()
            .map(|r| Ok((r.get("symbol"), dec(r, "quantity")?)))
            .collect()
    }
}

/// See [`Store::send_view`].
#[derive(Debug, Clone, Default)]
pub struct SendView {
    pub states: Vec<StateEntry>,
    pub windows: Vec<Window>,
    pub positions: BTreeMap<String, Decimal>,
    pub working: Vec<WorkingEntry>,
}

/// An entry not yet in a terminal state.
#[derive(Debug, Clone)]
pub struct WorkingEntry {
    pub client_order_id: String,
    pub symbol: String,
    pub side: String,
    /// Its unfilled quantity.
    pub remaining: Decimal,
    pub created_at: String,
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        (Store::open(&url).await.unwrap(), dir)
    }

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
    }

    fn amount(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn books_sum_the_working_entries_exactly_per_symbol_and_side() {
        let (store, _dir) = store().await;
        let mut tx = store.begin().await.unwrap();
        // (id, strategy, symbol, side, quantity, filled, status, role)
        for (id, strategy, symbol, side, q, f, status, role) in [
            ("a", "s1", "BTC/USD", "buy", "0.1", "0", "pending", "entry"),
            (
                "b",
                "s1",
                "BTC/USD",
                "buy",
                "0.30000000000000000001",
                "0.1",
                "partially_filled",
                "entry",
            ),
            ("c", "s2", "BTC/USD", "buy", "2", "0", "intent", "entry"),
            ("d", "s1", "BTC/USD", "sell", "1.5", "0.25", "open", "entry"),
            ("e", "s1", "BTC/USD", "sell", "7", "0", "open", "stop_loss"),
            ("f", "s1", "BTC/USD", "buy", "9", "9", "filled", "entry"),
            ("g", "s1", "ETH/USD", "buy", "3", "1", "cancelled", "entry"),
            ("h", "s2", "SOL/USD", "sell", "4", "0", "unknown", "entry"),
        ] {
            sqlx::query(
                "INSERT INTO orders (client_order_id, strategy, symbol, side, order_type, quantity,
                     filled_quantity, time_in_force, status, role, created_at, updated_at)
                 VALUES (?, ?, ?, ?, 'market', ?, ?, 'GTC', ?, ?, '2026-11-27T00:00:00Z', '2026-11-27T00:00:00Z')",
            )
            .bind(id)
            .bind(strategy)
            .bind(symbol)
            .bind(side)
            .bind(q)
            .bind(f)
            .bind(status)
            .bind(role)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        let books = Store::books(&mut tx).await.unwrap();
        assert_eq!(books.keys().collect::<Vec<_>>(), ["BTC/USD", "SOL/USD"]);
        let btc = &books["BTC/USD"];
        assert_eq!(btc.exposure.working_buy, amount("2.30000000000000000001"));
        assert_eq!(btc.exposure.working_sell, amount("1.25"));
        let mut strategies = btc.strategies.clone();
        strategies.sort();
        assert_eq!(strategies, ["s1", "s2"]);
        assert_eq!(books["SOL/USD"].exposure.working_sell, amount("4"));
        tx.rollback().await.unwrap();
    }

    #[test]
    fn a_corrupt_working_quantity_is_an_error_not_a_guess() {
        assert!(remaining_of("1:0,x:0".into()).is_err());
        assert!(remaining_of("1".into()).is_err());
        assert_eq!(remaining_of("1:0.5,2:0".into()).unwrap(), amount("2.5"));
    }

    #[tokio::test]
    async fn the_daily_realized_total_equals_the_ledger_of_the_day_exactly() {
        let (store, _dir) = store().await;
        let mut tx = store.begin().await.unwrap();
        for (day, hour, a) in [
            (26, 23, "-1000"),
            (27, 0, "0.1"),
            (27, 9, "0.2"),
            (27, 23, "-12.345678901234"),
        ] {
            Store::record_realized(&mut tx, "BTC/USD", amount(a), "sx-1", at(day, hour))
                .await
                .unwrap();
        }
        let today = Store::realized_since(&mut tx, at(27, 0)).await.unwrap();
        assert_eq!(today, amount("-12.045678901234"));
        let both = Store::realized_since(&mut tx, at(26, 0)).await.unwrap();
        assert_eq!(both, amount("-1012.045678901234"));
        let from_nine = Store::realized_since(&mut tx, at(27, 9)).await.unwrap();
        assert_eq!(from_nine, amount("-12.145678901234"));
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn days_booked_before_the_daily_totals_existed_are_summed_from_the_ledger() {
        let (store, _dir) = store().await;
        let mut tx = store.begin().await.unwrap();
        // As the migration leaves a database that already had ledger rows: the rows, and their
        // days marked "not summed yet".
        for (t, a) in [(at(27, 1), "-5.5"), (at(27, 2), "0.25")] {
            sqlx::query(
                "INSERT INTO realized_pnl (at, symbol, amount, client_order_id)
                 VALUES (?, 'BTC/USD', ?, 'old')",
            )
            .bind(ts(t))
            .bind(a)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        sqlx::query("INSERT INTO realized_daily (day, amount) VALUES ('2026-11-27', NULL)")
            .execute(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            Store::realized_since(&mut tx, at(27, 0)).await.unwrap(),
            amount("-5.25")
        );
        Store::record_realized(&mut tx, "BTC/USD", amount("-1"), "sx-2", at(27, 3))
            .await
            .unwrap();
        assert_eq!(
            Store::realized_since(&mut tx, at(27, 0)).await.unwrap(),
            amount("-6.25")
        );
        let stored: Option<String> =
            sqlx::query_scalar("SELECT amount FROM realized_daily WHERE day = '2026-11-27'")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        assert_eq!(stored.as_deref(), Some("-6.25"));
        tx.commit().await.unwrap();
    }

    /// The plan of each query a signal's decision runs over `orders`: none may walk the whole
    /// order history.
    #[tokio::test]
    async fn a_decision_reads_no_query_that_scans_every_order() {
        let (store, _dir) = store().await;
        let mut conn = store.writer.acquire().await.unwrap();
        for sql in DECISION_ORDER_QUERIES {
            let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .bind("x")
                .bind("y")
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("detail"))
                .collect();
            assert!(
                plan.iter()
                    .all(|d| !d.starts_with("SCAN orders") || d.contains("INDEX orders_working")),
                "{sql}: {plan:?}"
            );
        }
    }
}
