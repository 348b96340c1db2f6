//! Stress test of the whole teardown order on real threads.
//!
//! A "driver" has an rx buffer its interrupt handlers read and a tx buffer its
//! start routine writes, both behind raw pointers. Two handler threads hammer
//! the gate (and restart transmission from the handler, as a real tx
//! completion does), a stack thread keeps asking for starts, and the main
//! thread repeatedly tears down in the documented order (clear RUNNING /
//! disable → `Gate::barrier` → `StartBarrier::wait` → free) and brings the
//! driver back up with fresh buffers.
//!
//! Freed buffers get a dead canary written first; a handler or start that
//! ever reached one would see it (and ThreadSanitizer or Miri would report the
//! race with the free or the use after free even if it did not).
//!
//! Bounded: `ROUNDS` teardowns or 2 seconds, whichever comes first, scaled by
//! `MPSAFE_STRESS_SCALE` (percent, default 100) and tiny under Miri.
#![cfg(not(mpsafe_loom))]
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mpsafe_barrier::{Gate, StartBarrier};
use mpsafe_serializer::{Task, TaskOwner, TaskSerializer};

const ROUNDS: u64 = 3000;
const DEADLINE: Duration = Duration::from_secs(2);
const ALIVE: u64 = 0xA11C_E0F0_0D15_EA5E;
const DEAD: u64 = 0xDEAD_DEAD_DEAD_DEAD;

const START: Task = Task::new(0);
const BARRIER: Task = Task::new(1);

struct Buffer {
    canary: u64,
    generation: u64,
    words: [u64; 8],
}

impl Buffer {
    fn alloc(generation: u64) -> *mut Buffer {
        Box::into_raw(Box::new(Buffer {
            canary: ALIVE,
            generation,
            words: [generation; 8],
        }))
    }

    /// The canary and generation, read volatile so that a check repeated
    /// across a yield really reads memory again.
    ///
    /// # Safety
    ///
    /// `buffer` is live.
    unsafe fn peek(buffer: *const Buffer) -> (u64, u64) {
        // SAFETY: live per the contract; plain aligned fields.
        unsafe {
            (
                ptr::read_volatile(&raw const (*buffer).canary),
                ptr::read_volatile(&raw const (*buffer).generation),
            )
        }
    }

    /// # Safety
    ///
    /// `buffer` came from [`Buffer::alloc`] and nothing else can reach it.
    unsafe fn free(buffer: *mut Buffer) {
        // SAFETY: per the contract, we own it exclusively; the dead canary is
        // what a late reader would trip over (and what TSan/Miri see raced).
        unsafe {
            (*buffer).canary = DEAD;
            drop(Box::from_raw(buffer));
        }
    }
}

struct Driver {
    rx_running: AtomicBool,
    tx_running: AtomicBool,
    rx: AtomicPtr<Buffer>,
    tx: AtomicPtr<Buffer>,
    intr: Gate,
    serializer: TaskSerializer,
    tx_barrier: StartBarrier,
    stop: AtomicBool,
    handled: AtomicU64,
    spurious: AtomicU64,
    started: AtomicU64,
}

