//! The shutdown signal: one trigger, any number of receivers. Every long-running task takes a
//! `Shutdown` as a parameter and stops only at a safe point once it fires, so a test can fire it,
//! and the bot's staged stop (`app::RunningBot::stop`) can stop its parts in order.
//!
//! Its own module, below everything that waits on it, so that no part has to import the wiring.

use std::time::Duration;
use tokio::sync::watch;

/// A shutdown signal every long-running task takes as a parameter, so a test can fire it.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Fires a `Shutdown`.
pub struct ShutdownTrigger(watch::Sender<bool>);

pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        // `send_replace` stores the value even when no one listens yet.
        self.0.send_replace(true);
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown is triggered (or the trigger is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }

    /// Sleeps for `d`; returns true when shutdown came first.
    pub async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = self.wait() => true,
        }
    }
}
