//! The runtime witness: what the types cannot see, checked in debug builds.
//!
//! Levels order locks of *different* levels at compile time. They cannot see
//! a lock picked by index among locks of one level, a barrier on one queue
//! waited for from another queue's start routine, or a lock taken through a
//! callback that made a fresh [`Ctx`](crate::Ctx) under its caller's locks.
//! For those, every acquisition and wait made through a [`Ctx`](crate::Ctx)
//! (and every routine run through [`Ordered::run_inside`](crate::Ordered::run_inside))
//! is recorded, as FreeBSD's and OpenBSD's WITNESS and Linux's lockdep do:
//!
//! - each thread's stack of held locks, with where each was taken
//!   (`#[track_caller]` [`Location`]s);
//! - a global order graph over lock *instances* (address and level): an edge
//!   `A → B` once `B` was taken while `A` was held;
//! - before each blocking acquisition or wait, three checks, and on the
//!   first failure a panic that names both locks and where each was taken:
//!   1. the lock is already held by this thread (recursion, or a barrier
//!      waited for from inside its own routine);
//!   2. a held lock of the same declared chain has a rank not below the new
//!      one (the declared order, as WITNESS's static order list), unless both
//!      were taken together by [`Ctx::lock_all_with`](crate::Ctx::lock_all_with);
//!   3. the graph already has a path from the new lock to a held one (the
//!      two were taken the other way round before, maybe on another thread:
//!      a lock order reversal).
//!
//! An acquisition is checked before the lock is taken and recorded as held
//! once it is taken, and a release is unrecorded before the lock is let go:
//! the thread's stack never shows a lock the thread does not hold, so on a
//! kernel whose locks raise the interrupt priority level a handler that
//! runs before the level is raised or after it is lowered does not see it.
//!
//! Blocking waits are acquisitions of the barrier's node that end at once,
//! and a routine run inside a barrier holds its node while it runs, so a
//! wait that the routine's locks or another routine's wait would close into
//! a cycle is reported the same way. Getting inside never waits, so the
//! routine's node is recorded unchecked, as a try-lock is.
//!
//! A lock its holder releases around a sleep (`tsleep` dropping the kernel
//! lock) is taken off the thread's stack for the sleep
//! ([`Ordered::released`](crate::Ordered::released)), and taking it back is
//! checked as a blocking acquisition before it happens.
//!
//! The witness exists only with `debug_assertions` (tests, debug builds):
//! in release builds every record is a zero-sized value and every check
//! compiles to nothing. With the `std` feature each thread's stack is a
//! thread-local; without it, a kernel names the current CPU (or thread)
//! through [`set_thread_hook`], and until it does the witness records
//! nothing. A kernel whose interrupt handlers take ordered locks also
//! hands the witness its way of masking interrupts ([`set_interrupt_mask`]):
//! the witness's own bookkeeping sits behind one spin lock, which a handler
//! must never find held by the code it interrupted on its CPU.
//!
//! With per-CPU stacks, interrupt context is part of the order as it is in
//! lockdep: a handler's acquisitions are pushed on the stack of the CPU it
//! interrupted, above what that CPU's interrupted code holds. A handler that
//! takes a lock its CPU already holds (the lock shared with the handler was
//! taken without raising the interrupt priority level, so the interrupt got
//! in) is check 1, reported before the handler spins on it; a lock taken
//! in the handler while the interrupted code holds another is an order
//! edge like any other. The graph holds up to 256 locks and 1024 edges at once (a
//! dropped [`Ordered`](crate::Ordered) forgets its locks), and each thread's
//! stack the 16 innermost held locks; past that, new locks go unrecorded
//! rather than reported.
//!
//! A lock of a [`RECURSIVE`](crate::Level::RECURSIVE) level (a big lock whose
//! holder runs a routine that takes it again) is checked like any other
//! when the thread does not hold it yet; taken again by the thread that
//! holds it, it cannot block, so it is pushed (each nesting is released by
//! its own guard) without a check and adds no edge. Check 1 applies to the
//! other levels only.

#[cfg(doc)]
use core::panic::Location;

/// Whether the witness is compiled in (`debug_assertions`).
pub const ENABLED: bool = cfg!(debug_assertions);

/// Per-CPU stacks a kernel without `std` gets through [`set_thread_hook`].
pub const MAX_THREADS: usize = 64;

