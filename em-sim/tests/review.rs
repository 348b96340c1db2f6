//! The five bugs of the outside review, each forced deterministically:
//! a device wrapper ([`Probe`]) parks a chosen path at a chosen register
//! access, so the race the review found happens on every run.
//!
//! 1. A handler that enters the interrupt gate after the switch's barrier
//!    must not run its parts under the old mode (it crashed the interrupt
//!    thread when the switch went to `Serialized`).
//! 2. A big-lock caller's `start_locked` must not run a start body beside
//!    the one the mode switch kicks.
//! 3. A nested `KernelGuard` is no proof while `sleep` has the lock
//!    released.
//! 4. `transmit` refuses a buffer of another pool and hands it back.
//! 5. A stack that answers from `Stack::input` works in every mode.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod common;
use common::{detach_checked, eventually, with_watchdog};

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::thread;
use std::time::Duration;

use mpsafe_em_sim::StdKernel;
use mpsafe_em_sim::desc::{DescRing, RXD_STAT_DD, RXD_STAT_EOP};
use mpsafe_em_sim::regs::ICR_RXT0;
use mpsafe_em_sim::{
    Device, DeviceConfig, Em, EmConfig, EmError, Hardware, IntrHandler, IntrLine, KernelLock, Mbuf,
    Mode, Path, Pool, Reg, Regs, Sink, Stack, TxError, WireRate,
};

/// A one-shot event a thread can wait for.
#[derive(Default)]
struct Event {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Event {
    fn set(&self) {
        *self.set.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.cv.notify_all();
    }

    fn is_set(&self) -> bool {
        *self.set.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until set, or `limit`; returns whether it was set.
    fn wait_for(&self, limit: Duration) -> bool {
        let g = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        let (g, _) = self
            .cv
            .wait_timeout_while(g, limit, |set| !*set)
            .unwrap_or_else(PoisonError::into_inner);
        *g
    }
}

/// The simulated device behind a wrapper that parks chosen accesses. The
/// driver's handler hangs on the wrapper's own line, which only the test
/// delivers on (a shared INTx line: any time, masked or not); the device's
/// own interrupts reach nobody.
struct Probe {
    dev: Arc<Device>,
    line: IntrLine,
    /// Park the next handler's `ICR` read until `icr_release`.
    park_icr: AtomicBool,
    icr_reached: Event,
    icr_release: Event,
    /// Park the next `TDT(0)` write until `tdt_release`.
    park_tdt: AtomicBool,
    tdt_reached: Event,
    tdt_release: Event,
    /// A `TDT(0)` write by another body while one is parked.
    inside_body: AtomicBool,
    overlap: Event,
    /// Every ring the driver allocated, in order (queue 0: rx, then tx).
    rings: Mutex<Vec<Arc<DescRing>>>,
    /// Run once by the next `intr_barrier`, after the line's barrier.
    after_barrier_hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Probe {
    fn new(dev: Arc<Device>) -> Arc<Self> {
        Arc::new(Self {
            dev,
            line: IntrLine::new(),
            park_icr: AtomicBool::new(false),
            icr_reached: Event::default(),
            icr_release: Event::default(),
            park_tdt: AtomicBool::new(false),
            tdt_reached: Event::default(),
            tdt_release: Event::default(),
            inside_body: AtomicBool::new(false),
            overlap: Event::default(),
            rings: Mutex::new(Vec::new()),
            after_barrier_hook: Mutex::new(None),
        })
    }
}

impl Regs for Probe {
    fn read(&self, reg: Reg) -> u32 {
        if reg == Reg::ICR && self.park_icr.swap(false, Ordering::AcqRel) {
            self.icr_reached.set();
            self.icr_release.wait_for(Duration::from_secs(60));
            return ICR_RXT0;
        }
        self.dev.read(reg)
    }

