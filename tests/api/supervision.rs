//! A task that dies is never quiet: readiness names it, `died` wakes `sigex run` (which then
//! exits non-zero) and the stop is not reported as clean.

use crate::helpers::TestApp;
use sigex::app::Stopped;
use std::time::Duration;

#[tokio::test]
async fn a_task_that_dies_fails_readiness_and_the_bot_does_not_stop_cleanly() {
    let mut app = TestApp::spawn().await;
    let (status, _) = app.admin_get_raw("/readyz").await;
    assert_eq!(status, 200, "ready before anything died");
    let bot = app.bot.as_mut().unwrap();
    bot.supervise("doomed", async {
        tokio::task::yield_now().await;
        panic!("boom");
    });
    let death = tokio::time::timeout(Duration::from_secs(20), bot.died())
        .await
        .expect("the death is reported");
    assert_eq!(death.task, "doomed");
    assert_eq!(death.why, "panicked: boom");
    let (status, body) = app.admin_get_raw("/readyz").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("\"tasks\"") && body.contains("doomed"),
        "{body}"
    );
    let stopped = app.bot.take().unwrap().stop().await;
    assert!(
        matches!(&stopped, Stopped::AfterTaskDeath(d) if d[0].task == "doomed"),
        "{stopped:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_task_that_returns_before_shutdown_counts_as_dead() {
    let mut app = TestApp::spawn().await;
    let bot = app.bot.as_mut().unwrap();
    bot.supervise("quitter", async {});
    let death = tokio::time::timeout(Duration::from_secs(20), bot.died())
        .await
        .expect("the early return is reported");
    assert_eq!(
        (death.task.as_str(), death.why.as_str()),
        ("quitter", "returned before shutdown")
    );
    let stopped = app.bot.take().unwrap().stop().await;
    assert!(matches!(stopped, Stopped::AfterTaskDeath(_)), "{stopped:?}");
    app.stop().await;
}
