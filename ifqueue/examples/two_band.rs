//! A discipline of your own and a start routine that works under the queue
//! lock: a NIC whose transmit ring holds a byte budget, not a frame count.
//!
//! ```text
//! cargo run --example two_band -p mpsafe-ifqueue
//! ```
//!
//! - `TwoBand` is a [`Discipline`]: control frames (802.1p priority 6 or 7,
//!   say LLDP and routing protocol hellos) leave before data; a full queue
//!   refuses new data (tail drop) but makes room for control by evicting the
//!   oldest data frame. Whatever it does not keep it hands back.
//! - `Ring`'s start routine looks at the head frame before it takes it
//!   (OpenBSD's `ifq_deq_begin`): a frame that does not fit the bytes left
//!   stays at the head (`ifq_deq_rollback`) and the queue goes `oactive`; a
//!   frame larger than the whole ring is taken and counted as an error
//!   (`ifq->ifq_errors++`). The whole pass holds the queue lock once.
//! - The stack enqueues a burst under one lock, and `if_down` purges under
//!   it, freeing outside.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::collections::VecDeque;
use std::sync::Mutex;

use mpsafe_ifqueue::{
    Accepted, Config, DefaultLock, Discipline, Dropped, Enqueue, IfQueue, Packet, Priority,
    PriorityError, SendQueue, Start, Started, TaskOwner,
};

/// A frame: its length, its 802.1p priority, multicast or not.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    id: u32,
    len: usize,
    prio: Priority,
    mcast: bool,
}

impl Frame {
    /// A frame with the priority code point of its VLAN tag, which comes
    /// off the wire as 3 bits of a byte but is checked where it enters.
    fn tagged(id: u32, len: usize, pcp: u8) -> Result<Self, PriorityError> {
        Ok(Self {
            id,
            len,
            prio: Priority::new(pcp)?,
            mcast: false,
        })
    }

    fn data(id: u32, len: usize) -> Self {
        Self {
            id,
            len,
            prio: Priority::LOWEST,
            mcast: false,
        }
    }

    fn control(id: u32) -> Self {
        Self {
            id,
            len: 64,
            prio: Priority::HIGHEST,
            mcast: true,
        }
    }

    fn is_control(&self) -> bool {
        self.prio.get() >= 6
    }
}

impl Packet for Frame {
    fn byte_len(&self) -> usize {
        self.len
    }
    fn priority(&self) -> Priority {
        self.prio
    }
    fn is_multicast(&self) -> bool {
        self.mcast
    }
}

/// Control ahead of data; control evicts the oldest data when full.
#[derive(Debug, Default)]
struct TwoBand {
    control: VecDeque<Frame>,
    data: VecDeque<Frame>,
}

/// Which band the head is in.
#[derive(Debug, Clone, Copy)]
enum Band {
    Control,
    Data,
}

impl Discipline for TwoBand {
    type Packet = Frame;
    type Cookie = Band;
    type Purged = std::iter::Chain<
        std::collections::vec_deque::IntoIter<Frame>,
        std::collections::vec_deque::IntoIter<Frame>,
    >;

    fn enqueue(&mut self, frame: Frame, len: usize, maxlen: usize) -> Enqueue<Frame> {
        if len < maxlen {
            self.band(&frame).push_back(frame);
            return Enqueue::Queued;
        }
        if !frame.is_control() {
            return Enqueue::Refused(frame);
        }
        match self.data.pop_front() {
            Some(oldest) => {
                self.control.push_back(frame);
                Enqueue::Evicted(oldest)
            }
            None => Enqueue::Refused(frame),
        }
    }

    fn deq_begin(&self) -> Option<Band> {
        if !self.control.is_empty() {
            Some(Band::Control)
        } else if !self.data.is_empty() {
            Some(Band::Data)
        } else {
            None
        }
    }

    fn peek(&self, band: Band) -> &Frame {
        match band {
            Band::Control => &self.control[0],
            Band::Data => &self.data[0],
        }
    }

    fn deq_commit(&mut self, band: Band) -> Frame {
        let q = match band {
            Band::Control => &mut self.control,
            Band::Data => &mut self.data,
        };
        q.pop_front().expect("deq_begin located it")
    }

    /// A burst from the stack is mostly data: the data frames that fit are
    /// appended in bulk and counted in one pass; from the first frame that
    /// needs a decision (a control frame, or no room left) on, each goes
    /// through `enqueue`, as the trait's default would.
    fn enqueue_burst(
        &mut self,
        frames: impl Iterator<Item = Frame>,
        len: usize,
        maxlen: usize,
        mut dropped: impl FnMut(Enqueue<Frame>),
    ) -> Accepted {
        let (start, room) = (self.data.len(), maxlen.saturating_sub(len));
        let mut frames = frames.peekable();
        while self.data.len() - start < room {
            match frames.next_if(|f| !f.is_control()) {
                Some(frame) => self.data.push_back(frame),
                None => break,
            }
        }
        let mut kept = Accepted::count(self.data.range(start..), 0);
        for frame in frames {
            let (bytes, mcast) = (frame.byte_len() as u64, frame.is_multicast());
            match self.enqueue(frame, len + kept.queued, maxlen) {
                Enqueue::Queued => kept.queued += 1,
                evicted @ Enqueue::Evicted(_) => {
                    kept.evicting += 1;
                    dropped(evicted);
                }
                refused @ Enqueue::Refused(_) => {
                    dropped(refused);
                    continue;
                }
            }
            kept.bytes += bytes;
            kept.mcasts += u64::from(mcast);
        }
        kept
    }

