//! The frames the guest run sends and the stack that checks them.
//!
//! Every frame is 60 bytes (the minimum; the NIC appends the FCS) and says
//! which run, direction and sending CPU it belongs to, and its sequence
//! number in that flow. A flow (one sender CPU onto one interface) goes
//! through one FIFO send queue, one ring and the hub in order, so the
//! receiver sees each flow's numbers ascending; a gap is a frame lost, and
//! the run must find a counted cause for each (purged from the send queue
//! at a down, flushed from the receive ring at a down, a receive error,
//! QEMU's missed-packets count).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mpsafe_em::{Buffer, BufferPool, Stack};

use super::pool::{DmaBuf, DmaPool};
use crate::cpu::MAX_CPUS;
use crate::services::ipl::{IPL_NET, Mutex};
use crate::services::wait::wake_all;

/// Frame length without the FCS.
pub const FRAME_LEN: usize = 60;
/// IEEE 802 local experimental ethertype.
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
const MAGIC: &[u8; 4] = b"MPEM";

/// Who sent a frame: the run, the sending CPU, and the sequence number in
/// that CPU's flow onto the interface (from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    /// The run (one per mode run), so a frame of an earlier run is told
    /// apart.
    pub run: u8,
    /// The sending CPU.
    pub cpu: u8,
    /// The sequence number, from 1.
    pub seq: u64,
}

/// Writes the frame `tag` from `src` to `dst` into `buf`.
pub fn build(buf: &mut DmaBuf, dst: &[u8; 6], src: &[u8; 6], tag: Tag) {
    let f = &mut buf.data_mut()[..FRAME_LEN];
    f[0..6].copy_from_slice(dst);
    f[6..12].copy_from_slice(src);
    f[12..14].copy_from_slice(&ETHERTYPE);
    f[14..18].copy_from_slice(MAGIC);
    f[18] = tag.run;
    f[19] = tag.cpu;
    f[20..28].copy_from_slice(&tag.seq.to_le_bytes());
    for (k, b) in f[28..].iter_mut().enumerate() {
        *b = (tag.seq as u8).wrapping_add(k as u8) ^ tag.cpu;
    }
    buf.set_len(FRAME_LEN as u16);
}

/// The tag of a frame to `me` from `peer`, if it is one of ours and intact.
fn parse(f: &[u8], me: &[u8; 6], peer: &[u8; 6]) -> Option<Tag> {
    if f.len() != FRAME_LEN
        || f[0..6] != *me
        || f[6..12] != *peer
        || f[12..14] != ETHERTYPE
        || f[14..18] != *MAGIC
    {
        return None;
    }
    let seq = u64::from_le_bytes(f[20..28].try_into().ok()?);
    let cpu = f[19];
    let intact = f[28..]
        .iter()
        .enumerate()
        .all(|(k, &b)| b == (seq as u8).wrapping_add(k as u8) ^ cpu);
    (intact && usize::from(cpu) < MAX_CPUS).then_some(Tag {
        run: f[18],
        cpu,
        seq,
    })
}

/// One flow's receive state.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowRx {
    /// Frames received intact and in order.
    pub received: u64,
    /// The highest sequence number seen (0: none yet).
    pub last: u64,
    /// Numbers skipped (frames lost before this receiver).
    pub gaps: u64,
    /// Frames whose number was not above the last one.
    pub out_of_order: u64,
}

/// What one interface received.
#[derive(Clone, Copy, Debug, Default)]
pub struct RxReport {
    /// Per sending CPU.
    pub flows: [FlowRx; MAX_CPUS],
    /// Frames that were not ours or were damaged.
    pub corrupt: u64,
    /// Intact frames of another run.
    pub stale: u64,
}

impl RxReport {
    /// Frames received intact and in order, every flow.
    pub fn received(&self) -> u64 {
        self.flows.iter().map(|f| f.received).sum()
    }
}

/// The network stack above one interface: checks every frame, counts it
/// in its flow, frees it, and wakes the senders (whose windows it opens).
pub struct Checker {
    pool: DmaPool,
    me: [u8; 6],
    peer: [u8; 6],
    run: u8,
    rx: Mutex<IPL_NET, RxReport>,
    /// Frames received in order, all flows (read by the senders without
    /// the lock).
    received: AtomicU64,
    /// While set, the stack keeps what it receives instead of freeing it
    /// (a stack that falls behind): the pool runs dry.
    hold: AtomicBool,
    held: Mutex<IPL_NET, Vec<DmaBuf>>,
}

impl Checker {
    /// The stack of the interface `me`, whose peer is `peer`, in run `run`.
    pub fn new(pool: DmaPool, me: [u8; 6], peer: [u8; 6], run: u8) -> Self {
        Self {
            pool,
            me,
            peer,
            run,
            rx: Mutex::new(RxReport::default()),
            received: AtomicU64::new(0),
            hold: AtomicBool::new(false),
            held: Mutex::new(Vec::new()),
        }
    }

    /// Keeps (`true`) or frees again (`false`) what arrives; on `false`,
    /// frees what it kept. Returns how many buffers it had kept.
    pub fn hold(&self, on: bool) -> usize {
        self.hold.store(on, Ordering::SeqCst);
        if on {
            return 0;
        }
        let kept = core::mem::take(&mut *self.held.lock());
        let n = kept.len();
        self.pool.free_all(kept);
        n
    }

    /// Frames received intact and in order so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// The receive report now.
    pub fn report(&self) -> RxReport {
        *self.rx.lock()
    }
}

impl Stack<DmaBuf> for Checker {
    fn input(&self, _queue: usize, packets: &mut Vec<DmaBuf>) -> bool {
        let mut ok = 0;
        {
            let mut r = self.rx.lock();
            for p in packets.iter() {
                match parse(p.data(), &self.me, &self.peer) {
                    Some(t) if t.run == self.run => {
                        let f = &mut r.flows[usize::from(t.cpu)];
                        if t.seq > f.last {
                            f.gaps += t.seq - f.last - 1;
                            f.last = t.seq;
                            f.received += 1;
                            ok += 1;
                        } else {
                            f.out_of_order += 1;
                        }
                    }
                    Some(_) => r.stale += 1,
                    None => r.corrupt += 1,
                }
            }
        }
        if self.hold.load(Ordering::SeqCst) {
            self.held.lock().append(packets);
            // Kept after a release that found none: freed by the next one.
        } else {
            self.pool.free_all(packets.drain(..));
        }
        if ok > 0 {
            // SeqCst: a sender that sleeps re-checks this after it marked
            // itself sleeping (see `sleep_until`), and the wake below
            // follows it.
            self.received.fetch_add(ok, Ordering::SeqCst);
            wake_all();
        }
        false
    }
}
