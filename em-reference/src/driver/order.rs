//! The driver's lock order, declared once ([`mpsafe_order`]).
//!
//! The order is the driver's real one: **ifnet serializer → big lock → rx
//! mutex**. The ifnet serializer is the outer lock of every path that takes
//! it (the ioctls, the interrupt and the start routine in `Serialized` mode,
//! the refill timeout); the ioctls take the big lock inside it in the modes
//! that need the big lock; the rx mutex is taken inside either, never the
//! other way round. All three are acquired only through a
//! [`Ctx`](mpsafe_order::Ctx): the big lock through
//! [`KernelLock::lock_in`](crate::KernelLock::lock_in), at the top of every
//! path the mode policy puts under it (`Core::enter`, the start routine).
//!
//! The big lock is declared `(recursive)`: the interrupt holds it and runs
//! parts (rxeof, txeof, refill) and a start routine that take it again,
//! each counted against its own path, and `init` holds it across `stop`,
//! which takes it again. Those nested acquisitions go through a context
//! of their own, which the types cannot relate to the holder's; the
//! runtime witness lets the holder's re-acquisition through (it cannot
//! block) and checks every outermost one against the ifnet serializer and
//! the rx mutex. Stop drops it around the barriers ([`KernelGuard::sleep`](crate::KernelGuard::sleep)),
//! as `tsleep` drops the kernel lock, with the ifnet serializer still
//! held; it takes it back in the same order (ifnet → big lock), so the
//! drop cannot invert anything.
//!
//! The big lock cannot come *before* the ifnet serializer (issue 15's
//! example order, and OpenBSD's, whose ioctls hold the kernel lock when
//! they call into a driver): here every ioctl enters the ifnet serializer first,
//! and stop, inside it, drops and retakes the big lock around the barriers.
//! With the big lock first, an ioctl holding it and waiting for the
//! serializer would deadlock against stop retaking it; the declared order
//! makes a caller that holds the big lock and enters the ifnet serializer
//! fail to compile instead (see [`KernelLock::lock_in`](crate::KernelLock::lock_in)).
//!
//! One lock of the driver stays outside the declared order, and the order
//! says why: the **ifq start serializer** never blocks a caller, but its
//! barrier does, and the modes order it differently against the ifnet
//! serializer: stop waits for the start barrier *inside* the ifnet
//! serializer in the big-lock and MP-safe modes (ifnet → start), while in
//! `Serialized` mode the start task *enters* the ifnet serializer (start →
//! ifnet). One declaration for every mode would be a cycle; the driver
//! relies on the mode switch quiescing both (`switch.rs`), which no level
//! can express. The runtime witness sees the ifnet, big lock and rx
//! acquisitions of every mode in the tests.
//!
//! Taking the ifnet serializer under an rx mutex does not compile:
//!
//! ```compile_fail,E0277
//! use mpsafe_em::driver::order::{Ifnet, RxMutex};
//! use mpsafe_order::{Ctx, Lock, Ordered};
//! use mpsafe_serializer::Serializer;
//!
//! fn inverted<T: Lock>(rx: &Ordered<RxMutex, T>, ifnet: &Ordered<Ifnet, Serializer>) {
//!     let mut ctx = Ctx::new();
//!     let (_rx, mut ctx) = ctx.lock(rx);
//!     let _s = ctx.lock(ifnet); // RxMutex: LockBefore<Ifnet> is not implemented
//! }
//! ```
//!
//! and in the declared order it does:
//!
//! ```
//! use mpsafe_em::driver::order::{Ifnet, RxMutex};
//! use mpsafe_order::{Ctx, Lock, Ordered};
//! use mpsafe_serializer::Serializer;
//!
//! fn in_order<T: Lock>(rx: &Ordered<RxMutex, T>, ifnet: &Ordered<Ifnet, Serializer>) {
//!     let mut ctx = Ctx::new();
//!     let (_s, mut ctx) = ctx.lock(ifnet);
//!     let _rx = ctx.lock(rx);
//! }
//! ```

