//! # The mpsafe guide
//!
//! How to take a network driver, and the stack above it, off the big kernel
//! lock with the primitives of the mpsafe workspace. Each module of this crate
//! is a chapter; it has no code of its own, and every example in it is a
//! doctest compiled against the real crates.
//!
//! The design follows four mailing-list messages, numbered as the
//! [seed table](why#the-four-seeds) numbers them:
//! [seed 000](why#seed-000) (OpenBSD em(4) rx without the kernel lock, 2015),
//! [seed 001](why#seed-001) (DragonFly's MPSAFE network interrupt, 2005),
//! [seed 002](why#seed-002) (OpenBSD's `if_start` serialisation, 2015) and
//! [seed 003](why#seed-003) (NetBSD's SMP-safe driver plan, 2005).
//!
//! 1. [Why](why): the big-lock era, the four seeds, and what today's
//!    OpenBSD does differently.
//! 2. [The serializers](serializer): the combining, task and blocking
//!    serializers (`mpsafe-serializer`).
//! 3. [Receive ring watermarks](rxring): `if_rxring` and the
//!    [seed 000](why#seed-000) receive path (`mpsafe-rxring`).
//! 4. [Barriers](barrier): the completion, the interrupt gate and the start
//!    barrier (`mpsafe-barrier`).
//! 5. [Interface queues](ifqueue): the send queue and its disciplines, the
//!    serialized start, the input queue (`mpsafe-ifqueue`).
//! 6. [Interrupt context and IPL](interrupts): which primitive may run in a
//!    hard or soft interrupt, a threaded handler or a thread; locks that
//!    raise the IPL, and preemption under them; the context of each
//!    kernel's timeouts; a kernel `Wait`; shared INTx lines and a
//!    per-interrupt budget; DMA ordering before the doorbell.
//! 7. [Multiqueue and MSI-X](multiqueue): a gate and a handler per vector,
//!    MSI-X vectors, CPUs and auto-masking, per-ring send and input queues.
//! 8. [Writing an MPSAFE driver](driver): the reference em(4) driver's rx,
//!    tx, interrupt and stop paths, the teardown order, the locking modes
//!    (`mpsafe-em`, run by `mpsafe-em-sim`, `mpsafe-em-uio` and
//!    `mpsafe-em-demo`).
//! 9. [Porting a BSD driver](porting): from `if_rxr_*`, `ifq_*`, `ifiq_*`,
//!    `IFQ_DEQUEUE`, timeouts, `intr_barrier`, `cond_*` and
//!    `lwkt_serialize_*` to this workspace; refill that must not sleep,
//!    descriptor chains, offloads, byte order, the stack's own locks,
//!    detach and suspend, per-CPU counters.
//! 10. [Reading the benchmarks](benchmarks): how to run them, every result
//!     and what it means.
//! 11. [Using the crates from a kernel](kernel): the SMP kernel that runs
//!     the em driver on QEMU, service by service (the lock shared with a
//!     handler, the sleeping wait, the big lock, tasks and timeouts, ticks,
//!     interrupts, DMA buffers, the driver's three traits): what each does,
//!     what it costs there, and what a real OS must do beyond it; the
//!     dependency line and the bare-metal example.
//! 12. [Lock order](lockorder): lock levels checked at compile time, and a
//!     debug-only witness for what types cannot see (`mpsafe-order`).
//! 13. [Running on QEMU's e1000](qemu): the same driver on an emulated
//!     82540EM through Linux `uio`, and what that device does differently.
//! 14. [A TCP/IP stack above the driver](stack): smoltcp over the driver,
//!     which locks the stack sees in each mode, where the input queue sits,
//!     and what one `Interface` means on many CPUs.
//!
//! Code blocks in the chapters are Rust doctests (`cargo test -p
//! mpsafe-guide --doc` runs them all); blocks that are not Rust are marked
//! `text`. Benchmark figures are not written into the chapters: the build
//! script fills them in from `benches/RESULTS.md`, and `tests/honest.rs`
//! checks that every seed reference and every figure resolves.

#![no_std]
#![deny(missing_docs)]

#[doc = include_str!(concat!(env!("OUT_DIR"), "/01-why.md"))]
pub mod why {}

#[doc = include_str!(concat!(env!("OUT_DIR"), "/02-serializer.md"))]
pub mod serializer {}

#[doc = include_str!(concat!(env!("OUT_DIR"), "/03-rxring.md"))]
pub mod rxring {}

#[doc = include_str!(concat!(env!("OUT_DIR"), "/04-barrier.md"))]
pub mod barrier {}

#[doc = include_str!(concat!(env!("OUT_DIR"), "/05-ifqueue.md"))]
pub mod ifqueue {}

#[doc = include_str!(concat!(env!("OUT_DIR"), "/09-interrupts.md"))]
pub mod interrupts {}

#[doc = include_str!(concat!(env!("OUT_DIR"), "/10-multiqueue.md"))]
pub mod multiqueue {}

#[doc = include_str!(concat!(env!("OUT_DIR"), "/06-driver.md"))]
pub mod driver {}

#[doc = include_str!(concat!(env!("OUT_DIR"), "/07-porting.md"))]
pub mod porting {}

#[doc = include_str!(concat!(env!("OUT_DIR"), "/08-benchmarks.md"))]
pub mod benchmarks {}

#[doc = include_str!(concat!(env!("OUT_DIR"), "/12-lockorder.md"))]
pub mod lockorder {}

#[doc = include_str!(concat!(env!("OUT_DIR"), "/11-kernel.md"))]
pub mod kernel {}

#[doc = include_str!(concat!(env!("OUT_DIR"), "/13-qemu.md"))]
pub mod qemu {}

#[doc = include_str!(concat!(env!("OUT_DIR"), "/14-stack.md"))]
pub mod stack {}