    fn purge(&mut self) -> Self::Purged {
        std::mem::take(&mut self.control)
            .into_iter()
            .chain(std::mem::take(&mut self.data))
    }

    fn len(&self) -> usize {
        self.control.len() + self.data.len()
    }
}

impl TwoBand {
    fn band(&mut self, frame: &Frame) -> &mut VecDeque<Frame> {
        if frame.is_control() {
            &mut self.control
        } else {
            &mut self.data
        }
    }
}

/// The transmit ring: frames posted and the bytes they take.
struct Ring {
    budget: usize,
    posted: Mutex<Vec<Frame>>,
}

impl Ring {
    fn bytes(posted: &[Frame]) -> usize {
        posted.iter().map(Frame::byte_len).sum()
    }
}

impl Start<TwoBand, DefaultLock> for Ring {
    fn start(&self, queue: &SendQueue<TwoBand>, owner: &TaskOwner<'_>) {
        assert!(IfQueue::<TwoBand, Self>::owns(queue, owner));
        let mut posted = self.posted.lock().unwrap();
        // `into_deq_begin` hands the lock to the guard; an empty queue
        // releases it.
        let mut locked = Some(queue.lock());
        let (mut errors, mut stalled) = (Vec::new(), false);
        while let Some(head) = locked.take().and_then(|l| l.into_deq_begin()) {
            let left = self.budget - Ring::bytes(&posted);
            if head.byte_len() > self.budget {
                // Can never fit: take it and count an error.
                let (frame, mut l) = head.commit_locked();
                l.add_errors(1);
                locked = Some(l);
                errors.push(frame);
            } else if head.byte_len() <= left {
                let (frame, l) = head.commit_locked();
                locked = Some(l);
                posted.push(frame);
            } else {
                // Stays at the head until completion frees room.
                locked = Some(head.rollback_locked());
                stalled = true;
                break;
            }
        }
        drop(locked);
        if stalled {
            // Plain `set_oactive` is safe here only because completion
            // empties the ring under `posted`, which this routine holds;
            // otherwise use `set_oactive_unless(has_room)`.
            queue.set_oactive();
        }
        drop(errors); // freed outside the queue lock
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ring = Ring {
        budget: 2000,
        posted: Mutex::new(Vec::new()),
    };
    let ifq = IfQueue::new(TwoBand::default(), Config::with_maxlen(4), ring)?;
    ifq.set_running(false); // attach: queue up before the interface runs

    // The stack's burst: one lock for five frames; the fifth is refused.
    let mut dropped = Vec::new();
    let burst = (0..5).map(|i| Frame::data(i, 1000));
    assert_eq!(ifq.lock().enqueue_burst(burst, &mut dropped), 4);
    assert!(matches!(&dropped[..], [Dropped::Refused(f)] if f.id == 4));

    // A control frame finds the queue full: it evicts the oldest data.
    let lldp = Frame::control(100);
    match ifq.enqueue(lldp) {
        Err(evicted) if evicted.offered_was_queued() => {
            assert_eq!(evicted.into_packet().id, 0)
        }
        other => panic!("expected an eviction, got {other:?}"),
    }
    // A tag that is not a priority is refused where it enters.
    assert_eq!(Frame::tagged(7, 60, 9).unwrap_err().level, 9);
    let voice = Frame::tagged(101, 200, 6)?;
    let evicted = ifq.enqueue(voice).unwrap_err().into_packet();
    assert_eq!(evicted.id, 1);
    println!("queued: {:?}", ifq.lock().discipline());

    // Up: control leaves first; the ring takes 2000 bytes.
    ifq.set_running(true);
    assert!(ifq.is_running());
    assert_eq!(ifq.start(), Started::Ran);
    let sent: Vec<u32> = ifq
        .driver()
        .posted
        .lock()
        .unwrap()
        .iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(sent, [100, 101, 2]);
    assert!(ifq.is_oactive() && ifq.len() == 1);

    // A jumbo frame the ring can never hold: an error, not a stall.
    ifq.enqueue(Frame::data(200, 9000))?;

    // Tx completion frees the ring and restarts.
    ifq.driver().posted.lock().unwrap().clear();
    assert_eq!(ifq.restart(), Started::Ran);
    assert!(!ifq.is_starting());
    let c = ifq.counters();
    assert_eq!((c.packets, c.errors, c.mcasts), (7, 1, 1));
    let sent: Vec<u32> = ifq
        .driver()
        .posted
        .lock()
        .unwrap()
        .iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(sent, [3]);

    // Down: stop, wait, purge under one lock, free outside it.
    ifq.set_running(false);
    ifq.barrier()?;
    let purged: Vec<Frame> = {
        let mut q = ifq.lock();
        println!("down with {} of {} queued", q.len(), q.maxlen());
        let purged = q.purge().collect();
        assert!(q.is_empty());
        purged
    };
    let mut per_prio = [0u64; Priority::LEVELS];
    for f in ifq.driver().posted.lock().unwrap().iter().chain(&purged) {
        per_prio[f.priority().index()] += 1;
    }
    println!(
        "counters {:?}, left on the ring per priority {per_prio:?}",
        ifq.lock().counters()
    );
    Ok(())
}

#[test]
fn runs() {
    main().unwrap();
}
