//! The driver's lock levels, declared once ([`mpsafe_order::lock_order!`]),
//! at the bottom of the crate: this module imports nothing of the crate, so
//! the big lock ([`biglock`](crate::biglock)) and the buffer pool
//! ([`buf`](crate::buf)) take their levels from here without importing
//! the driver, and the driver imports them, with no circle. The order, with
//! what each level is and what is held when it is taken, is documented
//! (and its inversions checked) in [`driver::order`](crate::driver::order),
//! which re-exports these.

mpsafe_order::lock_order! {
    /// A send queue's start routine in `Serialized` mode, run inside the
    /// queue's start serializer: it enters the ifnet serializer. Its
    /// barrier is waited for only with nothing held (the mode switch; stop
    /// in this mode waits for no start barrier: holding the ifnet
    /// serializer is the barrier).
    pub IfqStartSerialized,
    /// The interrupt handler in `Serialized` mode, run inside the device's
    /// interrupt gate: it enters the ifnet serializer (`handler_call`). Its
    /// barrier (the gate's) is waited for only with nothing held (the mode
    /// switch; stop in this mode disables the serializer's handlers).
    pub IntrSerialized,
    /// The ifnet serializer: init, stop, ioctl and the mode switch in every
    /// mode; the interrupt, the start routine and the refill timeout in
    /// `Serialized` mode.
    pub Ifnet,
    /// A send queue's start routine in the other modes, run inside the
    /// queue's start serializer (by whichever thread asked for a start);
    /// stop waits for its barrier inside the ifnet serializer, with the
    /// big lock released.
    pub IfqStart,
    /// The interrupt handler in the other modes, run inside the device's
    /// interrupt gate; stop waits for the gate's barrier inside the ifnet
    /// serializer, with the big lock released.
    pub Intr,
    /// The refill timeout's callback, run inside the timeout's gate; stop
    /// waits for it (`timeout_del_barrier`) inside the ifnet serializer. In
    /// `Serialized` mode it only tries that serializer, which never waits.
    pub Refill,
    /// The big lock ([`KernelLock`](crate::KernelLock)): every path the mode
    /// policy puts under it, in `BigLock` and `RxUnlocked` modes; inside the
    /// ifnet serializer on the ioctl paths, inside a start routine.
    /// Recursive: the interrupt holds it and runs parts that take it again.
    pub BigLock (recursive),
    /// A receive ring's mutex (the `LockedRxRing` of each queue).
    pub RxMutex,
    /// A send queue's mutex (`ifq_mtx`, the lock inside each `IfQueue`'s
    /// `SendQueue`): the start routine dequeues under it, transmit
    /// enqueues, down purges.
    pub IfqMutex,
    /// The buffer pool's free-list mutex ([`Pool`](crate::Pool)): refill
    /// allocates under the rx mutex; completion and teardown free.
    pub PoolMutex,
}
