//! Reference em(4) driver on a simulated Intel 8254x NIC: the whole MP-safe
//! design of the `mpsafe` crates, running, measured, and torn down under load
//! with every buffer accounted for.
//!
//! # What is here
//!
//! - [`device`]: a simulated 8254x. A register file behind the [`Regs`]
//!   trait (read-to-clear `ICR`, `IMS`/`IMC`, `RCTL`/`TCTL`, `RDH`/`RDT`,
//!   `TDH`/`TDT`, `MPC`), legacy 16-byte descriptors ([`desc`]) in memory
//!   shared with the device, a device thread that is the DMA engine and the
//!   wire (paced, or filling every posted descriptor), and an MSI-like
//!   interrupt thread that calls the driver through an
//!   [`mpsafe_barrier::Gate`], with `ITR` throttling. Both threads park when
//!   there is nothing to do; doorbells wake them.
//! - [`pool`]: the packet buffers, each with an owner state, so a double
//!   free, DMA into a buffer the device does not own, or a leaked buffer is
//!   caught and counted.
//! - [`hw`]: the seam the driver is generic over ([`Hardware`]: registers,
//!   DMA memory, the interrupt); [`hostile`]: a device that writes garbage,
//!   for testing the driver against untrusted hardware.
//! - [`driver`]: the driver in four modes chosen at attach and switchable
//!   under load ([`Em::set_mode`]), [`Mode::BigLock`], [`Mode::RxUnlocked`]
//!   (seed 000), [`Mode::Mpsafe`] (seed 002) and [`Mode::Serialized`] (seed
//!   001),
//!   composed from `mpsafe-rxring` ([`LockedRxRing`](mpsafe_rxring::LockedRxRing)
//!   as the rx mutex), `mpsafe-ifqueue` ([`IfQueue`](mpsafe_ifqueue::IfQueue)
//!   start, restart, barrier), `mpsafe-barrier` (the interrupt gate) and
//!   `mpsafe-serializer` (the ifnet [`Serializer`](mpsafe_serializer::Serializer),
//!   the tx completion [`Combiner`](mpsafe_serializer::Combiner)). A counted,
//!   recursive [`KernelLock`] shows which paths still take the big lock.
//! - [`harness`]: a bounded end-to-end run with a paced transmit producer,
//!   used by the demo binary (`cargo run --release -p mpsafe-em`), the tests
//!   and the benchmark.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use mpsafe_em::{Device, DeviceConfig, Em, EmConfig, KernelLock, Mode, Pool, Sink, WireRate};
//!
//! let pool = Pool::new(8192, 2048);
//! let dev = Device::new(
//!     DeviceConfig { wire: WireRate::Off, loopback: true, ..DeviceConfig::default() },
//!     pool.clone(),
//! )?;
//! let stack = Arc::new(Sink::new(pool.clone()));
//! let em = Em::attach(dev.clone(), EmConfig::new(Mode::Mpsafe), Arc::new(KernelLock::new()), stack.clone())?;
//! em.up()?;
//!
//! let mut m = pool.alloc().expect("free buffer");
//! m.fill(60, 42);
//! em.transmit(0, m)?; // looped back by the device, received by the stack
//! while stack.packets() + dev.stats().missed == 0 {
//!     std::thread::sleep(std::time::Duration::from_millis(1));
//! }
//!
//! em.down(); // clear RUNNING, intr barrier, start barrier, free rings
//! let s = em.stats();
//! assert_eq!((s.pool.in_use(), s.pool.leaked), (0, 0));
//! assert_eq!(s.big_lock.total(), 0); // Mpsafe: never took the big lock
//! # drop(em);
//! # dev.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod biglock;
pub mod cli;
pub mod cpu;
pub mod desc;
pub mod device;
pub mod driver;
pub mod harness;
pub mod hostile;
pub mod hw;
pub mod levels;
pub mod measure;
pub mod plot;
pub mod pool;
pub mod regs;
pub mod report;
#[cfg(all(feature = "uio", target_os = "linux"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "uio", target_os = "linux"))))]
pub mod uio;

pub use biglock::{KernelGuard, KernelLock, LockCounts, Path};
pub use device::{Device, DeviceConfig, DeviceError, DeviceStats, WireRate};
pub use driver::{
    Em, EmConfig, EmError, EmStats, Entry, InputQueues, Mode, Sink, Stack, TxError, TxStart,
};
pub use hw::{Hardware, IntrHandler, IntrLine};
pub use pool::{BufState, Mbuf, Pool, PoolStats};
pub use regs::{Reg, Regs};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
