//! The state every path consults before it runs: the mode, the one RUNNING
//! flag, and the locks the policy hands out (the big lock, the ifnet
//! serializer). Shared by the softc and each queue's start routine.

use crate::sync::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use alloc::sync::Arc;

use mpsafe_order::{Ctx, LockBefore, Ordered};
use mpsafe_serializer::{Serialized, Serializer};

use super::order::{BigLock, Ifnet};

use super::mode::{Entry, Mode, Proof};
use crate::biglock::{KernelGuard, KernelLock, Path};
use crate::kernel::Kernel;

/// Set in the mode word while a mode switch has the interface paused.
const PAUSED: u8 = 0x80;

pub(crate) struct Core<K: Kernel> {
    mode: AtomicU8,
    /// IFF_RUNNING: the interface's one running flag.
    running: AtomicBool,
    pub(crate) big: Arc<KernelLock<K::BigLock>>,
    /// The ifnet serializer (DragonFly's `ifp->if_serializer`): init, stop
    /// and ioctl in every mode; also the interrupt and start in
    /// [`Mode::Serialized`].
    pub(crate) ifnet: Ordered<Ifnet, Serializer<K::Wait>>,
    /// Inits and stops so far (see `bump_generation`).
    generation: AtomicU64,
    /// Serializes mode switches with each other (taken before `ifnet`,
    /// held while the switch waits at barriers: a sleeping lock).
    pub(crate) switch: Serializer<K::Wait>,
}

impl<K: Kernel> Core<K> {
    pub(crate) fn new(mode: Mode, big: Arc<KernelLock<K::BigLock>>) -> Self {
        Self {
            mode: AtomicU8::new(mode.to_u8()),
            running: AtomicBool::new(false),
            big,
            ifnet: Ordered::new(Serializer::new()),
            generation: AtomicU64::new(0),
            switch: Serializer::new(),
        }
    }

    /// The mode, whether or not a switch has paused it (statistics, the
    /// ioctls inside the ifnet serializer, where it cannot change).
    pub(crate) fn mode(&self) -> Mode {
        // Relaxed: inside the ifnet serializer the word is stable (only the
        // switch and init write it, inside the serializer); outside it this
        // is a snapshot for reports. Paths decide with `decide`.
        Mode::from_u8(self.mode.load(Ordering::Relaxed) & !PAUSED)
    }

    /// A path's one read of the mode, at its top, inside its gate (the
    /// interrupt gate, the timeout's gate, the send queue's start
    /// serializer): the mode it runs under to the end, handed to its parts
    /// as a value. `None` while a mode switch has the interface paused: the
    /// path does nothing (the switch's resume refills and kicks).
    ///
    /// Sound because the switch sets the pause *before* it waits at those
    /// gates' barriers, and stores the new mode only after them: a path
    /// either started before the barrier (and the switch waits for it) or
    /// reads the pause (a barrier's flip orders the write before every
    /// entry it does not wait for), so no path of the old mode runs beside
    /// one of the new.
    pub(crate) fn decide(&self) -> Option<Mode> {
        // Relaxed: ordered by the gates' barriers, as above.
        let v = self.mode.load(Ordering::Relaxed);
        (v & PAUSED == 0).then(|| Mode::from_u8(v))
    }

    /// Pauses every path that decides its mode (see [`decide`](Self::decide)):
    /// the mode switch, inside the serializer, before its barriers.
    pub(crate) fn pause(&self, s: &Serialized<'_, K::Wait>) {
        self.check_ifnet(s);
        self.mode.fetch_or(PAUSED, Ordering::Relaxed);
    }

    /// Ends a pause with the mode unchanged: init, which unmasks the
    /// device a paused switch had masked (and so makes the switch start
    /// over, by its generation).
    pub(crate) fn unpause(&self, s: &Serialized<'_, K::Wait>) {
        self.check_ifnet(s);
        self.mode.fetch_and(!PAUSED, Ordering::Relaxed);
    }

    /// Stores the new mode and ends the pause; only
    /// [`Em::set_mode`](super::Em::set_mode), inside the serializer, with
    /// every path quiesced.
    pub(crate) fn set_mode(&self, s: &Serialized<'_, K::Wait>, mode: Mode) {
        self.check_ifnet(s);
        self.mode.store(mode.to_u8(), Ordering::Relaxed);
    }

