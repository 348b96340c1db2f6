//! The `mpsafe-em` driver in this kernel: the same code the Linux hosts
//! (`mpsafe-em-sim`, `mpsafe-em-uio`) run, generic over what this kernel
//! supplies.
//!
//! - [`kernel`]: this kernel as the driver's `Kernel` (its IPL mutexes,
//!   sleeping wait, big lock, tasks and timeouts, ticks, current handler);
//! - [`pool`]: packet buffers in DMA memory (`BufferPool`, `Buffer`);
//! - [`device`]: QEMU's e1000 (`Hardware`: BAR 0 registers, descriptor
//!   rings, the INTx line through the IOAPIC);
//! - [`traffic`]: the frames and the stack that checks them;
//! - [`run`]: the guest run in every mode and while switching modes.

pub mod device;
pub mod kernel;
pub mod pool;
pub(crate) mod run;
pub mod traffic;
