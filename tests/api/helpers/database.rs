//! Where a test's database lives: the one place that decides it, for the in-process bots of
//! [`super::TestApp`] and for the `sigex` processes of [`super::process`] alike.
//!
//! Today every test gets a fresh SQLite file in its own temporary directory. To run the suite on
//! another engine, this is the file to change: pick the engine here (from an environment variable,
//! say) and hand out a fresh database per test; every test reaches its database through
//! [`TestDatabase::url`] or [`TestDatabase::connect`], never by building a URL itself.

use std::path::Path;

/// One test's database; restarts of the same test reuse it (see `TestApp::stop_keeping_data`).
#[derive(Clone, Debug)]
pub struct TestDatabase {
    url: String,
}

impl TestDatabase {
    /// A new, empty database for one test, kept (for SQLite) under that test's `dir`.
    pub fn fresh(dir: &Path) -> Self {
        Self::sqlite(&dir.join("test.db"))
    }

    /// A SQLite database in `file`: for the tests that are about SQLite's file itself (a full
    /// disk), not about the bot on any engine.
    pub fn sqlite(file: &Path) -> Self {
        Self {
            url: format!("sqlite://{}", file.display()),
        }
    }

    /// The `[storage] database_url` the bot is given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connection pool of the test's own, for a test that reads or arranges rows directly
    /// (what a crash or another writer would leave behind). Close it before the bot restarts.
    pub async fn connect(&self) -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("the test database {} opens: {e}", self.url))
    }

    /// Records `request` as an order of strategy `test` the bot holds as open at the venue under
    /// `venue_order_id`: what the bot's database says while the venue may know better.
    pub async fn insert_open_order(
        &self,
        request: &sigex::venue::wire::PlaceOrderRequest,
        venue_order_id: &str,
    ) {
        let now = sigex::clock::ts(chrono::Utc::now());
        let db = self.connect().await;
        sqlx::query(
            "INSERT INTO orders (client_order_id, venue_order_id, strategy, symbol, side,
                 order_type, quantity, price, time_in_force, status, created_at, updated_at)
             VALUES (?, ?, 'test', ?, ?, ?, ?, ?, ?, 'open', ?, ?)",
        )
        .bind(&request.client_order_id)
        .bind(venue_order_id)
        .bind(&request.symbol)
        .bind(&request.side)
        .bind(&request.order_type)
        .bind(request.quantity.to_string())
        .bind(request.price.map(|p| p.to_string()))
        .bind(&request.time_in_force)
        .bind(&now)
        .bind(&now)
        .execute(&db)
        .await
        .unwrap();
        db.close().await;
    }
}