    /// Counts an init or stop, so a mode switch that let go of the
    /// serializer can tell one ran meanwhile.
    pub(crate) fn bump_generation(&self, _s: &Serialized<'_, K::Wait>) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn generation(&self, _s: &Serialized<'_, K::Wait>) -> u64 {
        // Relaxed: written and read only inside the serializer.
        self.generation.load(Ordering::Relaxed)
    }

    pub(crate) fn is_running(&self) -> bool {
        // Acquire: pairs with the Release in `set_running(true)`: a path
        // that sees RUNNING sees the rings init set up.
        self.running.load(Ordering::Acquire)
    }

    pub(crate) fn set_running(&self, _s: &Serialized<'_, K::Wait>, on: bool) {
        self.running.store(on, Ordering::Release);
    }

    /// The policy applied: enters what `path` needs in `mode`, the mode the
    /// path decided at its top ([`decide`](Self::decide)), never re-read.
    /// `outer` is the ifnet guard of a caller inside the serializer (the
    /// interrupt in [`Mode::Serialized`], every ioctl). The big lock is
    /// taken from `ctx` at its level ([`KernelLock::lock_in`]); the proof
    /// and the returned context keep `ctx` borrowed while they live.
    ///
    /// The context comes back at [`BigLock`] whatever the mode took (the
    /// big lock, or nothing): one type for every mode, and a context at a
    /// later level than the caller's only forbids more
    /// ([`Ctx::restrict`]). What the path takes under it (the rx mutex, the
    /// queue mutex, the pool) comes after the big lock in every mode.
    ///
    /// # Panics
    ///
    /// If the policy asks for the serializer and the caller is not inside
    /// it: a path that decided `Serialized` runs inside it (a driver bug
    /// otherwise).
    #[track_caller]
    pub(crate) fn enter<'a, L: LockBefore<BigLock>>(
        &'a self,
        mode: Mode,
        path: Path,
        outer: Option<&'a Serialized<'a, K::Wait>>,
        ctx: &'a mut Ctx<'_, L>,
    ) -> (Proof<'a, K>, Ctx<'a, BigLock>) {
        match mode.entry(path) {
            Entry::Unlocked => (Proof::Unlocked, ctx.restrict()),
            Entry::BigLock => {
                let (k, ctx) = self.big.lock_in(ctx, path);
                (Proof::Big(k), ctx)
            }
            Entry::Serializer => {
                let s = outer.expect("path entered outside the ifnet serializer");
                self.check_ifnet(s);
                (Proof::Ifnet(s), ctx.restrict())
            }
        }
    }

    /// Panics unless `s` is a guard of this interface's ifnet serializer.
    pub(crate) fn check_ifnet(&self, s: &Serialized<'_, K::Wait>) {
        assert!(
            core::ptr::eq(s.serializer(), self.ifnet.unordered()),
            "proof from another interface's ifnet serializer"
        );
    }

    /// Panics unless `k` is a guard of this driver's big lock and this
    /// thread holds that lock now: a guard kept across
    /// [`KernelGuard::sleep`] (a nested one) names a lock that is released
    /// while the sleep runs, possibly held by another thread.
    pub(crate) fn check_big(&self, k: &KernelGuard<'_, K::BigLock>) {
        assert!(
            k.is_of(&self.big),
            "proof from a big lock this driver does not use"
        );
        assert!(
            k.is_held(),
            "proof from a big lock this thread does not hold now (released by `KernelGuard::sleep`)"
        );
    }

    /// Checks that `proof` is one of this interface's.
    pub(crate) fn check(&self, proof: &Proof<'_, K>) {
        match proof {
            Proof::Unlocked => {}
            // The ifq serializer's token: the start routine checks it
            // against its own send queue (`IfQueue::owns`), exactly; here
            // only that its serializer runs on this thread (which a
            // serializer knows only with `std`).
            #[cfg(feature = "std")]
            Proof::Task(o) => assert!(
                o.serializer().is_owned_by_current_thread(),
                "start routine token of a serializer this thread does not run"
            ),
            #[cfg(not(feature = "std"))]
            Proof::Task(_) => {}
            Proof::Big(k) => self.check_big(k),
            Proof::Ifnet(s) => self.check_ifnet(s),
        }
    }
}
