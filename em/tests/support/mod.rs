//! Small fakes the driver's loom models run it on: a kernel whose locks,
//! waits and deferred calls are loom's ([`LoomKernel`]), a pool of a few
//! buffers whose states are loom cells ([`TinyPool`]), and a device whose
//! registers are loom atomics and whose interrupt a model thread fires
//! through an interrupt gate ([`FakeNic`]).
//!
//! What they check by themselves, in every model:
//!
//! - each buffer's state is a `loom::cell::UnsafeCell`, touched by whoever
//!   holds the buffer (alloc and free under the pool's lock, post and
//!   reclaim by the driver): a reclaim or free that is not ordered after
//!   the post (a ring slot reaped twice, freed while a start body still
//!   posts it) is a data race loom reports; a reclaim of a buffer not on
//!   that ring, or a free of one still on a ring, panics;
//! - the device's transmit state is one cell too, touched by every `TDT`
//!   doorbell and by the reset: two start bodies on one ring that are not
//!   ordered one after the other (at most one at a time), or a doorbell
//!   racing stop's reset, are data races;
//! - a `TDT` or `RDT` doorbell that moves the tail of a disabled unit (after
//!   stop's reset) panics: the reset is the last write of a run;
//! - while a model holds a barrier open ([`Probe::window`]), a handler that
//!   reads `ICR` or a refill timeout that allocates panics: it entered
//!   after the barrier and ran.
#![allow(dead_code, unreachable_pub)]

use std::cell::Cell;
use std::sync::Weak;
use std::sync::atomic::AtomicBool as StdAtomicBool;
use std::sync::{Arc, Mutex as StdMutex, OnceLock};

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use mpsafe_barrier::Gate;
use mpsafe_em::desc::DescRing;
use mpsafe_em::levels::PoolMutex;
use mpsafe_em::regs::{CTRL_RST, ICR_TXDW, RCTL_EN, TCTL_EN};
use mpsafe_em::{
    Buffer, BufferPool, Deferred, Em, EmConfig, Hardware, IntrHandler, Kernel, KernelLock, Mode,
    RawBigLock, Reg, Regs, Ring, Sink,
};
use mpsafe_order::{Ctx, LockBefore, Ordered};
use mpsafe_serializer::__shim::{ModelFutex, thread_id};

/// Stack of every model thread: the driver's paths (and the lock-order
/// witness, in debug builds) need more than a coroutine's default.
const STACK: usize = 4 << 20;

/// Runs `f` under loom with the preemption bound of `LOOM_MAX_PREEMPTIONS`
/// (CI's, 2 when unset), on a model thread with a big enough stack.
///
/// The lock-order witness (debug builds) keeps each thread's held locks in
/// a thread-local, but loom runs every model thread on the test's one OS
/// thread: each execution names its model threads to the witness instead
/// ([`mpsafe_order::witness::set_thread_hook`]), which is global, so the
/// models of one test binary run one at a time.
pub fn model(f: impl Fn() + Sync + Send + 'static) {
    static ONE_AT_A_TIME: StdMutex<()> = StdMutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.max_branches = 100_000;
    let f = std::sync::Arc::new(f);
    b.check(move || {
        mpsafe_order::witness::clear_thread_hook();
        NEXT_THREAD.store(0, std::sync::atomic::Ordering::Relaxed);
        mpsafe_order::witness::set_thread_hook(model_thread);
        let f = std::sync::Arc::clone(&f);
        spawn(move || f()).join().unwrap();
    });
    mpsafe_order::witness::clear_thread_hook();
}

/// The next model thread's number in this execution.
static NEXT_THREAD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

loom::thread_local! {
    static THREAD: Cell<usize> = Cell::new(usize::MAX);
}

