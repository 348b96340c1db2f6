//! The ioctl paths, all inside the ifnet serializer: init (`em_init`), stop
//! (`em_stop`) in its documented order, ring sizes, purge.

use crate::sync::Ordering;
use alloc::vec::Vec;

use mpsafe_order::{Ctx, LockBefore, Ordered, Unlocked};
use mpsafe_serializer::Serialized;

use super::config::check_ring;
use super::errors::EmError;
use super::mode::{Entry, Mode, Proof};
use super::order::{BigLock, IfqMutex, Intr, IntrSerialized, PoolMutex, Refill};
use super::stats::Counters;
use super::tx::{ifq_mutex, start_barrier};
use super::{BufOf, DeferredOf, KernelOf, KernelWait, Softc};
use crate::biglock::Path;
use crate::buf::BufferPool;
use crate::hw::{Hardware, Reg};
use crate::kernel::Deferred;
use crate::regs::{CTRL_RST, CTRL_SLU, IMS_ENABLE_MASK, RCTL_BAM, RCTL_EN, RCTL_SECRC, TCTL_EN};

impl<H: Hardware> Softc<H> {
    /// `em_init`: from a stopped device, program both units, refill, set
    /// RUNNING last, unmask, start what was queued while down. `ctx` is the
    /// context the caller entered the ifnet serializer from.
    pub(crate) fn init_locked<L: LockBefore<BigLock>>(
        &self,
        s: &Serialized<'_, KernelWait<H>>,
        ctx: &mut Ctx<'_, L>,
    ) -> Result<(), EmError> {
        self.core.check_ifnet(s);
        let (mut k, mut ctx) = self.core.enter(self.core.mode(), Path::Ioctl, Some(s), ctx);
        self.init_entered(s, &mut k, &mut ctx)
    }

    /// [`init_locked`](Self::init_locked) inside the ioctl's entry `k` (the
    /// big lock, in the modes that take it), whose context is `ctx`: stop,
    /// the rings and the refill run under the same entry, with no second
    /// acquisition of the big lock. (The refill's own path enters the same
    /// as the ioctl in every mode: [`Mode::entry`](super::Mode::entry).)
    fn init_entered(
        &self,
        s: &Serialized<'_, KernelWait<H>>,
        k: &mut Proof<'_, KernelOf<H>>,
        ctx: &mut Ctx<'_, BigLock>,
    ) -> Result<(), EmError> {
        self.stop_entered(s, k, ctx);
        self.core.bump_generation(s);
        self.hw.write(Reg::CTRL, CTRL_SLU);
        self.hw.write(Reg::ITR, self.cfg.itr());
        let rx_n = self.rx_desc.load(Ordering::Relaxed);
        let tx_n = self.tx_desc.load(Ordering::Relaxed);
        for (q, ifq) in self.ifqs.queues().iter().enumerate() {
            ifq.driver().init_locked(tx_n);
            self.rx_init_locked(q, rx_n, ctx);
        }
        self.hw.write(Reg::TCTL, TCTL_EN);
        // SECRC: the device strips the CRC. OpenBSD's em sets it only on
        // the i210 and i350 and subtracts ETHER_CRC_LEN in em_rxeof on the
        // others; this driver sets it on every chip it drives. Without it
        // QEMU's e1000 reports every frame 4 bytes longer. BAM: broadcasts
        // come in (ARP), as OpenBSD's em_initialize_receive_unit sets it; QEMU
        // filters by destination, so without it a TCP test over smoltcp in
        // the QEMU guest never got past ARP.
        self.hw.write(Reg::RCTL, RCTL_EN | RCTL_BAM | RCTL_SECRC);
        let ok = |r, bit| self.hw.read(r) & bit != 0;
        if !ok(Reg::RCTL, RCTL_EN) || !ok(Reg::TCTL, TCTL_EN) {
            self.stop_entered(s, k, ctx);
            return Err(EmError::DeviceRefused);
        }
        for q in 0..self.rxqs.len() {
            self.rxrefill(q, k, ctx);
        }
        self.go_running(s);
        Counters::bump(&self.ctr.inits);
        // Packets queued while down go out now.
        let mode = self.core.mode();
        for q in 0..self.rxqs.len() {
            self.kick_queued(mode, q, s, ctx);
        }
        Ok(())
    }

    /// The end of init: RUNNING last (a handler or start that sees it sees
    /// the rings), the send queues running, handlers enabled, unmasked.
    fn go_running(&self, s: &Serialized<'_, KernelWait<H>>) {
        self.core.set_running(s, true);
        // Unmasking ends a pause a mode switch left while it waits at its
        // barriers; the switch sees this init's generation and starts over.
        self.core.unpause(s);
        for ifq in self.ifqs.queues() {
            ifq.clear_oactive();
        }
        self.ifqs.set_running_all(true);
        if !s.handlers_enabled() {
            // Before unmasking: the first interrupt must find them on.
            s.handler_enable();
        }
        self.hw.write(Reg::IMS, IMS_ENABLE_MASK);
    }

