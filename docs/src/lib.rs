//! # The mpsafe guide
//!
//! How to take a network driver, and the stack above it, off the big kernel
//! lock with the primitives of the mpsafe workspace. Each module of this crate
//! is a chapter; it has no code of its own, and every example in it is a
//! doctest compiled against the real crates.
//!
//! 1. [Why](why): the big-lock era and the four designs this follows.
//! 2. [The serializers](serializer): the combining, task and blocking
//!    serializers (`mpsafe-serializer`).
//! 3. [Receive ring watermarks](rxring): `if_rxring` and the seed-000
//!    receive path (`mpsafe-rxring`).
//! 4. [Barriers](barrier): the completion, the interrupt gate and the start
//!    barrier (`mpsafe-barrier`).
//! 5. [Interface queues](ifqueue): the send queue and its disciplines, the
//!    serialized start, multiqueue, the input queue (`mpsafe-ifqueue`).
//! 6. [Writing an MPSAFE driver](driver): the reference em(4) driver's rx,
//!    tx, interrupt and stop paths, the teardown order, the three locking
//!    modes (`mpsafe-em`).
//! 7. [Porting a BSD driver](porting): from `if_rxr_*`, `ifq_*`,
//!    `intr_barrier`, `cond_*` and `lwkt_serialize_*` to this workspace.
//! 8. [Reading the benchmarks](benchmarks): how to run them and how to read
//!    their ratios.
//!
//! Code blocks in the chapters are Rust doctests (`cargo test -p
//! mpsafe-guide --doc` runs them all); blocks that are not Rust are marked
//! `text`.

#![no_std]
#![deny(missing_docs)]

#[doc = include_str!("../chapters/01-why.md")]
pub mod why {}

#[doc = include_str!("../chapters/02-serializer.md")]
pub mod serializer {}

#[doc = include_str!("../chapters/03-rxring.md")]
pub mod rxring {}

#[doc = include_str!("../chapters/04-barrier.md")]
pub mod barrier {}

#[doc = include_str!("../chapters/05-ifqueue.md")]
pub mod ifqueue {}

#[doc = include_str!("../chapters/06-driver.md")]
pub mod driver {}

#[doc = include_str!("../chapters/07-porting.md")]
pub mod porting {}

#[doc = include_str!("../chapters/08-benchmarks.md")]
pub mod benchmarks {}