/// Names the current CPU (or thread) for the witness, in `0..MAX_THREADS`,
/// where there is no `std` thread-local to keep each thread's held locks in;
/// with a hook set, the witness uses it even with `std`. An id out of range
/// is not recorded. Does nothing in release builds.
///
/// ```
/// fn cpu_id() -> usize {
///     0 // the kernel's curcpu()
/// }
/// mpsafe_order::witness::set_thread_hook(cpu_id);
/// # mpsafe_order::witness::clear_thread_hook();
/// ```
pub fn set_thread_hook(hook: fn() -> usize) {
    #[cfg(debug_assertions)]
    imp::with_state(|s| s.hook = Some(hook));
    #[cfg(not(debug_assertions))]
    let _ = hook;
}

/// How a kernel masks interrupts on the current CPU, for
/// [`set_interrupt_mask`].
#[derive(Clone, Copy, Debug)]
pub struct InterruptMask {
    /// Masks this CPU's interrupts (`cli`, `splhigh`); returns what
    /// [`restore`](InterruptMask::restore) needs to put them back as they
    /// were (whether they were enabled).
    pub mask: fn() -> usize,
    /// Undoes [`mask`](InterruptMask::mask), given what it returned.
    pub restore: fn(usize),
}

/// Makes the witness mask interrupts on the current CPU around each access
/// to its state (the global order graph and the per-CPU stacks, behind one
/// spin lock), as lockdep does around its own: for a kernel whose interrupt
/// handlers take locks through a [`Ctx`](crate::Ctx). Without it, a
/// handler that interrupts the witness's bookkeeping on its own CPU would
/// spin on the witness's lock forever. Set it before the thread hook
/// ([`set_thread_hook`]), so no bookkeeping of the kernel's runs unmasked.
/// Does nothing in release builds.
///
/// ```
/// use core::sync::atomic::{AtomicBool, Ordering};
/// use mpsafe_order::witness::{self, InterruptMask};
///
/// static ENABLED: AtomicBool = AtomicBool::new(true); // the CPU's IF flag
/// static MASK: InterruptMask = InterruptMask {
///     mask: || usize::from(ENABLED.swap(false, Ordering::Relaxed)), // cli
///     restore: |was| ENABLED.store(was != 0, Ordering::Relaxed),    // sti if it was on
/// };
/// witness::set_interrupt_mask(&MASK);
/// witness::set_thread_hook(|| 0); // the kernel's curcpu()
/// # witness::clear_thread_hook();
/// # witness::clear_interrupt_mask();
/// ```
pub fn set_interrupt_mask(mask: &'static InterruptMask) {
    #[cfg(debug_assertions)]
    imp::set_mask(core::ptr::from_ref(mask).cast_mut());
    #[cfg(not(debug_assertions))]
    let _ = mask;
}

/// Removes the mask set by [`set_interrupt_mask`].
pub fn clear_interrupt_mask() {
    #[cfg(debug_assertions)]
    imp::set_mask(core::ptr::null_mut());
}

/// Removes the hook set by [`set_thread_hook`]; the stacks it kept are
/// emptied.
pub fn clear_thread_hook() {
    #[cfg(debug_assertions)]
    imp::with_state(|s| {
        s.hook = None;
        s.stacks = [imp::Stack::EMPTY; MAX_THREADS];
    });
}

/// Forgets every lock the witness recorded inside `value` (at any level):
/// for locks declared by reference ([`Ordered::declare`](crate::Ordered::declare))
/// in a value about to be dropped, so another value built at the same
/// address starts with no history, as a dropped [`Ordered`](crate::Ordered)
/// does by itself. Does nothing in release builds.
pub fn forget_within<T: ?Sized>(value: &T) {
    #[cfg(debug_assertions)]
    imp::forget(
        core::ptr::from_ref(value).cast::<u8>().addr(),
        core::mem::size_of_val(value).max(1),
    );
    #[cfg(not(debug_assertions))]
    let _ = value;
}

/// One lock as the witness names it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LockRef {
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    addr: usize,
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    name: &'static str,
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    chain: &'static str,
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    rank: u32,
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    recursive: bool,
}