    /// `em_stop`, in order: clear RUNNING, mask the device's interrupts, the
    /// interrupt barrier, the start barrier, reset the device, clear
    /// `oactive`, free the transmit then the receive structures. `ctx` is
    /// the context the caller entered the ifnet serializer from.
    pub(crate) fn stop_locked<L: LockBefore<BigLock>>(
        &self,
        s: &Serialized<'_, KernelWait<H>>,
        ctx: &mut Ctx<'_, L>,
    ) {
        self.core.check_ifnet(s);
        let (mut k, mut ctx) = self.core.enter(self.core.mode(), Path::Ioctl, Some(s), ctx);
        self.stop_entered(s, &mut k, &mut ctx);
    }

    /// [`stop_locked`](Self::stop_locked) inside the ioctl's entry `k`,
    /// whose context is `ctx`.
    fn stop_entered(
        &self,
        s: &Serialized<'_, KernelWait<H>>,
        k: &mut Proof<'_, KernelOf<H>>,
        ctx: &mut Ctx<'_, BigLock>,
    ) {
        self.core.bump_generation(s);
        let was_running = self.core.is_running();
        // 1. Clear RUNNING: new handler passes and starts do nothing.
        self.core.set_running(s, false);
        self.ifqs.set_running_all(false);
        // Disable interrupts (em_disable_intr).
        self.hw.write(Reg::IMC, !0);
        // 2. Interrupt barrier, 3. start barrier.
        self.quiesce(k);
        // Reset the device (em_reset_hw): disable the receive and transmit
        // units, then CTRL.RST; when these writes return the device no
        // longer touches the rings. Both unit writes are needed, as
        // em_reset_hw makes them: QEMU's e1000 treats CTRL.RST as a bit that
        // only clears itself and leaves RCTL.EN, TCTL.EN and the ring
        // registers alone, so a stopped receiver kept DMAing arriving frames
        // into the buffers `rx_free` is about to free and the pool hands out
        // again (frames lost without a counter, buffers written after they
        // were freed). After the barriers, so that these are the last
        // register writes of this run: a handler or start still running
        // before them writes RDT or TDT, and on QEMU's e1000 an RDT write on
        // a receive-disabled device drops every frame QEMU holds for it,
        // without a counter (the guide's QEMU chapter).
        self.hw.write(Reg::RCTL, 0);
        self.hw.write(Reg::TCTL, 0);
        self.hw.write(Reg::CTRL, CTRL_RST);
        // 4. Clear oactive. 5. Free transmit, then receive structures.
        for ifq in self.ifqs.queues() {
            ifq.clear_oactive();
        }
        for ifq in self.ifqs.queues() {
            ifq.driver().free_locked(ctx);
        }
        for q in 0..self.rxqs.len() {
            self.rx_free_locked(q, ctx);
        }
        if was_running {
            Counters::bump(&self.ctr.stops);
        }
    }

    /// The interrupt and start barriers, then the refill timeout's (which
    /// the interrupt may have armed), as the mode's entry for ioctl allows
    /// them:
    ///
    /// - inside the ifnet serializer that also serializes the interrupt and
    ///   start ([`Entry::Serializer`]): `handler_disable` is the interrupt
    ///   barrier (no handler runs while we are inside; one that enters
    ///   after us is skipped) and holding the serializer is the start
    ///   barrier (start bodies run only inside it);
    /// - under the big lock: the interrupt gate's barrier and each queue's
    ///   start barrier, with the big lock dropped as `tsleep` drops it (a
    ///   handler or start waiting for the lock must get it to finish);
    /// - otherwise the same two barriers, directly.
    ///
    /// The barriers wait from a context of their own: stop's is borrowed by
    /// its entry `k`, and says the big lock is held, which it is not while
    /// `sleep` has it released. The witness checks each wait against what
    /// it sees held (the ifnet serializer; not the big lock, whose release
    /// `sleep` records).
    pub(crate) fn quiesce(&self, k: &mut Proof<'_, KernelOf<H>>) {
        let barriers = || self.barriers(&mut Ctx::new());
        match k {
            // The refill timeout never waits for the serializer (it tries
            // it), so waiting for the timeout inside it is safe.
            Proof::Ifnet(s) => {
                s.handler_disable();
                Ctx::new().wait_with(self.refill_level(), |t| t.del_barrier());
            }
            Proof::Big(k) => k.sleep(barriers),
            _ => barriers(),
        }
    }

    /// The refill timeout at its level ([`Refill`]).
    fn refill_level(&self) -> &Ordered<Refill, DeferredOf<H>> {
        Ordered::declare(&self.deferred().refill)
    }

