//! Wake-ups for the stack's poll loop: "tx has room again" from the
//! driver's start routine, "rx pending" from its receive path.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Deref;

use crossbeam_utils::CachePadded;
use mpsafe_ifqueue::lock_api::RawMutex;
use mpsafe_ifqueue::{Discipline, IfInputQueue, Packet, Pressure, SendQueue, Start, TaskOwner};

use crate::sync::{AtomicBool, Ordering, fence};

/// Wakes the thread (or task) that polls the stack: the one thing a kernel
/// implements to let its poll loop sleep.
///
/// Called from the driver's contexts: its start routine (on whatever CPU
/// runs it) and its receive path (an interrupt handler or a softnet task).
/// It must not block and must not take a lock the poll loop holds while it
/// polls. A kernel wakes a thread sleeping on a channel, posts a task, or
/// sends an IPI; with `std`, [`Signal`] does it with a condition variable.
///
/// A notification with nobody asleep must not be lost: the next sleep must
/// return at once (a flag or a counter, as [`Signal`] has).
pub trait Notify {
    /// Wakes the poll loop, or makes its next sleep return at once.
    fn notify(&self);
}

impl<N: Notify + ?Sized> Notify for &N {
    #[inline]
    fn notify(&self) {
        (**self).notify()
    }
}

impl<N: Notify + ?Sized> Notify for Arc<N> {
    #[inline]
    fn notify(&self) {
        (**self).notify()
    }
}

/// The meeting point of one adapter and its driver queue pair: the
/// [`Device`](crate::Device) rings it when it wants to hear about transmit
/// room, the driver rings it when there is some and when it queued received
/// packets, and it forwards to the poll loop's [`Notify`] only when that is
/// worth a wake-up.
///
/// - **Rx pending.** The driver hands its receive batch to the input queue
///   through [`input`](Doorbell::input) (or calls
///   [`rx_pending`](Doorbell::rx_pending) after its own `input`): the batch
///   is queued with the input queue's back-pressure unchanged, and the poll
///   loop is woken.
/// - **Tx room.** When [`Device::transmit`](smoltcp::phy::Device::transmit)
///   finds the send queue full it marks the doorbell (`tx_wanted`) before
///   refusing. The driver calls [`tx_room`](Doorbell::tx_room) after its
///   start routine took packets off the queue (wrap the start routine in
///   [`WakeOnStart`] to have it done on every start and restart pass, which
///   covers `oactive` being cleared by `ifq_restart`), and after purging the
///   queue; the poll loop is woken only if the mark was set, so a start pass
///   costs one fence and one load when nobody waits.
///
/// No wake-up is lost: the device marks and then checks the queue once more;
/// the driver frees room and then checks the mark, each with a sequentially
/// consistent fence in between (a store-buffering handshake, the same as
/// `oactive`'s in `mpsafe-ifqueue`). `tests/loom_doorbell.rs` checks it.
pub struct Doorbell<N> {
    /// Set by the device that found the send queue full; cleared by the
    /// `tx_room` that wakes it. Written by the poll CPU and the driver's
    /// start CPU: its own line.
    tx_wanted: CachePadded<AtomicBool>,
    notify: N,
}

impl<N: Notify> Doorbell<N> {
    crate::sync::const_fn! {
        /// A doorbell that wakes the poll loop through `notify`.
        pub fn new(notify: N) -> Self {
            Self {
                tx_wanted: CachePadded::new(AtomicBool::new(false)),
                notify,
            }
        }
    }

    /// The driver made room in the send queue (a start pass dequeued,
    /// `oactive` was cleared and the queue restarted, the queue was purged):
    /// wakes the poll loop if its device found the queue full. Call it after
    /// the room was made.
    #[inline]
    pub fn tx_room(&self) {
        // SeqCst fence, paired with the one in `want_tx`: the room made
        // before this (a dequeue under the queue lock) and the mark read
        // after it form a store-buffering pattern with the device's mark
        // and its re-check of the queue. Either this load sees the mark, or
        // the device's re-check sees the room.
        fence(Ordering::SeqCst);
        // Relaxed load first: a start pass with nobody waiting writes
        // nothing to the shared line. The swap makes one waker per mark.
        if self.tx_wanted.load(Ordering::Relaxed) && self.tx_wanted.swap(false, Ordering::Relaxed) {
            self.notify.notify();
        }
    }

    /// The driver queued received packets: wakes the poll loop.
    #[inline]
    pub fn rx_pending(&self) {
        self.notify.notify();
    }