    fn write(&self, reg: Reg, value: u32) {
        if reg == Reg::tdt(0) {
            if self.park_tdt.swap(false, Ordering::AcqRel) {
                self.inside_body.store(true, Ordering::Release);
                self.tdt_reached.set();
                self.tdt_release.wait_for(Duration::from_secs(60));
                self.inside_body.store(false, Ordering::Release);
            } else if self.inside_body.load(Ordering::Acquire) {
                self.overlap.set();
            }
        }
        self.dev.write(reg, value);
    }
}

impl Hardware for Probe {
    type Error = std::convert::Infallible;
    type Kernel = StdKernel;
    type Pool = Pool;
    fn queues(&self) -> usize {
        1
    }
    fn pool(&self) -> &Pool {
        self.dev.pool()
    }
    fn dma_alloc(&self, n: usize) -> Result<(u64, Arc<DescRing>), Self::Error> {
        let (bus, ring) = self.dev.dma_alloc(n);
        self.rings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&ring));
        Ok((bus, ring))
    }
    fn intr_establish(&self, handler: Weak<dyn IntrHandler>) {
        self.line.establish(handler);
    }
    fn intr_disestablish(&self) {
        self.line.disestablish();
    }
    fn intr_barrier(&self) {
        self.line.barrier();
        let hook = self
            .after_barrier_hook
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(hook) = hook {
            hook();
        }
    }
}

/// A probe on a quiet simulated device (no wire traffic), the driver
/// attached in `mode` and up.
fn probe_em(
    mode: Mode,
    tx_desc: u32,
    tx_bundle: usize,
) -> (Pool, Arc<Device>, Arc<Probe>, Em<Probe>) {
    let (pool, dev, probe, em, _) = probe_em_sink(mode, tx_desc, tx_bundle);
    (pool, dev, probe, em)
}

/// [`probe_em`], and the sink the driver delivers to.
fn probe_em_sink(
    mode: Mode,
    tx_desc: u32,
    tx_bundle: usize,
) -> (Pool, Arc<Device>, Arc<Probe>, Em<Probe>, Arc<Sink>) {
    let pool = Pool::new(2048, 2048);
    let dev = Device::new(
        DeviceConfig {
            queues: 1,
            wire: WireRate::Off,
            ..DeviceConfig::default()
        },
        pool.clone(),
    )
    .unwrap();
    let probe = Probe::new(Arc::clone(&dev));
    let mut cfg = EmConfig::new(mode);
    cfg.tx_desc = tx_desc;
    cfg.ifq_maxlen = 1024;
    cfg.tx_bundle = tx_bundle;
    let sink = Arc::new(Sink::new(pool.clone()));
    let em = Em::attach(
        Arc::clone(&probe),
        cfg,
        Arc::new(KernelLock::new()),
        sink.clone(),
    )
    .unwrap();
    em.up().unwrap();
    (pool, dev, probe, em, sink)
}

fn down_checked(em: Em<Probe>, dev: &Device, what: &str) {
    em.down();
    let s = em.stats();
    assert_eq!(
        (s.pool.in_use(), s.pool.leaked),
        (0, 0),
        "{what}: {}",
        s.pool
    );
    assert_eq!(s.tx_posted, s.tx_completed + s.tx_flushed, "{what}: {s}");
    drop(em);
    dev.shutdown();
}

/// Bug 1: an interrupt on a shared line enters the gate right after the
/// switch's interrupt barrier, reads the mode (the old one), and is held
/// there while the switch to `Serialized` finishes. Released, it must not
/// run its parts outside the ifnet serializer: before the fix its rxeof
/// re-read the mode, found `Serialized` and panicked on the interrupt
/// thread. It must skip (the switch has paused the interface) or run
/// entirely under one mode.
#[test]
#[cfg_attr(miri, ignore = "threads: too slow under Miri")]
fn a_handler_entering_after_the_switch_barrier_never_mixes_modes() {
    for from in [Mode::BigLock, Mode::RxUnlocked, Mode::Mpsafe] {
        let (_pool, dev, probe, em) = probe_em(from, 256, 1);
        let em = Arc::new(em);
        let past_barrier = Arc::new(Event::default());
        let delivered = Arc::new(Event::default());
        // Inside the switch, once past the line's barrier: let the stray
        // handler in and hold the switch until it has read the mode and
        // reached its first register access (or finished without one).
        {
            let (past, probe2, delivered2) = (
                Arc::clone(&past_barrier),
                Arc::clone(&probe),
                Arc::clone(&delivered),
            );
            *probe
                .after_barrier_hook
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Box::new(move || {
                past.set();
                while !probe2.icr_reached.is_set() && !delivered2.is_set() {
                    thread::yield_now();
                }
            }));
        }
        let outcome: Arc<Mutex<Option<thread::Result<Option<bool>>>>> = Arc::default();
        let handler = {
            let (probe, past, delivered, outcome) = (
                Arc::clone(&probe),
                Arc::clone(&past_barrier),
                Arc::clone(&delivered),
                Arc::clone(&outcome),
            );
            thread::spawn(move || {
                past.wait_for(Duration::from_secs(60));
                probe.park_icr.store(true, Ordering::Release);
                let r = catch_unwind(AssertUnwindSafe(|| probe.line.deliver()));
                *outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
                delivered.set();
            })
        };
        with_watchdog(Duration::from_secs(60), || {
            em.set_mode(Mode::Serialized).unwrap();
            probe.icr_release.set();
            handler.join().unwrap();
        });
        let r = outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .expect("the handler ran");
        assert!(
            r.is_ok(),
            "from {from}: the stray handler panicked across the switch"
        );
        // The switch could not store the new mode before the stray handler
        // delivered or parked, so the handler saw the old mode or the pause:
        // it must have done nothing.
        assert!(
            !probe.icr_reached.is_set(),
            "from {from}: a handler that entered after the barrier ran in the old mode"
        );
        assert_eq!(em.mode(), Mode::Serialized);
        // The line works in the new mode.
        assert!(probe.line.deliver().is_some(), "from {from}");
        let em = Arc::into_inner(em).unwrap();
        down_checked(em, &dev, &format!("from {from}"));
    }
}

