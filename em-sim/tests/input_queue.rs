//! The hand-off to the stack through OpenBSD-style input queues
//! (`IfInputQueue`): a softnet thread that falls behind raises the queue's
//! pressure, the driver backs its receive ring off (`if_rxr_livelocked`),
//! and every received frame is processed, dropped by the queue (counted) or
//! still queued: none is lost.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use mpsafe_em_sim::{
    Device, DeviceConfig, Em, EmConfig, InputQueues, KernelLock, Mode, Pool, WireRate,
};
use mpsafe_ifqueue::InputConfig;

#[test]
#[cfg_attr(miri, ignore = "device threads: too slow under Miri")]
fn a_slow_softnet_backs_the_ring_off_and_nothing_is_lost() {
    for mode in Mode::ALL {
        let pool = Pool::new(8192, 2048);
        let dev = Device::new(
            DeviceConfig {
                wire: WireRate::Unlimited,
                ..DeviceConfig::default()
            },
            pool.clone(),
        )
        .unwrap();
        // Pressure above 64 pending, drops above 256: a softnet thread that
        // runs every 5 ms is far behind a wire that fills every descriptor.
        let stack = Arc::new(InputQueues::new(pool.clone(), 1, InputConfig::new(64, 256)).unwrap());
        let em = Em::attach(
            Arc::clone(&dev),
            EmConfig::new(mode),
            Arc::new(KernelLock::new()),
            stack.clone(),
        )
        .unwrap();
        em.up().unwrap();
        let stop = AtomicBool::new(false);
        let rounds = AtomicU64::new(0);
        thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    stack.process();
                    rounds.fetch_add(1, Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(5));
                }
            });
            // At least 20 softnet rounds, and until the stack has pushed
            // back at least once (a sanitizer's slower driver can take a
            // while to fall behind), up to 2000 rounds.
            while rounds.load(Ordering::Relaxed) < 20
                || (stack.pressured() == 0 && rounds.load(Ordering::Relaxed) < 2000)
            {
                thread::sleep(Duration::from_millis(5));
            }
            stop.store(true, Ordering::Relaxed);
        });
        em.down();
        stack.process();
        let st = em.stats();
        let c = stack.counters(0);
        assert_eq!(
            c.packets, st.rx_packets,
            "{mode}: every frame went through the queue"
        );
        assert_eq!(
            stack.processed() + c.qdrops,
            c.packets,
            "{mode}: processed or counted dropped"
        );
        assert!(
            stack.pressured() > 0,
            "{mode}: the slow softnet never raised the pressure"
        );
        // Every batch the stack answered with pressure was reported to the
        // ring's watermark: a driver that ignored `Stack::input`'s answer
        // would report none. (What `livelocked` does to the watermark is
        // the rxring crate's to test; from out here a shrink is undone by
        // the next tick's growth before anyone can see it.)
        assert_eq!(
            st.rx_livelocked,
            stack.pressured(),
            "{mode}: a pressured batch was not reported to the ring"
        );
        assert_eq!(
            (st.pool.in_use(), st.pool.leaked),
            (0, 0),
            "{mode}: {}",
            st.pool
        );
        drop(em);
        dev.shutdown();
    }
}
