//! DragonFly's multiqueue interface: one serializer per ring, "serialize
//! all" for ioctls, handler gating for the interrupt and polling, a task
//! per ring for deferred work.
//!
//! ```text
//! cargo run --example ring_serializers -p mpsafe-serializer
//! ```
//!
//! A NIC with two receive rings, each serialized on its own (DragonFly's
//! `rxr->rx_serialize`) so the two rings' interrupts run in parallel, and an
//! interface serializer above them (`ifp->if_serializer`) for ioctls and the
//! link interrupt. An ioctl that changes every ring (the MTU) enters all
//! ring serializers at once, in index order (`ifnet_serialize_all`); a
//! watchdog that must not block tries them all. Polling runs a ring's
//! handler only if the ring is free (`lwkt_serialize_handler_try`).
//! Detach disables the link handler: a barrier against one running.

#![allow(clippy::std_instead_of_core)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use mpsafe_order::{Ctx, Ordered};
use mpsafe_serializer::{
    OrderedSerializer, OrderedSerializers, Serialized, SerializedAll, Serializer, SerializerMutex,
    SerializerMutexGuard, SpinMutex, SpinMutexGuard, Task, TaskIndexError, TaskSerializer,
    try_enter_all,
};

mpsafe_order::lock_order! {
    /// The interface serializer: ioctls and the link interrupt.
    pub Ifnet,
    /// The ring serializers, entered together after `Ifnet`.
    pub Rings,
}

const RINGS: usize = 2;

/// Counters the rings share, under a spin lock (a few adds).
#[derive(Debug, Default)]
struct Stats {
    rx: u64,
    polled: u64,
}

/// What `ifconfig` shows, under a sleeping lock (it is read rarely).
#[derive(Debug, Default)]
struct Media {
    link_up: bool,
    changes: u32,
}

struct Nic {
    ifnet: Ordered<Ifnet, Serializer>,
    rings: Ordered<Rings, [Serializer; RINGS]>,
    /// Each ring's MTU: written only inside that ring's serializer.
    mtu: [AtomicU32; RINGS],
    stats: SpinMutex<Stats>,
    media: SerializerMutex<Media>,
    /// Deferred per-ring work (a refill), one task per ring.
    taskq: TaskSerializer,
    refills: [AtomicU64; RINGS],
}