impl LockRef {
    #[inline(always)]
    pub(crate) fn of<L: crate::Level>(addr: usize) -> Self {
        Self {
            addr,
            name: L::NAME,
            chain: L::CHAIN,
            rank: L::RANK,
            recursive: L::RECURSIVE,
        }
    }
}

/// What a held guard remembers to release from its thread's stack; nothing
/// in release builds.
#[derive(Debug)]
pub(crate) struct Record {
    #[cfg(debug_assertions)]
    lock: LockRef,
    #[cfg(debug_assertions)]
    n: usize,
    #[cfg(debug_assertions)]
    stride: usize,
}

/// The records of one lock that its holder released around a sleep
/// (every nesting), kept to be pushed back; nothing in release builds.
#[derive(Debug)]
pub(crate) struct Saved {
    #[cfg(debug_assertions)]
    entries: [Option<imp::Entry>; imp::MAX_HELD],
}

#[cfg(not(debug_assertions))]
impl Saved {
    #[inline(always)]
    pub(crate) fn release(_lock: LockRef) -> Self {
        Self {}
    }

    #[inline(always)]
    pub(crate) fn check_retake(&self, _at: &'static core::panic::Location<'static>) {}

    #[inline(always)]
    pub(crate) fn restore(&mut self) {}
}

/// Checks a blocking acquisition of `lock` at `at` against what this thread
/// holds, recording the order edges, before the lock is taken (the caller
/// records it as held once it is, with an unchecked [`Record::acquire`]).
#[inline(always)]
pub(crate) fn check(lock: LockRef, at: &'static core::panic::Location<'static>) {
    #[cfg(debug_assertions)]
    imp::check(lock, at);
    #[cfg(not(debug_assertions))]
    let _ = (lock, at);
}

/// Checks taking the `n` locks from `first` (`stride` bytes apart) together,
/// in index order, before they are taken, recording the order edges (among
/// them too); returns the batch the caller records them under once they are
/// taken ([`Record::acquire_all`]).
#[inline(always)]
pub(crate) fn check_all(
    first: LockRef,
    n: usize,
    stride: usize,
    at: &'static core::panic::Location<'static>,
) -> usize {
    #[cfg(debug_assertions)]
    return imp::check_all(first, n, stride, at);
    #[cfg(not(debug_assertions))]
    {
        let _ = (first, n, stride, at);
        0
    }
}

#[cfg(not(debug_assertions))]
impl Record {
    #[inline(always)]
    pub(crate) fn acquire(
        _lock: LockRef,
        _at: &'static core::panic::Location<'static>,
        _try: bool,
    ) -> Self {
        Self {}
    }

    #[inline(always)]
    pub(crate) fn acquire_all(
        _first: LockRef,
        _n: usize,
        _stride: usize,
        _at: &'static core::panic::Location<'static>,
        _batch: usize,
    ) -> Self {
        Self {}
    }
}

#[cfg(debug_assertions)]
pub(crate) use imp::forget;

#[cfg(debug_assertions)]
mod imp {
    use core::fmt;
    use core::panic::Location;

    use crate::sync::{AtomicBool, AtomicPtr, Ordering, UnsafeCell, global, spin_loop};

    use super::{InterruptMask, LockRef, MAX_THREADS, Record, Saved};

    type Site = &'static Location<'static>;

    const MAX_NODES: usize = 256;
    const WORDS: usize = MAX_NODES / 64;
    const MAX_EDGES: usize = 1024;
    pub(super) const MAX_HELD: usize = 16;
    const MAX_PATH: usize = 8;

    #[derive(Clone, Copy, Debug)]
    pub(super) struct Entry {
        lock: LockRef,
        at: Site,
        /// Taken by one `lock_all_with` call: siblings skip the rank check.
        batch: usize,
    }

    #[derive(Clone, Copy)]
    pub(super) struct Stack {
        len: usize,
        entries: [Option<Entry>; MAX_HELD],
    }

    impl Stack {
        pub(super) const EMPTY: Self = Self {
            len: 0,
            entries: [None; MAX_HELD],
        };

        fn held(&self) -> impl Iterator<Item = &Entry> {
            self.entries[..self.len].iter().flatten()
        }

        fn push(&mut self, e: Entry) {
            if self.len < MAX_HELD {
                self.entries[self.len] = Some(e);
                self.len += 1;
            }
        }