/// Bug 2: a big-lock caller runs `start_locked` and is held inside the
/// start body (at its `TDT` doorbell) while another thread switches from
/// `BigLock` to `Mpsafe`, which kicks a start of its own. Two start bodies
/// on one ring at once corrupted it (the review saw posted frames left on
/// the ring after down). The switch must wait for the caller's body.
#[test]
#[cfg_attr(miri, ignore = "threads: too slow under Miri")]
fn a_big_lock_start_never_overlaps_the_switch_s_start() {
    // Bundling holds every start back until the queue is full, so the
    // frames below wait on the queue, more than the ring holds.
    let (pool, dev, probe, em) = probe_em(Mode::BigLock, 80, 1024);
    for seq in 0..300u64 {
        let mut m = pool.alloc().unwrap();
        m.fill(60, seq);
        em.transmit(0, m).unwrap();
    }
    probe.park_tdt.store(true, Ordering::Release);
    let switched = Event::default();
    with_watchdog(Duration::from_secs(60), || {
        thread::scope(|s| {
            let caller = s.spawn(|| {
                let k = em.big_lock().lock(Path::Start);
                em.start_locked(0, &k).unwrap();
            });
            assert!(probe.tdt_reached.wait_for(Duration::from_secs(30)));
            let switch = s.spawn(|| {
                em.set_mode(Mode::Mpsafe).unwrap();
                switched.set();
            });
            // A switch that does not wait for the held body finishes now and
            // kicks a start of its own from the head that body is still
            // posting from; one that waits cannot finish before the release.
            let finished_under_a_body = switched.wait_for(Duration::from_secs(2));
            probe.tdt_release.set();
            caller.join().unwrap();
            switch.join().unwrap();
            assert!(
                !finished_under_a_body,
                "the switch finished while a big-lock start body ran"
            );
            assert!(
                !probe.overlap.is_set(),
                "two start bodies wrote the ring at once"
            );
        });
    });
    // Completions (delivered by hand: the device's own line reaches
    // nobody) let the starts send the rest.
    assert!(eventually(|| {
        probe.line.deliver();
        em.stats().tx_completed == 300
    }));
    down_checked(em, &dev, "big-lock start against the switch");
}

/// Bug 3: `sleep` releases every nesting of the big lock, so a nested
/// guard is no proof while it runs: another thread may hold the lock. The
/// driver must refuse it, not run a start body on its word.
#[test]
#[cfg_attr(miri, ignore = "threads: too slow under Miri")]
fn a_nested_guard_is_no_proof_while_the_lock_sleeps() {
    let (_pool, dev, _probe, em) = probe_em(Mode::BigLock, 80, 1);
    with_watchdog(Duration::from_secs(60), || {
        let mut outer = em.big_lock().lock(Path::Ioctl);
        let inner = em.big_lock().lock(Path::Start);
        let (taken, checked) = (Event::default(), Event::default());
        let refused = outer.sleep(|| {
            thread::scope(|s| {
                s.spawn(|| {
                    let _held = em.big_lock().lock(Path::Rx);
                    taken.set();
                    checked.wait_for(Duration::from_secs(60));
                });
                taken.wait_for(Duration::from_secs(60));
                let r = catch_unwind(AssertUnwindSafe(|| em.start_locked(0, &inner)));
                checked.set();
                matches!(r, Err(_) | Ok(Err(_)))
            })
        });
        assert!(refused, "a guard of a released lock was taken as proof");
        drop(inner);
        drop(outer);
    });
    down_checked(em, &dev, "nested guard");
}