/// This model thread's number for the witness (0, 1, ... in the order
/// they first take a lock).
fn model_thread() -> usize {
    THREAD.with(|t| {
        if t.get() == usize::MAX {
            t.set(NEXT_THREAD.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        }
        t.get()
    })
}

/// `loom::thread::spawn` with [`STACK`].
pub fn spawn<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> loom::thread::JoinHandle<T> {
    loom::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .expect("spawn a model thread")
}

// ---------------------------------------------------------------------------
// Which path a model thread is running, for the stray checks.

loom::thread_local! {
    static CONTEXT: Cell<&'static str> = Cell::new("");
}

fn context() -> &'static str {
    CONTEXT.with(Cell::get)
}

fn in_context<R>(name: &'static str, f: impl FnOnce() -> R) -> R {
    let before = CONTEXT.with(|c| c.replace(name));
    let r = f();
    CONTEXT.with(|c| c.set(before));
    r
}

/// What a model watches from outside the driver: set while a barrier is
/// held open by a hook ([`FakeNic::after_intr_barrier`],
/// [`LoomDeferred::after_barrier`]), so a path that enters after the
/// barrier and does something is caught doing it.
#[derive(Default)]
pub struct Probe {
    window: StdAtomicBool,
}

impl Probe {
    fn stray(&self, what: &str) {
        // SeqCst on a plain flag: instrumentation of the model, not part
        // of it (loom runs every model thread on one OS thread).
        if self.window.load(std::sync::atomic::Ordering::SeqCst) && !context().is_empty() {
            panic!(
                "a {} that entered after the barrier ran ({what})",
                context()
            );
        }
    }

    /// Runs `f` with the window open.
    pub fn open_window(&self, f: impl FnOnce()) {
        self.window.store(true, std::sync::atomic::Ordering::SeqCst);
        f();
        self.window
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A loom cell shared between model threads: every access goes through
/// `with`/`with_mut`, which loom checks against the others (a pair not
/// ordered by happens-before fails the model).
pub struct Checked<T>(UnsafeCell<T>);

// SAFETY: the accesses are what loom checks; a racing pair fails the model
// before it could matter.
unsafe impl<T: Send> Sync for Checked<T> {}

impl<T> Checked<T> {
    fn new(v: T) -> Self {
        Self(UnsafeCell::new(v))
    }
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        self.0.with(f)
    }
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        self.0.with_mut(f)
    }
}

// ---------------------------------------------------------------------------
// Locks.

/// A spin lock over a loom atomic, as the kernel's rx, queue and pool
/// mutexes. `INIT` must be a constant, which a loom atomic cannot be: the
/// atomic is made on first use (inside the model run that uses the lock).
pub struct ModelLock(OnceLock<AtomicBool>);

impl ModelLock {
    fn word(&self) -> &AtomicBool {
        self.0.get_or_init(|| AtomicBool::new(false))
    }
}

// SAFETY: the compare-exchange admits one holder; `unlock` is called only
// by the holder (lock_api's contract).
unsafe impl lock_api::RawMutex for ModelLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = ModelLock(OnceLock::new());
    type GuardMarker = lock_api::GuardSend;

    fn lock(&self) {
        while !self.try_lock() {
            loom::thread::yield_now();
        }
    }

    fn try_lock(&self) -> bool {
        self.word()
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    unsafe fn unlock(&self) {
        self.word().store(false, Ordering::Release);
    }
}

/// The big lock: recursive, owned by a model thread.
pub struct ModelBigLock {
    owner: AtomicUsize,
    depth: AtomicU32,
}

impl ModelBigLock {
    pub fn new() -> Self {
        Self {
            owner: AtomicUsize::new(0),
            depth: AtomicU32::new(0),
        }
    }

    fn acquire(&self, depth: u32) {
        let me = thread_id();
        while self
            .owner
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            loom::thread::yield_now();
        }
        self.depth.store(depth, Ordering::Relaxed);
    }
}