        /// Removes every entry of the lock (`addr`, `name`), outermost
        /// first, into `out`.
        fn take_all(&mut self, addr: usize, name: &str, out: &mut [Option<Entry>; MAX_HELD]) {
            let mut n = 0;
            let mut kept = 0;
            for i in 0..self.len {
                let e = self.entries[i];
                if e.is_some_and(|e| e.lock.addr == addr && e.lock.name == name) {
                    out[n] = e;
                    n += 1;
                } else {
                    self.entries[kept] = e;
                    kept += 1;
                }
            }
            for e in &mut self.entries[kept..self.len] {
                *e = None;
            }
            self.len = kept;
        }

        fn remove(&mut self, addr: usize, name: &str) {
            let found = self.entries[..self.len]
                .iter()
                .rposition(|e| e.is_some_and(|e| e.lock.addr == addr && e.lock.name == name));
            if let Some(i) = found {
                self.entries.copy_within(i + 1..self.len, i);
                self.len -= 1;
                self.entries[self.len] = None;
            }
        }
    }

    #[derive(Clone, Copy)]
    struct Node {
        addr: usize,
        name: &'static str,
    }

    #[derive(Clone, Copy)]
    struct Edge {
        from: u16,
        to: u16,
        from_at: Site,
        to_at: Site,
    }

    pub(super) struct State {
        pub(super) hook: Option<fn() -> usize>,
        pub(super) stacks: [Stack; MAX_THREADS],
        nodes: [Option<Node>; MAX_NODES],
        adj: [[u64; WORDS]; MAX_NODES],
        edges: [Option<Edge>; MAX_EDGES],
        next_batch: usize,
    }

    struct Global {
        busy: AtomicBool,
        /// The kernel's [`InterruptMask`] (a `&'static` one), or null.
        mask: AtomicPtr<InterruptMask>,
        state: UnsafeCell<State>,
    }

    // SAFETY: `state` is only reached through `with_state`, which holds the
    // `busy` flag (taken with Acquire, released with Release) for the whole
    // access, so no two threads touch it at once.
    unsafe impl Sync for Global {}

    global! {
        static GLOBAL: Global = Global {
            busy: AtomicBool::new(false),
            mask: AtomicPtr::new(core::ptr::null_mut()),
            state: UnsafeCell::new(State {
                hook: None,
                stacks: [Stack::EMPTY; MAX_THREADS],
                nodes: [None; MAX_NODES],
                adj: [[0; WORDS]; MAX_NODES],
                edges: [None; MAX_EDGES],
                next_batch: 1,
            }),
        };
    }

    pub(super) fn set_mask(mask: *mut InterruptMask) {
        // Release: a reader that loads this pointer (Acquire, in
        // `with_state`) sees the `InterruptMask` it points to as written
        // (a `&'static` may be a leaked box filled in just before).
        GLOBAL.mask.store(mask, Ordering::Release);
    }

