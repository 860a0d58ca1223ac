//! The dispatcher loop against a real store: one event's failure never takes the stream down.

use super::*;
use crate::clock::SystemClock;
use crate::config::{Credentials, Secret};
use crate::shutdown::shutdown_pair;
use crate::store::NewEvent;

async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (Store::open(&url).await.unwrap(), dir)
}

/// No strategies; the venue is unroutable (nothing here needs it).
fn dispatcher(store: &Store) -> Dispatcher {
    let clock: SharedClock = Arc::new(SystemClock);
    let venue = VenueClient::new(
        "http://127.0.0.1:9/api/v1",
        Credentials {
            api_key: Secret::new("k"),
            api_secret: Secret::new("s"),
        },
        Duration::from_secs(1),
        clock.clone(),
    )
    .unwrap();
    Dispatcher::new(
        store.clone(),
        Arc::new(Vec::new()),
        venue,
        clock,
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
        Arc::new(TradingConfig::default()),
    )
}

async fn insert(store: &Store, bodies: &[String]) -> Vec<i64> {
    let events: Vec<NewEvent> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| NewEvent {
            dedupe_key: format!("k{i}"),
            event_type: "t".into(),
            received_at: Utc::now(),
            body: axum::body::Bytes::from(b.clone()),
            webhook_id: None,
        })
        .collect();
    store
        .insert_events(&events)
        .await
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

/// Runs the dispatcher until no event is pending, then stops it.
async fn drain(d: Dispatcher, store: &Store) {
    let (trigger, shutdown) = shutdown_pair();
    let running = tokio::spawn(d.run(shutdown));
    let drained = async {
        while store
            .event_counts()
            .await
            .unwrap()
            .iter()
            .any(|(status, _)| status == "pending")
        {
            assert!(!running.is_finished(), "the dispatcher stopped on its own");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), drained)
        .await
        .expect("the inbox drains");
    trigger.trigger();
    running.await.expect("the dispatcher ends without a panic");
}

async fn status_of(store: &Store, seq: i64) -> (String, Option<String>) {
    let (e, _) = store.event(seq).await.unwrap().unwrap();
    (e.status, e.error)
}

fn test_event(n: u32) -> String {
    format!(r#"{{"event":"test","timestamp":"2026-11-27T12:00:00Z","data":{{"message":"m{n}"}}}}"#)
}

#[tokio::test]
async fn a_panic_while_processing_one_event_dead_letters_it_and_the_rest_go_on() {
    let (store, _dir) = store().await;
    let seqs = insert(&store, &[test_event(1), test_event(2), test_event(3)]).await;
    let mut d = dispatcher(&store);
    d.panic_on_seq = Some(seqs[1]);
    drain(d, &store).await;
    assert_eq!(status_of(&store, seqs[0]).await.0, "processed");
    let (status, error) = status_of(&store, seqs[1]).await;
    assert_eq!(status, "dead");
    assert_eq!(
        error.as_deref(),
        Some(format!("processing panicked: injected for event {}", seqs[1]).as_str())
    );
    assert_eq!(status_of(&store, seqs[2]).await.0, "processed");
}

#[tokio::test]
async fn two_deposits_of_5e28_become_a_dead_letter_with_the_reason_not_a_panic() {
    let (store, _dir) = store().await;
    let now = crate::clock::ts(Utc::now());
    let deposit = |id: &str| {
        format!(
            r#"{{"event":"account.deposit_received","timestamp":"{now}",
                "data":{{"transactionId":"{id}","asset":"USD","amount":5e28,"status":"completed"}}}}"#
        )
    };
    let balance = format!(
        r#"{{"event":"account.balance_updated","timestamp":"{now}",
        "data":{{"asset":"USD","available":100,"locked":0,"total":100}}}}"#
    );
    let seqs = insert(
        &store,
        &[balance, deposit("tx-1"), deposit("tx-2"), test_event(1)],
    )
    .await;
    drain(dispatcher(&store), &store).await;
    assert_eq!(status_of(&store, seqs[1]).await.0, "processed");
    let (status, error) = status_of(&store, seqs[2]).await;
    assert_eq!(status, "dead", "{error:?}");
    assert!(
        error
            .as_deref()
            .unwrap_or("")
            .contains("arithmetic overflow"),
        "{error:?}"
    );
    assert_eq!(
        status_of(&store, seqs[3]).await.0,
        "processed",
        "the stream goes on"
    );
}