// SAFETY: `owner` admits one thread at a time (compare-exchange from 0);
// only the holder stores 0 back; `is_held` compares with the caller.
unsafe impl RawBigLock for ModelBigLock {
    fn lock(&self) {
        if self.is_held() {
            self.depth.fetch_add(1, Ordering::Relaxed);
        } else {
            self.acquire(1);
        }
    }

    unsafe fn unlock(&self) {
        if self.depth.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.owner.store(0, Ordering::Release);
        }
    }

    fn is_held(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == thread_id()
    }

    unsafe fn release_all(&self) -> u32 {
        let d = self.depth.swap(0, Ordering::Relaxed);
        self.owner.store(0, Ordering::Release);
        d
    }

    fn reacquire(&self, depth: u32) {
        self.acquire(depth);
    }
}

// ---------------------------------------------------------------------------
// The kernel.

/// The kernel of the models.
pub struct LoomKernel;

const PENDING: u32 = 1;

/// A task or timeout: a pending bit and a gate. Nothing runs it by
/// itself; a model thread calls [`LoomDeferred::run_once`] (found by name
/// with [`deferred`]).
pub struct DeferredShared {
    word: AtomicU32,
    gate: Gate<ModelFutex>,
    f: Box<dyn Fn() + Send + Sync>,
    hook: StdMutex<Option<Box<dyn FnOnce() + Send>>>,
}

/// [`Kernel::Deferred`] of [`LoomKernel`].
pub struct LoomDeferred(Arc<DeferredShared>);

impl DeferredShared {
    /// One call if one is scheduled, inside the gate (what the kernel's
    /// task or softclock thread does once).
    pub fn run_once(&self, name: &'static str) {
        in_context(name, || {
            self.gate.enter(|| {
                // Acquire: pairs with `add`'s Release.
                if self.word.fetch_and(!PENDING, Ordering::Acquire) & PENDING != 0 {
                    (self.f)();
                }
            })
        });
    }

    /// Whether a call is scheduled.
    pub fn pending(&self) -> bool {
        self.word.load(Ordering::Relaxed) & PENDING != 0
    }

    /// Runs `hook` once, the next time a `del_barrier` has passed the gate's
    /// barrier (before it returns).
    pub fn after_barrier(&self, hook: impl FnOnce() + Send + 'static) {
        *self.hook.lock().unwrap() = Some(Box::new(hook));
    }
}

impl Deferred for LoomDeferred {
    fn add(&self) -> bool {
        // Release: the call sees what was published before the add.
        self.0.word.fetch_or(PENDING, Ordering::Release) & PENDING == 0
    }

    fn del_barrier(&self) {
        self.0.word.fetch_and(!PENDING, Ordering::Relaxed);
        self.0.gate.barrier();
        self.0.word.fetch_and(!PENDING, Ordering::Relaxed);
        let hook = self.0.hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
    }
}

std::thread_local! {
    /// The deferred calls made by attach, by name. All of a model's threads
    /// run on the test's OS thread; weak, so nothing of a finished
    /// execution is kept alive.
    static DEFERRED: std::cell::RefCell<Vec<(String, Weak<DeferredShared>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The deferred call `name` (`em0-refill`, `em0-start0`) of the driver
/// attached last.
pub fn deferred(name: &str) -> Arc<DeferredShared> {
    DEFERRED.with(|d| {
        d.borrow()
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, w)| w.upgrade())
            .unwrap_or_else(|| panic!("no deferred call {name}"))
    })
}

loom::thread_local! {
    static HANDLER: Cell<usize> = Cell::new(0);
}

impl Kernel for LoomKernel {
    type RxLock = ModelLock;
    type QueueLock = ModelLock;
    type Wait = ModelFutex;
    type BigLock = ModelBigLock;
    type Deferred = LoomDeferred;
    type Error = core::convert::Infallible;

    fn ticks() -> u64 {
        0
    }