mpsafe_order::lock_order! {
    /// The ifnet serializer: init, stop, ioctl and the mode switch in every
    /// mode; the interrupt, the start routine and the refill timeout in
    /// `Serialized` mode.
    pub Ifnet,
    /// The big lock ([`KernelLock`](crate::KernelLock)): every path the mode
    /// policy puts under it, in `BigLock` and `RxUnlocked` modes; inside the
    /// ifnet serializer on the ioctl paths. Recursive: the interrupt holds it
    /// and runs a start routine that takes it again.
    pub BigLock (recursive),
    /// A receive ring's mutex (the `LockedRxRing` of each queue).
    pub RxMutex,
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use core::panic::AssertUnwindSafe;
    use std::panic::catch_unwind;
    use std::sync::Arc;

    use mpsafe_order::Ctx;

    use crate::hw::IntrHandler;
    use crate::{Device, DeviceConfig, Em, EmConfig, KernelLock, Mode, Pool, Sink};

    /// A callback run under an rx mutex that calls back into an ioctl (as a
    /// stack's input routine might): the witness reports the ifnet
    /// serializer taken under the rx mutex, before it would wait, in every
    /// mode, naming both locks.
    #[test]
    fn witness_reports_ifnet_under_rx_in_every_mode() {
        for mode in Mode::ALL {
            let pool = Pool::new(1024, 2048);
            let dev = Device::new(DeviceConfig::default(), pool.clone()).unwrap();
            let sink = Arc::new(Sink::new(pool.clone()));
            let em =
                Em::attach(dev, EmConfig::new(mode), Arc::new(KernelLock::new()), sink).unwrap();
            let rx = &em.sc.rxqs[0].rx;
            let err = catch_unwind(AssertUnwindSafe(|| {
                let mut ctx = Ctx::new();
                let (_rx, _) = ctx.lock(rx);
                let _ = em.up();
            }))
            .expect_err("the witness should report Ifnet under RxMutex");
            let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(msg.contains("lock order violation"), "{mode}: {msg}");
            assert!(
                msg.contains("`Ifnet`") && msg.contains("`RxMutex`"),
                "{mode}: {msg}"
            );
            assert!(
                msg.contains("driver/mod.rs") && msg.contains("driver/order.rs"),
                "{msg}"
            );
            // In order, the same driver comes up and goes down.
            em.up().unwrap();
            em.down();
        }
    }

    /// An interrupt handler called under an rx mutex (a callback that
    /// services the device from inside the ring lock): in `BigLock` mode
    /// the witness reports the big lock taken under the rx mutex before it
    /// would wait, naming both. The same handler called normally holds the
    /// big lock and takes it again for each part of its body (rxeof,
    /// txeof, refill, start): not reported, since the level is recursive.
    #[test]
    fn witness_reports_big_lock_under_rx() {
        let pool = Pool::new(1024, 2048);
        let dev = Device::new(DeviceConfig::default(), pool.clone()).unwrap();
        let sink = Arc::new(Sink::new(pool.clone()));
        let em = Em::attach(
            dev,
            EmConfig::new(Mode::BigLock),
            Arc::new(KernelLock::new()),
            sink,
        )
        .unwrap();
        em.up().unwrap();
        // Held and taken again by the same thread: quiet.
        em.sc.intr();
        let rx = &em.sc.rxqs[0].rx;
        let err = catch_unwind(AssertUnwindSafe(|| {
            let mut ctx = Ctx::new();
            let (_rx, _) = ctx.lock(rx);
            em.sc.intr();
        }))
        .expect_err("the witness should report BigLock under RxMutex");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("lock order violation"), "{msg}");
        assert!(
            msg.contains("`BigLock`") && msg.contains("`RxMutex`"),
            "{msg}"
        );
        assert!(msg.contains("driver/intr.rs"), "{msg}");
        // Nothing was taken: the driver goes down.
        em.down();
    }
}
