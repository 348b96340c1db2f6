//! The ioctl paths, all inside the ifnet serializer: init (`em_init`), stop
//! (`em_stop`) in its documented order, ring sizes, purge.

use std::sync::atomic::Ordering;

use mpsafe_order::Ctx;
use mpsafe_serializer::Serialized;

use super::Softc;
use super::config::check_ring;
use super::errors::EmError;
use super::mode::{Entry, Proof};
use super::stats::Counters;
use crate::biglock::Path;
use crate::hw::{Hardware, Reg};
use crate::pool::Mbuf;
use crate::regs::{CTRL_RST, CTRL_SLU, IMS_ENABLE_MASK, RCTL_EN, RCTL_SECRC, TCTL_EN};

impl<H: Hardware> Softc<H> {
    /// `em_init`: from a stopped device, program both units, refill, set
    /// RUNNING last, unmask, start what was queued while down.
    pub(crate) fn init_locked(&self, s: &Serialized<'_>) -> Result<(), EmError> {
        self.core.check_ifnet(s);
        let mut ctx = Ctx::new();
        let _k = self.core.enter(Path::Ioctl, Some(s), &mut ctx);
        self.stop_locked(s);
        self.core.bump_generation(s);
        self.hw.write(Reg::CTRL, CTRL_SLU);
        self.hw.write(Reg::ITR, self.cfg.itr());
        let rx_n = self.rx_desc.load(Ordering::Relaxed);
        let tx_n = self.tx_desc.load(Ordering::Relaxed);
        for (q, ifq) in self.ifqs.queues().iter().enumerate() {
            ifq.driver().init_locked(tx_n);
            self.rx_init_locked(q, rx_n, &mut Ctx::new());
        }
        self.hw.write(Reg::TCTL, TCTL_EN);
        // SECRC: strip the CRC, as em does on the 82543 and later; without
        // it QEMU's e1000 reports every frame 4 bytes longer.
        self.hw.write(Reg::RCTL, RCTL_EN | RCTL_SECRC);
        let ok = |r, bit| self.hw.read(r) & bit != 0;
        if !ok(Reg::RCTL, RCTL_EN) || !ok(Reg::TCTL, TCTL_EN) {
            self.stop_locked(s);
            return Err(EmError::DeviceRefused);
        }
        for q in 0..self.rxqs.len() {
            self.rxrefill(
                q,
                &self.core.enter(Path::RxFill, Some(s), &mut Ctx::new()),
                &mut Ctx::new(),
            );
        }
        self.go_running(s);
        Counters::bump(&self.ctr.inits);
        // Packets queued while down go out now.
        for q in 0..self.rxqs.len() {
            self.kick(q, Some(s));
        }
        Ok(())
    }

    /// The end of init: RUNNING last (a handler or start that sees it sees
    /// the rings), the send queues running, handlers enabled, unmasked.
    fn go_running(&self, s: &Serialized<'_>) {
        self.core.set_running(s, true);
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
    /// `oactive`, free the transmit then the receive structures.
    pub(crate) fn stop_locked(&self, s: &Serialized<'_>) {
        self.core.check_ifnet(s);
        let mut ctx = Ctx::new();
        let mut k = self.core.enter(Path::Ioctl, Some(s), &mut ctx);
        self.core.bump_generation(s);
        let was_running = self.core.is_running();
        // 1. Clear RUNNING: new handler passes and starts do nothing.
        self.core.set_running(s, false);
        self.ifqs.set_running_all(false);
        // Disable interrupts (em_disable_intr).
        self.hw.write(Reg::IMC, !0);
        // 2. Interrupt barrier, 3. start barrier.
        self.quiesce(&mut k);
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
            ifq.driver().free_locked();
        }
        for q in 0..self.rxqs.len() {
            self.rx_free_locked(q, &mut Ctx::new());
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
    pub(crate) fn quiesce(&self, k: &mut Proof<'_>) {
        let barriers = || self.barriers();
        match k {
            // The refill timeout never waits for the serializer (it tries
            // it), so waiting for the timeout inside it is safe.
            Proof::Ifnet(s) => {
                s.handler_disable();
                self.refill.del_barrier();
            }
            Proof::Big(k) => k.sleep(barriers),
            _ => barriers(),
        }
    }

    /// The interrupt gate's barrier, each queue's start barrier, the refill
    /// timeout's barrier.
    pub(crate) fn barriers(&self) {
        self.hw.intr_barrier();
        self.ifqs
            .barrier_all()
            .expect("never called from inside the start routine");
        self.refill.del_barrier();
    }

    /// `SIOCSIFRXR`-like: new ring sizes, applied by re-initialising a
    /// running interface.
    pub(crate) fn set_ring_sizes_locked(
        &self,
        s: &Serialized<'_>,
        rx: u32,
        tx: u32,
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
        let mut ctx = Ctx::new();
        let _k = self.core.enter(Path::Ioctl, Some(s), &mut ctx);
        self.rx_desc.store(rx, Ordering::Relaxed);
        self.tx_desc.store(tx, Ordering::Relaxed);
        if self.core.is_running() {
            self.init_locked(s)?;
        }
        Ok(())
    }

    /// `if_down`'s purge: whatever the send queues hold is freed and counted.
    pub(crate) fn purge(&self) {
        for purged in self.ifqs.purge_all() {
            let purged: Vec<Mbuf> = purged.collect();
            self.ctr
                .tx_purged
                .fetch_add(purged.len() as u64, Ordering::Relaxed);
            self.pool.free_all(purged);
        }
    }

    /// Asks queue `q` to start after init or completion. Inside the ifnet
    /// serializer in [`Mode::Serialized`](super::Mode::Serialized) the start
    /// body runs right here with that serializer as its proof: going
    /// through the send queue would enter the serializer again, which is
    /// not recursive. Otherwise the send queue's serialized start runs it.
    pub(crate) fn kick(&self, q: usize, outer: Option<&Serialized<'_>>) {
        let ifq = self.ifqs.queue(q);
        match (self.core.mode().entry(Path::Start), outer) {
            (Entry::Serializer, Some(s)) => {
                if ifq.is_oactive() || !ifq.is_empty() {
                    ifq.clear_oactive();
                    ifq.driver().start_locked(ifq.queue(), &Proof::Ifnet(s));
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
