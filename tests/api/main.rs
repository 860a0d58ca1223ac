//! End-to-end tests: the real bot and the real simulator on loopback ports, a fresh SQLite
//! database per test, driven over HTTP exactly as the venue would.

mod admin;
mod architecture;
mod backtest;
mod chaos;
mod cli;
mod crash;
mod demo;
mod diskfull;
mod edge;
mod faults;
mod flood;
mod halt;
mod helpers;
mod lifecycle;
mod paper;
mod pipeline;
mod pnl;
mod reconcile;
mod replay;
mod risk;
mod supervision;
mod webhooks;
