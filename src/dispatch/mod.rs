//! The dispatcher: takes events from the inbox in arrival order and hands each to the part that
//! owns it, recording the outcome in the same transaction as the event's new status.
//!
//! Guarantees: an event is marked processed only together with its effects (a crash in between
//! replays it, and the effects are idempotent: deterministic `clientOrderId`s, monotonic order
//! states); a signed but unusable event becomes a dead letter with its reason; a failing event is
//! retried with backoff and parked after `MAX_ATTEMPTS`.

use crate::app::Shutdown;
use crate::clock::SharedClock;
use crate::ingress::events::{self, Event, ParseError};
use crate::model::{Price, Signal};
use crate::order;
use crate::reconcile::{self, NewsOutcome};
use crate::risk;
use crate::store::{Decision, EventStatus, InboxEvent, Store, StoreError};
use crate::strategy::{Evaluation, Strategy};
use crate::venue::VenueClient;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::SqliteConnection;
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
            prices: Mutex::new(HashMap::new()),
        }
    }

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
                tokio::select! {
                    _ = self.stored.notified() => {}
                    // Deferred events are re-queued by the executor; this is only a safety net.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.wait() => return,
                }
                continue;
            }
            let now = self.clock.now();
            let mut parsed: Vec<Option<Result<Event, ParseError>>> = batch
                .iter()
                .map(|e| Some(events::parse(&e.body, now)))
                .collect();
            let is_signal =
                |p: &Option<Result<Event, ParseError>>| matches!(p, Some(Ok(Event::Signal(_))));
            let mut i = 0;
            while i < batch.len() {
                // Stop only between transactions.
                if shutdown.is_triggered() {
                    return;
                }
                let result = if is_signal(&parsed[i]) {
                    let Some(Ok(Event::Signal(signal))) = parsed[i].take() else {
                        unreachable!("checked above")
                    };
                    let r = self.on_signal(&batch[i], signal).await.map_err(|e| (i, e));
                    i += 1;
                    r
                } else {
                    // A run of events that need no I/O: one transaction (and one fsync) for all.
                    let end = (i..batch.len())
                        .find(|k| is_signal(&parsed[*k]))
                        .unwrap_or(batch.len());
                    let run: Vec<_> = (i..end)
                        .map(|k| (&batch[k], parsed[k].take().expect("parsed once")))
                        .collect();
                    let r = self.apply_run(run, i).await;
                    i = end;
                    r
                };
                if let Err((failed, e)) = result {
                    self.record_failure(&batch[failed], &e).await;
                    let backoff = Duration::from_millis(100 << batch[failed].attempts.clamp(0, 6));
                    if shutdown.sleep(backoff).await {
                        return;
                    }
                    // Later events wait: the stream stays in order.
                    break;
                }
            }
        }
    }

    /// Applies consecutive I/O-free events in one transaction. If that fails, applies them one by
    /// one, so a single bad event is isolated; returns the index (offset by `first`) that failed.
    async fn apply_run(
        &self,
        run: Vec<(&InboxEvent, Result<Event, ParseError>)>,
        first: usize,
    ) -> Result<(), (usize, StoreError)> {
        let now = self.clock.now();
        let together = async {
            let mut tx = self.store.begin().await?;
            for (event, parsed) in &run {
                self.apply(&mut tx, event, parsed, now).await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>(())
        };
        match together.await {
            Ok(()) => Ok(()),
            Err(e) if run.len() == 1 => Err((first, e)),
            Err(e) => {
                tracing::warn!(error = %e, events = run.len(), "batch failed; applying its events one by one");
                for (k, (event, parsed)) in run.iter().enumerate() {
                    let one = async {
                        let mut tx = self.store.begin().await?;
                        self.apply(&mut tx, event, parsed, now).await?;
                        tx.commit().await.map_err(StoreError::from)
                    };
                    if let Err(e) = one.await {
                        return Err((first + k, e));
                    }
                }
                Ok(())
            }
        }
    }

    async fn record_failure(&self, event: &InboxEvent, e: &StoreError) {
        let dead = event.attempts + 1 >= MAX_ATTEMPTS;
        tracing::error!(seq = event.seq, error = %e, dead, "event processing failed");
        let status = if dead {
            EventStatus::Dead
        } else {
            EventStatus::Pending
        };
        if let Ok(mut tx) = self.store.begin().await {
            let msg = e.to_string();
            if Store::set_event_status(&mut tx, event.seq, status, Some(&msg), self.clock.now())
                .await
                .is_ok()
            {
                let _ = tx.commit().await;
            }
        }
    }

    /// Applies one event that needs no I/O, inside `tx`, together with its new status.
    async fn apply(
        &self,
        tx: &mut SqliteConnection,
        event: &InboxEvent,
        parsed: &Result<Event, ParseError>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut status = EventStatus::Processed;
        let mut note = None;
        match parsed {
            Err(e) => {
                tracing::warn!(seq = event.seq, event = %event.event_type, error = %e, "dead letter: signed but unusable");
                status = EventStatus::Dead;
                note = Some(e.to_string());
            }
            Ok(Event::Signal(_)) => unreachable!("signals are applied by on_signal"),
            Ok(Event::Order(news)) => match reconcile::apply_news(&mut *tx, news, now).await? {
                NewsOutcome::Deferred => {
                    tracing::debug!(seq = event.seq, order_id = %news.order_id, "order news deferred until the order is known");
                    status = EventStatus::Deferred;
                }
                NewsOutcome::Applied { linked } => {
                    if linked && Store::requeue_deferred(&mut *tx).await? > 0 {
                        // The re-queued events are picked up by the next inbox read.
                        self.stored.notify_one();
                    }
                }
                NewsOutcome::Foreign => {}
            },
            Ok(Event::Position(p)) => Store::save_venue_position(&mut *tx, p, now).await?,
            Ok(Event::Balance {
                asset,
                available,
                locked,
                total,
            }) => Store::save_balance(&mut *tx, asset, *available, *locked, *total, now).await?,
            Ok(Event::Transaction(t)) => {
                tracing::info!(seq = event.seq, kind = t.kind, asset = %t.asset, amount = %t.amount, "account transaction");
                Store::save_transaction(&mut *tx, t, event.seq).await?;
            }
            Ok(Event::Unknown { event: name }) => {
                tracing::warn!(seq = event.seq, event = %name, "unknown event type: stored and acknowledged, no effect");
                note = Some("unknown event type".to_owned());
            }
            Ok(Event::Recorded { event: name }) => {
                tracing::debug!(seq = event.seq, event = %name, "event recorded");
            }
        }
        Store::set_event_status(&mut *tx, event.seq, status, note.as_deref(), now).await
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