    fn deferred(
        name: &str,
        _delay: u32,
        f: Box<dyn Fn() + Send + Sync>,
    ) -> Result<LoomDeferred, Self::Error> {
        let shared = Arc::new(DeferredShared {
            word: AtomicU32::new(0),
            gate: Gate::new(),
            f,
            hook: StdMutex::new(None),
        });
        DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            d.retain(|(n, _)| n != name);
            d.push((name.to_owned(), Arc::downgrade(&shared)));
        });
        Ok(LoomDeferred(shared))
    }

    fn current_handler() -> usize {
        HANDLER.with(Cell::get)
    }

    fn set_current_handler(mark: usize) -> usize {
        HANDLER.with(|c| c.replace(mark))
    }
}

// ---------------------------------------------------------------------------
// The pool.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    Held,
    OnRing(Ring),
}

struct PoolInner {
    free: Ordered<PoolMutex, lock_api::Mutex<ModelLock, Vec<usize>>>,
    states: Vec<Checked<State>>,
    probe: Arc<Probe>,
}

/// A pool of a few buffers; a handle (cheap to clone).
#[derive(Clone)]
pub struct TinyPool(Arc<PoolInner>);

/// A buffer of a [`TinyPool`]: an index and a length.
#[derive(Debug)]
pub struct Buf {
    id: usize,
    len: u16,
    pool: usize,
}

impl mpsafe_ifqueue::Packet for Buf {
    fn byte_len(&self) -> usize {
        usize::from(self.len)
    }
}

impl Buffer for Buf {
    fn len(&self) -> usize {
        usize::from(self.len)
    }

    fn set_len(&mut self, len: u16) {
        self.len = len;
    }
}

const BUF_SIZE: usize = 2048;

impl TinyPool {
    pub fn new(n: usize, probe: Arc<Probe>) -> Self {
        Self(Arc::new(PoolInner {
            free: Ordered::new(lock_api::Mutex::new((0..n).rev().collect())),
            states: (0..n).map(|_| Checked::new(State::Free)).collect(),
            probe,
        }))
    }

    fn id(&self) -> usize {
        Arc::as_ptr(&self.0).addr()
    }

    fn transition(&self, id: usize, from: State, to: State) {
        self.0.states[id].with_mut(|s| {
            // SAFETY: loom checks the access: the buffer's holder only.
            let s = unsafe { &mut *s };
            assert_eq!(*s, from, "buffer {id}: expected {from:?}, found {s:?}");
            *s = to;
        });
    }

    fn take(&self, free: &mut Vec<usize>) -> Option<Buf> {
        let id = free.pop()?;
        self.transition(id, State::Free, State::Held);
        Some(Buf {
            id,
            len: 0,
            pool: self.id(),
        })
    }

    fn put(&self, free: &mut Vec<usize>, bufs: impl IntoIterator<Item = Buf>) {
        for b in bufs {
            assert_eq!(b.pool, self.id(), "a buffer of another pool");
            self.transition(b.id, State::Held, State::Free);
            free.push(b.id);
        }
    }

    /// A buffer holding a `len`-byte frame, for a model to transmit.
    pub fn frame(&self, len: u16) -> Buf {
        let mut b = self
            .take(&mut self.0.free.unordered().lock())
            .expect("the model sized the pool");
        b.len = len;
        b
    }

    /// Buffers free now.
    pub fn free_count(&self) -> usize {
        self.0.free.unordered().lock().len()
    }

    /// Gives buffers back (a model's own, or what the driver refused).
    pub fn give_back(&self, bufs: impl IntoIterator<Item = Buf>) {
        BufferPool::free_all(self, bufs);
    }

    /// Panics unless every buffer is back and free.
    pub fn assert_whole(&self) {
        assert_eq!(
            self.free_count(),
            self.0.states.len(),
            "buffers missing from the pool"
        );
        for id in 0..self.0.states.len() {
            self.transition(id, State::Free, State::Free);
        }
    }
}