/// Bug 4: a buffer of another pool (another NIC's, in forwarding) is
/// refused with a typed error that hands it back; nothing is posted, and
/// both pools account for every buffer.
#[test]
#[cfg_attr(miri, ignore = "threads: too slow under Miri")]
fn transmit_refuses_a_buffer_of_another_pool() {
    let (_pool, dev, _probe, em) = probe_em(Mode::Mpsafe, 80, 1);
    let other = Pool::new(4, 2048);
    let mut m = other.alloc().unwrap();
    m.fill(60, 7);
    match em.transmit(0, m) {
        Err(TxError::ForeignPool(m)) => {
            assert_eq!(m.tag(), 7);
            m.free();
        }
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(()) => panic!("a buffer of another pool was queued"),
    }
    let st = other.stats();
    assert_eq!((st.free, st.in_use()), (4, 0), "{st}");
    assert_eq!(em.stats().tx_posted, 0);
    down_checked(em, &dev, "foreign buffer");
}

/// A stack that answers every frame with an even tag by transmitting a
/// reply (tag + 1) from inside `input`, as an echo responder or a bridge
/// does, and counts the replies it sees come back.
struct Answering {
    pool: Pool,
    em: Mutex<Option<Arc<Em<Device>>>>,
    answered: AtomicU64,
    replies_seen: AtomicU64,
    refused: AtomicU64,
}

impl Stack<Mbuf> for Answering {
    fn input(&self, queue: usize, packets: &mut Vec<Mbuf>) -> bool {
        let em = self
            .em
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for m in packets.drain(..) {
            if m.tag() % 2 == 1 {
                self.replies_seen.fetch_add(1, Ordering::Relaxed);
                m.free();
                continue;
            }
            let Some(em) = &em else {
                m.free();
                continue;
            };
            let mut reply = self.pool.alloc().expect("pool sized for the replies");
            reply.fill(m.len() as u16, m.tag() + 1);
            m.free();
            match em.transmit(queue, reply) {
                Ok(()) => {
                    self.answered.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    e.into_packet().free();
                }
            }
        }
        false
    }
}

/// A stack that calls back into the driver holds it here, set once the
/// driver is attached and cleared before detach.
trait HoldsEm: Stack<Mbuf> + 'static {
    fn slot(&self) -> &Mutex<Option<Arc<Em<Device>>>>;
}

impl HoldsEm for Answering {
    fn slot(&self) -> &Mutex<Option<Arc<Em<Device>>>> {
        &self.em
    }
}

impl HoldsEm for Meddling {
    fn slot(&self) -> &Mutex<Option<Arc<Em<Device>>>> {
        &self.em
    }
}

/// A pool of `buffers`, a quiet looped-back device (no wire traffic: what
/// the driver sends comes back), the stack `make` builds on that pool, and
/// the driver attached in `mode` with the stack holding it, up.
fn loopback_em<S: HoldsEm>(
    mode: Mode,
    buffers: usize,
    make: impl FnOnce(Pool) -> S,
) -> (Pool, Arc<Device>, Arc<S>, Arc<Em<Device>>) {
    let pool = Pool::new(buffers, 2048);
    let dev = Device::new(
        DeviceConfig {
            queues: 1,
            wire: WireRate::Off,
            loopback: true,
            ..DeviceConfig::default()
        },
        pool.clone(),
    )
    .unwrap();
    let stack = Arc::new(make(pool.clone()));
    let em = Arc::new(
        Em::attach(
            Arc::clone(&dev),
            EmConfig::new(mode),
            Arc::new(KernelLock::new()),
            stack.clone(),
        )
        .unwrap(),
    );
    *stack.slot().lock().unwrap() = Some(Arc::clone(&em));
    em.up().unwrap();
    (pool, dev, stack, em)
}