    /// The interrupt gate's barrier, each queue's start barrier, the refill
    /// timeout's barrier, each waited for at the level of what runs inside
    /// it in the current mode (the handler and the start routine enter the
    /// ifnet serializer in `Serialized` mode: [`start_barrier`]). From a
    /// context holding nothing of the order: the mode switch's, or stop's
    /// own (see [`quiesce`](Self::quiesce)).
    pub(crate) fn barriers(&self, ctx: &mut Ctx<'_, Unlocked>) {
        let mode = self.core.mode();
        let hw = &*self.hw;
        let intr_barrier = |_: &H| hw.intr_barrier();
        match mode.entry(Path::Interrupt) {
            Entry::Serializer => {
                ctx.wait_with(Ordered::<IntrSerialized, H>::declare(hw), intr_barrier)
            }
            Entry::BigLock | Entry::Unlocked => {
                ctx.wait_with(Ordered::<Intr, H>::declare(hw), intr_barrier)
            }
        }
        for ifq in self.ifqs.queues() {
            start_barrier(ifq, mode, ctx);
        }
        ctx.wait_with(self.refill_level(), |t| t.del_barrier());
    }

    /// `SIOCSIFRXR`-like: new ring sizes, applied by re-initialising a
    /// running interface.
    pub(crate) fn set_ring_sizes_locked<L: LockBefore<BigLock>>(
        &self,
        s: &Serialized<'_, KernelWait<H>>,
        rx: u32,
        tx: u32,
        ctx: &mut Ctx<'_, L>,
    ) -> Result<(), EmError> {
        self.core.check_ifnet(s);
        check_ring("rx", rx)?;
        check_ring("tx", tx)?;
        if rx <= self.cfg.rx_lwm {
            return Err(EmError::Field {
                field: "rx_lwm",
                value: self.cfg.rx_lwm.into(),
                accepts: "less than the new rx ring size",
            });
        }
        let (mut k, mut ctx) = self.core.enter(self.core.mode(), Path::Ioctl, Some(s), ctx);
        self.rx_desc.store(rx, Ordering::Relaxed);
        self.tx_desc.store(tx, Ordering::Relaxed);
        if self.core.is_running() {
            self.init_entered(s, &mut k, &mut ctx)?;
        }
        Ok(())
    }

    /// `if_down`'s purge: whatever the send queues hold is freed and
    /// counted, the queue mutex and then the pool's taken from `ctx`.
    pub(crate) fn purge<L: LockBefore<IfqMutex> + LockBefore<PoolMutex>>(
        &self,
        ctx: &mut Ctx<'_, L>,
    ) {
        for ifq in self.ifqs.queues() {
            let purged = ctx.lock(ifq_mutex(ifq.queue())).0.purge();
            let purged: Vec<BufOf<H>> = purged.collect();
            self.ctr
                .tx_purged
                .fetch_add(purged.len() as u64, Ordering::Relaxed);
            self.pool().free_all_in(ctx, purged);
        }
    }

    /// [`kick`](Self::kick) for init and a mode switch's resume, inside the
    /// ifnet serializer: what waited for them goes out now, whatever the
    /// bundle threshold ([`EmConfig::tx_bundle`](super::EmConfig::tx_bundle)),
    /// as [`Em::set_mode`](super::Em::set_mode) promises; a start that
    /// bundling deferred (at the kick, or at a `transmit` while the queues
    /// were stopped) runs here. In [`Mode::Serialized`] the kick ran the body
    /// itself, and a deferred start would enter the serializer we hold: it
    /// waits for the next transmit or `flush_tx`, which find the queue as
    /// the body left it.
    pub(crate) fn kick_queued<L: LockBefore<IfqMutex>>(
        &self,
        mode: Mode,
        q: usize,
        s: &Serialized<'_, KernelWait<H>>,
        ctx: &mut Ctx<'_, L>,
    ) {
        self.kick(mode, q, Some(s), ctx);
        if mode.entry(Path::Start) != Entry::Serializer {
            self.ifqs.queue(q).flush_bundle();
        }
    }

    /// Asks queue `q` to start after init or completion, in `mode` (the
    /// caller's decided mode). Inside the ifnet
    /// serializer in [`Mode::Serialized`](super::Mode::Serialized) the start
    /// body runs right here with that serializer as its proof: going
    /// through the send queue would enter the serializer again, which is
    /// not recursive. Otherwise the send queue's serialized start runs it
    /// (never waiting: a busy start serializer hands the work to its
    /// owner), and a routine run on this thread records itself at its start
    /// level.
    pub(crate) fn kick<L: LockBefore<IfqMutex>>(
        &self,
        mode: Mode,
        q: usize,
        outer: Option<&Serialized<'_, KernelWait<H>>>,
        ctx: &mut Ctx<'_, L>,
    ) {
        let ifq = self.ifqs.queue(q);
        match (mode.entry(Path::Start), outer) {
            (Entry::Serializer, Some(s)) => {
                if ifq.is_oactive() || !ifq.is_empty() {
                    ifq.clear_oactive();
                    ifq.driver()
                        .start_locked(ifq.queue(), &Proof::Ifnet(s), ctx);
                }
            }
            _ => {
                ifq.restart_if_oactive();
                if !ifq.is_empty() {
                    ifq.start();
                }
            }
        }
    }
}
