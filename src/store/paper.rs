//! The paper venue's saved state.

use super::{Store, StoreError};
use crate::clock::ts;
use chrono::{DateTime, Utc};

impl Store {
    // ---- paper venue ------------------------------------------------------------------------

    /// The paper venue's saved state, if any.
    pub async fn load_paper_state(&self) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT state FROM paper_state WHERE id = 1")
                .fetch_optional(&self.writer)
                .await?,
        )
    }

    /// Replaces the paper venue's saved state.
    pub async fn save_paper_state(
        &self,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO paper_state (id, state, updated_at) VALUES (1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
        )
        .bind(state)
        .bind(ts(now))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Forgets the paper venue's state and the trading view built from it (orders, positions,
    /// balances), in one transaction. The inbox and the signal decisions stay as history.
    pub async fn reset_paper(&self) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for table in [
            "paper_state",
            "orders",
            "fills",
            "closed_positions",
            "positions",
            "venue_positions",
            "balances",
        ] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
