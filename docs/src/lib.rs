//! # The mpsafe guide
//!
//! How to take a network driver, and the stack above it, off the big kernel
//! lock with the primitives of the mpsafe workspace. Each module of this crate
//! is a chapter; it has no code of its own, and every example in it is a
//! doctest compiled against the real crates.
//!
//! 1. [Why](why): the big-lock era and the four designs this follows.
//! 2. [The serializers](serializer): combining, task and blocking
//!    serializers (`mpsafe-serializer`).
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
