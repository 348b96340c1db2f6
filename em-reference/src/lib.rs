//! Reference em(4) driver on a simulated Intel 8254x NIC.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

pub mod biglock;
pub mod cpu;
pub mod desc;
pub mod device;
pub mod driver;
pub mod harness;
pub mod pool;
pub mod regs;

pub use biglock::{KernelGuard, KernelLock, LockCounts, Path};
pub use device::{Device, DeviceConfig, DeviceError, DeviceStats, IntrHandler, WireRate};
pub use driver::{Em, EmConfig, EmError, EmStats, Mode, Sink, Stack, TxError};
pub use pool::{BufState, Mbuf, Pool, PoolStats};
pub use regs::{Reg, Regs};
