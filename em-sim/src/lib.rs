//! The `mpsafe-em` driver in a Linux process, on a simulated Intel 8254x:
//! the whole MP-safe design of the `mpsafe` crates, running, measured, and
//! torn down under load with every buffer accounted for.
//!
//! # What is here
//!
//! - [`device`]: a simulated 8254x. A register file behind the [`Regs`]
//!   trait (read-to-clear `ICR`, `IMS`/`IMC`, `RCTL`/`TCTL`, `RDH`/`RDT`,
//!   `TDH`/`TDT`, `MPC`), legacy 16-byte descriptors ([`desc`]) in memory
//!   shared with the device, a device thread that is the DMA engine and the
//!   wire (paced, or filling every posted descriptor), and an MSI-like
//!   interrupt thread that calls the driver through an [`IntrLine`], with
//!   `ITR` throttling. Both threads park when there is nothing to do;
//!   doorbells wake them.
//! - [`pool`]: the packet buffers ([`Pool`], the driver's
//!   [`BufferPool`](mpsafe_em::BufferPool)), each with an owner state, so a
//!   double free, DMA into a buffer the device does not own, or a leaked
//!   buffer is caught and counted.
//! - [`stdkernel`]: the driver's [`Kernel`](mpsafe_em::Kernel) in a
//!   process ([`StdKernel`]): threads for the start tasks and the refill
//!   timeout, futex waits, a blocking recursive big lock.
//! - [`hostile`]: a device that writes garbage, for testing the driver
//!   against untrusted hardware.
//! - [`harness`]: a bounded end-to-end run with a paced transmit producer,
//!   used by the demo (`cargo run --release -p mpsafe-em-demo`), the tests
//!   and the benchmark; [`measure`] and [`cpu`] are its clocks.
//!
//! # The driver, bound to this platform
//!
//! The driver's items are re-exported here, and its generic ones named for
//! this platform's buffers and big lock: [`KernelLock`], [`KernelGuard`],
//! [`EmStats`], [`Sink`], [`InputQueues`] and [`TxError`] are the driver's,
//! for [`Pool`] and [`StdBigLock`]. A test or program of this platform
//! imports from this crate alone.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use mpsafe_em_sim::{Device, DeviceConfig, Em, EmConfig, KernelLock, Mode, Pool, Sink, WireRate};
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
//! A device of your own is a [`Hardware`]
//! implementation; a register-only fake that never interrupts, enough to
//! compile against:
//!
//! ```
//! use std::sync::{Arc, Weak};
//! use mpsafe_em_sim::desc::DescRing;
//! use mpsafe_em_sim::hw::{Hardware, IntrHandler, Reg, Regs};
//! use mpsafe_em_sim::{IntrLine, Pool, StdKernel};
//!
//! struct Fake { pool: Pool, line: IntrLine }
//! impl Regs for Fake {
//!     fn read(&self, _: Reg) -> u32 { 0 }
//!     fn write(&self, _: Reg, _: u32) {}
//! }
//! impl Hardware for Fake {
//!     type Error = std::convert::Infallible;
//!     type Kernel = StdKernel;
//!     type Pool = Pool;
//!     fn queues(&self) -> usize { 1 }
//!     fn pool(&self) -> &Pool { &self.pool }
//!     fn dma_alloc(&self, n: usize) -> Result<(u64, Arc<DescRing>), Self::Error> {
//!         Ok((0x1000, Arc::new(DescRing::new(n))))
//!     }
//!     fn intr_establish(&self, h: Weak<dyn IntrHandler>) { self.line.establish(h) }
//!     fn intr_disestablish(&self) { self.line.disestablish() }
//!     fn intr_barrier(&self) { self.line.barrier() }
//! }
//! let fake = Fake { pool: Pool::new(4, 2048), line: IntrLine::new() };
//! assert_eq!(fake.dma_alloc(8).unwrap().1.capacity(), 8);
//! ```
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod cpu;
pub mod device;
pub mod harness;
pub mod hostile;
pub mod intr_line;
pub mod measure;
pub mod pool;
pub mod stdkernel;

pub use device::{Device, DeviceConfig, DeviceError, DeviceStats, WireRate};
pub use intr_line::IntrLine;
pub use pool::{BufState, Mbuf, Pool, PoolStats};
pub use stdkernel::{StdBigLock, StdDeferred, StdKernel};

pub use mpsafe_em::{
    Em, EmConfig, EmError, Entry, LockCounts, Mode, Path, Stack, TxStart, biglock, buf, desc,
    driver, hw, kernel, levels, regs,
};
pub use mpsafe_em::{Hardware, IntrHandler, Reg, Regs};

/// The driver's big lock over this process's ([`StdBigLock`]).
pub type KernelLock = mpsafe_em::KernelLock<StdBigLock>;
/// A guard of [`KernelLock`].
pub type KernelGuard<'a> = mpsafe_em::KernelGuard<'a, StdBigLock>;
/// The driver's statistics with this platform's [`PoolStats`].
pub type EmStats = mpsafe_em::EmStats<PoolStats>;
/// The driver's counting stack, freeing into a [`Pool`].
pub type Sink = mpsafe_em::Sink<Pool>;
/// The driver's input queues, freeing into a [`Pool`].
pub type InputQueues = mpsafe_em::InputQueues<Pool>;
/// What [`Em::transmit`] hands back, with an [`Mbuf`].
pub type TxError = mpsafe_em::TxError<Mbuf>;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