/// Bug 5: in `Serialized` mode `input` runs on the interrupt thread inside
/// the ifnet serializer, and a reply's `transmit` entered it again: the
/// interrupt thread died. A reply from `input` must go out in every mode.
#[test]
#[cfg_attr(miri, ignore = "threads: too slow under Miri")]
fn a_stack_answering_from_input_works_in_every_mode() {
    for mode in Mode::ALL {
        let (pool, dev, stack, em) = loopback_em(mode, 4096, |pool| Answering {
            pool,
            em: Mutex::new(None),
            answered: AtomicU64::new(0),
            replies_seen: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let requests = 100u64;
        with_watchdog(Duration::from_secs(60), || {
            // One request at a time, each answered and the answer back
            // before the next: no ring ever overflows, so every frame is
            // accounted for.
            for i in 0..requests {
                let mut m = pool.alloc().unwrap();
                m.fill(60, 2 * i);
                em.transmit(0, m).unwrap();
                let back = eventually(|| stack.replies_seen.load(Ordering::Relaxed) == i + 1);
                assert!(
                    back,
                    "{mode}: request {i}: answered {} refused {} replies back {}",
                    stack.answered.load(Ordering::Relaxed),
                    stack.refused.load(Ordering::Relaxed),
                    stack.replies_seen.load(Ordering::Relaxed)
                );
            }
        });
        assert_eq!(stack.refused.load(Ordering::Relaxed), 0, "{mode}");
        *stack.slot().lock().unwrap() = None;
        let em = Arc::into_inner(em).unwrap();
        detach_checked(em, &dev, &format!("answering stack, {mode}"));
    }
}

/// A frame over two descriptors (the first without EOP) is dropped whole,
/// as `em_rxeof` frees a bad `fmp`/`lmp` chain: before, the driver dropped
/// the first fragment and delivered the EOP fragment as a frame of its own.
/// Every buffer of the chain goes back to the pool, counted once as an
/// error; the frame after it is delivered.
#[test]
#[cfg_attr(miri, ignore = "threads: too slow under Miri")]
fn a_frame_over_several_descriptors_is_dropped_whole() {
    for mode in Mode::ALL {
        let (_pool, dev, probe, em, sink) = probe_em_sink(mode, 80, 1);
        let rx = Arc::clone(&probe.rings.lock().unwrap()[0]);
        let frag = |slot: usize, status: u8| {
            let d = rx.get(slot);
            d.device_write(d.rx_addr(), 60 | u64::from(status) << 32);
        };
        // A three-descriptor frame, then a good one.
        frag(0, RXD_STAT_DD);
        frag(1, RXD_STAT_DD);
        frag(2, RXD_STAT_DD | RXD_STAT_EOP);
        rx.get(3).rx_complete(60, 0);
        // The next handler reads a receive cause (the device raised none).
        probe.icr_release.set();
        probe.park_icr.store(true, Ordering::Release);
        assert_eq!(probe.line.deliver(), Some(true), "{mode}");
        let st = em.stats();
        assert_eq!(
            (sink.packets(), st.rx_packets, st.rx_errors),
            (1, 1, 1),
            "{mode}: one frame delivered, one chain dropped"
        );
        // A chain cut by a teardown is not carried into the next run.
        frag(4, RXD_STAT_DD);
        assert!(probe.icr_release.is_set());
        probe.park_icr.store(true, Ordering::Release);
        probe.line.deliver();
        em.down();
        em.up().unwrap();
        rx.get(0).rx_complete(60, 0);
        probe.park_icr.store(true, Ordering::Release);
        probe.line.deliver();
        assert_eq!(
            sink.packets(),
            2,
            "{mode}: the first frame after up is whole"
        );
        down_checked(em, &dev, &format!("fragments, {mode}"));
    }
}

/// What a stack calling the interface's ioctls from `input` saw, per call.
#[derive(Default)]
struct Refusals {
    set_mode: Option<Result<(), EmError>>,
    up: Option<Result<(), EmError>>,
    resize: Option<Result<(), EmError>>,
    down_panic: Option<String>,
    flush: Option<bool>,
}

/// A stack that, on its first batch, calls every ioctl that waits for the
/// interrupt barrier from inside `input`, and records the answers.
struct Meddling {
    pool: Pool,
    em: Mutex<Option<Arc<Em<Device>>>>,
    seen: Mutex<Refusals>,
    done: Event,
}

impl Stack<Mbuf> for Meddling {
    fn input(&self, _queue: usize, packets: &mut Vec<Mbuf>) -> bool {
        self.pool.free_all(packets.drain(..));
        let em = self
            .em
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(em) = em else { return false };
        if self.done.is_set() {
            return false;
        }
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.set_mode = Some(em.set_mode(Mode::BigLock));
        seen.up = Some(em.up());
        seen.resize = Some(em.set_ring_sizes(256, 256));
        seen.flush = Some(em.flush_tx(0));
        seen.down_panic = catch_unwind(AssertUnwindSafe(|| em.down()))
            .err()
            .and_then(|p| p.downcast_ref::<String>().cloned());
        drop(seen);
        self.done.set();
        false
    }
}

/// `set_mode`, `up` and `set_ring_sizes` called from `Stack::input` would
/// wait for the interrupt barrier from inside the interrupt: refused with
/// `EmError::InInterrupt`, nothing changed; `down` panics with the reason
/// (caught here, so the interrupt thread lives on); `flush_tx` just works.
/// The interface keeps running, in every mode.
#[test]
#[cfg_attr(miri, ignore = "threads: too slow under Miri")]
fn ioctls_from_inside_the_handler_are_refused() {
    for mode in Mode::ALL {
        let (pool, dev, stack, em) = loopback_em(mode, 2048, |pool| Meddling {
            pool,
            em: Mutex::new(None),
            seen: Mutex::default(),
            done: Event::default(),
        });
        with_watchdog(Duration::from_secs(60), || {
            let mut m = pool.alloc().unwrap();
            m.fill(60, 1);
            em.transmit(0, m).unwrap();
            assert!(stack.done.wait_for(Duration::from_secs(30)), "{mode}");
        });
        let seen = std::mem::take(&mut *stack.seen.lock().unwrap());
        assert_eq!(seen.set_mode, Some(Err(EmError::InInterrupt)), "{mode}");
        assert_eq!(seen.up, Some(Err(EmError::InInterrupt)), "{mode}");
        assert_eq!(seen.resize, Some(Err(EmError::InInterrupt)), "{mode}");
        assert_eq!(seen.flush, Some(false), "{mode}");
        let msg = seen.down_panic.expect("down from the handler panics");
        assert!(msg.contains("own interrupt handler"), "{mode}: {msg}");
        assert_eq!(em.mode(), mode);
        assert!(em.is_running(), "{mode}: still up");
        // Traffic still flows through the handler.
        let before = em.stats().rx_packets;
        let mut m = pool.alloc().unwrap();
        m.fill(60, 2);
        em.transmit(0, m).unwrap();
        assert!(eventually(|| em.stats().rx_packets > before), "{mode}");
        *stack.slot().lock().unwrap() = None;
        let em = Arc::into_inner(em).unwrap();
        detach_checked(em, &dev, &format!("meddling stack, {mode}"));
    }
}

/// With transmit bundling on, packets queued while a mode switch has the
/// send queues stopped must go out when it resumes, as `set_mode` promises,
/// not wait for the next `transmit` or `flush_tx`. The switch's resume
/// asked for a start the bundle threshold deferred, so three packets stayed
/// queued until the next transmit (seen: 0 of 3 posted after the switch).
#[test]
#[cfg_attr(miri, ignore = "threads: too slow under Miri")]
fn packets_queued_during_a_switch_go_out_when_it_resumes_even_when_bundled() {
    for (from, to) in [
        (Mode::Mpsafe, Mode::BigLock),
        (Mode::BigLock, Mode::RxUnlocked),
        (Mode::Serialized, Mode::Mpsafe),
        (Mode::Mpsafe, Mode::Serialized),
    ] {
        let (pool, dev, probe, em) = probe_em(from, 256, 16);
        let em = Arc::new(em);
        // Inside the switch, past the interrupt barrier (the send queues
        // stopped): three packets, below the bundle of 16.
        {
            let (em2, pool2) = (Arc::clone(&em), pool.clone());
            *probe
                .after_barrier_hook
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Box::new(move || {
                for seq in 0..3 {
                    let mut m = pool2.alloc().expect("a free buffer");
                    m.fill(60, seq);
                    em2.transmit(0, m).expect("queued while the switch runs");
                }
            }));
        }
        with_watchdog(Duration::from_secs(60), || em.set_mode(to).unwrap());
        assert!(
            eventually(|| em.stats().tx_posted == 3),
            "{from} -> {to}: {} of 3 posted after the switch",
            em.stats().tx_posted
        );
        let em = Arc::into_inner(em).unwrap();
        down_checked(em, &dev, &format!("{from} -> {to}"));
    }
}