    /// Runs `f` on the witness state under its spin lock, with this CPU's
    /// interrupts masked if the kernel set an [`InterruptMask`]. `f` must
    /// not panic or re-enter: reports are built inside and raised after.
    pub(super) fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
        // Acquire: pairs with `set_mask`'s Release store.
        let mask = GLOBAL.mask.load(Ordering::Acquire);
        // SAFETY: `set_mask` stores only null or a pointer made from a
        // `&'static InterruptMask` (`set_interrupt_mask`).
        let mask = unsafe { mask.as_ref() };
        // Masked before the spin lock is taken and restored after it is
        // released: an interrupt on this CPU never finds the lock held by
        // the code it interrupted.
        let saved = mask.map(|m| (m.mask)());
        let r = locked(f);
        if let (Some(m), Some(saved)) = (mask, saved) {
            (m.restore)(saved);
        }
        r
    }

    fn locked<R>(f: impl FnOnce(&mut State) -> R) -> R {
        // Acquire: this holder's accesses to the state come after the
        // previous holder's (its Release store below). loom_witness checks
        // both orderings: weakened, two threads' accesses to the state race.
        while GLOBAL
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spin_loop();
        }
        // SAFETY: the flag is ours until the store below (see `Global`).
        let r = GLOBAL.state.with_mut(|state| f(unsafe { &mut *state }));
        // Release: the next holder sees every change `f` made.
        GLOBAL.busy.store(false, Ordering::Release);
        r
    }

    #[cfg(feature = "std")]
    std::thread_local! {
        static STACK: core::cell::RefCell<Stack> = const { core::cell::RefCell::new(Stack::EMPTY) };
    }

    /// Runs `f` on this thread's stack and the state; `None` if this thread
    /// has no stack (no `std` and no hook, or an id out of range).
    fn with_thread<R>(f: impl FnOnce(&mut State, &mut Stack) -> R) -> Option<R> {
        with_state(|s| {
            let Some(hook) = s.hook else {
                #[cfg(feature = "std")]
                return STACK.try_with(|st| f(s, &mut st.borrow_mut())).ok();
                #[cfg(not(feature = "std"))]
                return None;
            };
            let id = hook();
            let mut stack = *s.stacks.get(id)?;
            let r = f(s, &mut stack);
            s.stacks[id] = stack;
            Some(r)
        })
    }

    impl State {
        fn node(&mut self, lock: &LockRef) -> Option<usize> {
            let mut free = None;
            for (i, n) in self.nodes.iter().enumerate() {
                match n {
                    Some(n) if n.addr == lock.addr && n.name == lock.name => return Some(i),
                    None if free.is_none() => free = Some(i),
                    _ => {}
                }
            }
            let i = free?;
            self.nodes[i] = Some(Node {
                addr: lock.addr,
                name: lock.name,
            });
            Some(i)
        }

        fn find(&self, lock: &LockRef) -> Option<usize> {
            self.nodes
                .iter()
                .position(|n| n.is_some_and(|n| n.addr == lock.addr && n.name == lock.name))
        }

        fn has_edge(&self, from: usize, to: usize) -> bool {
            self.adj[from][to / 64] & (1 << (to % 64)) != 0
        }

        fn add_edge(&mut self, from: usize, to: usize, from_at: Site, to_at: Site) {
            let Some(slot) = self.edges.iter().position(Option::is_none) else {
                return; // full: unrecorded rather than reported
            };
            self.adj[from][to / 64] |= 1 << (to % 64);
            #[allow(clippy::cast_possible_truncation)] // MAX_NODES fits u16
            {
                self.edges[slot] = Some(Edge {
                    from: from as u16,
                    to: to as u16,
                    from_at,
                    to_at,
                });
            }
        }

        fn edge(&self, from: usize, to: usize) -> Option<Edge> {
            self.edges
                .iter()
                .flatten()
                .find(|e| usize::from(e.from) == from && usize::from(e.to) == to)
                .copied()
        }

        /// A path `from →* to` in the graph, by breadth-first search.
        fn path(&self, from: usize, to: usize) -> Option<Path> {
            let mut parent = [u16::MAX; MAX_NODES];
            let mut queue = [0u16; MAX_NODES];
            let (mut head, mut tail) = (0, 1);
            #[allow(clippy::cast_possible_truncation)]
            {
                queue[0] = from as u16;
                parent[from] = from as u16;
            }
            while head < tail {
                let n = usize::from(queue[head]);
                head += 1;
                for m in 0..MAX_NODES {
                    if parent[m] == u16::MAX && self.has_edge(n, m) {
                        #[allow(clippy::cast_possible_truncation)]
                        {
                            parent[m] = n as u16;
                            queue[tail] = m as u16;
                        }
                        tail += 1;
                        if m == to {
                            return Some(self.unwind(&parent, from, to));
                        }
                    }
                }
            }
            None
        }

        fn unwind(&self, parent: &[u16; MAX_NODES], from: usize, to: usize) -> Path {
            // Collect to → from, then reverse.
            let mut rev = [0usize; MAX_NODES];
            let mut len = 0;
            let mut n = to;
            while n != from {
                rev[len] = n;
                len += 1;
                n = usize::from(parent[n]);
            }
            let mut path = Path {
                hops: [None; MAX_PATH],
                len,
            };
            let mut prev = from;
            for (k, &next) in rev[..len].iter().rev().enumerate().take(MAX_PATH) {
                path.hops[k] = self.edge(prev, next).map(|e| Hop {
                    from: self.nodes[prev].map_or("?", |n| n.name),
                    to: self.nodes[next].map_or("?", |n| n.name),
                    from_at: e.from_at,
                    to_at: e.to_at,
                });
                prev = next;
            }
            path
        }

        fn forget(&mut self, addr: usize, len: usize) {
            for i in 0..MAX_NODES {
                if self.nodes[i].is_some_and(|n| n.addr >= addr && n.addr < addr + len) {
                    self.nodes[i] = None;
                    self.adj[i] = [0; WORDS];
                    for row in &mut self.adj {
                        row[i / 64] &= !(1 << (i % 64));
                    }
                    for e in &mut self.edges {
                        if e.is_some_and(|e| usize::from(e.from) == i || usize::from(e.to) == i) {
                            *e = None;
                        }
                    }
                }
            }
        }

        /// Checks taking `lock` (at `at`) against `stack`, records the
        /// order, and pushes it; a report instead if it inverts an order.
        fn acquire(
            &mut self,
            stack: &mut Stack,
            lock: LockRef,
            at: Site,
            check: bool,
            batch: usize,
        ) -> Option<Report> {
            if check {
                if let Some(report) = self.check(stack, lock, at, batch) {
                    return Some(report);
                }
            }
            stack.push(Entry { lock, at, batch });
            None
        }

        /// The three checks of a blocking acquisition of `lock` against
        /// `stack`, recording the new order edges; nothing is pushed.
        fn check(
            &mut self,
            stack: &Stack,
            lock: LockRef,
            at: Site,
            batch: usize,
        ) -> Option<Report> {
            let same = |e: &Entry| e.lock.addr == lock.addr && e.lock.name == lock.name;
            if !(lock.recursive && stack.held().any(same)) {
                let new = self.node(&lock);
                for held in stack.held() {
                    if same(held) {
                        return Some(Report::Recursive {
                            lock,
                            at,
                            held: *held,
                        });
                    }
                    let sibling = batch != 0 && held.batch == batch;
                    if !sibling
                        && !held.lock.chain.is_empty()
                        && held.lock.chain == lock.chain
                        && held.lock.rank >= lock.rank
                    {
                        return Some(Report::Declared {
                            lock,
                            at,
                            held: *held,
                        });
                    }
                    let (Some(new), Some(old)) = (new, self.find(&held.lock)) else {
                        continue;
                    };
                    if self.has_edge(old, new) {
                        continue;
                    }
                    if let Some(path) = self.path(new, old) {
                        return Some(Report::Reversal {
                            lock,
                            at,
                            held: *held,
                            path,
                        });
                    }
                    self.add_edge(old, new, held.at, at);
                }
            }
            None
        }
    }

    #[derive(Clone, Copy)]
    struct Hop {
        from: &'static str,
        to: &'static str,
        from_at: Site,
        to_at: Site,
    }

    #[derive(Clone, Copy)]
    struct Path {
        hops: [Option<Hop>; MAX_PATH],
        len: usize,
    }

    /// Why the witness panics, built under its lock and raised after.
    #[allow(clippy::large_enum_variant)] // built once, to panic
    enum Report {
        Recursive {
            lock: LockRef,
            at: Site,
            held: Entry,
        },
        Declared {
            lock: LockRef,
            at: Site,
            held: Entry,
        },
        Reversal {
            lock: LockRef,
            at: Site,
            held: Entry,
            path: Path,
        },
    }

    struct Named<'a>(&'a LockRef);

    impl fmt::Display for Named<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "`{}` ({:#x})", self.0.name, self.0.addr)
        }
    }

    impl fmt::Display for Report {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Report::Recursive { lock, at, held } => write!(
                    f,
                    "witness: {} taken at {at} is already held by this thread, \
                     taken at {} (recursion of a level not declared \
                     `recursive`, a barrier waited for from inside its own \
                     routine, or, with per-CPU stacks, an interrupt handler \
                     taking a lock that the code it interrupted on this CPU \
                     holds at a lower interrupt priority level)",
                    Named(lock),
                    held.at,
                ),
                Report::Declared { lock, at, held } => {
                    write!(
                        f,
                        "witness: lock order violation: {} taken at {at} while \
                         holding {} taken at {}; ",
                        Named(lock),
                        Named(&held.lock),
                        held.at,
                    )?;
                    if lock.rank == held.lock.rank {
                        write!(
                            f,
                            "two locks of level `{}` are held at once only when \
                             taken together, in index order",
                            lock.name
                        )
                    } else {
                        write!(
                            f,
                            "the declared order puts `{}` (rank {}) before `{}` (rank {})",
                            lock.name, lock.rank, held.lock.name, held.lock.rank,
                        )
                    }
                }
                Report::Reversal {
                    lock,
                    at,
                    held,
                    path,
                } => {
                    write!(
                        f,
                        "witness: lock order reversal: {} taken at {at} while \
                         holding {} taken at {}; established order:",
                        Named(lock),
                        Named(&held.lock),
                        held.at,
                    )?;
                    for hop in path.hops.iter().flatten() {
                        write!(
                            f,
                            " `{}` (taken at {}) before `{}` (taken at {});",
                            hop.from, hop.from_at, hop.to, hop.to_at
                        )?;
                    }
                    if path.len > MAX_PATH {
                        write!(f, " ({} more)", path.len - MAX_PATH)?;
                    }
                    Ok(())
                }
            }
        }
    }

    fn raise(report: Option<Option<Report>>) {
        if let Some(Some(report)) = report {
            panic!("{report}");
        }
    }

    impl Record {
        #[track_caller]
        pub(crate) fn acquire(lock: LockRef, at: Site, trylock: bool) -> Self {
            raise(with_thread(|s, st| s.acquire(st, lock, at, !trylock, 0)));
            Self {
                lock,
                n: 1,
                stride: 0,
            }
        }

        /// Records the locks [`check_all`] checked as held, under its
        /// `batch`, once they are taken.
        pub(crate) fn acquire_all(
            first: LockRef,
            n: usize,
            stride: usize,
            at: Site,
            batch: usize,
        ) -> Self {
            with_thread(|_, st| {
                for i in 0..n {
                    let lock = LockRef {
                        addr: first.addr + i * stride,
                        ..first
                    };
                    st.push(Entry { lock, at, batch });
                }
            });
            Self {
                lock: first,
                n,
                stride,
            }
        }
    }

    impl Drop for Record {
        fn drop(&mut self) {
            let (lock, n, stride) = (self.lock, self.n, self.stride);
            with_thread(|_, st| {
                for i in (0..n).rev() {
                    st.remove(lock.addr + i * stride, lock.name);
                }
            });
        }
    }

    impl Saved {
        pub(crate) fn release(lock: LockRef) -> Self {
            let mut entries = [None; MAX_HELD];
            with_thread(|_, st| st.take_all(lock.addr, lock.name, &mut entries));
            Self { entries }
        }

        /// Checks taking the lock back (its outermost hold) against what
        /// this thread holds now, as a blocking acquisition at `at`.
        pub(crate) fn check_retake(&self, at: Site) {
            let Some(first) = self.entries[0] else {
                return;
            };
            raise(with_thread(|s, st| {
                s.check(st, first.lock, at, first.batch)
            }));
        }

        /// Pushes the saved holds back, with the sites they were first
        /// taken at; idempotent.
        pub(crate) fn restore(&mut self) {
            if self.entries[0].is_none() {
                return;
            }
            let entries = core::mem::replace(&mut self.entries, [None; MAX_HELD]);
            with_thread(|_, st| {
                for e in entries.into_iter().flatten() {
                    st.push(e);
                }
            });
        }
    }

    pub(crate) fn forget(addr: usize, len: usize) {
        with_state(|s| s.forget(addr, len));
    }

    pub(crate) fn check(lock: LockRef, at: Site) {
        raise(with_thread(|s, st| s.check(st, lock, at, 0)));
    }

    pub(crate) fn check_all(first: LockRef, n: usize, stride: usize, at: Site) -> usize {
        let mut batch = 0;
        raise(with_thread(|s, st| {
            batch = s.next_batch;
            s.next_batch = s.next_batch.wrapping_add(1).max(1);
            // Each is checked with the earlier ones of the batch pushed, so
            // the graph learns their index order; all are taken off again
            // (and, on a report, the guard is never made).
            let mut report = None;
            let mut pushed = 0;
            for i in 0..n {
                let lock = LockRef {
                    addr: first.addr + i * stride,
                    ..first
                };
                report = s.acquire(st, lock, at, true, batch);
                if report.is_some() {
                    break;
                }
                pushed += 1;
            }
            for j in (0..pushed).rev() {
                st.remove(first.addr + j * stride, first.name);
            }
            report
        }));
        batch
    }
}
