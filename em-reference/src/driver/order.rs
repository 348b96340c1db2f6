//! The driver's lock order, declared once ([`mpsafe_order`]).
//!
//! The ifnet serializer is the outer lock of every path that takes it (the
//! ioctls, the interrupt and the start routine in `Serialized` mode, the
//! refill timeout), and the rx mutex is taken inside it, never the other way
//! round; both are acquired only through a [`Ctx`](mpsafe_order::Ctx).
//!
//! Two locks of the driver stay outside the declared order, and the order
//! says why:
//!
//! - the **big lock** is recursive (the interrupt holds it and runs a start
//!   routine that takes it again) and dropped around the barriers in stop,
//!   as `tsleep` drops the kernel lock; a level cannot describe a lock that
//!   is taken again from inside itself. Its place is between the two:
//!   taken inside the ifnet serializer (ioctls), around the rx mutex.
//! - the **ifq start serializer** never blocks a caller, but its barrier
//!   does, and the two modes order it differently against the ifnet
//!   serializer: stop waits for the start barrier *inside* the ifnet
//!   serializer in the big-lock and MP-safe modes (ifnet → start), while in
//!   `Serialized` mode the start task *enters* the ifnet serializer (start →
//!   ifnet). One declaration for every mode would be a cycle; the driver
//!   relies on the mode switch quiescing both (`switch.rs`), which no level
//!   can express. The runtime witness sees the ifnet and rx acquisitions of
//!   every mode in the tests.

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
    /// A receive ring's mutex (the `LockedRxRing` of each queue).
    pub RxMutex,
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use core::panic::AssertUnwindSafe;
    use std::panic::catch_unwind;
    use std::sync::Arc;

    use mpsafe_order::Ctx;

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
            let rx = &em.sc.queues[0].rxq.rx;
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
}
