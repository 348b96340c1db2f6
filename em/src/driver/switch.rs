//! The runtime mode switch (seed 001: `kern.intr_mpsafe` "can be set to 1
//! at any time"): quiesce every path whose protection changes, switch,
//! resume. Nothing queued is dropped and no buffer moves.
//!
//! 1. Inside the ifnet serializer, *pause*: mark the mode word paused
//!    (`Core::pause`), mask the device's interrupts, stop the send queues'
//!    starts (their packets stay queued), and in [`Mode::Serialized`]
//!    disable the serializer's handlers.
//! 2. Outside every lock, wait at the interrupt gate's barrier, each send
//!    queue's start barrier and the refill timeout's barrier. Outside,
//!    because a path of the old mode may be waiting for the serializer (a
//!    `Serialized` handler or start task) or the big lock: it gets in,
//!    finds the pause (or the old mode, which is still the current one) and
//!    finishes.
//! 3. Inside the serializer again: if an init or stop ran meanwhile (they
//!    may have undone the pause), start over; else store the new mode and
//!    *resume*: the send queues running, handlers enabled for `Serialized`,
//!    a refill, interrupts unmasked, the queues started.
//!
//! Every path decides its mode once, at its top, inside its gate
//! (`Core::decide`: the interrupt gate, the timeout's gate, the send
//! queue's start serializer) and hands that mode to its parts as a value;
//! they never read the word again. A path that enters after the barriers
//! finds the pause and does nothing: a stray interrupt on a shared line, one
//! raised just before the mask, or a device's check-then-deliver gap, all
//! of which the mask alone does not stop. The ones that wait for the
//! serializer re-read the mode inside it (where it cannot change), so one
//! that waited across a switch runs under the mode it finds.
//!
//! Every start body runs inside its send queue's start serializer, in every
//! mode (the lock-held entry points included), so the start barriers of
//! step 2 cover all of them; in [`Mode::Serialized`] the ones run by the
//! interrupt, init and `start_serialized` run inside the ifnet serializer,
//! which the switch holds when it stores the mode.

use mpsafe_order::Ctx;
use mpsafe_serializer::Serialized;

use super::mode::Mode;
use super::order::Ifnet;
use super::stats::Counters;
use super::{EmError, KernelWait, Softc};
use crate::biglock::Path;
use crate::hw::{Hardware, Reg};
use crate::regs::IMS_ENABLE_MASK;

impl<H: Hardware> Softc<H> {
    /// [`Em::set_mode`](super::Em::set_mode).
    pub(crate) fn set_mode(&self, mode: Mode) -> Result<(), EmError> {
        let _one_at_a_time = self.core.switch.enter();
        let mut ctx = Ctx::new();
        loop {
            let generation = {
                let (s, _) = ctx.lock(&self.core.ifnet);
                if self.core.mode() == mode {
                    return Ok(());
                }
                self.pause_locked(&s)
            };
            // Outside every lock (of the order; `_one_at_a_time` is taken
            // by nothing else): waiting at a start barrier in any mode.
            self.barriers(&mut ctx);
            let (s, mut ctx) = ctx.lock(&self.core.ifnet);
            if self.core.generation(&s) == generation {
                self.core.set_mode(&s, mode);
                self.resume_locked(&s, &mut ctx);
                Counters::bump(&self.ctr.mode_switches);
                return Ok(());
            }
        }
    }

    /// Step 1: returns the init/stop generation seen.
    fn pause_locked(&self, s: &Serialized<'_, KernelWait<H>>) -> u64 {
        // Before the barriers: every path that enters after them sees it.
        self.core.pause(s);
        self.hw.write(Reg::IMC, !0);
        self.ifqs.set_running_all(false);
        if self.core.mode() == Mode::Serialized {
            s.handler_disable();
        }
        self.core.generation(s)
    }

    /// Step 3, under the new mode: undo the pause if the interface runs.
    fn resume_locked(&self, s: &Serialized<'_, KernelWait<H>>, ctx: &mut Ctx<'_, Ifnet>) {
        if !self.core.is_running() {
            return;
        }
        self.ifqs.set_running_all(true);
        if self.core.mode() == Mode::Serialized && !s.handlers_enabled() {
            s.handler_enable();
        }
        let mode = self.core.mode();
        for q in 0..self.rxqs.len() {
            let (p, mut ctx) = self.core.enter(mode, Path::RxFill, Some(s), ctx);
            self.rxrefill(q, &p, &mut ctx);
        }
        self.hw.write(Reg::IMS, IMS_ENABLE_MASK);
        for q in 0..self.rxqs.len() {
            self.kick_queued(mode, q, s, ctx);
        }
    }
}
