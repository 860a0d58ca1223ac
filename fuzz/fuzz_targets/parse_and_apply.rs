//! Any signed body, parsed and applied by the real dispatcher into a real store
//! (`sigex::dispatch::harness`). A finding is a panic anywhere on that path: the dispatcher keeps
//! a caught one as a dead letter whose reason says so, and this target turns it back into a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigex::dispatch::harness::{Harness, PANICKED};
use std::sync::{Mutex, OnceLock};

struct State {
    runtime: tokio::runtime::Runtime,
    harness: Mutex<Harness>,
    _dir: std::path::PathBuf,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        // tmpfs when there is one: every event is an fsynced commit.
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("sigex-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let harness = runtime.block_on(Harness::start(&dir));
        State {
            runtime,
            harness: Mutex::new(harness),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = state();
    let mut harness = s.harness.lock().unwrap();
    let outcomes = s.runtime.block_on(harness.apply(&[data.to_vec()]));
    for (status, error) in outcomes {
        if let Some(e) = error.filter(|e| e.contains(PANICKED)) {
            panic!("{status}: {e}");
        }
    }
});
