//! smoltcp over an MP-safe driver (placeholder docs, rewritten below).

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![warn(unsafe_op_in_unsafe_fn)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod buffers;
mod device;
mod doorbell;
mod queues;
mod sync;

pub use buffers::{Buffers, PoolError, PoolStats, VecPool};
pub use device::{
    Config, ConfigError, Device, DeviceStats, ETHERNET_MTU, MIN_MTU, RxToken, TxToken,
};
#[cfg(feature = "std")]
pub use doorbell::Signal;
pub use doorbell::{Doorbell, Notify, WakeOnStart};
pub use queues::{Delegated, RxQueue, TxQueue};

pub use mpsafe_ifqueue;
pub use smoltcp;
