//! Demo: runs the reference em(4) driver in each mode on the simulated NIC.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

fn main() {}
