//! Helpers the em integration tests share: the stress scale and a watchdog.
#![allow(dead_code, clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The stress scale in percent (`MPSAFE_STRESS_SCALE`, default 100): the
/// sanitizer runs shrink iteration counts with it, never thread counts.
pub(crate) fn scale() -> u64 {
    std::env::var("MPSAFE_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

/// Aborts the whole test process if `f` takes longer than `limit`: a
/// deadlock must fail the test, not hang CI.
pub(crate) fn with_watchdog<R>(limit: Duration, f: impl FnOnce() -> R) -> R {
    let done = Arc::new(AtomicBool::new(false));
    let d = Arc::clone(&done);
    let dog = thread::spawn(move || {
        let start = Instant::now();
        while !d.load(Ordering::Acquire) {
            if start.elapsed() > limit {
                eprintln!("watchdog: no progress in {limit:?}, deadlock?");
                std::process::abort();
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    let r = f();
    done.store(true, Ordering::Release);
    dog.join().unwrap();
    r
}