    /// Hands a receive batch to `queue` ([`IfInputQueue::input`], unchanged:
    /// its [`Pressure`] is returned for the driver to back its ring off, and
    /// on [`Pressure::Dropped`] the batch stays in `batch` for the driver to
    /// free), and wakes the poll loop if the batch was queued.
    #[inline]
    pub fn input<P: Packet, R: RawMutex>(
        &self,
        queue: &IfInputQueue<P, R>,
        batch: &mut Vec<P>,
    ) -> Pressure {
        if batch.is_empty() {
            return Pressure::Normal;
        }
        let pressure = queue.input(batch);
        if pressure != Pressure::Dropped {
            self.rx_pending();
        }
        pressure
    }

    /// Marks the doorbell: the device found the send queue full and wants a
    /// wake-up when there is room. The caller must check the queue again
    /// after this returns, and may sleep only if it is still full.
    /// [`Device`](crate::Device) does this itself; a device of your own over
    /// these queues calls it the same way.
    #[inline]
    pub fn want_tx(&self) {
        self.tx_wanted.store(true, Ordering::Relaxed);
        // SeqCst fence, paired with the one in `tx_room` (see there): the
        // mark is ordered before the caller's re-check of the queue.
        fence(Ordering::SeqCst);
    }

    /// Whether a device is waiting for transmit room (a hint).
    pub fn tx_wanted(&self) -> bool {
        self.tx_wanted.load(Ordering::Relaxed)
    }

    /// The poll loop's waker.
    pub fn notifier(&self) -> &N {
        &self.notify
    }
}

impl<N: fmt::Debug> fmt::Debug for Doorbell<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Doorbell")
            .field("tx_wanted", &self.tx_wanted.load(Ordering::Relaxed))
            .field("notify", &self.notify)
            .finish()
    }
}

/// A driver's start routine that rings a [`Doorbell`] after every pass:
/// the "tx available" wake-up without touching the driver's code.
///
/// Register it as the [`IfQueue`](mpsafe_ifqueue::IfQueue)'s start routine
/// in place of the driver's own. Every start pass, including the one a
/// restart runs after clearing `oactive` (OpenBSD `ifq_restart` from tx
/// completion), then calls [`Doorbell::tx_room`], which wakes the poll loop
/// only if its device is waiting for room. `H` is how the routine reaches
/// the doorbell: `&Doorbell`, `Arc<Doorbell>`, ...
///
/// [`driver`](WakeOnStart::driver) reaches the wrapped routine's state (the
/// tx ring) for the completion path, through
/// [`IfQueue::driver`](mpsafe_ifqueue::IfQueue::driver).
///
/// # Examples
///
/// ```
/// use mpsafe_ifqueue::{Config, Fifo, IfQueue, SendQueue, TaskOwner};
/// use mpsafe_smoltcp::{Doorbell, Notify, WakeOnStart};
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// #[derive(Default)]
/// struct Count(AtomicUsize);
/// impl Notify for Count {
///     fn notify(&self) { self.0.fetch_add(1, Ordering::Relaxed); }
/// }
///
/// type Em = fn(&SendQueue<Fifo<Vec<u8>>>, &TaskOwner<'_>);
/// fn em_start(q: &SendQueue<Fifo<Vec<u8>>>, _: &TaskOwner<'_>) {
///     while q.dequeue().is_some() {} // "on the wire"
/// }
///
/// let bell = Doorbell::new(Count::default());
/// let start = WakeOnStart::new(em_start as Em, &bell);
/// let ifq = IfQueue::new(Fifo::new(), Config::with_maxlen(8), start)?;
/// ifq.transmit(vec![0; 60])?;
/// // Nobody waited for room: no wake-up.
/// assert_eq!(bell.notifier().0.load(Ordering::Relaxed), 0);
/// // A device found the queue full and marked the doorbell: the next start
/// // pass wakes its poll loop, once.
/// bell.want_tx();
/// ifq.transmit(vec![0; 60])?;
/// ifq.transmit(vec![0; 60])?;
/// assert_eq!(bell.notifier().0.load(Ordering::Relaxed), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WakeOnStart<S, H> {
    start: S,
    doorbell: H,
}

impl<S, H> WakeOnStart<S, H> {
    crate::sync::const_fn! {
        /// `start`, ringing `doorbell` after each pass.
        pub fn new(start: S, doorbell: H) -> Self {
            Self { start, doorbell }
        }
    }

    /// The wrapped start routine's state (the driver's tx ring).
    pub fn driver(&self) -> &S {
        &self.start
    }

    /// The doorbell it rings.
    pub fn doorbell(&self) -> &H {
        &self.doorbell
    }
}

