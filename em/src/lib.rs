//! An em(4) driver for the Intel 8254x, written on the `mpsafe` primitives:
//! the whole MP-safe design of the seeds, in one driver that a kernel links.
//!
//! `#![no_std]` with `alloc`. The driver names no device, no buffer type and
//! no kernel: it is generic over
//!
//! - [`Hardware`]: registers, DMA memory, the interrupt line, and which
//!   [`BufferPool`] and [`Kernel`] go with the device;
//! - [`Kernel`]: the services it takes from its host: the mutexes it shares
//!   with its interrupt handler, how it sleeps, the big lock
//!   ([`RawBigLock`]), tasks and timeouts ([`Deferred`]), the clock;
//! - [`BufferPool`] and [`Buffer`]: the packet buffers, in memory the device
//!   can reach.
//!
//! It runs in four modes chosen at attach and switchable under load
//! ([`Em::set_mode`]): [`Mode::BigLock`], [`Mode::RxUnlocked`] (seed 000),
//! [`Mode::Mpsafe`] (seed 002) and [`Mode::Serialized`] (seed 001), composed
//! from `mpsafe-rxring` ([`LockedRxRing`](mpsafe_rxring::LockedRxRing) as
//! the rx mutex), `mpsafe-ifqueue` ([`IfQueue`](mpsafe_ifqueue::IfQueue)
//! start, restart, barrier), `mpsafe-serializer` (the ifnet
//! [`Serializer`](mpsafe_serializer::Serializer), the tx completion
//! [`Combiner`](mpsafe_serializer::Combiner)) and the lock order of
//! `mpsafe-order` ([`driver::order`]). A counted, recursive [`KernelLock`]
//! shows which paths still take the big lock.
//!
//! # Where it runs
//!
//! | crate | device | kernel services |
//! |---|---|---|
//! | `mpsafe-em-sim` | a simulated 8254x (and a hostile one) | threads for the interrupt and the timeouts, futex waits |
//! | `mpsafe-em-uio` | a real 8254x through Linux `uio_pci_generic` | the same |
//! | `examples/kernel` | QEMU's e1000 | a bare-metal SMP kernel: IOAPIC interrupts, IPL-raising spin mutexes, LAPIC timer |
//!
//! `mpsafe-em-sim`'s crate documentation starts with a whole run (attach,
//! up, a packet looped back, down with every buffer back), and the demo
//! (`cargo run --release -p mpsafe-em-demo`) measures each mode.
//!
//! # The teardown order
//!
//! [`Em::stop`] clears RUNNING, masks the device's interrupts, waits at the
//! interrupt barrier and the start barrier (in the big-lock modes with the
//! big lock dropped, as `tsleep` drops it), resets the device (synchronous:
//! no DMA once it returns, and the last register write of the run, so no
//! late `RDT` or `TDT` write reaches a reset device), clears `oactive`, frees
//! the transmit ring,
//! then tears the rx ring accounting down with `init(0, 0)` under the rx
//! mutex before freeing the receive buffers outside it (seed 000).
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;

pub mod biglock;
pub mod buf;
pub mod desc;
pub mod driver;
pub mod hw;
pub mod kernel;
pub mod levels;
pub mod regs;
mod sync;

pub use biglock::{KernelGuard, KernelLock, LockCounts, Path, RawBigLock};
pub use buf::{Buffer, BufferPool, Ring};
pub use driver::{
    BufOf, Em, EmConfig, EmError, EmStats, Entry, IfnetOf, InputQueues, KernelGuardOf,
    KernelLockOf, Mode, PoolStatsOf, Sink, Stack, TxError, TxStart,
};
pub use hw::{Hardware, IntrHandler};
pub use kernel::{Deferred, Kernel};
pub use regs::{Reg, Regs};
