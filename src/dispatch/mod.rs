//! The dispatcher: takes events from the inbox in arrival order and hands each to the part that
//! owns it, recording the outcome in the same transaction as the event's new status.
//!
//! Guarantees: an event is marked processed only together with its effects (a crash in between
//! replays it, and the effects are idempotent: deterministic `clientOrderId`s, monotonic order
//! states); a signed but unusable event becomes a dead letter with its reason; a failing event is
//! retried with backoff and parked after `MAX_ATTEMPTS`; an event outside the freshness window is a
//! dead letter (`stale`) and never applied; a balance, venue position or maintenance notice older
//! (by its signed timestamp) than what is held is recorded as processed and not applied. Three
//! failures are not the event's turn to be retried: a venue number that overflows a `Decimal` makes it a dead letter at once
//! (`arithmetic overflow: ...`); so does a panic while processing it (`processing panicked: ...`;
//! the loop survives it and goes on with the next event); and a database that cannot commit
//! makes processing wait for it without counting an attempt.
//!
//! Signals go strategy → `risk::decide` → order intent in one transaction that also reads the
//! trading state, the maintenance calendar and the account's numbers, so nothing can change
//! between the check and the write (there is a single writer). `system.maintenance` windows,
//! `system.alert` effects, the margin ratio from `position.*` and the circuit breakers (after fills
//! and balance updates) are persisted here, in the same transaction as their event.

use crate::clock::SharedClock;
use crate::config::TradingConfig;
use crate::model::events::{self, Event, ParseError};
use crate::model::{Price, Signal, Symbol};
use crate::notify::{Notification, Notifier};
use crate::order;
use crate::reconcile::{self, NewsOutcome};
use crate::risk::limits::{day_start, QUOTE_ASSET};
use crate::risk::{self, alerts::AlertChange, maintenance, state};
use crate::shutdown::Shutdown;
use crate::store::{Decision, EventStatus, InboxEvent, Store, StoreError, Tx};
use crate::strategy::{Evaluation, Strategy};
use crate::supervise::catch_panic;
use crate::venue::VenueClient;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub mod harness;

const MAX_ATTEMPTS: i64 = 5;

/// What applying one event did: its new inbox status (with a note) and what to tell the operator.
struct Applied {
    status: EventStatus,
    note: Option<String>,
    tell: Option<Notification>,
}

/// What comparing a `position.closed` with our closed positions did.
enum ClosedCheck {
    /// No closed position of ours matches yet: keep the event deferred.
    Wait,
    Done {
        note: Option<String>,
        tell: Option<Notification>,
    },
}

/// What a signal's decision needs from outside the database, fetched before its transaction.
struct Prepared<'a> {
    strategy: Option<&'a Strategy>,
    evaluation: Evaluation,
    /// The reference price, when the strategy wants to trade.
    price: Option<Result<Price, String>>,
    /// Prices of other symbols' books without a recent fill (gross-exposure limit only).
    other_prices: HashMap<String, Decimal>,
}

/// The note on a processed report that was not applied because newer state is held.
const OLDER_THAN_HELD: &str = "older than what is held (by the event's timestamp); not applied";

/// How long a `position.closed` waits for our closing fill before it is reported as unmatched.
const CLOSED_MATCH_WAIT: ChronoDuration = ChronoDuration::minutes(10);

const BATCH: i64 = 256;
/// How long a fetched reference price is reused for sizing.
const PRICE_TTL: Duration = Duration::from_secs(2);
const EQUITY_PEAK: &str = "equity_peak";

/// [`events::parse_fresh`], with a panic inside it turned into a parse error: the event becomes a
/// dead letter with the reason instead of taking the dispatcher down.
fn parse_isolated(
    body: &[u8],
    received_at: DateTime<Utc>,
    freshness: &events::Freshness,
) -> Result<Event, ParseError> {
    std::panic::catch_unwind(|| events::parse_fresh(body, received_at, freshness)).unwrap_or_else(
        |payload| {
            Err(ParseError::Envelope(format!(
                "parsing panicked: {}",
                crate::supervise::panic_message(&*payload)
            )))
        },
    )
}