impl BufferPool for TinyPool {
    type Buf = Buf;
    type Stats = usize;

    fn buf_size(&self) -> usize {
        BUF_SIZE
    }

    fn owns(&self, buf: &Buf) -> bool {
        buf.pool == self.id()
    }

    fn alloc_in<L: LockBefore<PoolMutex>>(&self, ctx: &mut Ctx<'_, L>) -> Option<Buf> {
        self.0.probe.stray("allocated a buffer");
        let (mut free, _) = ctx.lock(&self.0.free);
        self.take(&mut free)
    }

    fn free_all_in<L: LockBefore<PoolMutex>>(
        &self,
        ctx: &mut Ctx<'_, L>,
        bufs: impl IntoIterator<Item = Buf>,
    ) {
        let (mut free, _) = ctx.lock(&self.0.free);
        self.put(&mut free, bufs);
    }

    fn free_all(&self, bufs: impl IntoIterator<Item = Buf>) {
        self.put(&mut self.0.free.unordered().lock(), bufs);
    }

    fn post(&self, buf: Buf, ring: Ring) -> u64 {
        self.transition(buf.id, State::Held, State::OnRing(ring));
        (buf.id as u64 + 1) << 12
    }

    unsafe fn reclaim(&self, addr: u64, ring: Ring) -> Buf {
        let id = usize::try_from(addr >> 12)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .filter(|&i| i < self.0.states.len() && addr & 0xfff == 0)
            .unwrap_or_else(|| panic!("reclaimed {addr:#x}, which was never posted"));
        self.transition(id, State::OnRing(ring), State::Held);
        Buf {
            id,
            len: 0,
            pool: self.id(),
        }
    }

    fn stats(&self) -> usize {
        self.free_count()
    }
}

// ---------------------------------------------------------------------------
// The device.

/// The device's transmit side: its head, and the frames it sent.
#[derive(Default)]
struct TxDev {
    tdh: u32,
    /// Descriptors in the ring (`TDLEN` / 16).
    n: u32,
    sent: u64,
}

