//! The driver's insides under the witness and its own checks, through the
//! driver's test hooks (`Em::__probe`): a lock the types cannot see held
//! around a barrier or an entry is reported, naming both; a start routine
//! refuses another queue's token; a stack's queued packets go back to the
//! pool.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use mpsafe_em_sim::{
    Device, DeviceConfig, Em, EmConfig, InputQueues, KernelLock, Mbuf, Mode, Path, Pool, Sink,
    Stack,
};
use mpsafe_ifqueue::{Config, Fifo, IfQueue, InputConfig};

#[cfg(debug_assertions)]
fn em(mode: Mode, queues: usize) -> Em<Device> {
    let pool = Pool::new(1024, 2048);
    let cfg = DeviceConfig {
        queues,
        ..DeviceConfig::default()
    };
    let dev = Device::new(cfg, pool.clone()).unwrap();
    let sink = Arc::new(Sink::new(pool.clone()));
    Em::attach(dev, EmConfig::new(mode), Arc::new(KernelLock::new()), sink).unwrap()
}

#[cfg(debug_assertions)]
fn report(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("the witness should have panicked");
    err.downcast_ref::<String>().cloned().unwrap_or_default()
}

/// The start level of `mode`, as the witness names it.
#[cfg(debug_assertions)]
fn start_level(mode: Mode) -> &'static str {
    if mode == Mode::Serialized {
        "`IfqStartSerialized`"
    } else {
        "`IfqStart`"
    }
}

/// A start barrier waited for while holding the queue mutex (taken
/// through a callback's fresh context, so the types cannot see it):
/// reported before it waits, in every mode, at that mode's start level.
#[cfg(debug_assertions)]
#[test]
fn witness_reports_a_start_barrier_under_the_queue_mutex_in_every_mode() {
    for mode in Mode::ALL {
        let em = em(mode, 1);
        let p = em.__probe();
        let msg = report(|| p.with_queue_mutex(0, || p.start_barrier(0)));
        assert!(msg.contains("lock order violation"), "{mode}: {msg}");
        assert!(msg.contains(start_level(mode)), "{mode}: {msg}");
        assert!(msg.contains("`IfqMutex`"), "{mode}: {msg}");
    }
}

/// Inside the ifnet serializer: stop's start barrier in the modes whose
/// start routine does not enter it (quiet), and a blocking wait in
/// `Serialized` mode, whose routine does (reported).
#[cfg(debug_assertions)]
#[test]
fn witness_reports_the_serialized_start_barrier_inside_ifnet() {
    for mode in Mode::ALL {
        let em = em(mode, 1);
        let p = em.__probe();
        let wait = || p.with_ifnet(|| p.start_barrier(0));
        if mode == Mode::Serialized {
            let msg = report(wait);
            assert!(msg.contains("lock order violation"), "{msg}");
            assert!(
                msg.contains("`IfqStartSerialized`") && msg.contains("`Ifnet`"),
                "{msg}"
            );
        } else {
            wait();
        }
    }
}

/// The interrupt gate's barrier waited for while holding what the
/// handler takes (through a callback's fresh context): the big lock in
/// `BigLock` mode, the ifnet serializer in `Serialized` mode. Reported
/// before it waits, at that mode's interrupt level.
#[cfg(debug_assertions)]
#[test]
fn witness_reports_the_interrupt_barrier_under_what_the_handler_takes() {
    let big = em(Mode::BigLock, 1);
    let p = big.__probe();
    let msg = report(|| p.with_big_lock(Path::Ioctl, || p.barriers()));
    assert!(msg.contains("lock order violation"), "{msg}");
    assert!(msg.contains("`Intr`") && msg.contains("`BigLock`"), "{msg}");

    let serialized = em(Mode::Serialized, 1);
    let p = serialized.__probe();
    let msg = report(|| p.with_ifnet(|| p.barriers()));
    assert!(msg.contains("lock order violation"), "{msg}");
    assert!(
        msg.contains("`IntrSerialized`") && msg.contains("`Ifnet`"),
        "{msg}"
    );
}

/// Queue 0's start routine waiting for queue 1's start barrier through
/// a callback's fresh context (two routines doing it to each other
/// deadlock): reported, naming both queues' start levels.
#[cfg(debug_assertions)]
#[test]
fn witness_reports_a_start_routine_waiting_for_another_queue() {
    let em = em(Mode::Mpsafe, 2);
    let p = em.__probe();
    let msg = report(|| p.inside_start_routine(0, || p.start_barrier(1)));
    let addr = |q| format!("{:#x}", p.start_level_addr(q));
    assert!(msg.contains("lock order violation"), "{msg}");
    assert!(msg.contains(&format!("`IfqStart` ({})", addr(0))), "{msg}");
    assert!(msg.contains(&format!("`IfqStart` ({})", addr(1))), "{msg}");
}

