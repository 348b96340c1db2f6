//! Two send queues of one interface under a declared lock order: the
//! `mpsafe-order` face of the crate ([`OrderedStart`], [`OrderedIfQueue`]).
//!
//! The order is the one a driver like em(4) has: the interface's ioctl
//! serializer, then a queue's start routine, then the queue mutex it
//! dequeues under, then the transmit ring it fills. Two CPUs transmit on
//! both queues while a third brings the interface down: inside the ioctl
//! serializer it stops each queue, waits at its start barrier (allowed: the
//! serializer comes before the start level) and purges what is left under
//! the queue mutex. Every packet is either on the ring or purged.
//!
//! What the order forbids does not compile; the module docs of
//! `mpsafe_ifqueue::order` (the crate's `OrderedIfQueue` page) show the
//! barrier under the queue mutex and a routine waiting for a barrier.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::sync::atomic::{AtomicUsize, Ordering};

use mpsafe_ifqueue::{Config, Fifo, IfQueue, OrderedIfQueue, OrderedStart};
use mpsafe_order::{Ctx, Ordered};
use mpsafe_serializer::{Serializer, SpinMutex};

mpsafe_order::lock_order! {
    /// The interface's ioctl serializer (up, down, ring sizes).
    pub Ifnet,
    /// A send queue's start routine: the level its barrier waits at.
    pub IfqStart,
    /// A send queue's mutex, which the start routine dequeues under.
    pub IfqMutex,
    /// The transmit ring the start routine fills.
    pub TxRing,
}

const PER_CPU: usize = 5_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ifnet = Ordered::<Ifnet, Serializer>::new(Serializer::new());
    // Frames "on the wire", per queue.
    let rings = [
        Ordered::<TxRing, _>::new(SpinMutex::new(0usize)),
        Ordered::<TxRing, _>::new(SpinMutex::new(0usize)),
    ];
    let [q0, q1] = [&rings[0], &rings[1]].map(|ring| {
        IfQueue::new(
            Fifo::<Vec<u8>>::with_capacity(64),
            Config::default(),
            // Runs at IfqStart; takes the queue mutex, then the ring.
            OrderedStart::<IfqStart, IfqMutex, _>::new(move |q, _owner, mut ctx| {
                let (mut q, mut ctx) = ctx.lock(q);
                while let Some(frame) = q.dequeue() {
                    let (mut sent, _) = ctx.lock(ring);
                    **sent += 1;
                    drop(frame);
                }
            }),
        )
        .map(Ordered::<IfqStart, _>::new)
    });
    let ifqs = [q0?, q1?];
    let refused = AtomicUsize::new(0);

    std::thread::scope(|s| {
        for cpu in 0..2 {
            let (ifqs, refused) = (&ifqs, &refused);
            s.spawn(move || {
                let mut ctx = Ctx::new();
                for i in 0..PER_CPU {
                    let ifq = &ifqs[(cpu + i) % 2];
                    if ifq.transmit(&mut ctx, vec![0u8; 60]).is_err() {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        // Down, meanwhile: the ioctl serializer, then each queue's barrier.
        s.spawn(|| {
            // Once traffic flows on both queues.
            while rings.iter().any(|r| *r.unordered().lock() == 0) {
                std::thread::yield_now();
            }
            let mut ctx = Ctx::new();
            let (_ioctl, mut ctx) = ctx.lock(&ifnet);
            for ifq in &ifqs {
                ifq.unordered().set_running(false);
                ifq.barrier(&mut ctx).expect("not inside the start routine");
            }
        });
    });

    // The interface is down: what is still queued is purged under the
    // queue mutex, as a stop does.
    let mut ctx = Ctx::new();
    let mut purged = 0;
    for ifq in &ifqs {
        let (mut q, _) = OrderedIfQueue::lock(ifq, &mut ctx);
        purged += q.purge().count();
    }
    let sent: usize = rings.iter().map(|r| *r.unordered().lock()).sum();
    let refused = refused.into_inner();
    assert_eq!(
        sent + purged + refused,
        2 * PER_CPU,
        "every packet accounted for"
    );
    println!("{sent} sent, {purged} purged at down, {refused} refused by a full queue");
    Ok(())
}

#[test]
fn runs() {
    main().unwrap();
}