/// One queue pair, registers as loom atomics, frames sent at the doorbell.
pub struct FakeNic {
    pool: TinyPool,
    probe: Arc<Probe>,
    icr: AtomicU32,
    ims: AtomicU32,
    rctl: AtomicU32,
    tctl: AtomicU32,
    rdt: AtomicU32,
    tx: Checked<TxDev>,
    /// The rings `dma_alloc` made, in order: receive, then transmit.
    rings: StdMutex<Vec<Arc<DescRing>>>,
    gate: Gate<ModelFutex>,
    handler: StdMutex<Option<Weak<dyn IntrHandler>>>,
    intr_hook: StdMutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl FakeNic {
    pub fn new(pool: TinyPool, probe: Arc<Probe>) -> Self {
        Self {
            pool,
            probe,
            icr: AtomicU32::new(0),
            ims: AtomicU32::new(0),
            rctl: AtomicU32::new(0),
            tctl: AtomicU32::new(0),
            rdt: AtomicU32::new(0),
            tx: Checked::new(TxDev::default()),
            rings: StdMutex::new(Vec::new()),
            gate: Gate::new(),
            handler: StdMutex::new(None),
            intr_hook: StdMutex::new(None),
        }
    }

    /// The interrupt: the handler through the gate, as a kernel's
    /// interrupt entry calls it (on a shared line, whatever the mask).
    pub fn fire(&self) -> bool {
        in_context("handler", || {
            self.gate
                .enter(|| {
                    let h = self
                        .handler
                        .lock()
                        .unwrap()
                        .as_ref()
                        .and_then(Weak::upgrade);
                    h.is_some_and(|h| h.intr())
                })
                .unwrap_or(false)
        })
    }

    /// Raises interrupt causes (`ICS`).
    pub fn raise(&self, causes: u32) {
        self.icr.fetch_or(causes, Ordering::AcqRel);
    }

    /// Runs `hook` once, the next time `intr_barrier` has passed the
    /// gate's barrier (before it returns).
    pub fn after_intr_barrier(&self, hook: impl FnOnce() + Send + 'static) {
        *self.intr_hook.lock().unwrap() = Some(Box::new(hook));
    }

    /// Frames the device sent.
    pub fn sent(&self) -> u64 {
        self.tx.with(|t| {
            // SAFETY: loom checks the access.
            unsafe { (*t).sent }
        })
    }

    fn tx_ring(&self) -> Arc<DescRing> {
        Arc::clone(&self.rings.lock().unwrap()[1])
    }

    fn doorbell_tx(&self, tdt: u32) {
        let ring = self.tx_ring();
        let on = self.tctl.load(Ordering::Acquire) & TCTL_EN != 0;
        let moved = self.tx.with_mut(|t| {
            // SAFETY: loom checks the access: doorbells and the reset only.
            let t = unsafe { &mut *t };
            if tdt == t.tdh {
                return false;
            }
            assert!(on, "TDT moved to {tdt} on a disabled transmitter");
            while t.tdh != tdt {
                let d = ring.get(t.tdh as usize);
                d.tx_fetch();
                d.tx_complete();
                t.sent += 1;
                t.tdh = (t.tdh + 1) % t.n;
            }
            true
        });
        if moved {
            self.raise(ICR_TXDW);
        }
    }

    fn reset(&self) {
        self.rctl.store(0, Ordering::Release);
        self.tctl.store(0, Ordering::Release);
        self.ims.store(0, Ordering::Release);
        self.icr.store(0, Ordering::Release);
        self.tx.with_mut(|t| {
            // SAFETY: loom checks the access.
            unsafe { (*t).tdh = 0 };
        });
    }
}

impl Regs for FakeNic {
    fn read(&self, reg: Reg) -> u32 {
        match reg {
            Reg::ICR => {
                self.probe.stray("read ICR");
                self.icr.swap(0, Ordering::AcqRel)
            }
            Reg::IMS => self.ims.load(Ordering::Acquire),
            Reg::RCTL => self.rctl.load(Ordering::Acquire),
            Reg::TCTL => self.tctl.load(Ordering::Acquire),
            _ => 0,
        }
    }

    fn write(&self, reg: Reg, value: u32) {
        match reg {
            Reg::CTRL if value & CTRL_RST != 0 => self.reset(),
            Reg::IMS => {
                self.ims.fetch_or(value, Ordering::AcqRel);
            }
            Reg::IMC => {
                self.ims.fetch_and(!value, Ordering::AcqRel);
            }
            Reg::RCTL => self.rctl.store(value, Ordering::Release),
            Reg::TCTL => self.tctl.store(value, Ordering::Release),
            r if r == Reg::rdt(0) => {
                let old = self.rdt.swap(value, Ordering::AcqRel);
                assert!(
                    old == value || self.rctl.load(Ordering::Acquire) & RCTL_EN != 0 || value == 0,
                    "RDT moved to {value} on a disabled receiver"
                );
            }
            r if r == Reg::tdt(0) => self.doorbell_tx(value),
            r if r == Reg::tdh(0) => self.tx.with_mut(|t| {
                // SAFETY: loom checks the access.
                unsafe { (*t).tdh = value };
            }),
            r if r == Reg::tdlen(0) => self.tx.with_mut(|t| {
                // SAFETY: loom checks the access.
                unsafe { (*t).n = value / 16 };
            }),
            _ => {}
        }
    }
}

impl Hardware for FakeNic {
    type Error = core::convert::Infallible;
    type Kernel = LoomKernel;
    type Pool = TinyPool;

    fn queues(&self) -> usize {
        1
    }

    fn pool(&self) -> &TinyPool {
        &self.pool
    }