/// A callback run under an rx mutex that calls back into an ioctl (as a
/// stack's input routine might): the witness reports the ifnet
/// serializer taken under the rx mutex, before it would wait, in every
/// mode, naming both locks.
#[cfg(debug_assertions)]
#[test]
fn witness_reports_ifnet_under_rx_in_every_mode() {
    for mode in Mode::ALL {
        let pool = Pool::new(1024, 2048);
        let dev = Device::new(DeviceConfig::default(), pool.clone()).unwrap();
        let sink = Arc::new(Sink::new(pool.clone()));
        let em = Em::attach(dev, EmConfig::new(mode), Arc::new(KernelLock::new()), sink).unwrap();
        let p = em.__probe();
        let err = catch_unwind(AssertUnwindSafe(|| {
            p.with_rx_mutex(0, || {
                let _ = em.up();
            });
        }))
        .expect_err("the witness should report Ifnet under RxMutex");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("lock order violation"), "{mode}: {msg}");
        assert!(
            msg.contains("`Ifnet`") && msg.contains("`RxMutex`"),
            "{mode}: {msg}"
        );
        assert!(
            msg.contains("driver/mod.rs") && msg.contains("driver/probe.rs"),
            "{msg}"
        );
        // In order, the same driver comes up and goes down.
        em.up().unwrap();
        em.down();
    }
}

/// An interrupt handler called under an rx mutex (a callback that
/// services the device from inside the ring lock): in `BigLock` mode
/// the witness reports the big lock taken under the rx mutex before it
/// would wait, naming both. The same handler called normally holds the
/// big lock and takes it again for each part of its body (rxeof,
/// txeof, refill, start): not reported, since the level is recursive.
#[cfg(debug_assertions)]
#[test]
fn witness_reports_big_lock_under_rx() {
    let pool = Pool::new(1024, 2048);
    let dev = Device::new(DeviceConfig::default(), pool.clone()).unwrap();
    let sink = Arc::new(Sink::new(pool.clone()));
    let em = Em::attach(
        dev,
        EmConfig::new(Mode::BigLock),
        Arc::new(KernelLock::new()),
        sink,
    )
    .unwrap();
    em.up().unwrap();
    // Held and taken again by the same thread: quiet.
    let p = em.__probe();
    p.intr();
    let err = catch_unwind(AssertUnwindSafe(|| {
        p.with_rx_mutex(0, || {
            p.intr();
        });
    }))
    .expect_err("the witness should report BigLock under RxMutex");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("lock order violation"), "{msg}");
    assert!(
        msg.contains("`BigLock`") && msg.contains("`RxMutex`"),
        "{msg}"
    );
    assert!(msg.contains("driver/intr.rs"), "{msg}");
    // Nothing was taken: the driver goes down.
    em.down();
}

/// Queue 0's start routine called from inside another send queue's
/// serializer, with that queue's token: the token proves only that
/// *a* serializer runs on this thread, not queue 0's, so two start
/// routines could write ring 0 at once. Refused with a panic.
#[test]
#[should_panic(expected = "token of another send queue's serializer")]
fn start_routine_refuses_another_queue_s_token() {
    let pool = Pool::new(1024, 2048);
    let dev = Device::new(DeviceConfig::default(), pool.clone()).unwrap();
    let sink = Arc::new(Sink::new(pool.clone()));
    let em = Em::attach(
        dev,
        EmConfig::new(Mode::Mpsafe),
        Arc::new(KernelLock::new()),
        sink,
    )
    .unwrap();
    em.up().unwrap();
    let p = em.__probe();
    let other = IfQueue::from_fn(Fifo::<Vec<u8>>::new(), Config::default(), |_, owner| {
        p.start_routine(0, owner);
    })
    .unwrap();
    let _ = other.transmit(vec![0; 60]);
}

/// Packets still queued when the stack goes away go back to the pool:
/// without the purge on drop they were counted as leaked.
#[test]
fn dropping_the_stack_frees_what_it_never_took() {
    let pool = Pool::new(8, 2048);
    let stack = InputQueues::new(pool.clone(), 2, InputConfig::new(4, 8)).unwrap();
    let mut batch: Vec<Mbuf> = (0..3).map(|_| pool.alloc().unwrap()).collect();
    assert!(!stack.input(1, &mut batch));
    assert!(batch.is_empty());
    assert_eq!(pool.stats().in_use(), 3);
    drop(stack);
    let st = pool.stats();
    assert_eq!((st.leaked, st.in_use(), st.free), (0, 0, 8));
}
