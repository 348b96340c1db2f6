//! smoltcp over an MP-safe driver: [`Device`] implements smoltcp's
//! [`phy::Device`](smoltcp::phy::Device) over a driver's send queue
//! ([`IfQueue`](mpsafe_ifqueue::IfQueue)) and input queue
//! ([`IfInputQueue`](mpsafe_ifqueue::IfInputQueue)), one device per
//! (send queue, input queue) pair.
//!
//! What smoltcp users ask of a device, and what this one does:
//!
//! - **Tokens only when there is room, and safe to drop.** `transmit` hands
//!   out a token only when the send queue can take one more packet (beyond
//!   the ones promised to tokens already out) and the pool has a buffer; the
//!   token holds both. A token dropped without `consume` frees its buffer
//!   and releases its slot: nothing is sent, leaked or counted. A received
//!   frame's token frees its buffer whether it is consumed or dropped.
//! - **Back-pressure kept.** `receive` takes from the input queue the driver
//!   fills, whose [`Pressure`](mpsafe_ifqueue::Pressure) still reaches the
//!   driver's receive path (and so its rx ring's watermarks) as without a
//!   stack.
//! - **A poll loop that can sleep.** A [`Doorbell`] per queue pair carries
//!   "tx has room again" (rung after every start pass, so also when tx
//!   completion clears `oactive` and restarts the queue) and "rx pending"
//!   (rung when the driver queues a batch) to a [`Notify`] the poll loop
//!   sleeps on: [`Signal`] with `std`, the kernel's own wake-up without.
//! - **`no_std` where smoltcp is** (with `alloc`, which the input queue
//!   needs).
//!
//! # How a driver plugs into a stack
//!
//! ```text
//!  poll thread (one per Interface)              driver (any CPU)
//!  ───────────────────────────────              ───────────────────────────────────
//!  Interface::poll
//!    Device::transmit ── TxToken ──► IfQueue ──► start routine ──► tx ring ──► wire
//!      (slot + buffer reserved)      queue lock   task serializer      │
//!                                                 WakeOnStart ─┐       ▼ completion:
//!                                                              │   restart_if_oactive
//!    sleep on Notify ◄──── Doorbell ◄── tx_room ───────────────┘
//!                     ◄───────────── ◄── rx_pending ◄── Doorbell::input ◄── rx interrupt
//!    Device::receive ◄── RxToken ◄── IfInputQueue ◄────────────┘      (ring's rx mutex
//!      (frame freed after use)        its own lock   Pressure ──► rxring.livelocked()
//!                                                                       released first)
//! ```
//!
//! The driver provides four things, all of which it has already if it is
//! built from `mpsafe-ifqueue`:
//!
//! 1. **Its buffer pool, as [`Buffers`]**: allocate a transmit buffer, show
//!    a buffer's bytes, set a frame length, free. The driver's own buffer
//!    type (an mbuf-like handle, an index into DMA memory) is the packet
//!    type of both queues; the adapter never copies a frame between buffers,
//!    and it frees every buffer explicitly, so a pool that reports a dropped
//!    buffer as a leak is safe. [`VecPool`] is a bounded pool of `Vec<u8>`
//!    for a stack without a driver pool, and the reference for what a
//!    driver's pool does.
//! 2. **A send queue**: an [`IfQueue`](mpsafe_ifqueue::IfQueue) whose start
//!    routine moves packets to the tx ring. Wrap the routine in
//!    [`WakeOnStart`] (or call [`Doorbell::tx_room`] from tx completion
//!    after the restart, and after a purge). For a start routine that must
//!    not run on the stack's CPU (a driver in big-lock mode), give the
//!    device a [`Delegated`] queue: the poll thread then only enqueues and
//!    posts a request to the driver's [`StartTask`](mpsafe_ifqueue::StartTask).
//! 3. **An input queue** per receive ring, an
//!    [`IfInputQueue`](mpsafe_ifqueue::IfInputQueue), fed through
//!    [`Doorbell::input`] from the receive path *after* the ring's rx mutex
//!    is released (seed 000: `if_input` outside the lock). It returns the
//!    queue's [`Pressure`](mpsafe_ifqueue::Pressure) unchanged: on
//!    `is_high()` the driver calls its rx ring's `livelocked()`, so the ring
//!    stops growing and the NIC, not the CPU, drops what the stack cannot
//!    take; on [`Dropped`](mpsafe_ifqueue::Pressure::Dropped) the batch is
//!    still the driver's to free.
//! 4. **A poll thread** per queue pair: it owns the [`Device`], the smoltcp
//!    `Interface` and its `SocketSet`, calls `Interface::poll`, and sleeps
//!    on the doorbell's [`Notify`] for [`Device::poll_sleep`] of
//!    `Interface::poll_delay`. (smoltcp's delay is zero whenever a socket has
//!    data to send, even when the device cannot take it; obeyed as it is,
//!    the loop spins while the send queue is full. `poll_sleep` makes that
//!    a sleep until the driver makes room.)
//!
//! # Which locks the stack sees
//!
//! The poll thread takes no driver lock but the queues' own:
//!
//! - **Transmit**: the send queue's lock twice per packet (once to check
//!   room when the token is made, once to enqueue), each for a few
//!   nanoseconds; then the queue's start serializer, which never blocks: if
//!   another CPU is running the start routine the poll thread returns at
//!   once and that CPU sends the packet (seed 002). If nobody is, the start
//!   routine runs on the poll thread, and takes whatever the driver's start
//!   routine takes (its tx ring's lock; in a big-lock mode, the big lock).
//!   With [`Delegated`] it runs on the driver's task thread instead.
//! - **Receive**: the input queue's lock once per batch: everything pending
//!   is taken in one swap, as OpenBSD's `ifiq_process` does, so the
//!   interrupt that queues the next batch waits at most for that swap.
//! - **The pool**: its allocation and free paths, once per transmitted and
//!   per received frame.
//! - **Wake-ups**: none. The doorbell is two atomics and a fence; the
//!   driver's `tx_room` costs a fence and a load when nobody waits, and
//!   [`Signal`] takes its mutex only when the poll thread actually sleeps.
//!
//! The driver's receive interrupt never waits for the stack: it takes the
//! input queue's lock for one append and returns; the stack's slowness
//! shows up only as [`Pressure`](mpsafe_ifqueue::Pressure).
//!
//! # smoltcp's single `Interface` on many CPUs
//!
//! An `Interface`, its `SocketSet` and the device are used through `&mut`:
//! one poll at a time. Sharing one across CPUs means a mutex around the
//! three, and that mutex is a big lock for the whole stack on that
//! interface: every socket operation of every application thread, and every
//! poll, serialized behind it (smoltcp's users report exactly this). What
//! these crates make MP-safe is everything below it: transmit completions,
//! the receive interrupt, the start routine and the buffer pool run on other
//! CPUs concurrently with the poll thread and with each other, and meet the
//! stack only at the queue locks above.
//!
//! To use more CPUs for the stack itself, run more `Interface`s, one per
//! queue pair: a multiqueue NIC's queue pairs (the send queue of an
//! [`IfQueues`](mpsafe_ifqueue::IfQueues) and the input queue of the
//! matching receive ring) each with its own poll thread, address and
//! flows, or one per NIC. A TCP connection lives in one `Interface` and is
//! processed on one CPU at a time, as it is in OpenBSD's softnet taskq.
//! Application threads should hand data to the poll thread (socket
//! buffers, a channel) rather than lock the `Interface` for each call.
//!
//! # Example
//!
//! Two NICs joined by a cable: each NIC's start routine hands what it sends
//! to the other NIC's input queue, as its receive interrupt would. Two
//! smoltcp interfaces, polled in turn here (each on its own thread in a real
//! system, sleeping on its [`Signal`]), open a TCP connection and exchange
//! a message; every buffer is back in the pool at the end.
//!
//! ```
//! use mpsafe_ifqueue::{Config as IfqConfig, Fifo, IfInputQueue, IfQueue, InputConfig};
//! use mpsafe_ifqueue::{SendQueue, TaskOwner};
//! use mpsafe_smoltcp::{Buffers, Config, Device, Doorbell, Signal, VecPool};
//! use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
//! use smoltcp::socket::tcp;
//! use smoltcp::time::Instant;
//! use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};
//!
//! let pool = VecPool::new(64, 1514)?;
//! let rxq = [IfInputQueue::new(InputConfig::default())?, IfInputQueue::new(InputConfig::default())?];
//! let bells = [Doorbell::new(Signal::new()), Doorbell::new(Signal::new())];
//!
//! // NIC `from`'s start routine: everything it sends arrives at NIC `to`.
//! let wire = |to: usize| {
//!     let (pool, rxq, bells) = (&pool, &rxq, &bells);
//!     move |q: &SendQueue<Fifo<Vec<u8>>>, _: &TaskOwner<'_>| {
//!         let mut batch = Vec::new();
//!         while let Some(frame) = q.dequeue() {
//!             batch.push(frame);
//!         }
//!         // The receive path: queue the batch and wake `to`'s poll loop. A
//!         // driver calls its rx ring's livelocked() when this is high.
//!         let _pressure = bells[to].input(&rxq[to], &mut batch);
//!         for frame in batch {
//!             pool.free(frame); // dropped by the input queue: ours to free
//!         }
//!     }
//! };
//! let txq = [
//!     IfQueue::from_fn(Fifo::new(), IfqConfig::default(), wire(1))?,
//!     IfQueue::from_fn(Fifo::new(), IfqConfig::default(), wire(0))?,
//! ];
//!
//! let now = Instant::ZERO;
//! let mut devs = Vec::new();
//! let mut ifaces = Vec::new();
//! for i in 0..2 {
//!     let mut dev = Device::new(&txq[i], &rxq[i], &pool, &bells[i], Config::default())?;
//!     let mac = EthernetAddress([0x02, 0, 0, 0, 0, i as u8 + 1]);
//!     let mut iface = Interface::new(IfaceConfig::new(mac.into()), &mut dev, now);
//!     iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::v4(10, 0, 0, i as u8 + 1), 24)).unwrap());
//!     devs.push(dev);
//!     ifaces.push(iface);
//! }
//! let socket = || tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 4096]), tcp::SocketBuffer::new(vec![0; 4096]));
//! let mut sockets = [SocketSet::new(vec![]), SocketSet::new(vec![])];
//! let mut server = socket();
//! server.listen(80).unwrap(); // (smoltcp's errors are not `Error`s without its `std`)
//! let server = sockets[1].add(server);
//! let mut client = socket();
//! client.connect(ifaces[0].context(), (IpAddress::v4(10, 0, 0, 2), 80), 49152).unwrap();
//! let client = sockets[0].add(client);
//!
//! let (mut sent, mut got) = (false, Vec::new());
//! for _ in 0..100 {
//!     for i in 0..2 {
//!         ifaces[i].poll(now, &mut devs[i], &mut sockets[i]);
//!     }
//!     let c = sockets[0].get_mut::<tcp::Socket>(client);
//!     if c.may_send() && !sent {
//!         sent = c.send_slice(b"hello over IfQueue").unwrap() == 18;
//!     }
//!     let s = sockets[1].get_mut::<tcp::Socket>(server);
//!     if s.can_recv() {
//!         s.recv(|data| { got.extend_from_slice(data); (data.len(), ()) }).unwrap();
//!     }
//!     if got.len() == 18 {
//!         break;
//!     }
//! }
//! assert_eq!(got, b"hello over IfQueue");
//! drop(devs);
//! assert_eq!(pool.stats().in_use(), 0); // nothing in flight, nothing lost
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `tests/cable.rs` does the same with a bounded tx ring, `oactive`, a
//! lossy wire, an input queue that drops batches, a thread per interface
//! sleeping on its doorbell, and transfers of many megabytes.
//!
//! # Limits
//!
//! - An empty pool is not announced: `transmit` returns `None` and smoltcp
//!   retries at its next poll (its timers bound the sleep). A pool that can
//!   tell when buffers come back may ring [`Doorbell::rx_pending`] (any
//!   wake-up will do).
//! - The reservation is exact when this device is the only producer on its
//!   send queue (the usual case: one stack per queue). If another producer
//!   fills the queue between a token and its `consume`, the queue refuses
//!   the frame, which is freed and counted ([`DeviceStats::tx_refused`] and
//!   the queue's `qdrops`), as any full queue would.
//! - A reply (the transmit token `receive` pairs with a frame) takes its
//!   slot and buffer only when smoltcp writes it; if there is neither, the
//!   reply is written to a scratch buffer and dropped
//!   ([`DeviceStats::replies_dropped`]) rather than stopping the stack from
//!   reading. TCP retransmits.
//! - Ethernet only ([`smoltcp::phy::Medium::Ethernet`]).
//!
//! # Features
//!
//! - `std` (default): [`Signal`], and the primitives' `std` features.
//!   Without it the crate is `#![no_std]` with `alloc` and builds for
//!   `x86_64-unknown-none`.
//! - smoltcp is pinned without its default features, with `medium-ethernet`,
//!   `proto-ipv4` and `socket-tcp` (the least it builds with); turn on the
//!   sockets and protocols you use in your own manifest.
//!
//! The crate's MSRV is smoltcp 0.13's, Rust 1.91; the `mpsafe-*` primitives
//! it builds on keep 1.85.
//!
//! # Model checking
//!
//! Under `RUSTFLAGS="--cfg mpsafe_loom"` with `--features loom`,
//! [`Doorbell`]'s atomics and fences come from loom, and
//! `tests/loom_doorbell.rs` checks that a device that finds the queue full
//! and sleeps is always woken by the driver's next room.

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
    Config, ConfigError, Device, DeviceStats, ETHERNET_MTU, MIN_MTU, NO_BUFFER_RETRY, RxToken,
    TxBlocked, TxToken,
};
#[cfg(feature = "std")]
pub use doorbell::Signal;
pub use doorbell::{Doorbell, Notify, WakeOnStart};
pub use queues::{Delegated, RxQueue, TxQueue};

/// The queues this crate plugs into (re-exported, so a user names the same
/// version).
pub use mpsafe_ifqueue;
/// The stack (re-exported, so a user names the same version).
pub use smoltcp;

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use mpsafe_ifqueue::{Fifo, IfInputQueue, IfQueue, SendQueue, TaskOwner};
    use static_assertions::{assert_impl_all, assert_not_impl_any};

    type StartFn = fn(&SendQueue<Fifo<Vec<u8>>>, &TaskOwner<'_>);
    type Txq = IfQueue<Fifo<Vec<u8>>, WakeOnStart<StartFn, Arc<Doorbell<Signal>>>>;
    type Dev = Device<Arc<Txq>, Arc<IfInputQueue<Vec<u8>>>, Arc<VecPool>, Arc<Doorbell<Signal>>>;

    // The device moves to its poll thread; the pieces it shares with the
    // driver are used from every CPU.
    assert_impl_all!(Dev: Send);
    assert_impl_all!(Txq: Send, Sync);
    assert_impl_all!(Doorbell<Signal>: Send, Sync);
    assert_impl_all!(VecPool: Send, Sync);
    // One poll thread at a time: the device's counters are cells.
    assert_not_impl_any!(Dev: Sync);
}
