//! Detach: dropping an `Em` whose device was moved into it, while the
//! interrupt thread is busy, in a loop. Before the fix the interrupt thread
//! could hold the last reference to the driver state (it upgraded its weak
//! handler outside the interrupt gate and nobody disestablished it), drop
//! it there, and with it the device, which then joined its own thread:
//! "Resource deadlock avoided".
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod common;
use common::scale;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mpsafe_em_sim::{Device, DeviceConfig, Em, EmConfig, KernelLock, Mode, Pool, Sink, WireRate};

#[test]
#[cfg_attr(miri, ignore = "device threads: too slow under Miri")]
fn attach_up_drop_with_the_device_moved_in() {
    // 20 s at the default scale, as the issue asks; shorter when scaled down.
    let limit = Duration::from_millis(200 * scale());
    // A panic on any thread (the interrupt thread joining itself) fails
    // the test, not just a line on stderr.
    let panics = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&panics);
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        seen.fetch_add(1, Ordering::SeqCst);
        prev(info);
    }));
    let mut late = 0u64;
    let begin = Instant::now();
    let mut rounds = 0u64;
    while begin.elapsed() < limit {
        let mode = Mode::ALL[rounds as usize % Mode::ALL.len()];
        let pool = Pool::new(1024, 2048);
        let dev = Device::new(
            DeviceConfig {
                wire: WireRate::Unlimited,
                tick: Duration::from_micros(20),
                ..DeviceConfig::default()
            },
            pool.clone(),
        )
        .unwrap();
        let mut cfg = EmConfig::new(mode);
        cfg.rx_desc = 256;
        cfg.ints_per_sec = 0;
        // The only handle to the device goes into the driver.
        let sink = Arc::new(Sink::new(pool.clone()));
        let em = Em::attach(dev, cfg, Arc::new(KernelLock::new()), sink.clone()).unwrap();
        em.up().unwrap();
        if rounds % 2 == 1 {
            std::thread::sleep(Duration::from_micros(200));
        }
        drop(em);
        // The driver state (which holds the stack) is gone when drop
        // returns, not later on the interrupt thread.
        if Arc::strong_count(&sink) != 1 {
            late += 1;
        }
        let s = pool.stats();
        assert_eq!((s.in_use(), s.leaked), (0, 0), "round {rounds}: {s}");
        rounds += 1;
    }
    assert!(rounds > 0);
    assert_eq!(
        late, 0,
        "driver state outlived drop(em) in {late} of {rounds} rounds"
    );
    assert_eq!(panics.load(Ordering::SeqCst), 0, "a thread panicked");
}
