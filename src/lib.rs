//! sigex: an unattended trading bot for the Vibe Trading venue.
//!
//! The modules are the parts `ARCHITECTURE.md` describes: a webhook enters at `ingress`, is made
//! durable in `inbox`, routed by `dispatch` to `strategy` → `risk` → an order intent (`order`,
//! `store`), sent by `executor` through `venue`, and brought in line with the venue's reports by
//! `reconcile`.

pub mod admin;
pub mod app;
pub mod backtest;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod dispatch;
pub mod executor;
pub mod inbox;
pub mod ingress;
pub mod model;
pub mod notify;
pub mod order;
pub mod portfolio;
pub mod reconcile;
pub mod risk;
pub mod shutdown;
pub mod sim;
pub mod store;
pub mod strategy;
pub mod supervise;
pub mod telemetry;
pub mod venue;
