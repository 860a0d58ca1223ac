//! Signal decisions: one row per (signal, strategy), written in the decision's transaction.

use super::{Store, StoreError};
use crate::clock::ts;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Row, SqliteConnection};

impl Store {
    // ---- signals ------------------------------------------------------------------------------

    pub async fn insert_decision(
        tx: &mut SqliteConnection,
        d: &Decision<'_>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO signal_decisions (inbox_seq, strategy, received_at, symbol, recommendation,
                 confidence, decision, reason, client_order_id)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(d.inbox_seq)
        .bind(d.strategy)
        .bind(ts(d.received_at))
        .bind(d.symbol)
        .bind(d.recommendation)
        .bind(i64::from(d.confidence))
        .bind(d.decision)
        .bind(&d.reason)
        .bind(d.client_order_id)
        .execute(tx)
        .await?;
        Ok(())
    }

    pub async fn list_decisions(&self, limit: i64) -> Result<Vec<DecisionView>, StoreError> {
        let rows = sqlx::query(
            "SELECT inbox_seq, strategy, received_at, symbol, recommendation, confidence, decision,
                    reason, client_order_id
             FROM signal_decisions ORDER BY inbox_seq DESC, strategy LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DecisionView {
                event_seq: r.get("inbox_seq"),
                strategy: r.get("strategy"),
                received_at: r.get("received_at"),
                symbol: r.get("symbol"),
                recommendation: r.get("recommendation"),
                confidence: r.get("confidence"),
                decision: r.get("decision"),
                reason: r.get("reason"),
                client_order_id: r.get("client_order_id"),
            })
            .collect())
    }
}

pub struct Decision<'a> {
    pub inbox_seq: i64,
    pub strategy: &'a str,
    pub received_at: DateTime<Utc>,
    pub symbol: &'a str,
    pub recommendation: &'a str,
    pub confidence: u8,
    /// `ordered`, `refused` or `ignored`.
    pub decision: &'a str,
    pub reason: String,
    pub client_order_id: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionView {
    pub event_seq: i64,
    pub strategy: String,
    pub received_at: String,
    pub symbol: String,
    pub recommendation: String,
    pub confidence: i64,
    pub decision: String,
    pub reason: String,
    pub client_order_id: Option<String>,
}
