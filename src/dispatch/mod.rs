//! The dispatcher: takes events from the inbox in arrival order and hands each to the part that
//! owns it, recording the outcome in the same transaction as the event's new status.
//!
//! Guarantees: an event is marked processed only together with its effects (a crash in between
//! replays it, and the effects are idempotent: deterministic `clientOrderId`s, monotonic order
//! states); a signed but unusable event becomes a dead letter with its reason; a failing event is
//! retried with backoff and parked after `MAX_ATTEMPTS`.

use crate::app::Shutdown;
use crate::clock::SharedClock;
use crate::ingress::events::{self, Event};
use crate::model::{Price, Signal};
use crate::notify::{Notification, Notifier};
use crate::order;
use crate::reconcile::{self, NewsOutcome};
use crate::risk;
use crate::store::{Decision, EventStatus, InboxEvent, Store, StoreError};
use crate::strategy::{Evaluation, Strategy};
use crate::venue::VenueClient;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const MAX_ATTEMPTS: i64 = 5;
const BATCH: i64 = 256;
/// How long a fetched reference price is reused for sizing.
const PRICE_TTL: Duration = Duration::from_secs(2);

pub struct Dispatcher {
    pub store: Store,
    pub strategies: Arc<Vec<Strategy>>,
    pub venue: VenueClient,
    pub clock: SharedClock,
    /// Notified by the inbox after new events are committed.
    pub stored: Arc<Notify>,
    /// Notified when new order intents are committed, or news may unblock the executor.
    pub orders_ready: Arc<Notify>,
    /// Told about fills and dead letters.
    pub notifier: Notifier,
    prices: Mutex<HashMap<String, (Decimal, Instant)>>,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        strategies: Arc<Vec<Strategy>>,
        venue: VenueClient,
        clock: SharedClock,
        stored: Arc<Notify>,
        orders_ready: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            strategies,
            venue,
            clock,
            stored,
            orders_ready,
            notifier: Notifier::disabled(),
            prices: Mutex::new(HashMap::new()),
        }
    }

    /// Processes events until `shutdown`; then drains what is already in the inbox (ingress has
    /// stopped by then, so that is finite) and returns. The caller bounds the drain with a deadline.
    pub async fn run(self, mut shutdown: Shutdown) {
        loop {
            let batch = match self.store.pending_events(BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the inbox; retrying");
                    if shutdown.sleep(Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                if shutdown.is_triggered() {
                    return;
                }
                tokio::select! {
                    _ = self.stored.notified() => {}
                    // Deferred events are re-queued by the executor; this is only a safety net.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.wait() => {}
                }
                continue;
            }
            for event in batch {
                // Each event is processed in one transaction, so stopping between events is safe.
                if let Err(e) = self.process(&event).await {
                    let dead = event.attempts + 1 >= MAX_ATTEMPTS;
                    tracing::error!(seq = event.seq, error = %e, dead, "event processing failed");
                    let status = if dead {
                        EventStatus::Dead
                    } else {
                        EventStatus::Pending
                    };
                    if let Ok(mut tx) = self.store.begin().await {
                        let now = self.clock.now();
                        let msg = e.to_string();
                        if Store::set_event_status(&mut tx, event.seq, status, Some(&msg), now)
                            .await
                            .is_ok()
                            && tx.commit().await.is_ok()
                            && dead
                        {
                            self.notifier.send(Notification::DeadLetter {
                                seq: event.seq,
                                event_type: event.event_type.clone(),
                                reason: msg,
                            });
                        }
                    }
                    if shutdown.is_triggered() {
                        // Draining: a failing event waits for the next start.
                        return;
                    }
                    let backoff = Duration::from_millis(100 << event.attempts.clamp(0, 6));
                    if shutdown.sleep(backoff).await {
                        return;
                    }
                    // Later events wait: the stream per account stays in order.
                    break;
                }
            }
        }
    }

    async fn process(&self, event: &InboxEvent) -> Result<(), StoreError> {
        let now = self.clock.now();
        let parsed = match events::parse(&event.body, now) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(seq = event.seq, event = %event.event_type, error = %e, "dead letter: signed but unusable");
                let mut tx = self.store.begin().await?;
                Store::set_event_status(
                    &mut tx,
                    event.seq,
                    EventStatus::Dead,
                    Some(&e.to_string()),
                    now,
                )
                .await?;
                tx.commit().await?;
                self.notifier.send(Notification::DeadLetter {
                    seq: event.seq,
                    event_type: event.event_type.clone(),
                    reason: e.to_string(),
                });
                return Ok(());
            }
        };
        match parsed {
            Event::Signal(signal) => self.on_signal(event, signal).await,
            Event::Order(news) => {
                let mut tx = self.store.begin().await?;
                let outcome = reconcile::apply_news(&mut tx, &news, now).await?;
                let status = match outcome {
                    NewsOutcome::Deferred => {
                        tracing::debug!(seq = event.seq, order_id = %news.order_id, client_order_id = news.client_order_id.as_deref().unwrap_or(""), "order news deferred until the order is known");
                        EventStatus::Deferred
                    }
                    NewsOutcome::Applied { .. } | NewsOutcome::Foreign => EventStatus::Processed,
                };
                if let NewsOutcome::Applied { linked: true, .. } = outcome {
                    Store::requeue_deferred(&mut tx).await?;
                }
                Store::set_event_status(&mut tx, event.seq, status, None, now).await?;
                tx.commit().await?;
                if let NewsOutcome::Applied {
                    fill: Some(fill), ..
                } = outcome
                {
                    self.notifier.send(fill.notification());
                }
                Ok(())
            }
            Event::Position(p) => {
                let mut tx = self.store.begin().await?;
                Store::save_venue_position(&mut tx, &p, now).await?;
                Store::set_event_status(&mut tx, event.seq, EventStatus::Processed, None, now)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
            Event::Balance {
                asset,
                available,
                locked,
                total,
            } => {
                let mut tx = self.store.begin().await?;
                Store::save_balance(&mut tx, &asset, available, locked, total, now).await?;
                Store::set_event_status(&mut tx, event.seq, EventStatus::Processed, None, now)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
            Event::Recorded { event: name } => {
                tracing::info!(seq = event.seq, event = %name, "event recorded");
                let mut tx = self.store.begin().await?;
                Store::set_event_status(&mut tx, event.seq, EventStatus::Processed, None, now)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
        }
    }

    async fn on_signal(&self, event: &InboxEvent, signal: Signal) -> Result<(), StoreError> {
        let strategy = self.strategies.iter().find(|s| s.trades(&signal.symbol));
        let evaluation = match strategy {
            None => Evaluation::Ignored {
                reason: format!("no strategy trades {}", signal.symbol),
            },
            Some(s) => s.evaluate(&signal),
        };
        // The price fetch is the only I/O on this path; it happens before the transaction.
        let price = match (&evaluation, strategy) {
            (Evaluation::Intent { .. }, Some(_)) => {
                Some(self.reference_price(signal.symbol.as_str()).await)
            }
            _ => None,
        };
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let strategy_name = strategy.map(|s| s.name.as_str()).unwrap_or("");
        let mut decision = Decision {
            inbox_seq: event.seq,
            strategy: strategy_name,
            received_at: now,
            symbol: signal.symbol.as_str(),
            recommendation: signal.recommendation.as_str(),
            confidence: signal.confidence,
            decision: "ignored",
            reason: String::new(),
            client_order_id: None,
        };
        let client_order_id;
        match (evaluation, strategy, price) {
            (Evaluation::Ignored { reason }, _, _) => decision.reason = reason,
            (Evaluation::Intent { .. }, _, Some(Err(reason))) => {
                decision.decision = "refused";
                decision.reason = format!("no reference price for {}: {reason}", signal.symbol);
            }
            (Evaluation::Intent { side }, Some(strategy), Some(Ok(price))) => {
                let exposure = Store::exposure(&mut tx, signal.symbol.as_str()).await?;
                match risk::size_and_check(strategy, &signal.symbol, side, price, exposure) {
                    Err(reason) => {
                        decision.decision = "refused";
                        decision.reason = reason;
                    }
                    Ok(approved) => {
                        client_order_id =
                            order::client_order_id(&strategy.name, &event.dedupe_key, "entry");
                        Store::insert_intent(&mut tx, &approved, &client_order_id, event.seq, now)
                            .await?;
                        let plan = approved.get();
                        decision.decision = "ordered";
                        decision.reason = format!(
                            "{} {} {} (~{} at {})",
                            plan.side,
                            plan.quantity.get(),
                            plan.symbol,
                            (plan.quantity.get() * price.get()).round_dp(2),
                            price.get()
                        );
                        decision.client_order_id = Some(&client_order_id);
                        tracing::info!(client_order_id = %client_order_id, strategy = %strategy.name, symbol = %plan.symbol, side = %plan.side, quantity = %plan.quantity.get(), "order intent");
                    }
                }
            }
            (Evaluation::Intent { .. }, _, None) | (Evaluation::Intent { .. }, None, _) => {
                decision.reason = "no strategy".into();
            }
        }
        if decision.decision != "ordered" {
            tracing::info!(seq = event.seq, symbol = %signal.symbol, decision = decision.decision, reason = %decision.reason, "signal");
        }
        Store::insert_decision(&mut tx, &decision).await?;
        Store::set_event_status(&mut tx, event.seq, EventStatus::Processed, None, now).await?;
        tx.commit().await?;
        if decision.client_order_id.is_some() {
            self.orders_ready.notify_one();
        }
        Ok(())
    }

    async fn reference_price(&self, symbol: &str) -> Result<Price, String> {
        if let Some((p, at)) = self
            .prices
            .lock()
            .expect("price cache poisoned")
            .get(symbol)
        {
            if at.elapsed() < PRICE_TTL {
                return Price::new(*p).map_err(|e| e.to_string());
            }
        }
        let quote = self.venue.price(symbol).await.map_err(|e| e.to_string())?;
        let price = Price::new(quote.price).map_err(|e| e.to_string())?;
        self.prices
            .lock()
            .expect("price cache poisoned")
            .insert(symbol.to_owned(), (price.get(), Instant::now()));
        Ok(price)
    }
}