impl Driver {
    fn interrupt(&self) {
        let ran = self.intr.enter(|| {
            // Acquire pairs with `up`'s Release store, publishing the
            // buffer. (For the *clear* in `down`, Relaxed would do: the
            // gate orders it before every invocation it does not wait for.)
            if !self.rx_running.load(Ordering::Acquire) {
                return;
            }
            let rx = self.rx.load(Ordering::Acquire);
            // SAFETY: rx_running was set when we looked, inside the gate, so
            // the teardown has not passed its Gate::barrier and `rx` is live
            // until we leave; handlers only read it.
            let (canary, generation) = unsafe { Buffer::peek(rx) };
            assert_eq!(canary, ALIVE, "handler reached a freed rx buffer");
            // SAFETY: as above.
            let words = unsafe { (*rx).words };
            assert!(words.iter().all(|&w| w == generation));
            if self.handled.fetch_add(1, Ordering::Relaxed) % 16 == 0 {
                std::thread::yield_now();
            }
            // A freed buffer may be reallocated at the same address for the
            // next generation: check both.
            // SAFETY: as above.
            let again = unsafe { Buffer::peek(rx) };
            assert_eq!(
                again,
                (ALIVE, generation),
                "rx buffer freed under the handler"
            );
            // Tx completion freed descriptors: restart from the handler.
            self.start();
        });
        if ran.is_none() {
            self.spurious.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn start(&self) {
        self.serializer.add(START, |t, o| self.run(t, o));
    }

    fn run(&self, task: Task, owner: &TaskOwner<'_>) {
        match task {
            START => self.start_locked(owner),
            BARRIER => self.tx_barrier.run_locked(owner),
            _ => unreachable!(),
        }
    }

    fn start_locked(&self, _owner: &TaskOwner<'_>) {
        // Acquire pairs with `up`'s Release store, publishing the buffer
        // (the clear is ordered by the serializer and the start barrier).
        if !self.tx_running.load(Ordering::Acquire) {
            return;
        }
        let tx = self.tx.load(Ordering::Acquire);
        // SAFETY: tx_running was set when we looked, inside the serializer, so
        // the teardown has not passed its start barrier and `tx` is live until
        // we return; the serializer makes us its only user.
        let (canary, generation) = unsafe { Buffer::peek(tx) };
        assert_eq!(canary, ALIVE, "start routine reached a freed tx buffer");
        // SAFETY: as above.
        unsafe { (*tx).words[0] = (*tx).words[0].wrapping_add(1) };
        // Fill "descriptors" for a while now and then: widens the window a
        // missing start barrier would leave open.
        if self.started.fetch_add(1, Ordering::Relaxed) % 16 == 0 {
            std::thread::yield_now();
        }
        // SAFETY: as above.
        let again = unsafe { Buffer::peek(tx) };
        assert_eq!(
            again,
            (ALIVE, generation),
            "tx buffer freed under the start routine"
        );
    }

    fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    fn up(&self, generation: u64, with_disable: bool) {
        self.rx.store(Buffer::alloc(generation), Ordering::Release);
        self.tx.store(Buffer::alloc(generation), Ordering::Release);
        self.tx_running.store(true, Ordering::Release);
        if with_disable {
            self.intr.enable();
        } else {
            self.rx_running.store(true, Ordering::Release);
        }
    }

    /// The documented teardown order. Alternates between turning handlers
    /// away with `disable` and with the driver's own flag.
    fn down(&self, with_disable: bool) {
        if with_disable {
            self.intr.disable();
        } else {
            self.rx_running.store(false, Ordering::Relaxed);
        }
        self.tx_running.store(false, Ordering::Relaxed);
        self.intr.barrier();
        self.tx_barrier
            .wait(&self.serializer, BARRIER, |t, o| self.run(t, o))
            .unwrap();
        let rx = self.rx.swap(ptr::null_mut(), Ordering::Acquire);
        let tx = self.tx.swap(ptr::null_mut(), Ordering::Acquire);
        // SAFETY: both came from Buffer::alloc in `up`; with RUNNING cleared
        // (or the gate disabled) before both barriers, no handler or start
        // still holds them and none will look again until the next `up`.
        unsafe {
            Buffer::free(rx);
            Buffer::free(tx);
        }
    }
}

fn rounds() -> u64 {
    let scale: u64 = std::env::var("MPSAFE_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    if cfg!(miri) {
        40
    } else {
        (ROUNDS * scale / 100).max(1)
    }
}

#[test]
fn teardown_never_frees_under_a_handler_or_a_start() {
    let driver = Driver {
        rx_running: AtomicBool::new(false),
        tx_running: AtomicBool::new(false),
        rx: AtomicPtr::new(ptr::null_mut()),
        tx: AtomicPtr::new(ptr::null_mut()),
        intr: Gate::new(),
        serializer: TaskSerializer::new(),
        tx_barrier: StartBarrier::new(),
        stop: AtomicBool::new(false),
        handled: AtomicU64::new(0),
        spurious: AtomicU64::new(0),
        started: AtomicU64::new(0),
    };
    let rounds = rounds();
    let began = Instant::now();
    let mut done = 0;
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !driver.stop.load(Ordering::Relaxed) {
                    driver.interrupt();
                }
            });
        }
        s.spawn(|| {
            while !driver.stop.load(Ordering::Relaxed) {
                driver.start();
                std::thread::yield_now();
            }
        });
        // The gate starts enabled, rx_running false: the first round uses
        // the flag.
        driver.up(0, false);
        while done < rounds && began.elapsed() < DEADLINE {
            // Pace: let handlers and a start reach this generation's buffers
            // (bounded; only spreads the teardowns over live traffic).
            let (handled, started) = (driver.handled(), driver.started());
            for _ in 0..10_000 {
                if driver.handled() > handled && driver.started() > started {
                    break;
                }
                std::thread::yield_now();
            }
            let with_disable = done % 2 == 0;
            driver.down(with_disable);
            done += 1;
            driver.up(done, with_disable);
        }
        driver.stop.store(true, Ordering::Relaxed);
    });
    // Leave nothing allocated (Miri checks for leaks).
    driver.down(false);
    std::println!(
        "{done} teardowns in {:?}: {} handler runs, {} spurious, {} starts",
        began.elapsed(),
        driver.handled.load(Ordering::Relaxed),
        driver.spurious.load(Ordering::Relaxed),
        driver.started.load(Ordering::Relaxed),
    );
}
