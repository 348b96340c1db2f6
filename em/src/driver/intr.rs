//! The interrupt handler (`em_intr`), entered as the policy says: the big
//! lock, nothing, or the ifnet serializer through its handler gating.

use core::marker::PhantomData;

use mpsafe_order::{Ctx, LockBefore, Ordered};
use mpsafe_serializer::{OrderedSerializer, Serialized};

use super::mode::{Entry, Mode, Proof};
use super::order::{BigLock, Ifnet, Intr, IntrSerialized};
use super::{KernelOf, KernelWait, Softc};
use crate::biglock::Path;
use crate::hw::{Hardware, IntrHandler, Reg};
use crate::kernel::Kernel;

/// Marks this context (the kernel's [`Kernel::current_handler`]) as
/// running `sc`'s handler until dropped, so an entry point the stack calls
/// from `Stack::input` knows it runs inside that handler; restores the
/// mark of a handler it interrupted, if any.
struct HandlerMark<K: Kernel>(usize, PhantomData<K>);

impl<K: Kernel> HandlerMark<K> {
    fn new<H: Hardware<Kernel = K>>(sc: &Softc<H>) -> Self {
        Self(K::set_current_handler(sc.addr()), PhantomData)
    }
}

impl<K: Kernel> Drop for HandlerMark<K> {
    fn drop(&mut self) {
        K::set_current_handler(self.0);
    }
}

impl<H: Hardware> IntrHandler for Softc<H> {
    /// `em_intr`, run inside the device's interrupt gate: decides its mode
    /// once (`Core::decide`) and runs at the gate's level for that mode
    /// (`intr_barrier` waits at the same). While a mode switch has the
    /// interface paused it does nothing and claims nothing: the causes stay
    /// in `ICR`, and the switch's unmask raises them again.
    fn intr(&self) -> bool {
        let _mark = HandlerMark::new(self);
        loop {
            let Some(mode) = self.core.decide() else {
                return false;
            };
            match mode.entry(Path::Interrupt) {
                Entry::Serializer => {
                    // DragonFly: the handler runs through the serializer's
                    // handler gating, so `handler_disable` in stop is the
                    // interrupt barrier.
                    let called =
                        Ordered::<IntrSerialized, H>::declare(&*self.hw).run_inside(|mut ctx| {
                            self.core.ifnet.handler_call(&mut ctx, |s, mut ctx| {
                                self.intr_serialized(s, &mut ctx)
                            })
                        });
                    match called {
                        // Handlers disabled: the interface is stopping.
                        None => return false,
                        Some(Some(claimed)) => return claimed,
                        // The mode changed while this call waited: again.
                        Some(None) => {}
                    }
                }
                _ => {
                    return Ordered::<Intr, H>::declare(&*self.hw).run_inside(|mut ctx| {
                        let (p, _) = self.core.enter(mode, Path::Interrupt, None, &mut ctx);
                        // The parts take the big lock again where the mode
                        // asks (each counted against its own path): in
                        // `BigLock` mode under this entry's hold, a
                        // recursion no context at `BigLock` can express. So
                        // they start from a context of their own; the
                        // witness lets the holder's re-acquisitions through
                        // (the level is recursive) and checks everything
                        // else against what it sees held.
                        self.intr_locked(mode, &p, None, &mut Ctx::new())
                    });
                }
            }
        }
    }
}

impl<H: Hardware> Softc<H> {
    /// This softc's identity for [`HandlerMark`].
    fn addr(&self) -> usize {
        core::ptr::from_ref(self).addr()
    }

    /// Whether this thread is inside this interface's interrupt handler
    /// (so inside `Stack::input`, or below it).
    pub(crate) fn in_own_handler(&self) -> bool {
        KernelOf::<H>::current_handler() == self.addr()
    }

    /// Inside the serializer, where the mode cannot change: re-read, as a
    /// switch may have changed it while the handler waited to enter.
    fn intr_serialized(
        &self,
        s: &Serialized<'_, KernelWait<H>>,
        ctx: &mut Ctx<'_, Ifnet>,
    ) -> Option<bool> {
        (self.core.decide() == Some(Mode::Serialized))
            .then(|| self.intr_locked(Mode::Serialized, &Proof::Ifnet(s), Some(s), ctx))
    }

    /// The handler body in `mode` (decided once, at the top) under its
    /// entry's proof; `outer` is the ifnet guard when the handler runs
    /// inside the serializer (exactly when `mode` is `Serialized`).
    fn intr_locked<L: LockBefore<BigLock>>(
        &self,
        mode: Mode,
        proof: &Proof<'_, KernelOf<H>>,
        outer: Option<&Serialized<'_, KernelWait<H>>>,
        ctx: &mut Ctx<'_, L>,
    ) -> bool {
        self.core.check(proof);
        let icr = self.hw.read(Reg::ICR);
        if icr == 0 {
            return false;
        }
        // ICR_LSC (link state change): nothing to renegotiate here.
        if !self.core.is_running() {
            return true;
        }
        for q in 0..self.rxqs.len() {
            // Each part enters what the mode asks for it from `ctx`, and
            // takes the rx mutex (the pool, the queue mutex) from the
            // context that comes back.
            {
                let (p, mut ctx) = self.core.enter(mode, Path::Rx, outer, ctx);
                self.rxeof(q, &p, &mut ctx);
            }
            self.txeof(mode, q, outer, ctx);
            {
                let (p, mut ctx) = self.core.enter(mode, Path::RxFill, outer, ctx);
                self.rxrefill(q, &p, &mut ctx);
            }
            self.kick(mode, q, outer, &mut ctx.restrict::<BigLock>());
        }
        if outer.is_some() {
            // Inside the ifnet serializer, `transmit` from `Stack::input`
            // only queues (a start would enter the serializer again): what
            // the stack answered on any queue goes out here.
            for q in 0..self.rxqs.len() {
                self.kick(mode, q, outer, &mut ctx.restrict::<BigLock>());
            }
        }
        // Completions freed ring slots and the restarts above drained the
        // send queues: a stack waiting for room hears it now.
        for q in 0..self.rxqs.len() {
            self.stack.tx_room(q);
        }
        true
    }

    /// Tx completion for queue `q`, then a restart if the ring had filled
    /// (seed 002: "restart from an mpsafe interrupt context"), through the
    /// send queue unless inside the ifnet serializer.
    fn txeof<L: LockBefore<BigLock>>(
        &self,
        mode: Mode,
        q: usize,
        outer: Option<&Serialized<'_, KernelWait<H>>>,
        ctx: &mut Ctx<'_, L>,
    ) {
        let ifq = self.ifqs.queue(q);
        let (p, mut ctx) = self.core.enter(mode, Path::TxEof, outer, ctx);
        ifq.driver().txeof(&p, &mut ctx);
        // A restart run on this thread is a start routine, which records
        // itself at its start level (`TxRing::start`).
        if !matches!(p, Proof::Ifnet(_)) {
            ifq.restart_if_oactive();
        }
    }
}