impl Nic {
    fn new() -> Self {
        Self {
            ifnet: Ordered::new(Serializer::new()),
            rings: Ordered::new([Serializer::new(), Serializer::new()]),
            mtu: [AtomicU32::new(1500), AtomicU32::new(1500)],
            stats: SpinMutex::new(Stats::default()),
            media: SerializerMutex::new(Media::default()),
            taskq: TaskSerializer::new(),
            refills: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    fn ring(&self, i: usize) -> &Serializer {
        &self.rings.unordered()[i]
    }

    /// A ring's receive work, inside its serializer.
    fn rxeof_locked(&self, i: usize, s: &Serialized<'_>, stats: &mut SpinMutexGuard<'_, Stats>) {
        assert!(core::ptr::eq(s.serializer(), self.ring(i)));
        stats.rx += 1;
    }

    /// Ring `i`'s interrupt: through the ring serializer's handler gating.
    fn ring_intr(&self, i: usize) -> bool {
        self.ring(i)
            .handler_call(|s| self.rxeof_locked(i, s, &mut self.stats.lock()))
            .is_some()
    }

    /// Polling: service the ring only if nobody is in it, never wait.
    fn poll(&self, i: usize) -> bool {
        self.ring(i)
            .handler_try(|s| {
                let mut stats = self.stats.lock();
                stats.polled += 1;
                self.rxeof_locked(i, s, &mut stats);
            })
            .is_some()
    }

    /// The link interrupt, on the interface serializer.
    fn link_intr(&self, up: bool) -> Option<()> {
        self.ifnet.handler_call(&mut Ctx::new(), |_s, _ctx| {
            set_link(&mut self.media.lock(), up)
        })
    }

    /// `SIOCSIFMTU`: every ring at once, after the interface serializer.
    fn set_mtu(&self, mtu: u32) {
        let mut ctx = Ctx::new();
        let (_ifnet, mut ctx) = ctx.lock(&self.ifnet);
        let (mut all, _ctx) = self.rings.enter_all(&mut ctx);
        for i in 0..all.serializers().len() {
            all.with(i, |s| self.set_mtu_locked(i, s, mtu));
        }
    }

    fn set_mtu_locked(&self, i: usize, s: &Serialized<'_>, mtu: u32) {
        assert!(core::ptr::eq(s.serializer(), self.ring(i)));
        // Relaxed: written and read inside ring i's serializer.
        self.mtu[i].store(mtu, Ordering::Relaxed);
    }

    /// The watchdog: checks every ring if it can have them all now;
    /// otherwise it comes back next second.
    fn watchdog(&self) -> Option<u32> {
        let all: SerializedAll<'_> = try_enter_all(self.rings.unordered())?;
        let mtus = (0..all.serializers().len()).map(|i| self.mtu[i].load(Ordering::Relaxed));
        mtus.min()
    }

    /// Queues a refill of ring `i` on the task serializer; `i` comes from
    /// the device, so its task number is checked.
    fn defer_refill(&self, i: usize) -> Result<(), TaskIndexError> {
        let task = Task::try_new(u8::try_from(i).unwrap_or(u8::MAX))?;
        self.taskq.add(task, |t, _owner| {
            self.refills[usize::from(t.index())].fetch_add(1, Ordering::Relaxed);
        });
        Ok(())
    }
}

/// The media word, changed only with its lock held.
fn set_link(media: &mut SerializerMutexGuard<'_, Media>, up: bool) {
    if media.link_up != up {
        media.link_up = up;
        media.changes += 1;
    }
}

fn main() {
    let nic = Nic::new();

    // Both rings' interrupts run at once: different serializers.
    std::thread::scope(|s| {
        for i in 0..RINGS {
            let nic = &nic;
            s.spawn(move || {
                for _ in 0..1000 {
                    assert!(nic.ring_intr(i));
                }
            });
        }
    });
    assert_eq!(nic.stats.lock().rx, 2000);

    // Polling skips a ring someone is in.
    let busy = nic.ring(0).enter();
    assert!(!nic.poll(0) && nic.poll(1));
    drop(busy);
    assert!(nic.poll(0));

    // The MTU ioctl holds every ring; the watchdog cannot get them meanwhile.
    nic.set_mtu(9000);
    assert_eq!(nic.watchdog(), Some(9000));
    {
        let _ring1 = nic.ring(1).enter();
        assert_eq!(nic.watchdog(), None, "ring 1 busy: try again later");
    }

    // Deferred work per ring, by ring number; a number past the last task
    // is an error, not a wrapped bit.
    for i in 0..RINGS {
        nic.defer_refill(i).unwrap();
    }
    let err = nic.defer_refill(usize::from(Task::MAX)).unwrap_err();
    assert_eq!(err.index, Task::MAX);
    println!("{err}");

    // Link interrupts, then detach: disabling the handlers waits for a
    // running one, and later interrupts are skipped.
    assert_eq!(nic.link_intr(true), Some(()));
    assert!(nic.ifnet.unordered().handlers_enabled());
    nic.ifnet.handler_disable(&mut Ctx::new());
    assert!(!nic.ifnet.unordered().handlers_enabled());
    assert_eq!(nic.link_intr(false), None);
    let media = nic.media.lock();
    assert!(media.link_up && media.changes == 1);
    println!(
        "{:?}, {media:?}, refills {:?}",
        *nic.stats.lock(),
        nic.refills.each_ref().map(|r| r.load(Ordering::Relaxed))
    );
}

#[test]
fn runs() {
    main();
}
