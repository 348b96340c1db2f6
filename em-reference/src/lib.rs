//! Reference em(4) driver on a simulated Intel 8254x NIC.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

pub mod cpu;
pub mod desc;
pub mod device;
mod gate;
pub mod pool;
pub mod regs;

pub use device::{Device, DeviceConfig, DeviceError, DeviceStats, IntrHandler, WireRate};
pub use pool::{BufState, Mbuf, Pool, PoolStats};
pub use regs::{Reg, Regs};
