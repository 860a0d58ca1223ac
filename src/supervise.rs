//! Supervision: no task dies quietly, and no single piece of work can take its task down.
//!
//! Guarantees:
//! - every long-lived task runs under a name ([`spawn`]); one that ends before its shutdown was
//!   triggered (a panic, or an early return) is reported to `Health` with its name and why, which
//!   fails readiness and wakes `sigex run`, which stops the bot and exits non-zero so systemd
//!   restarts it. A one-shot task may return early; a panic is a death for it too.
//! - aborting a supervised task's handle (the shutdown deadline) aborts the task itself;
//! - [`catch_panic`] runs one unit of work (one event) so that its panic becomes a value the caller
//!   can record (a dead letter with the reason) instead of unwinding through the loop.

use crate::shutdown::Shutdown;
use crate::telemetry::health::{Health, TaskDeath};
use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::task::{AbortHandle, JoinHandle};

/// Whether a task may end on its own before shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Runs until shutdown; ending earlier is a death.
    UntilShutdown,
    /// Does one job and returns (the start-up reconciliation); only a panic is a death.
    OneShot,
}

/// The text of a panic payload (`panic!("...")` carries a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Spawns `task` as `name`. The returned handle ends when the task does; see the module doc for
/// what is reported. `stopping` is the shutdown the task obeys.
pub fn spawn<F>(
    name: &'static str,
    lifetime: Lifetime,
    stopping: Shutdown,
    health: Health,
    task: F,
) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    watch(name, lifetime, stopping, health, tokio::spawn(task))
}

/// Like [`spawn`], for a task already spawned elsewhere (its handle is taken over: aborting the
/// returned handle aborts it).
pub fn watch(
    name: &'static str,
    lifetime: Lifetime,
    stopping: Shutdown,
    health: Health,
    inner: JoinHandle<()>,
) -> JoinHandle<()> {
    let abort = AbortOnDrop(inner.abort_handle());
    tokio::spawn(async move {
        let _abort = abort;
        let why = match inner.await {
            Ok(()) if stopping.is_triggered() || lifetime == Lifetime::OneShot => return,
            Ok(()) => "returned before shutdown".to_owned(),
            Err(e) if e.is_panic() => format!("panicked: {}", panic_message(&*e.into_panic())),
            // Cancelled: only by our own abort, at the shutdown deadline.
            Err(_) => return,
        };
        tracing::error!(task = name, %why, "a task died; stopping so that the service manager restarts sigex");
        health.task_died(TaskDeath {
            task: name.to_owned(),
            why,
        });
    })
}

/// Aborts a task when dropped: the supervisor's handle owns its task.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `future`, turning a panic inside it into `Err(message)`.
pub fn catch_panic<F: Future>(future: F) -> CatchPanic<F> {
    CatchPanic(Box::pin(future))
}

/// See [`catch_panic`].
pub struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        // A future whose poll panicked is never polled again (the caller gets `Err` and drops
        // it), so carrying it across the unwind cannot expose broken state.
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::shutdown_pair;
    use std::time::Duration;

    async fn death_of(health: &Health) -> TaskDeath {
        tokio::time::timeout(Duration::from_secs(10), health.wait_for_death())
            .await
            .expect("a death is reported")
    }

    #[tokio::test]
    async fn a_panicking_task_is_reported_by_name_with_its_message() {
        let health = Health::new();
        let (_trigger, stopping) = shutdown_pair();
        let handle = spawn(
            "executor",
            Lifetime::UntilShutdown,
            stopping,
            health.clone(),
            async { panic!("attempt to add with overflow") },
        );
        let death = death_of(&health).await;
        assert_eq!(death.task, "executor");
        assert_eq!(death.why, "panicked: attempt to add with overflow");
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn a_task_that_returns_before_shutdown_is_a_death_unless_it_is_one_shot() {
        let health = Health::new();
        let (trigger, stopping) = shutdown_pair();
        spawn(
            "reconciliation",
            Lifetime::OneShot,
            stopping.clone(),
            health.clone(),
            async {},
        )
        .await
        .unwrap();
        assert!(health.dead_tasks().is_empty(), "a one-shot job may end");
        spawn(
            "dispatcher",
            Lifetime::UntilShutdown,
            stopping.clone(),
            health.clone(),
            async {},
        );
        let death = death_of(&health).await;
        assert_eq!(
            (death.task.as_str(), death.why.as_str()),
            ("dispatcher", "returned before shutdown")
        );
        trigger.trigger();
        spawn(
            "admin",
            Lifetime::UntilShutdown,
            stopping,
            health.clone(),
            async {},
        )
        .await
        .unwrap();
        assert_eq!(
            health.dead_tasks().len(),
            1,
            "returning after shutdown is fine"
        );
    }

    #[tokio::test]
    async fn aborting_the_supervising_handle_aborts_the_task() {
        let health = Health::new();
        let (_trigger, stopping) = shutdown_pair();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = spawn(
            "stuck",
            Lifetime::UntilShutdown,
            stopping,
            health.clone(),
            async move {
                let _held = tx;
                std::future::pending::<()>().await
            },
        );
        handle.abort();
        // The task's end drops its sender.
        assert!(tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("the task was aborted")
            .is_err());
        assert!(health.dead_tasks().is_empty());
    }

    #[tokio::test]
    async fn a_caught_panic_is_a_value_and_the_caller_goes_on() {
        let ok = catch_panic(async { 7 }).await;
        assert_eq!(ok, Ok(7));
        let caught = catch_panic(async {
            tokio::task::yield_now().await;
            let huge = rust_decimal::Decimal::MAX;
            let _ = std::hint::black_box(huge) + huge;
        })
        .await;
        assert!(caught.unwrap_err().contains("overflow"));
    }
}
