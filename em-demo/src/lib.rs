//! The em driver's demo as a library: its command line ([`cli`]), the
//! per-mode report and its table ([`report`]) and the SVG figure
//! ([`plot`]). The binary (`cargo run --release -p mpsafe-em-demo`) runs
//! each mode on the simulated device of `mpsafe-em-sim`; the QEMU guest
//! test of `mpsafe-em-uio` prints its own runs with the same report and
//! figure.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

pub mod cli;
pub mod plot;
pub mod report;
pub mod tcp;
