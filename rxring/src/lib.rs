//! Receive ring watermarks for MP-safe network drivers: OpenBSD's
//! `if_rxring`.
//!
//! A driver keeps empty buffers posted on its rx descriptor ring for the
//! hardware to fill. Post too few and a burst overruns the ring; post too
//! many and, when the stack above cannot keep up, memory goes to packets that
//! will be dropped anyway. [`RxRing`] decides how many buffers may be on the
//! ring at once, and adapts:
//!
//! * the **current watermark** `cwm` grows by one per tick, up to `hwm`,
//!   while the ring runs below `lwm` (the hardware empties it faster than the
//!   driver refills it);
//! * it shrinks by one per tick, down to `lwm`, when the driver reports the
//!   system [livelocked](RxRing::livelocked) (the stack could not take the
//!   packets);
//! * [`get`](RxRing::get) grants at most `cwm - inuse` slots;
//!   [`put`](RxRing::put) gives them back.
//!
//! | OpenBSD (`sys/net/if.c`, `if_var.h`) | here |
//! | --- | --- |
//! | `if_rxr_init(rxr, lwm, hwm)` | [`RxRing::new`], [`RxRing::init`] (`now` is the kernel's `ticks`) |
//! | `if_rxr_init(rxr, 0, 0)` | [`RxRing::teardown`] |
//! | `if_rxr_get(rxr, max)` | [`RxRing::get`], or [`RxRing::reserve`] returning a [`Fill`] |
//! | `if_rxr_put(rxr, n)` | [`RxRing::put`] (over-release is an error, not a wrap) |
//! | `if_rxr_livelocked(rxr)` | [`RxRing::livelocked`] |
//! | `if_rxr_inuse`, `if_rxr_cwm`, `if_rxr_needrefill` | [`RxRing::inuse`], [`RxRing::cwm`], [`RxRing::needs_refill`] |
//! | `struct if_rxring_info`, `systat mbuf` | [`RxRingInfo`], [`RxRingInfoTable`] |
//!
//! Time is injected: methods that can move the watermark take `now: u64`
//! ticks from the caller's clock; the counter may wrap (see
//! [`RxRing`#ticks]).
//!
//! # A refill pass
//!
//! ```
//! use mpsafe_rxring::RxRing;
//!
//! let mut ring = RxRing::new(4, 1024, 0)?;
//! let mut pool = vec![0u8; 3]; // the allocator has three buffers left
//!
//! let mut fill = ring.reserve(1024, 0); // granted: cwm = lwm = 4
//! while !fill.is_empty() {
//!     let Some(buf) = pool.pop() else { break }; // allocation failed
//!     let _ = buf; // ... load it into the next descriptor ...
//!     fill.take_one();
//! }
//! let posted = fill.finish(); // the unused slot goes back here
//! assert_eq!((posted, ring.inuse()), (3, 3));
//! # Ok::<(), mpsafe_rxring::RxRingError>(())
//! ```
//!
//! # The locked form (seed 000)
//!
//! `RxRing` is not internally synchronised. In the 2015 em(4) change that
//! took rx completion off the kernel lock, the ring accounting lives under
//! an rx mutex; refill happens under it; buffers to free are only *listed*
//! under it and freed after it is released, and packets go up the stack
//! outside it. Teardown sets the watermarks to zero under the mutex, after
//! which the completion path, which looks at the ring only while something
//! is in use, cannot run again until a refill.
//!
//! [`LockedRxRing`] keeps the ring and the driver's rx state under one
//! `lock_api` mutex of your choice; its [`RxRingGuard`] is the proof a
//! `*_locked` helper demands:
//!
//! ```
//! use mpsafe_rxring::{LockedRxRing, RxRing, RxRingGuard};
//! # use core::sync::atomic::{AtomicBool, Ordering};
//! # /// A test-and-set spin lock standing in for the kernel's mutex.
//! # pub struct Spin(AtomicBool);
//! # // SAFETY: holding is the flag swung false -> true with Acquire, release
//! # // stores false with Release: one holder at a time, writes handed over.
//! # unsafe impl lock_api::RawMutex for Spin {
//! #     const INIT: Self = Spin(AtomicBool::new(false));
//! #     type GuardMarker = lock_api::GuardNoSend;
//! #     fn lock(&self) { while !self.try_lock() { core::hint::spin_loop() } }
//! #     fn try_lock(&self) -> bool {
//! #         self.0.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
//! #     }
//! #     unsafe fn unlock(&self) { self.0.store(false, Ordering::Release) }
//! # }
//!
//! type Buf = Vec<u8>;
//!
//! /// Driver rx state protected by the same mutex as the accounting.
//! struct Rx {
//!     desc: Vec<Option<Buf>>, // the descriptor ring
//!     head: usize,            // next descriptor to post
//!     tail: usize,            // next descriptor to check
//! }
//!
//! struct Driver {
//!     rx: LockedRxRing<Spin, Rx>,
//! }
//!
//! /// Refill: lock-held helper, callable only with the guard.
//! fn rxfill_locked(rx: &mut RxRingGuard<'_, Spin, Rx>, now: u64) -> u32 {
//!     let (ring, st) = rx.split();
//!     let n = st.desc.len();
//!     let mut fill = ring.reserve(n as u32, now);
//!     while !fill.is_empty() {
//!         st.desc[st.head] = Some(vec![0; 64]); // may fail: then `break`
//!         st.head = (st.head + 1) % n;
//!         fill.take_one();
//!     }
//!     fill.finish()
//! }
//!
//! /// Completion: `done` descriptors were filled by the hardware.
//! fn rxeof(drv: &Driver, done: u32, now: u64) -> Vec<Buf> {
//!     let mut input = Vec::new();
//!     let mut free = Vec::new();
//!     {
//!         let mut rx = drv.rx.lock();
//!         if rx.inuse() == 0 {
//!             return input; // empty or torn down: nothing to look at
//!         }
//!         for _ in 0..done.min(rx.inuse()) {
//!             let (ring, st) = rx.split();
//!             let buf = st.desc[st.tail].take().expect("posted");
//!             st.tail = (st.tail + 1) % st.desc.len();
//!             ring.put(1).expect("counted when posted");
//!             if buf.len() < 60 {
//!                 free.push(buf); // runt: free it, but not here
//!             } else {
//!                 input.push(buf);
//!             }
//!         }
//!         rxfill_locked(&mut rx, now);
//!     } // mutex released
//!     drop(free); // m_freem outside the mutex
//!     input // if_input outside the mutex
//! }
//!
//! /// Down: no refill after this; then free what was posted.
//! fn down(drv: &Driver) -> usize {
//!     let posted: Vec<Buf> = {
//!         let mut rx = drv.rx.lock();
//!         rx.teardown();
//!         rx.data_mut().desc.iter_mut().filter_map(Option::take).collect()
//!     };
//!     posted.len() // freed outside the mutex
//! }
//!
//! let drv = Driver {
//!     rx: LockedRxRing::new(
//!         RxRing::new(4, 8, 0)?,
//!         Rx { desc: vec![None; 8], head: 0, tail: 0 },
//!     ),
//! };
//! assert_eq!(rxfill_locked(&mut drv.rx.lock(), 0), 4);
//! assert_eq!(rxeof(&drv, 3, 1).len(), 3); // refilled to cwm 5 (ran below lwm)
//! assert_eq!(drv.rx.inuse(), 5);
//! drv.rx.livelocked(2); // the stack fell behind: back off
//! assert_eq!(down(&drv), 5); // every posted buffer accounted for
//! assert_eq!(drv.rx.inuse(), 0); // "0 buffers in use after down"
//! assert!(rxeof(&drv, 8, 3).is_empty());
//! # Ok::<(), mpsafe_rxring::RxRingError>(())
//! ```
//!
//! # Concurrency and model checking
//!
//! This crate has no concurrent algorithm of its own: [`RxRing`] is plain
//! data changed through `&mut`, and [`LockedRxRing`] only composes
//! [`lock_api::Mutex`] with the caller's [`lock_api::RawMutex`]. So it uses
//! no atomics, has no atomics shim and needs no loom model; mutual exclusion
//! is the raw mutex's to prove. The arithmetic is checked instead by unit
//! tests for each rule, a seeded property test against a reference model,
//! and Miri.
//!
//! # Features
//!
//! `#![no_std]`, no allocation. The `std` feature (on by default) exists for
//! uniformity with the other mpsafe crates and currently adds nothing.

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![warn(unsafe_op_in_unsafe_fn)]
#![cfg_attr(not(test), forbid(unsafe_code))]

mod error;
mod info;
mod locked;
mod order;
mod ring;

pub use error::RxRingError;
pub use info::{RxRingInfo, RxRingInfoTable, RxRingName};
/// The `lock_api` this crate is built against, so a [`LockedRxRing`]'s raw
/// mutex implements the same `RawMutex` trait.
pub use lock_api;
pub use locked::{LockedRxRing, RxRingGuard};
pub use ring::{Fill, RxRing};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