impl<D, R, S, H, N> Start<D, R> for WakeOnStart<S, H>
where
    D: Discipline,
    R: RawMutex,
    S: Start<D, R>,
    H: Deref<Target = Doorbell<N>>,
    N: Notify,
{
    #[inline]
    fn start(&self, queue: &SendQueue<D, R>, owner: &TaskOwner<'_>) {
        self.start.start(queue, owner);
        self.doorbell.tx_room();
    }
}

impl<S: fmt::Debug, H> fmt::Debug for WakeOnStart<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WakeOnStart")
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "std")]
pub use signal::Signal;

#[cfg(feature = "std")]
mod signal {
    use core::fmt;
    // Not the crate's shim: this sleep is not loom-modelled (its wait is a
    // condition variable's), so it keeps core's atomics under the models too.
    use core::sync::atomic::{AtomicU32, Ordering};
    use core::time::Duration;
    use std::sync::{Condvar, Mutex, PoisonError};
    use std::time::Instant;

    use super::Notify;

    /// Nothing happened since the last wait.
    const IDLE: u32 = 0;
    /// A notification arrived and no wait has consumed it yet.
    const NOTIFIED: u32 = 1;
    /// The poll thread is asleep (or about to be) on the condition variable.
    const SLEEPING: u32 = 2;

    /// A poll loop's sleep with a timeout, woken by [`Notify::notify`]
    /// (`std`): the sleep smoltcp's `poll_delay` asks for.
    ///
    /// A notification that arrives while nobody sleeps is kept, so the next
    /// [`wait`](Signal::wait) returns at once; `notify` takes the mutex
    /// only when the poll thread is asleep, so it is one atomic swap while
    /// the stack is busy. One thread waits (the poll loop); any number
    /// notify.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mpsafe_smoltcp::{Notify, Signal};
    ///
    /// let s = Signal::new();
    /// assert!(!s.wait(Some(Duration::from_millis(1)))); // timed out
    /// s.notify(); // nobody asleep: kept
    /// assert!(s.wait(None)); // returns at once
    /// std::thread::scope(|t| {
    ///     t.spawn(|| s.notify());
    ///     assert!(s.wait(Some(Duration::from_secs(60))));
    /// });
    /// ```
    pub struct Signal {
        state: AtomicU32,
        lock: Mutex<()>,
        cv: Condvar,
    }

    impl Signal {
        /// A signal with no notification pending.
        pub const fn new() -> Self {
            Self {
                state: AtomicU32::new(IDLE),
                lock: Mutex::new(()),
                cv: Condvar::new(),
            }
        }

        /// Sleeps until notified or until `timeout` (`None`: no timeout)
        /// has passed; returns whether a notification ended it (one that
        /// arrived since the last wait counts). For the one poll thread.
        pub fn wait(&self, timeout: Option<Duration>) -> bool {
            // Acquire: what the notifier did before notifying (queued a
            // batch, made room) is seen after this returns.
            if self.state.swap(IDLE, Ordering::Acquire) == NOTIFIED {
                return true;
            }
            let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
            let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            // Announce the sleep under the mutex: a notifier that sees
            // SLEEPING takes the mutex before signalling, so it cannot
            // signal between this and the condition variable's wait.
            if self
                .state
                .compare_exchange(IDLE, SLEEPING, Ordering::Acquire, Ordering::Acquire)
                .is_err()
            {
                self.state.store(IDLE, Ordering::Relaxed);
                return true;
            }
            while self.state.load(Ordering::Acquire) == SLEEPING {
                guard = match deadline {
                    None => self.cv.wait(guard).unwrap_or_else(PoisonError::into_inner),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            break;
                        }
                        self.cv
                            .wait_timeout(guard, d - now)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                };
            }
            drop(guard);
            // Consume what ended the sleep: a notification, or nothing (a
            // timeout leaves SLEEPING). A notification racing with the
            // timeout is taken here, not left for the next wait.
            self.state.swap(IDLE, Ordering::Acquire) == NOTIFIED
        }
    }

    impl Default for Signal {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Notify for Signal {
        fn notify(&self) {
            // AcqRel: Release publishes the notifier's work to the waiter's
            // Acquire; Acquire orders the mutex below after the waiter's
            // announcement.
            if self.state.swap(NOTIFIED, Ordering::AcqRel) == SLEEPING {
                // The waiter holds the mutex from its announcement until the
                // condition variable releases it: taking it here means the
                // waiter is inside `wait` (or gone), so the signal is heard.
                let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
                self.cv.notify_one();
            }
        }
    }

    impl fmt::Debug for Signal {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let state = match self.state.load(Ordering::Relaxed) {
                NOTIFIED => "notified",
                SLEEPING => "sleeping",
                _ => "idle",
            };
            f.debug_struct("Signal").field("state", &state).finish()
        }
    }
}