/// Parse and apply never panic, whatever a signed body holds: seeded mutations of every venue
/// event (flipped bytes, removed or nasty fields, numbers at the edge of a `Decimal`, order news
/// about a real order) go through the real dispatcher into a real store. A caught panic would
/// show as a dead letter whose reason says so. `SIGEX_FUZZ_ITERS=100000 cargo test --release
/// --lib parse_and_apply_never_panics` runs it longer; `SIGEX_FUZZ_SEED` picks other inputs.
#[tokio::test]
async fn parse_and_apply_never_panics_on_any_input() {
    use crate::dispatch::harness::{Harness, PANICKED};
    use crate::model::events::tests::{fixture, mutate, Rng, SEED_EVENTS};
    let iterations: usize = std::env::var("SIGEX_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let seed = std::env::var("SIGEX_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0xA991);
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut harness = Harness::start(dir.path()).await;
    let now = Utc::now().to_rfc3339();
    let fixtures: Vec<serde_json::Value> = SEED_EVENTS
        .iter()
        .map(|n| {
            let mut v: serde_json::Value = serde_json::from_slice(&fixture(n)).unwrap();
            v["timestamp"] = now.clone().into();
            if n.starts_with("order.") {
                v["data"]["clientOrderId"] = "sx-known".into();
            }
            v
        })
        .collect();
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    let mut done = 0;
    while done < iterations {
        let bodies: Vec<Vec<u8>> = (0..50.min(iterations - done))
            .map(|_| {
                let base = &fixtures[rng.below(fixtures.len())];
                match rng.below(5) {
                    // Flipped bytes in a real payload.
                    0 => {
                        let mut b = serde_json::to_vec(base).unwrap();
                        for _ in 0..=rng.below(4) {
                            let at = rng.below(b.len());
                            b[at] = rng.next() as u8;
                        }
                        b
                    }
                    // A structurally valid payload with nasty values, one to three of them.
                    1 => {
                        let mut v = base.clone();
                        for _ in 0..=rng.below(3) {
                            mutate(&mut v, &mut rng);
                        }
                        serde_json::to_vec(&v).unwrap()
                    }
                    // A valid payload whose numbers sit at the edge of what a Decimal holds.
                    _ => {
                        let mut v = base.clone();
                        for _ in 0..=rng.below(3) {
                            extreme_number(&mut v, &mut rng);
                        }
                        serde_json::to_vec(&v).unwrap()
                    }
                }
            })
            .collect();
        done += bodies.len();
        for ((status, error), body) in harness.apply(&bodies).await.into_iter().zip(&bodies) {
            assert!(
                !error.as_deref().unwrap_or("").contains(PANICKED),
                "processing panicked on {}: {error:?}",
                String::from_utf8_lossy(body)
            );
            *outcomes.entry(status).or_default() += 1;
        }
    }
    assert_eq!(outcomes.values().sum::<usize>(), iterations);
    assert!(
        outcomes
            .get("processed")
            .is_some_and(|n| *n > iterations / 10),
        "at least a tenth of the inputs must get past parsing: {outcomes:?}"
    );
}

/// Replaces one number in `v` with a valid decimal at the edge of what a `Decimal` holds.
fn extreme_number(v: &mut serde_json::Value, rng: &mut crate::model::events::tests::Rng) {
    const EXTREMES: &[&str] = &[
        "5e28",
        "-5e28",
        "79228162514264337593543950335",
        "-79228162514264337593543950335",
        "0.0000000000000000000000000001",
        "1e20",
        "0",
        "-1",
    ];
    fn count(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Number(_) => 1,
            serde_json::Value::Object(m) => m.values().map(count).sum(),
            serde_json::Value::Array(a) => a.iter().map(count).sum(),
            _ => 0,
        }
    }
    /// Sets the `n`-th number (depth first) to `to`; `n` counts down through the ones passed.
    fn set_nth(v: &mut serde_json::Value, n: &mut usize, to: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Number(_) if *n == 0 => {
                *v = to.clone();
                true
            }
            serde_json::Value::Number(_) => {
                *n -= 1;
                false
            }
            serde_json::Value::Object(m) => m.values_mut().any(|x| set_nth(x, n, to)),
            serde_json::Value::Array(a) => a.iter_mut().any(|x| set_nth(x, n, to)),
            _ => false,
        }
    }
    let total = count(v);
    if total == 0 {
        return;
    }
    let mut n = rng.below(total);
    let extreme: serde_json::Value =
        serde_json::from_str(EXTREMES[rng.below(EXTREMES.len())]).unwrap();
    set_nth(v, &mut n, &extreme);
}
