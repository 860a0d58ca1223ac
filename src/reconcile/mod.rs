//! Reconciliation: bringing our order book in line with what the venue reports.
//!
//! This module applies one venue report (a callback or a REST answer) to one local order inside the
//! caller's transaction: the status moves through `order::apply`, a fill not seen before is booked
//! into the position exactly once (the filled quantity is compared with the stored one in the same
//! transaction, and there is a single writer). Reports about orders we do not know yet are
//! deferred, never dropped.

use crate::ingress::events::OrderNews;
use crate::model::Side;
use crate::order::{self, OrderStatus};
use crate::store::{OrderRow, Store, StoreError};
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

pub mod drift;
pub mod full;
pub mod snapshot;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewsOutcome {
    /// Applied to a local order.
    Applied {
        /// The order learned its venue id from this report.
        linked: bool,
        /// A fill booked by this report (for the operator's notifications).
        fill: Option<BookedFill>,
    },
    /// About an order we cannot match yet (its POST may not have returned): keep for later.
    Deferred,
    /// About an order that is not ours (another client id): recorded, nothing to do.
    Foreign,
}

/// Applies a report about an order, matched by venue id, then by our `clientOrderId`.
pub async fn apply_news(
    tx: &mut SqliteConnection,
    news: &OrderNews,
    now: DateTime<Utc>,
) -> Result<NewsOutcome, StoreError> {
    let mut order = Store::order_by_venue_id(&mut *tx, &news.order_id).await?;
    if order.is_none() {
        if let Some(cid) = &news.client_order_id {
            order = Store::order_by_client_id(&mut *tx, cid).await?;
            if order.is_none() && !cid.starts_with(CLIENT_ID_PREFIX) {
                return Ok(NewsOutcome::Foreign);
            }
        }
    }
    let Some(order) = order else {
        return Ok(NewsOutcome::Deferred);
    };
    let linked = order.order_id.is_none();
    let fill = apply_report(tx, &order, news, now).await?;
    Ok(NewsOutcome::Applied { linked, fill })
}

/// A fill booked into a position, as the operator is told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookedFill {
    pub client_order_id: String,
    pub symbol: String,
    pub side: String,
    pub quantity: rust_decimal::Decimal,
    pub price: rust_decimal::Decimal,
}

impl BookedFill {
    pub fn notification(&self) -> crate::notify::Notification {
        crate::notify::Notification::Fill {
            client_order_id: self.client_order_id.clone(),
            symbol: self.symbol.clone(),
            side: self.side.clone(),
            quantity: self.quantity.normalize().to_string(),
            price: self.price.normalize().to_string(),
        }
    }
}

const CLIENT_ID_PREFIX: &str = "sx-";

/// Merges a venue report into `order` and books any new fill, which it returns.
pub async fn apply_report(
    tx: &mut SqliteConnection,
    order: &OrderRow,
    news: &OrderNews,
    now: DateTime<Utc>,
) -> Result<Option<BookedFill>, StoreError> {
    let current = order.progress()?;
    let seen = OrderStatus::from_venue(&news.status);
    if seen.is_none() {
        tracing::warn!(
            client_order_id = %order.client_order_id,
            venue_status = %news.status,
            "unknown order status from the venue; kept verbatim"
        );
    }
    let applied = order::apply(
        &current,
        seen.unwrap_or(current.status),
        news.filled_quantity,
        news.average_price,
    );
    if applied.conflict {
        tracing::warn!(
            client_order_id = %order.client_order_id,
            local = current.status.as_str(),
            venue = %news.status,
            "venue report contradicts a terminal order status; kept the local one"
        );
    }
    Store::save_progress(
        &mut *tx,
        &order.client_order_id,
        Some(&news.order_id),
        &applied.progress,
        Some(&news.status),
        now,
    )
    .await?;
    let mut booked = None;
    if let Some((qty, price)) = applied.new_fill {
        let side = Side::parse(&order.side).map_err(|_| StoreError::Corrupt {
            column: "side",
            value: order.side.clone(),
        })?;
        let position = Store::position(&mut *tx, &order.symbol).await?;
        let updated = position.apply_fill(side.sign() * qty, price);
        Store::save_position(&mut *tx, &order.symbol, &updated, price, now).await?;
        // The daily realized-loss limit sums this ledger.
        let realized = updated.realized_pnl - position.realized_pnl;
        if !realized.is_zero() {
            Store::record_realized(
                &mut *tx,
                &order.symbol,
                realized,
                &order.client_order_id,
                now,
            )
            .await?;
        }
        tracing::info!(
            client_order_id = %order.client_order_id,
            symbol = %order.symbol,
            side = %order.side,
            quantity = %qty,
            price = %price,
            position = %updated.quantity,
            "fill booked"
        );
        booked = Some(BookedFill {
            client_order_id: order.client_order_id.clone(),
            symbol: order.symbol.clone(),
            side: order.side.clone(),
            quantity: qty,
            price,
        });
    }
    if applied.progress.status != current.status {
        tracing::info!(
            client_order_id = %order.client_order_id,
            from = current.status.as_str(),
            to = applied.progress.status.as_str(),
            "order status"
        );
    }
    Ok(booked)
}