    fn dma_alloc(&self, ndesc: usize) -> Result<(u64, Arc<DescRing>), Self::Error> {
        let ring = Arc::new(DescRing::new(ndesc));
        let mut rings = self.rings.lock().unwrap();
        rings.push(Arc::clone(&ring));
        Ok(((rings.len() as u64) << 20, ring))
    }

    fn intr_establish(&self, handler: Weak<dyn IntrHandler>) {
        *self.handler.lock().unwrap() = Some(handler);
    }

    fn intr_disestablish(&self) {
        *self.handler.lock().unwrap() = None;
        self.gate.barrier();
    }

    fn intr_barrier(&self) {
        self.gate.barrier();
        let hook = self.intr_hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
    }
}

// ---------------------------------------------------------------------------
// A driver on them.

/// The driver on a [`FakeNic`], with what the models look at.
pub struct Rig {
    pub em: Em<FakeNic>,
    pub nic: Arc<FakeNic>,
    pub pool: TinyPool,
    pub probe: Arc<Probe>,
}

/// A configuration small enough for the models: the smallest rings, one
/// receive buffer posted (low watermark 1), a send queue of 4.
pub fn config(mode: Mode) -> EmConfig {
    let mut cfg = EmConfig::new(mode);
    cfg.rx_desc = mpsafe_em::driver::MIN_DESC;
    cfg.tx_desc = mpsafe_em::driver::MIN_DESC;
    cfg.rx_lwm = 1;
    cfg.ifq_maxlen = 4;
    cfg.ints_per_sec = 0;
    cfg
}

/// Attaches the driver to a [`FakeNic`] with a pool of `buffers`; the
/// interface is down.
pub fn attach(cfg: EmConfig, buffers: usize) -> Rig {
    let probe = Arc::new(Probe::default());
    let pool = TinyPool::new(buffers, Arc::clone(&probe));
    let nic = Arc::new(FakeNic::new(pool.clone(), Arc::clone(&probe)));
    let big = Arc::new(KernelLock::from_raw(ModelBigLock::new()));
    let stack = Arc::new(Sink::new(pool.clone()));
    let em = Em::attach(Arc::clone(&nic), cfg, big, stack).expect("attach");
    Rig {
        em,
        nic,
        pool,
        probe,
    }
}

/// [`attach`], then up.
pub fn rig(cfg: EmConfig, buffers: usize) -> Rig {
    let r = attach(cfg, buffers);
    r.em.init().expect("init");
    r
}

/// [`attach`] with the pool empty, then up: the receive ring finds no
/// buffer and the refill timeout is scheduled; then one buffer goes back,
/// so its call has one to post. Returns the buffers still held.
pub fn rig_refill_pending(cfg: EmConfig, buffers: usize) -> (Rig, Vec<Buf>) {
    let r = attach(cfg, buffers);
    let mut held: Vec<Buf> = (0..buffers).map(|_| r.pool.frame(60)).collect();
    r.em.init().expect("init");
    assert!(
        deferred("em0-refill").pending(),
        "the refill timeout is scheduled"
    );
    r.pool.free_all(held.pop());
    (r, held)
}

impl Rig {
    /// Brings the interface down and checks that everything is accounted
    /// for: every buffer back in the pool, every frame posted either
    /// completed or flushed, and every frame the model transmitted
    /// (`accepted`) posted or purged.
    pub fn down_and_check(&self, accepted: u64) {
        self.em.down();
        let s = self.em.stats();
        assert_eq!(
            s.tx_posted,
            s.tx_completed + s.tx_flushed,
            "posted != completed + flushed: {s:?}"
        );
        assert_eq!(
            accepted,
            s.tx_posted + s.tx_purged,
            "a transmitted frame was neither posted nor purged: {s:?}"
        );
        assert!(
            self.nic.sent() <= s.tx_posted,
            "the device sent more than was posted"
        );
        self.pool.assert_whole();
    }
}
