//! What the bot knows about its own condition, for anyone to report into and the admin API to show:
//! `Health` (readiness checks, draining, task deaths) and `Metrics` (Prometheus counters and
//! histograms). Handles only: cheap to clone, no I/O, no dependency on any other part, so every
//! part may import it without tying itself to the admin API.

pub mod health;
pub mod metrics;

pub use health::Health;
pub use metrics::Metrics;
