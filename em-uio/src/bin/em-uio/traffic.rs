//! Frames with a sequence number, a sender that keeps a bounded window in
//! flight, and a receiving stack that checks every frame.
//!
//! A frame from `src` to `dst`: the Ethernet header (ethertype 0x88b5, local
//! experimental), the 64-bit sequence number, the run id, the sender id,
//! then a payload derived from the sequence number; its length is derived
//! from it too (60 to 1514 bytes). The receiver recomputes both, so a frame
//! that arrives cut, padded, corrupted, duplicated or out of order is
//! caught. Each sender numbers its own frames from 1 and the receiver keeps
//! one account per sender id ([`SENDERS`] of them), so several senders on
//! one interface are checked as exactly as one.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use mpsafe_em_sim::{Em, Mbuf, Pool, Stack, TxError};
use mpsafe_em_uio::UioDevice;

/// When QEMU may release frames it held, after an interface's `up`.
const HOLD_RELEASE_FROM_NS: u64 = 900_000_000;
const HOLD_RELEASE_UNTIL_NS: u64 = 3_000_000_000;

/// Local experimental ethertype.
const ETHERTYPE: u16 = 0x88b5;
const HDR: usize = 14 + 8;
/// The payload's first byte, after the run id and the sender id.
const BODY: usize = HDR + 2;

/// Sender ids a receiver keeps an account for.
pub(crate) const SENDERS: usize = 3;
/// The id of an interface's own sender (the two-way phases); the others
/// are the two-CPU phase's senders.
pub(crate) const OWN: usize = 0;

/// Frame length for sequence number `seq`: spread over 60..=1514.
pub(crate) fn frame_len(seq: u64) -> usize {
    60 + (seq.wrapping_mul(7919) % 1455) as usize
}

fn payload_byte(seq: u64, i: usize) -> u8 {
    (seq as u8).wrapping_mul(31).wrapping_add(i as u8)
}

