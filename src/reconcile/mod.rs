//! Reconciliation: bringing our order book in line with what the venue reports.
//!
//! This module applies one venue report (a callback or a REST answer) to one local order inside the
//! caller's transaction: the status moves through `order::apply`, a fill not seen before is booked
//! into the position exactly once (the filled quantity is compared with the stored one in the same
//! transaction, and there is a single writer). Reports about orders we do not know yet are
//! deferred, never dropped.

use crate::model::checked;
use crate::model::events::OrderNews;
use crate::model::Side;
use crate::order::{self, OrderStatus};
use crate::portfolio;
use crate::store::{OrderRow, Store, StoreError, Tx};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

pub mod cash;
pub mod drift;
pub mod full;
pub mod settle;
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

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("venue: {0}")]
    Venue(#[from] crate::venue::VenueError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies a report about an order, matched by venue id, then by our `clientOrderId`.
pub async fn apply_news(
    tx: &mut Tx,
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

/// Applies a REST answer about one order in its own transaction, re-reading the order inside it
/// (a callback may have moved it meanwhile). Returns the fill it booked, if any.
pub async fn apply_answer(
    store: &Store,
    client_order_id: &str,
    answer: crate::venue::wire::OrderResponse,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<BookedFill>, StoreError> {
    let news = OrderNews::from(answer);
    let mut tx = store.begin().await?;
    let mut booked = None;
    if let Some(current) = Store::order_by_client_id(&mut tx, client_order_id).await? {
        booked = apply_report(&mut tx, &current, &news, now).await?;
    }
    tx.commit().await?;
    Ok(booked)
}

/// Halts `symbol` for drift found by reconciliation (its reason shows both views), unless it is
/// halted already. Never lifted automatically: a person looks first.
pub async fn halt_symbol(
    tx: &mut Tx,
    symbol: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    use crate::risk::state::{SetBy, StateEntry, TradingState};
    let halted = Store::trading_states(&mut *tx)
        .await?
        .iter()
        .any(|s| s.symbol.as_deref() == Some(symbol) && s.state == TradingState::Halted);
    if halted {
        return Ok(());
    }
    Store::set_trading_state(
        &mut *tx,
        &StateEntry {
            symbol: Some(symbol.to_owned()),
            state: TradingState::Halted,
            reason: reason.to_owned(),
            since: now,
            set_by: SetBy::Reconciliation,
        },
    )
    .await
}

/// Merges a venue report into `order`, records the fills it lists (by fill id), books any new
/// fill into the position and the order's fees, and returns the booked fill.
///
/// Fees: an order's fees are the venue's reported fees for the fills it listed, plus the
/// configured rate on the notional no listed fill covers (`portfolio::order_fees`); each report
/// books the difference from what was booked before, so estimates converge to the reported
/// fees once the fill list is read, and a report seen twice books nothing.
pub async fn apply_report(
    tx: &mut Tx,
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
    let (mut filled_quantity, mut average_price) = (news.filled_quantity, news.average_price);
    if !news.fills.is_empty() {
        Store::record_fills(&mut *tx, &order.client_order_id, &news.fills, now).await?;
        // The list is the finer record: it wins when it holds more than the summary says.
        let listed = checked::sum(news.fills.iter().map(|f| f.quantity))?;
        if listed > Decimal::ZERO && filled_quantity.is_none_or(|q| listed > q) {
            let notional = checked::sum(
                news.fills
                    .iter()
                    .map(|f| checked::mul(f.quantity, f.price))
                    .collect::<Result<Vec<_>, _>>()?,
            )?;
            filled_quantity = Some(listed);
            average_price = Some(checked::div(notional, listed)?);
        }
    }
    let applied = order::apply(
        &current,
        seen.unwrap_or(current.status),
        filled_quantity,
        average_price,
    )?;
    if applied.conflict {
        tracing::warn!(
            client_order_id = %order.client_order_id,
            local = current.status.as_str(),
            venue = %news.status,
            "venue report contradicts a terminal order status; kept the local one"
        );
    }
    // What the venue says now: late news (a POST answer saying `pending` that arrives after the
    // callback saying `expired`) must not overwrite it, or our order and the venue's view shown
    // beside it disagree. An unknown status is recorded verbatim.
    let venue_status = match seen {
        Some(s) if s != applied.progress.status => None,
        _ => Some(news.status.as_str()),
    };
    Store::save_progress(
        &mut *tx,
        &order.client_order_id,
        Some(&news.order_id),
        &applied.progress,
        venue_status,
        now,
    )
    .await?;
    if applied.progress.status != current.status {
        tracing::info!(
            client_order_id = %order.client_order_id,
            from = current.status.as_str(),
            to = applied.progress.status.as_str(),
            "order status"
        );
    }
    if applied.new_fill.is_none() && news.fills.is_empty() {
        return Ok(None);
    }
    let before = Store::position(&mut *tx, &order.symbol).await?;
    let mut position = before.clone();
    let mut last_price = None;
    let mut booked = None;
    if let Some((qty, price)) = applied.new_fill {
        let side = Side::parse(&order.side).map_err(|_| StoreError::Corrupt {
            column: "side",
            value: order.side.clone(),
        })?;
        let (updated, closed) = position.book_fill(side.sign() * qty, price)?;
        position = updated;
        last_price = Some(price);
        if let Some(closed) = closed {
            tracing::info!(symbol = %order.symbol, side = closed.side, entry = %closed.entry_price, realized_pnl = %closed.realized_pnl, "position closed by our fills");
            Store::record_closed_position(&mut *tx, &order.symbol, &closed, now).await?;
            // A `position.closed` that arrived first waits, deferred, for this.
            Store::requeue_deferred(&mut *tx).await?;
        }
        tracing::info!(
            client_order_id = %order.client_order_id,
            symbol = %order.symbol,
            side = %order.side,
            quantity = %qty,
            price = %price,
            position = %position.quantity,
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
    let filled = applied.progress.filled_quantity;
    if filled > Decimal::ZERO {
        let recorded = Store::recorded_fills(&mut *tx, &order.client_order_id).await?;
        let rate = Store::fee_bps(&mut *tx, &order.symbol).await?;
        let notional = checked::mul(filled, applied.progress.average_price.unwrap_or_default())?;
        let fees = portfolio::order_fees(
            notional,
            recorded.reported_notional,
            recorded.reported_fees,
            rate,
        )?;
        let delta = checked::sub(fees, order.fees)?;
        if !delta.is_zero() {
            position.fees = checked::add(position.fees, delta)?;
            Store::set_fees_booked(&mut *tx, &order.client_order_id, fees).await?;
        }
    }
    if position != before {
        Store::save_position(&mut *tx, &order.symbol, &position, last_price, now).await?;
        // The daily realized-loss limit sums this ledger: PnL after fees.
        let realized = checked::sub(position.net_realized()?, before.net_realized()?)?;
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
    }
    Ok(booked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::events::Fill;
    use crate::venue::wire::OrderResponse;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn news(
        status: &str,
        filled: &str,
        avg: Option<&str>,
        fills: &[(&str, &str, &str, Option<&str>)],
    ) -> OrderNews {
        OrderNews {
            order_id: "v-1".into(),
            client_order_id: Some("sx-test".into()),
            status: status.into(),
            filled_quantity: Some(d(filled)),
            average_price: avg.map(d),
            fills: fills
                .iter()
                .map(|(id, q, p, fee)| Fill {
                    fill_id: (*id).into(),
                    quantity: d(q),
                    price: d(p),
                    fee: fee.map(d),
                    at: None,
                })
                .collect(),
        }
    }

    /// A fresh store holding one order, `sx-test`, as the venue described it in `venue_json`.
    async fn store_with_order(venue_json: &str) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let venue_order: OrderResponse = serde_json::from_str(venue_json).unwrap();
        Store::insert_adopted(&mut tx, &venue_order, chrono::Utc::now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        (dir, store)
    }

    /// Applies `n` to the order in its own transaction; returns (position, order fees).
    async fn apply(store: &Store, n: &OrderNews) -> (crate::portfolio::Position, Decimal) {
        let now = chrono::Utc::now();
        let mut tx = store.begin().await.unwrap();
        let order = Store::order_by_client_id(&mut tx, "sx-test")
            .await
            .unwrap()
            .unwrap();
        apply_report(&mut tx, &order, n, now).await.unwrap();
        let position = Store::position(&mut tx, "BTC/USD").await.unwrap();
        let order = Store::order_by_client_id(&mut tx, "sx-test")
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        (position, order.fees)
    }

    #[tokio::test]
    async fn fills_are_recorded_once_by_id_and_estimated_fees_converge_to_the_reported_ones() {
        let (_dir, store) = store_with_order(
            r#"{"orderId":"v-1","clientOrderId":"sx-test","symbol":"BTC/USD","side":"buy",
                "type":"limit","quantity":2,"price":120,"status":"open"}"#,
        )
        .await;
        store
            .set_fee_rates(&[(String::new(), d("5"))])
            .await
            .unwrap();

        // A callback: 1 filled at 100; the fee is estimated at 5 bps of 100.
        let (p, fees) = apply(&store, &news("partially_filled", "1", Some("100"), &[])).await;
        assert_eq!((p.quantity, p.fees, fees), (d("1"), d("0.05"), d("0.05")));
        // Another: 2 filled at an average of 105, so 1 more at 110; estimate on 210 in all.
        let (p, fees) = apply(&store, &news("filled", "2", Some("105"), &[])).await;
        assert_eq!(
            (p.quantity, p.average_price, fees),
            (d("2"), d("105"), d("0.105"))
        );
        // The fill list with the venue's fees: nothing more is booked but the fee correction.
        let listed = news(
            "filled",
            "2",
            Some("105"),
            &[
                ("f1", "1", "100", Some("0.02")),
                ("f2", "1", "110", Some("0.03")),
            ],
        );
        let (p, fees) = apply(&store, &listed).await;
        assert_eq!((p.quantity, p.fees, fees), (d("2"), d("0.05"), d("0.05")));
        // The same list again (a replayed answer) changes nothing.
        let (again, fees) = apply(&store, &listed).await;
        assert_eq!((again, fees), (p.clone(), d("0.05")));
        let mut conn = store.begin().await.unwrap();
        let recorded = Store::recorded_fills(&mut conn, "sx-test").await.unwrap();
        assert_eq!(
            (recorded.quantity, recorded.reported_fees),
            (d("2"), d("0.05"))
        );
        // The loss ledger holds exactly the net result: no PnL, 0.05 of fees.
        let realized = Store::realized_since(&mut conn, chrono::DateTime::UNIX_EPOCH)
            .await
            .unwrap();
        assert_eq!(realized, d("-0.05"));
    }

    #[tokio::test]
    async fn late_news_does_not_overwrite_the_venue_status_shown_beside_ours() {
        let (_dir, store) = store_with_order(
            r#"{"orderId":"v-1","clientOrderId":"sx-test","symbol":"BTC/USD","side":"buy",
                "type":"limit","quantity":2,"price":120,"timeInForce":"IOC","status":"pending"}"#,
        )
        .await;
        let shown = || async {
            let mut tx = store.begin().await.unwrap();
            let o = Store::order_by_client_id(&mut tx, "sx-test")
                .await
                .unwrap()
                .unwrap();
            tx.rollback().await.unwrap();
            (o.status, o.venue_status)
        };
        // The IOC expired (the callback), then the POST's answer `pending` comes in late.
        apply(&store, &news("expired", "0", None, &[])).await;
        apply(&store, &news("pending", "0", None, &[])).await;
        assert_eq!(shown().await, ("expired".into(), Some("expired".into())));
        // A status the bot does not know is shown verbatim.
        apply(&store, &news("suspended", "0", None, &[])).await;
        assert_eq!(shown().await, ("expired".into(), Some("suspended".into())));
    }

    #[tokio::test]
    async fn a_fill_list_holding_more_than_the_cumulative_news_books_the_rest() {
        let (_dir, store) = store_with_order(
            r#"{"orderId":"v-1","clientOrderId":"sx-test","symbol":"BTC/USD","side":"buy",
                "type":"market","quantity":2,"status":"pending"}"#,
        )
        .await;
        // No fee rate configured and none reported: no fee. The summary says 1, the list 2.
        let listed = news(
            "filled",
            "1",
            Some("100"),
            &[("f1", "1", "100", None), ("f2", "1", "110", None)],
        );
        let (p, fees) = apply(&store, &listed).await;
        assert_eq!(
            (p.quantity, p.average_price, fees),
            (d("2"), d("105"), d("0"))
        );
    }
}