pub struct Dispatcher {
    pub store: Store,
    pub strategies: Arc<Vec<Strategy>>,
    pub venue: VenueClient,
    pub clock: SharedClock,
    /// Notified by the inbox after new events are committed.
    pub stored: Arc<Notify>,
    /// Notified when new order intents are committed, or news may unblock the executor.
    pub orders_ready: Arc<Notify>,
    pub trading: Arc<TradingConfig>,
    /// Told about fills and dead letters.
    pub notifier: Notifier,
    /// When set, signals are refused until it says the start-up reconciliation succeeded.
    pub reconciled: Option<crate::telemetry::health::Health>,
    /// A closed position whose realized PnL differs from the venue's by more than this is drift.
    pub pnl_tolerance: Decimal,
    /// Events with effects outside this window are dead letters (`stale`), never applied.
    pub freshness: events::Freshness,
    prices: Mutex<HashMap<String, (Decimal, Instant)>>,
    /// Tests only: processing the event with this seq panics, to prove a panic is isolated.
    #[cfg(test)]
    panic_on_seq: Option<i64>,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        strategies: Arc<Vec<Strategy>>,
        venue: VenueClient,
        clock: SharedClock,
        stored: Arc<Notify>,
        orders_ready: Arc<Notify>,
        trading: Arc<TradingConfig>,
    ) -> Self {
        Self {
            store,
            strategies,
            venue,
            clock,
            stored,
            orders_ready,
            trading,
            notifier: Notifier::disabled(),
            reconciled: None,
            pnl_tolerance: crate::config::ReconcileConfig::default().pnl_tolerance,
            freshness: events::Freshness::default(),
            prices: Mutex::new(HashMap::new()),
            #[cfg(test)]
            panic_on_seq: None,
        }
    }

    /// Processes events until `shutdown`; then drains what is already in the inbox (ingress has
    /// stopped by then, so that is finite) and returns. The caller bounds the drain with a deadline.
    pub async fn run(self, mut shutdown: Shutdown) {
        // After a panic in a run of several events, events up to this seq are applied one by
        // one, so the one that panics is found and dead-lettered alone.
        let mut one_by_one_through: Option<i64> = None;
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
            let mut parsed: Vec<Option<Result<Event, ParseError>>> = batch
                .iter()
                .map(|e| Some(parse_isolated(&e.body, e.received_at, &self.freshness)))
                .collect();
            let is_signal =
                |p: &Option<Result<Event, ParseError>>| matches!(p, Some(Ok(Event::Signal(_))));
            let mut i = 0;
            while i < batch.len() {
                if is_signal(&parsed[i]) {
                    // No decision on an unreconciled book: the signal (and the stream behind
                    // it) waits, durable in the inbox, until the start-up pass has succeeded.
                    if !self.wait_until_reconciled(&mut shutdown).await {
                        return;
                    }
                }
                // The rest of the batch in one transaction (and one fsync), signals included;
                // while the book is unreconciled, only up to the next signal.
                let end = if one_by_one_through.is_some_and(|through| batch[i].seq <= through) {
                    i + 1
                } else if self.is_reconciled() {
                    batch.len()
                } else {
                    (i + 1..batch.len())
                        .find(|k| is_signal(&parsed[*k]))
                        .unwrap_or(batch.len())
                };
                let run: Vec<_> = (i..end)
                    .map(|k| (&batch[k], parsed[k].take().expect("parsed once")))
                    .collect();
                let result = match catch_panic(self.apply_run(run, i)).await {
                    Ok(result) => result,
                    Err(panic) => {
                        // Nothing of the panicked transaction was committed. The inbox is read
                        // again either way, so nothing committed before the panic is applied
                        // twice.
                        if end - i == 1 {
                            let reason = format!("processing panicked: {panic}");
                            if !self.dead_letter(&batch[i], &reason).await
                                && shutdown.sleep(Duration::from_secs(1)).await
                            {
                                return;
                            }
                        } else {
                            tracing::error!(first = batch[i].seq, last = batch[end - 1].seq, %panic, "processing panicked; applying these events one by one to isolate the cause");
                            one_by_one_through = Some(batch[end - 1].seq);
                        }
                        break;
                    }
                };
                i = end;
                if let Err((failed, e)) = result {
                    if e.is_unavailable() {
                        // The database cannot take writes: nothing is wrong with the event. It
                        // waits, its attempt not counted, until a write goes through again.
                        tracing::warn!(seq = batch[failed].seq, error = %e, "the store cannot commit; processing waits for it");
                        self.store.writable().noted(e);
                        tokio::select! {
                            _ = self.store.writable().wait_writable() => {}
                            _ = shutdown.wait() => return,
                        }
                        break;
                    }
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

    fn is_reconciled(&self) -> bool {
        self.reconciled.as_ref().is_none_or(|h| h.is_reconciled())
    }

    /// Waits until the start-up reconciliation has succeeded; `false` on shutdown first.
    async fn wait_until_reconciled(&self, shutdown: &mut Shutdown) -> bool {
        let Some(health) = &self.reconciled else {
            return true;
        };
        if !health.is_reconciled() {
            tracing::info!("a signal waits for the start-up reconciliation with the venue");
        }
        while !health.is_reconciled() {
            if shutdown.sleep(Duration::from_millis(20)).await {
                return false;
            }
        }
        true
    }

    /// Applies consecutive I/O-free events in one transaction. If that fails, applies them one by
    /// one, so a single bad event is isolated; returns the index (offset by `first`) that failed.
    async fn apply_run(
        &self,
        run: Vec<(&InboxEvent, Result<Event, ParseError>)>,
        first: usize,
    ) -> Result<(), (usize, StoreError)> {
        // The signals' prices first: the transaction below does no network I/O. The prices are
        // shared, so a signal can value a book an earlier signal of the run opened.
        let mut prepared = Vec::with_capacity(run.len());
        let mut prices: HashMap<String, Decimal> = HashMap::new();
        for (k, (_, parsed)) in run.iter().enumerate() {
            let p = match parsed {
                Ok(Event::Signal(signal)) => {
                    let p = self.prepare(signal).await.map_err(|e| (first + k, e))?;
                    prices.extend(p.other_prices.iter().map(|(s, v)| (s.clone(), *v)));
                    if let Some(Ok(price)) = &p.price {
                        prices.insert(signal.symbol.as_str().to_owned(), price.get());
                    }
                    Some(p)
                }
                _ => None,
            };
            prepared.push(p);
        }
        let now = self.clock.now();
        let together = async {
            let mut tx = self.store.begin().await?;
            let mut notes = Vec::new();
            let mut ordered = false;
            // Final statuses are written together at the end: one statement per distinct status
            // instead of one per event.
            let mut marks: Vec<(EventStatus, Option<String>, Vec<i64>)> = Vec::new();
            for ((event, parsed), p) in run.iter().zip(prepared) {
                let applied = match (parsed, p) {
                    (Ok(Event::Signal(signal)), Some(p)) => {
                        ordered |= self.decide(&mut tx, event, signal, p, &prices, now).await?;
                        Applied {
                            status: EventStatus::Processed,
                            note: None,
                            tell: None,
                        }
                    }
                    _ => self.apply_effects(&mut tx, event, parsed, now).await?,
                };
                if applied.status == EventStatus::Deferred {
                    // Written at once: a later event in this batch may re-queue deferred events,
                    // and must see this one among them.
                    Store::set_event_status(&mut tx, event.seq, applied.status, None, now).await?;
                } else if let Some(m) = marks
                    .iter_mut()
                    .find(|(st, n, _)| *st == applied.status && *n == applied.note)
                {
                    m.2.push(event.seq);
                } else {
                    marks.push((applied.status, applied.note, vec![event.seq]));
                }
                notes.extend(applied.tell);
            }
            for (status, note, seqs) in &marks {
                Store::set_events_status(&mut tx, seqs, *status, note.as_deref(), now).await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>((notes, ordered))
        };
        match together.await {
            Ok((notes, ordered)) => {
                // Only what was committed is announced.
                notes.into_iter().for_each(|n| self.notifier.send(n));
                if ordered {
                    self.orders_ready.notify_one();
                }
                Ok(())
            }
            Err(e) if run.len() == 1 || e.is_unavailable() => Err((first, e)),
            Err(e) => {
                tracing::warn!(error = %e, events = run.len(), "batch failed; applying its events one by one");
                for (k, (event, parsed)) in run.iter().enumerate() {
                    if let Ok(Event::Signal(signal)) = parsed {
                        self.on_signal(event, signal)
                            .await
                            .map_err(|e| (first + k, e))?;
                        continue;
                    }
                    let one = async {
                        let mut tx = self.store.begin().await?;
                        let note = self.apply(&mut tx, event, parsed, now).await?;
                        tx.commit().await?;
                        Ok::<_, StoreError>(note)
                    };
                    match one.await {
                        Ok(note) => note.into_iter().for_each(|n| self.notifier.send(n)),
                        Err(e) => return Err((first + k, e)),
                    }
                }
                Ok(())
            }
        }
    }

    /// Parks an event that can never be processed (its processing panicked: it would again) as a
    /// dead letter with the reason, and tells the operator; the stream goes on behind it. False
    /// when that could not be recorded (it stays pending and comes back here).
    async fn dead_letter(&self, event: &InboxEvent, reason: &str) -> bool {
        tracing::error!(seq = event.seq, event = %event.event_type, %reason, "dead letter: processing this event failed for good");
        let recorded = async {
            let mut tx = self.store.begin().await?;
            let now = self.clock.now();
            Store::set_event_status(&mut tx, event.seq, EventStatus::Dead, Some(reason), now)
                .await?;
            tx.commit().await
        };
        match recorded.await {
            Ok(()) => {
                self.notifier.send(Notification::DeadLetter {
                    seq: event.seq,
                    event_type: event.event_type.clone(),
                    reason: reason.to_owned(),
                });
                true
            }
            Err(e) => {
                tracing::error!(seq = event.seq, error = %e, "cannot record the dead letter");
                false
            }
        }
    }

    async fn record_failure(&self, event: &InboxEvent, e: &StoreError) {
        // A number the bot cannot compute with fails the same way every time: dead at once.
        let dead = event.attempts + 1 >= MAX_ATTEMPTS || matches!(e, StoreError::Overflow(_));
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
    }

    /// Applies one event that needs no I/O, inside `tx`, together with its new status. Returns
    /// what to tell the operator once the transaction has committed.
    async fn apply(
        &self,
        tx: &mut Tx,
        event: &InboxEvent,
        parsed: &Result<Event, ParseError>,
        now: DateTime<Utc>,
    ) -> Result<Option<Notification>, StoreError> {
        let applied = self.apply_effects(tx, event, parsed, now).await?;
        Store::set_event_status(
            &mut *tx,
            event.seq,
            applied.status,
            applied.note.as_deref(),
            now,
        )
        .await?;
        Ok(applied.tell)
    }

    /// An event's effects inside `tx`; the caller records the returned status.
    async fn apply_effects(
        &self,
        tx: &mut Tx,
        event: &InboxEvent,
        parsed: &Result<Event, ParseError>,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError> {
        #[cfg(test)]
        if self.panic_on_seq == Some(event.seq) {
            panic!("injected for event {}", event.seq);
        }
        let mut status = EventStatus::Processed;
        let mut note = None;
        let mut tell = None;
        match parsed {
            Err(e) => {
                tracing::warn!(seq = event.seq, event = %event.event_type, error = %e, "dead letter: signed but unusable");
                status = EventStatus::Dead;
                note = Some(e.to_string());
                tell = Some(Notification::DeadLetter {
                    seq: event.seq,
                    event_type: event.event_type.clone(),
                    reason: e.to_string(),
                });
            }
            Ok(Event::Signal(_)) => unreachable!("signals are decided by decide"),
            Ok(Event::Order(news)) => match reconcile::apply_news(&mut *tx, news, now).await? {
                NewsOutcome::Deferred => {
                    tracing::debug!(seq = event.seq, order_id = %news.order_id, client_order_id = news.client_order_id.as_deref().unwrap_or(""), "order news deferred until the order is known");
                    status = EventStatus::Deferred;
                }
                NewsOutcome::Applied { linked, fill } => {
                    tell = fill.map(|f| f.notification());
                    self.apply_breakers(tx, now).await?;
                    if linked && Store::requeue_deferred(&mut *tx).await? > 0 {
                        // The re-queued events are picked up by the next inbox read.
                        self.stored.notify_one();
                    }
                }
                NewsOutcome::Foreign => {}
            },
            Ok(Event::Position(p)) => {
                if Store::save_venue_position(&mut *tx, p, now).await? {
                    if let Some(ratio) = p.margin_ratio {
                        Store::save_margin_ratio(&mut *tx, &p.symbol, ratio).await?;
                    }
                    self.apply_margin_rule(tx, now).await?;
                } else {
                    tracing::info!(seq = event.seq, symbol = %p.symbol, "position report older than the one held; not applied");
                    note = Some(OLDER_THAN_HELD.to_owned());
                }
                if let (true, Some(venue_realized)) = (p.closed, p.realized_pnl) {
                    match self
                        .check_closed(tx, event.seq, p, venue_realized, now)
                        .await?
                    {
                        ClosedCheck::Wait => status = EventStatus::Deferred,
                        ClosedCheck::Done { note: n, tell: t } => {
                            note = n;
                            tell = t;
                        }
                    }
                }
            }
            Ok(Event::Balance {
                asset,
                available,
                locked,
                total,
                at,
            }) => {
                let report = crate::store::BalanceReport {
                    asset,
                    available: *available,
                    locked: *locked,
                    total: *total,
                    as_of: *at,
                };
                if !Store::save_balance(&mut *tx, &report, now).await? {
                    // A late or replayed report must not move the balance, the equity peak or
                    // the breakers backwards.
                    tracing::info!(seq = event.seq, %asset, "balance report older than the one held; not applied");
                    note = Some(OLDER_THAN_HELD.to_owned());
                } else if asset == QUOTE_ASSET {
                    let peak = Store::risk_value(&mut *tx, EQUITY_PEAK).await?;
                    if let Some(peak) = risk::limits::peak_after_balance(peak, *total) {
                        Store::set_risk_value(&mut *tx, EQUITY_PEAK, peak, now).await?;
                    }
                    self.apply_breakers(tx, now).await?;
                }
            }
            Ok(Event::Maintenance { window, noticed_at }) => {
                let settings = &self.trading.maintenance;
                let mut window = window.clone();
                if !window.affects_trading() {
                    tracing::info!(seq = event.seq, window = %window.key, services = ?window.services, "maintenance notice does not affect trading");
                } else if window.is_past(settings, now) {
                    // Old news (a late retry, or a window we missed): nothing left to block.
                    window.reconciled_at = Some(now);
                    tracing::warn!(seq = event.seq, window = %window.key, end = %window.end, "maintenance notice arrived after its window; recorded only");
                } else {
                    tracing::warn!(seq = event.seq, window = %window.key, start = %window.start, end = %window.end, "maintenance window scheduled: no new orders from start - lead until end + settle and a reconciliation");
                }
                if !Store::upsert_window(&mut *tx, &window, *noticed_at, now).await? {
                    tracing::warn!(seq = event.seq, window = %window.key, "maintenance notice older than the one held for its window; not applied");
                    note = Some(OLDER_THAN_HELD.to_owned());
                }
            }
            Ok(Event::Alert {
                level,
                symbols,
                title,
            }) => self.apply_alert(tx, level, symbols, title, now).await?,
            Ok(Event::Transaction(t)) => {
                tracing::info!(seq = event.seq, kind = t.kind, asset = %t.asset, amount = %t.amount, "account transaction");
                let new = Store::save_transaction(&mut *tx, t, event.seq).await?;
                // Only the first sight of a transfer moves the equity peak: a replay must not.
                if new {
                    let peak = Store::risk_value(&mut *tx, EQUITY_PEAK).await?;
                    let moved = risk::limits::peak_after_transfer(
                        peak,
                        t.kind,
                        &t.asset,
                        t.amount,
                        t.status.as_deref(),
                    )?;
                    if let Some(moved) = moved {
                        Store::set_risk_value(&mut *tx, EQUITY_PEAK, moved, now).await?;
                        tracing::info!(amount = %t.amount, kind = t.kind, peak = %moved, "equity peak moved by a transfer");
                    }
                }
            }
            Ok(Event::Unknown { event: name }) => {
                tracing::warn!(seq = event.seq, event = %name, "unknown event type: stored and acknowledged, no effect");
                note = Some("unknown event type".to_owned());
            }
            Ok(Event::Recorded { event: name }) => {
                tracing::debug!(seq = event.seq, event = %name, "event recorded");
            }
        }
        Ok(Applied { status, note, tell })
    }

    /// Compares a venue `position.closed` with our matching closed position: a realized PnL
    /// beyond the tolerance halts the symbol and is reported with both views (both are kept on
    /// the closed position either way). Without a match yet, or while none of ours agrees with
    /// it and the symbol still has a position or working orders, the event waits (our closing
    /// fill may still be on its way) for up to `CLOSED_MATCH_WAIT`; then it is reported as
    /// unmatched, or as drift against the oldest candidate.
    async fn check_closed(
        &self,
        tx: &mut Tx,
        seq: i64,
        p: &crate::model::events::VenuePosition,
        venue_realized: Decimal,
        now: DateTime<Utc>,
    ) -> Result<ClosedCheck, StoreError> {
        let ours = Store::unmatched_closed_positions(&mut *tx, &p.symbol).await?;
        let candidates: Vec<(Decimal, Decimal)> = ours
            .iter()
            .map(|c| (c.entry_price, c.realized_pnl))
            .collect();
        let Some(i) = reconcile::drift::match_closed(
            &candidates,
            p.average_price,
            venue_realized,
            self.pnl_tolerance,
        ) else {
            if now - p.reported_at < CLOSED_MATCH_WAIT {
                tracing::debug!(seq, symbol = %p.symbol, "position.closed waits for our closing fill");
                return Ok(ClosedCheck::Wait);
            }
            let detail = format!(
                "the venue closed a position entered at {} with realized PnL {}; none of our closed positions matches it",
                p.average_price.map(|d| d.normalize().to_string()).unwrap_or_else(|| "an unreported price".into()),
                venue_realized.normalize()
            );
            tracing::error!(seq, symbol = %p.symbol, %detail, "unmatched position.closed");
            return Ok(ClosedCheck::Done {
                note: Some(detail.clone()),
                tell: Some(Notification::Drift {
                    symbol: p.symbol.clone(),
                    detail,
                }),
            });
        };
        let closed = &ours[i];
        let drift = reconcile::drift::PnlDrift {
            symbol: p.symbol.clone(),
            side: closed.side.clone(),
            entry_price: closed.entry_price,
            ours: closed.realized_pnl,
            venue: venue_realized,
        }
        .check(self.pnl_tolerance);
        if drift.is_some() && now - p.reported_at < CLOSED_MATCH_WAIT {
            // None of ours agrees. While the symbol still has a position or working orders, the
            // closing fill of the position it describes may be on its way (the venue's reports
            // can overtake our fills, and each other): wait for it rather than halt for drift
            // that may not exist. Flat with nothing working, nothing else can come: compare now.
            let book = Store::exposure(&mut *tx, &p.symbol).await?;
            let settled = book.position.is_zero()
                && book.working_buy.is_zero()
                && book.working_sell.is_zero();
            if !settled {
                tracing::debug!(seq, symbol = %p.symbol, "position.closed agrees with none of our closed positions while the symbol still trades; it waits");
                return Ok(ClosedCheck::Wait);
            }
        }
        Store::match_closed_position(&mut *tx, closed.seq, venue_realized, seq, drift.is_some())
            .await?;
        let Some(drift) = drift else {
            return Ok(ClosedCheck::Done {
                note: None,
                tell: None,
            });
        };
        let reason = drift.describe();
        tracing::error!(symbol = %p.symbol, ours = %drift.ours, venue = %drift.venue, "realized PnL drift: halting the symbol");
        reconcile::halt_symbol(&mut *tx, &p.symbol, &reason, now).await?;
        Ok(ClosedCheck::Done {
            note: Some(reason.clone()),
            tell: Some(Notification::Drift {
                symbol: p.symbol.clone(),
                detail: reason,
            }),
        })
    }

    /// Applies a `system.alert` under the configured policy: scales sizes, or moves symbols (or
    /// the account) to reducing or halted. An alert never loosens a stricter state.
    async fn apply_alert(
        &self,
        tx: &mut Tx,
        level: &str,
        symbols: &[String],
        title: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let states = Store::trading_states(&mut *tx).await?;
        for change in self
            .trading
            .alerts
            .changes(level, symbols, title, &states, now)
        {
            match change {
                AlertChange::Scale(s) => {
                    Store::set_size_scale(
                        &mut *tx,
                        s.symbol.as_deref(),
                        s.factor,
                        s.until,
                        &s.reason,
                    )
                    .await?;
                    tracing::warn!(symbol = ?s.symbol, factor = %s.factor, until = %s.until, reason = %s.reason, "alert: order sizes scaled");
                }
                AlertChange::State(entry) => {
                    Store::set_trading_state(&mut *tx, &entry).await?;
                    tracing::error!(symbol = ?entry.symbol, state = entry.state.as_str(), reason = %entry.reason, "alert: trading state changed");
                }
            }
        }
        Ok(())
    }

    /// Daily realized loss and drawdown from the equity peak: either halts the account.
    async fn apply_breakers(&self, tx: &mut Tx, now: DateTime<Utc>) -> Result<(), StoreError> {
        let limits = &self.trading.limits;
        if limits.daily_loss_limit.is_none() && limits.max_drawdown_percent.is_none() {
            return Ok(());
        }
        let daily = Store::realized_since(&mut *tx, day_start(now)).await?;
        let equity = Store::balance(&mut *tx, QUOTE_ASSET).await?.map(|b| b.1);
        let peak = Store::risk_value(&mut *tx, EQUITY_PEAK).await?;
        let states = Store::trading_states(&mut *tx).await?;
        let account = states.iter().find(|s| s.symbol.is_none());
        if let Some(halt) = limits.breaker_halt(daily, equity, peak, account, now) {
            tracing::error!(reason = %halt.reason, "trading halted by a circuit breaker");
            Store::set_trading_state(&mut *tx, &halt).await?;
        }
        Ok(())
    }

    /// A margin ratio above the limit puts the account in `reducing`; back below it, the rule
    /// undoes only what it set itself.
    async fn apply_margin_rule(&self, tx: &mut Tx, now: DateTime<Utc>) -> Result<(), StoreError> {
        if self.trading.limits.max_margin_ratio.is_none() {
            return Ok(());
        }
        let ratio = Store::max_margin_ratio(&mut *tx).await?;
        let states = Store::trading_states(&mut *tx).await?;
        let account = states.iter().find(|s| s.symbol.is_none());
        if let Some(entry) = self.trading.limits.margin_rule(ratio, account, now) {
            tracing::warn!(state = entry.state.as_str(), reason = %entry.reason, "trading state set by the margin-ratio limit");
            Store::set_trading_state(&mut *tx, &entry).await?;
        }
        Ok(())
    }

    /// A signal's strategy verdict and the prices its decision needs: the only I/O on the signal
    /// path, done before the decision's transaction.
    async fn prepare(&self, signal: &Signal) -> Result<Prepared<'_>, StoreError> {
        let strategy = self.strategies.iter().find(|s| s.trades(&signal.symbol));
        let evaluation = match strategy {
            None => Evaluation::Ignored {
                filter: crate::strategy::Filter::NotTraded,
                reason: format!("no strategy trades {}", signal.symbol),
            },
            Some(s) => s.evaluate(signal, self.clock.now()),
        };
        let mut other_prices: HashMap<String, Decimal> = HashMap::new();
        let price = match (&evaluation, strategy) {
            (Evaluation::Intent { .. }, Some(_)) => {
                if self.trading.limits.max_gross_exposure.is_some() {
                    other_prices = self.prices_of_other_books(&signal.symbol).await?;
                }
                Some(self.reference_price(signal.symbol.as_str()).await)
            }
            _ => None,
        };
        Ok(Prepared {
            strategy,
            evaluation,
            price,
            other_prices,
        })
    }

    /// Decides a signal alone, in its own transaction.
    async fn on_signal(&self, event: &InboxEvent, signal: &Signal) -> Result<(), StoreError> {
        let prepared = self.prepare(signal).await?;
        let prices = prepared.other_prices.clone();
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let ordered = self
            .decide(&mut tx, event, signal, prepared, &prices, now)
            .await?;
        Store::set_event_status(&mut tx, event.seq, EventStatus::Processed, None, now).await?;
        tx.commit().await?;
        if ordered {
            self.orders_ready.notify_one();
        }
        Ok(())
    }

    /// Decides a signal inside `tx` (strategy verdict → risk gate → order intent) and records
    /// the decision; the caller marks the event. `prices` values the other symbols' books for
    /// the gross-exposure limit. Returns whether an order intent was written.
    async fn decide(
        &self,
        tx: &mut Tx,
        event: &InboxEvent,
        signal: &Signal,
        prepared: Prepared<'_>,
        prices: &HashMap<String, Decimal>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let Prepared {
            strategy,
            evaluation,
            price,
            ..
        } = prepared;
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
            (Evaluation::Ignored { reason, .. }, _, _) => decision.reason = reason,
            (Evaluation::Intent { .. }, _, Some(Err(reason))) => {
                decision.decision = "refused";
                decision.reason = format!("no reference price for {}: {reason}", signal.symbol);
            }
            (Evaluation::Intent { direction }, Some(strategy), Some(Ok(price))) => {
                self.apply_breakers(&mut *tx, now).await?;
                let (gate, account) = self
                    .gate_and_account(&mut *tx, strategy, signal, prices, now)
                    .await?;
                let request = risk::Request {
                    strategy,
                    signal,
                    direction,
                    price,
                    spec: self.trading.spec(signal.symbol.as_str()),
                    limits: &self.trading.limits,
                    gate: &gate,
                    account: &account,
                    now,
                };
                // Sizing and limits multiply venue numbers (prices, balances, the signal's
                // levels); one a `Decimal` cannot hold refuses the signal with the reason.
                match risk::decide_guarded(&request) {
                    Err(refusal) => {
                        decision.decision = "refused";
                        decision.reason = refusal.reason;
                    }
                    Ok(approved) => {
                        client_order_id =
                            order::client_order_id(&strategy.name, &event.identity, "entry");
                        Store::insert_intent(
                            &mut *tx,
                            &approved,
                            &client_order_id,
                            Some(event.seq),
                            now,
                        )
                        .await?;
                        let plan = approved.get();
                        decision.decision = "ordered";
                        decision.reason = plan.describe(price, gate.size_scale.as_ref());
                        decision.client_order_id = Some(&client_order_id);
                        tracing::info!(client_order_id = %client_order_id, strategy = %strategy.name, symbol = %plan.symbol, side = %plan.side, quantity = %plan.quantity.get(), order_type = plan.order_type, "order intent");
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
        Store::insert_decision(&mut *tx, &decision).await?;
        Ok(decision.client_order_id.is_some())
    }

    /// Reads everything `risk::decide` looks at, inside the decision's transaction.
    async fn gate_and_account(
        &self,
        tx: &mut Tx,
        strategy: &Strategy,
        signal: &Signal,
        other_prices: &HashMap<String, Decimal>,
        now: DateTime<Utc>,
    ) -> Result<(risk::Gate, risk::AccountView), StoreError> {
        let symbol = signal.symbol.as_str();
        let settings = &self.trading.maintenance;
        let windows =
            Store::open_windows(&mut *tx, now - settings.settle - ChronoDuration::days(1)).await?;
        let states = Store::trading_states(&mut *tx).await?;
        let account_state = states.iter().find(|s| s.symbol.is_none());
        let symbol_state = states.iter().find(|s| s.symbol.as_deref() == Some(symbol));
        let unreconciled = self
            .reconciled
            .as_ref()
            .is_some_and(|h| !h.is_reconciled())
            .then(|| state::StateEntry {
                symbol: None,
                state: state::TradingState::Halted,
                reason: "the start-up reconciliation with the venue has not succeeded yet".into(),
                since: now,
                set_by: state::SetBy::Reconciliation,
            });
        let gate = risk::Gate {
            maintenance: maintenance::blocking(&windows, settings, now),
            state: unreconciled.or_else(|| state::effective(account_state, symbol_state).cloned()),
            size_scale: Store::size_scale(&mut *tx, symbol, now).await?,
        };
        let books = Store::books(&mut *tx).await?;
        let elsewhere = risk::elsewhere(
            books.iter().map(|(s, b)| risk::OpenBook {
                symbol: s,
                exposure: b.exposure,
                last_price: b.last_price,
                strategies: &b.strategies,
            }),
            symbol,
            strategy,
            |s| other_prices.get(s).copied(),
        );
        let (open_orders, orders_last_minute) =
            Store::order_counts_since(&mut *tx, now - ChronoDuration::seconds(60)).await?;
        let balance = Store::balance(&mut *tx, QUOTE_ASSET).await?;
        let account = risk::AccountView {
            exposure: books.get(symbol).map(|b| b.exposure).unwrap_or_default(),
            gross_other: elsewhere.gross,
            unpriced: elsewhere.unpriced,
            open_orders,
            orders_last_minute,
            available_usd: balance.map(|b| b.0),
            equity_usd: balance.map(|b| b.1),
            daily_realized: Store::realized_since(&mut *tx, day_start(now)).await?,
            last_order_at: Store::last_order_at(&mut *tx, &strategy.name, symbol).await?,
            strategy_open_symbols: elsewhere.strategy_open_symbols,
        };
        Ok((gate, account))
    }

    /// Reference prices of the other symbols with exposure but no last fill price (for the gross
    /// exposure limit). A symbol whose price cannot be fetched makes the limit uncheckable, and
    /// an order that grows exposure is then refused.
    async fn prices_of_other_books(
        &self,
        symbol: &Symbol,
    ) -> Result<HashMap<String, Decimal>, StoreError> {
        let books = self.store.read_books().await?;
        let mut out = HashMap::new();
        for (s, book) in books {
            if s == symbol.as_str() || book.last_price.is_some() {
                continue;
            }
            match self.reference_price(&s).await {
                Ok(p) => {
                    out.insert(s, p.get());
                }
                Err(e) => {
                    tracing::warn!(symbol = %s, error = %e, "no price for the gross exposure check")
                }
            }
        }
        Ok(out)
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

#[cfg(test)]
mod tests;