/// Writes frame `seq` of sender `sender` (below [`SENDERS`]) into `m` (a
/// DMA-backed buffer).
pub(crate) fn write_frame(m: &mut Mbuf, dst: [u8; 6], src: [u8; 6], seq: u64, run: u8, sender: u8) {
    let len = frame_len(seq);
    let b = m.data_mut().expect("a DMA-backed pool");
    b[..6].copy_from_slice(&dst);
    b[6..12].copy_from_slice(&src);
    b[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    b[14..22].copy_from_slice(&seq.to_be_bytes());
    b[22] = run;
    b[23] = sender;
    for (i, x) in b[BODY..len].iter_mut().enumerate() {
        *x = payload_byte(seq, i);
    }
    m.set_len(len as u16);
}

/// What a receiver saw from one sender.
#[derive(Debug, Default)]
pub(crate) struct RxCounts {
    /// Frames intact and in order.
    pub received: AtomicU64,
    /// Frames missing between two received ones (or before the first).
    pub gaps: AtomicU64,
    /// Frames with a wrong length, header or payload.
    pub corrupt: AtomicU64,
    /// Frames with a sequence number not above the last one.
    pub out_of_order: AtomicU64,
    /// Bytes received intact.
    pub bytes: AtomicU64,
    /// Highest sequence number received.
    pub last: AtomicU64,
    /// Frames that arrived after a later one, intact, each filling a gap
    /// seen before, at the moment QEMU releases the frames it held during
    /// the receiver's 1 s hold after an `RCTL` write (see `Checker::input`).
    pub late_in_hold: AtomicU64,
}

/// The stack above one interface: checks each frame against what its peer
/// sends, then frees it.
pub(crate) struct Checker {
    pool: Pool,
    peer: [u8; 6],
    me: [u8; 6],
    run: u8,
    /// Per sender id: [`OWN`] is the peer's own sender.
    pub counts: [RxCounts; SENDERS],
    /// Per sender id, the sequence numbers skipped so far (a late frame
    /// must be one of them).
    missing: [Mutex<BTreeSet<u64>>; SENDERS],
    /// When the receiving interface was last brought up (ns since `epoch`).
    up_at: AtomicU64,
    epoch: Instant,
}

impl Checker {
    pub(crate) fn new(pool: Pool, me: [u8; 6], peer: [u8; 6], run: u8) -> Self {
        Self {
            pool,
            peer,
            me,
            run,
            counts: Default::default(),
            missing: Default::default(),
            up_at: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Records that the receiving interface was just brought up.
    pub(crate) fn mark_up(&self) {
        self.up_at
            .store(self.epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Whether `now_ns` is when QEMU releases what it held since the last
    /// up: its receive hold ends 1 s (virtual time) after the `RCTL` write
    /// that `up` makes after [`mark_up`](Self::mark_up); the upper bound
    /// leaves room for a loaded host.
    fn is_hold_release(&self, now_ns: u64) -> bool {
        let since = now_ns.saturating_sub(self.up_at.load(Ordering::Relaxed));
        (HOLD_RELEASE_FROM_NS..=HOLD_RELEASE_UNTIL_NS).contains(&since)
    }

    /// The frame's sender id and sequence number, if it is intact.
    fn check(&self, m: &Mbuf) -> Result<(usize, u64), ()> {
        let d = m.data().ok_or(())?;
        if d.len() < BODY
            || d[..6] != self.me
            || d[6..12] != self.peer
            || d[12..14] != ETHERTYPE.to_be_bytes()
        {
            return Err(());
        }
        let seq = u64::from_be_bytes(d[14..22].try_into().map_err(|_| ())?);
        if d.len() != frame_len(seq) {
            return Err(());
        }
        if d[22] != self.run {
            // A frame of an earlier mode's run: QEMU kept it queued.
            return Err(());
        }
        let sender = usize::from(d[23]);
        if sender >= SENDERS {
            return Err(());
        }
        if d[BODY..]
            .iter()
            .enumerate()
            .any(|(i, &x)| x != payload_byte(seq, i))
        {
            return Err(());
        }
        Ok((sender, seq))
    }
}

impl Checker {
    /// The sequence numbers of sender `sender` still missing, as ranges
    /// (`a-b`), at most `limit` of them: for a failure report.
    pub(crate) fn missing_ranges(&self, sender: usize, limit: usize) -> String {
        let missing = self.missing[sender]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &seq in missing.iter() {
            match out.last_mut() {
                Some((_, b)) if *b + 1 == seq => *b = seq,
                _ => out.push((seq, seq)),
            }
        }
        let n = out.len();
        let mut s: Vec<String> = out
            .iter()
            .take(limit)
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        if n > limit {
            s.push(format!("... ({} more ranges)", n - limit));
        }
        s.join(" ")
    }

    /// Books one intact frame `seq` of sender `sender`, `len` bytes,
    /// received at `now_ns`.
    fn accept(&self, sender: usize, seq: u64, len: usize, now_ns: u64) {
        let c = &self.counts[sender];
        let last = c.last.load(Ordering::Relaxed);
        let mut missing = self.missing[sender]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if seq <= last {
            // Late: legitimate only if it fills a gap (not a duplicate)
            // when QEMU releases its held frames.
            if self.is_hold_release(now_ns) && missing.remove(&seq) {
                c.late_in_hold.fetch_add(1, Ordering::Relaxed);
                c.gaps.fetch_sub(1, Ordering::Relaxed);
                c.bytes.fetch_add(len as u64, Ordering::Relaxed);
            } else {
                c.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        missing.extend(last + 1..seq);
        // Bounded: a gap older than this is a loss, not lateness.
        while missing.len() > 4096 {
            missing.pop_first();
        }
        c.gaps.fetch_add(seq - last - 1, Ordering::Relaxed);
        c.last.store(seq, Ordering::Relaxed);
        c.received.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
}

impl Stack<Mbuf> for Checker {
    fn input(&self, _queue: usize, packets: &mut Vec<Mbuf>) -> bool {
        // One receive path at a time per interface (rxeof for its one ring),
        // and `accept` books each frame under the `missing` lock anyway.
        for m in packets.iter() {
            match self.check(m) {
                Ok((sender, seq)) => {
                    self.accept(sender, seq, m.len(), self.epoch.elapsed().as_nanos() as u64)
                }
                Err(()) => {
                    // No sender id to trust: booked on the own sender's
                    // account, where any corrupt frame is an error.
                    self.counts[OWN].corrupt.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.pool.free_all(packets.drain(..));
        false
    }
}

/// What one sender did.
#[derive(Debug, Default)]
pub(crate) struct TxCounts {
    /// Frames `transmit` accepted (sequence numbers 1..=sent).
    pub sent: AtomicU64,
    /// Refused because the interface was down (retried, same number).
    pub refused_down: AtomicU64,
    /// Refused because the send queue was full (retried, same number).
    pub refused_full: AtomicU64,
    /// No free buffer in the pool at that moment (retried).
    pub no_buffer: AtomicU64,
    /// Frames known lost after acceptance (purged, flushed at the
    /// receiver): they no longer count against the window.
    pub written_off: AtomicU64,
}

/// One sender: `em` to the peer whose receiver counts `rx` (its account
/// for sender id `id`).
pub(crate) struct Sender<'a> {
    pub em: &'a Em<UioDevice>,
    pub pool: Pool,
    pub src: [u8; 6],
    pub dst: [u8; 6],
    pub counts: &'a TxCounts,
    pub rx: &'a RxCounts,
    /// Frames allowed in flight (sent, not yet received or written off):
    /// below QEMU's 10000-frame queue, so QEMU never drops silently.
    pub window: u64,
    /// Held (read) while a buffer is in hand; the cycler takes it (write) to
    /// see the buffer table with no frame half-way into the driver.
    pub hand: &'a RwLock<()>,
    pub stop: &'a AtomicBool,
    /// Run id written into every frame (one per mode).
    pub run: u8,
    /// Sender id written into every frame (below [`SENDERS`]).
    pub id: u8,
}

impl Sender<'_> {
    pub(crate) fn run(&self) {
        let c = self.counts;
        let mut seq = 1;
        while !self.stop.load(Ordering::Relaxed) {
            let in_flight = c.sent.load(Ordering::Relaxed).saturating_sub(
                self.rx.received.load(Ordering::Relaxed)
                    + self.rx.late_in_hold.load(Ordering::Relaxed)
                    + c.written_off.load(Ordering::Relaxed),
            );
            if in_flight >= self.window {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            let _hand = self.hand.read().unwrap_or_else(|e| e.into_inner());
            let Some(mut m) = self.pool.alloc() else {
                c.no_buffer.fetch_add(1, Ordering::Relaxed);
                drop(_hand);
                std::thread::sleep(Duration::from_micros(200));
                continue;
            };
            write_frame(&mut m, self.dst, self.src, seq, self.run, self.id);
            match self.em.transmit(0, m) {
                Ok(()) => {
                    c.sent.fetch_add(1, Ordering::Relaxed);
                    seq += 1;
                }
                Err(e) => {
                    let down = matches!(e, TxError::Down(_));
                    if down {
                        c.refused_down.fetch_add(1, Ordering::Relaxed);
                    } else {
                        c.refused_full.fetch_add(1, Ordering::Relaxed);
                    }
                    e.into_packet().free();
                    drop(_hand);
                    std::thread::sleep(Duration::from_micros(if down { 500 } else { 50 }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpsafe_em_sim::pool::DmaRegion;
    use std::ptr::NonNull;
    use std::sync::Arc;

    const ME: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// A pool over plain memory standing in for DMA memory.
    fn pool(n: usize) -> Pool {
        let mem: &'static mut [u8] = Vec::leak(vec![0u8; 2048 * n]);
        let r = DmaRegion {
            virt: NonNull::new(mem.as_mut_ptr()).unwrap(),
            bus: 0x10_0000,
            len: mem.len(),
        };
        // SAFETY: leaked memory, valid for the program's life, used by
        // nothing else.
        unsafe { Pool::with_dma(2048, &[r], Arc::new(())) }
    }

    fn checker(p: &Pool) -> Checker {
        Checker::new(p.clone(), ME, PEER, 7)
    }

    #[test]
    fn frames_round_trip_and_lengths_cover_the_range() {
        let p = pool(2);
        let c = checker(&p);
        let mut m = p.alloc().unwrap();
        write_frame(&mut m, ME, PEER, 42, 7, 0);
        assert_eq!(m.len(), frame_len(42));
        assert_eq!(c.check(&m), Ok((0, 42)));
        m.data_mut().unwrap()[40] ^= 1;
        assert_eq!(c.check(&m), Err(()), "a flipped payload bit");
        write_frame(&mut m, ME, PEER, 42, 6, 0);
        assert_eq!(c.check(&m), Err(()), "a frame of another run");
        write_frame(&mut m, ME, PEER, 42, 7, 0);
        m.set_len(m.len() as u16 + 4);
        assert_eq!(c.check(&m), Err(()), "4 bytes too long (no SECRC)");
        write_frame(&mut m, ME, PEER, 42, 7, 2);
        assert_eq!(c.check(&m), Ok((2, 42)), "sender 2's frame");
        write_frame(&mut m, ME, PEER, 42, 7, SENDERS as u8);
        assert_eq!(c.check(&m), Err(()), "a sender id out of range");
        m.free();
        let lens: Vec<usize> = (1..5000).map(frame_len).collect();
        assert_eq!(lens.iter().min(), Some(&60));
        assert_eq!(lens.iter().max(), Some(&1514));
    }

    #[test]
    fn gaps_late_frames_and_duplicates() {
        let p = pool(1);
        let c = checker(&p);
        let hold = HOLD_RELEASE_FROM_NS + 1;
        c.accept(OWN, 1, 60, 0);
        c.accept(OWN, 4, 60, 0); // 2 and 3 missing
        let n = &c.counts[OWN];
        assert_eq!(n.gaps.load(Ordering::Relaxed), 2);
        // 2 arrives late, but not when QEMU releases held frames: an error.
        c.accept(OWN, 2, 60, hold + HOLD_RELEASE_UNTIL_NS);
        assert_eq!(n.out_of_order.load(Ordering::Relaxed), 1);
        // 3 arrives late at the release: late, the gap closes.
        c.accept(OWN, 3, 60, hold);
        assert_eq!(n.late_in_hold.load(Ordering::Relaxed), 1);
        assert_eq!(n.gaps.load(Ordering::Relaxed), 1);
        // 3 again: a duplicate, even at the release.
        c.accept(OWN, 3, 60, hold);
        assert_eq!(n.out_of_order.load(Ordering::Relaxed), 2);
        assert_eq!(n.received.load(Ordering::Relaxed), 2);
    }

    /// Two senders' frames interleaved on one receiver: each sequence is
    /// checked on its own, so interleaving is neither a gap nor out of
    /// order, while a gap or a repeat within one sender still is.
    #[test]
    fn senders_are_checked_apart() {
        let p = pool(8);
        let c = checker(&p);
        let mut frames = Vec::new();
        for (id, seq) in [(1, 1), (2, 1), (2, 2), (1, 2), (1, 3), (2, 4), (1, 3)] {
            let mut m = p.alloc().unwrap();
            write_frame(&mut m, ME, PEER, seq, 7, id);
            frames.push(m);
        }
        assert!(!c.input(0, &mut frames));
        assert!(frames.is_empty());
        let (one, two) = (&c.counts[1], &c.counts[2]);
        assert_eq!(one.received.load(Ordering::Relaxed), 3);
        assert_eq!(one.out_of_order.load(Ordering::Relaxed), 1, "1's 3 twice");
        assert_eq!(one.gaps.load(Ordering::Relaxed), 0);
        assert_eq!(two.received.load(Ordering::Relaxed), 3);
        assert_eq!(two.gaps.load(Ordering::Relaxed), 1, "2's 3 missing");
        assert_eq!(two.out_of_order.load(Ordering::Relaxed), 0);
        assert_eq!(c.missing_ranges(2, 5), "3");
        assert_eq!(c.missing_ranges(1, 5), "");
        assert_eq!(c.counts[OWN].received.load(Ordering::Relaxed), 0);
        assert_eq!(p.stats().in_use(), 0, "every frame freed");
    }
}
