//! The NIC part of the platform self-test: a small throwaway test driver
//! for QEMU's two e1000s (82540EM), to be replaced by the em driver.
//!
//! Both NICs sit on one QEMU hub. em0's line is routed to CPU 0 and em1's
//! to CPU 1. CPU 1 transmits on em0 (em0→em1) while CPU 0 transmits on em1
//! (em1→em0), so every transmit path shares its NIC's locks with an
//! interrupt handler on the *other* CPU:
//!
//! - the handler (real interrupt context, on the line's CPU) reads ICR,
//!   reclaims transmitted descriptors under the tx lock and checks received
//!   frames under the rx lock (both IPL-raising mutexes at `IPL_NET`);
//! - when it freed ring space for a sender that found the ring full, it
//!   queues the NIC's restart task on its own CPU, which transmits more (so
//!   both CPUs transmit on each NIC), and wakes the sleeping sender with the
//!   IPI;
//! - em1's handler is established as not MP-safe: it runs under the big
//!   lock; a non-MP-safe timeout bounds the run.
//!
//! QEMU's e1000 queues what arrives for 1 s after RCTL is written (its
//! `flush_queue_timer`), so the first frame is received about a second
//! after the first transmit; frames per second are counted from the first
//! frame received, and the table shows the hold.
//!
//! Every frame carries its direction and a sequence number; the receiver
//! checks each byte and the order. The run passes only if every frame sent
//! arrived intact, in order, once, and both CPUs serviced interrupts.
//!
//! Each sender, between batches, inspects the rx ring of the NIC whose
//! interrupts its own CPU takes, under that ring's rx lock. With
//! `fault=noipl` CPU 0 takes em0's rx lock *without* raising the level (and
//! holds it 10 ms): when em0 interrupts meanwhile, its handler spins on a
//! lock held by the code it interrupted, forever, and CPU 1's watchdog
//! reports it. (Only CPU 0 errs: with both stuck in handlers, interrupts
//! masked, no clock would tick to report anything.)
//!
//! The locks a handler shares with the transmit and peek paths are declared
//! at lock-order levels ([`NicTx`], [`NicRx`], [`NicRestart`]) and taken
//! through `mpsafe_order`'s context token, every path (handler, task,
//! sender) starting from a fresh [`Ctx`]. In a debug build the witness
//! records each acquisition on its CPU's stack, the handler's on top of
//! whatever the code it interrupted holds; so with `fault=noipl` the
//! handler's acquisition of em0's rx lock is reported (a panic naming where
//! the handler takes it and where the interrupted sender took it) before
//! the handler spins, and the watchdog never gets to see a deadlock.

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use mpsafe_order::{Ctx, Ordered};

use super::Options;
use crate::apic::{TSC_PER_US, Trigger};
use crate::arch::rdtsc;
use crate::console::{kprintln, print_emergency};
use crate::cpu::{CPUS, MAX_CPUS};
use crate::madt::Topology;
use crate::pci::{self, PciDevice};
use crate::services::biglock::KERNEL_LOCK;
use crate::services::intr::{IntrHandle, intr_barrier, intr_disestablish, intr_establish};
use crate::services::ipl::{IPL_HIGH, IPL_NET, Mutex};
use crate::services::task::{Task, task_add};
use crate::services::timeout::{Timeout, timeout_add, timeout_del};
use crate::services::wait::{sleep_until, wake_all};
use crate::services::{HZ, cpu_id, watchdog};
use crate::smp;

const RX_DESC: usize = 256;
const TX_DESC: usize = 256;
const BUF_SIZE: usize = 2048;
/// Frame length without the FCS the NIC appends (the 60-byte minimum).
const FRAME_LEN: usize = 60;
/// IEEE 802 local experimental ethertype.
const ETHERTYPE: u16 = 0x88b5;
const MAGIC: &[u8; 4] = b"MPSK";
/// Frames in flight per direction (queued, not yet checked by the
/// receiver). QEMU queues frames for a receiver with no free descriptor and
/// flushes its queue into the ring when the driver returns descriptors,
/// dropping (and counting in MPC) whatever does not fit; a window below the
/// receive ring's size keeps every frame in the ring, so none is lost.
const WINDOW: u64 = (RX_DESC / 2) as u64;
/// The whole NIC test must end within this many seconds.
const DEADLINE_SECS: u64 = 60;

// 8254x registers (byte offsets in BAR 0) and bits.
const CTRL: usize = 0x0000;
const STATUS: usize = 0x0008;
const ICR: usize = 0x00c0;
const IMS: usize = 0x00d0;
const IMC: usize = 0x00d8;
const RCTL: usize = 0x0100;
const TCTL: usize = 0x0400;
const TIPG: usize = 0x0410;
const RDBAL: usize = 0x2800;
const RDBAH: usize = 0x2804;
const RDLEN: usize = 0x2808;
const RDH: usize = 0x2810;
const RDT: usize = 0x2818;
const TDBAL: usize = 0x3800;
const TDBAH: usize = 0x3804;
const TDLEN: usize = 0x3808;
const TDH: usize = 0x3810;
const TDT: usize = 0x3818;
const MPC: usize = 0x4010;
const MTA: usize = 0x5200;
const RAL0: usize = 0x5400;
const RAH0: usize = 0x5404;

const CTRL_SLU: u32 = 1 << 6;
const CTRL_RST: u32 = 1 << 26;
const STATUS_LU: u32 = 1 << 1;
const RCTL_EN: u32 = 1 << 1;
const RCTL_BAM: u32 = 1 << 15;
const RCTL_SECRC: u32 = 1 << 26;
const TCTL_EN: u32 = 1 << 1;
const TCTL_PSP: u32 = 1 << 3;
const ICR_TXDW: u32 = 1 << 0;
const ICR_LSC: u32 = 1 << 2;
const ICR_RXDMT0: u32 = 1 << 4;
const ICR_RXO: u32 = 1 << 6;
const ICR_RXT0: u32 = 1 << 7;
const RAH_AV: u32 = 1 << 31;
const DESC_DD: u8 = 1 << 0;
const TXD_EOP: u8 = 1 << 0;
const TXD_IFCS: u8 = 1 << 1;
const TXD_RS: u8 = 1 << 3;

mpsafe_order::lock_order! {
    /// A NIC's transmit ring (an `IPL_NET` mutex): the senders, the restart
    /// task and the handler's transmit completion.
    pub NicTx,
    /// A NIC's receive ring (an `IPL_NET` mutex): the handler's receive
    /// path and the senders' ring peek.
    pub NicRx,
    /// A NIC's restart task (an `IPL_NET` mutex): set up once, read by the
    /// handler.
    pub NicRestart,
}

/// A legacy receive descriptor.
#[repr(C, align(16))]
#[derive(Clone, Copy, Default)]
struct RxDesc {
    addr: u64,
    len: u16,
    csum: u16,
    status: u8,
    errors: u8,
    special: u16,
}

/// A legacy transmit descriptor.
#[repr(C, align(16))]
#[derive(Clone, Copy, Default)]
struct TxDesc {
    addr: u64,
    len: u16,
    cso: u8,
    cmd: u8,
    status: u8,
    css: u8,
    special: u16,
}

/// BAR 0, identity-mapped and uncached.
struct Regs(usize);

impl Regs {
    fn read(&self, reg: usize) -> u32 {
        // SAFETY: `reg` is a register offset inside this NIC's 128 KiB BAR 0,
        // identity-mapped uncached; register reads have device side effects
        // (ICR clears) but touch no memory of ours.
        unsafe { core::ptr::read_volatile((self.0 + reg) as *const u32) }
    }

    fn write(&self, reg: usize, v: u32) {
        // A release: descriptor writes before a tail write reach memory
        // before the device is told (x86 keeps stores in order; this keeps
        // the compiler from moving them).
        core::sync::atomic::fence(Ordering::Release);
        // SAFETY: as for `read`.
        unsafe { core::ptr::write_volatile((self.0 + reg) as *mut u32, v) }
    }
}

type Buf = Box<[u8; BUF_SIZE]>;

/// Bus address of memory the kernel owns: the identity map makes it the
/// pointer's value.
fn bus_addr<T>(p: *const T) -> u64 {
    p as u64
}

struct RxRing {
    desc: &'static mut [RxDesc],
    bufs: Vec<Buf>,
    /// Next descriptor the device fills.
    next: usize,
    /// Sequence number expected next.
    expect: u64,
}

struct TxRing {
    desc: &'static mut [TxDesc],
    bufs: Vec<Buf>,
    /// Next free descriptor (the tail we write).
    tail: usize,
    /// Oldest descriptor not yet reclaimed.
    clean: usize,
    in_flight: usize,
    /// Frames still to send.
    to_send: u64,
    next_seq: u64,
    /// The ring filled up with frames left: the handler must restart.
    oactive: bool,
}

/// Counters of one NIC.
#[derive(Default)]
struct Stats {
    /// Interrupts with a receive cause, per CPU.
    rx_intr: [AtomicU64; MAX_CPUS],
    /// Interrupts with a transmit cause, per CPU.
    tx_intr: [AtomicU64; MAX_CPUS],
    /// Frames queued for transmit, per CPU that queued them.
    queued_by: [AtomicU64; MAX_CPUS],
    /// Frames received intact and in order.
    rx_ok: AtomicU64,
    /// Frames received wrong (content, order, length, addresses).
    rx_bad: AtomicU64,
    /// Transmit descriptors reclaimed.
    tx_done: AtomicU64,
    /// TSC of the first transmit, and of the last frame received.
    first_tx: AtomicU64,
    first_rx: AtomicU64,
    last_rx: AtomicU64,
}

/// One direction's frames that reached the receiver (intact or not).
#[derive(Default)]
struct Flow {
    received: AtomicU64,
}

struct Nic {
    name: &'static str,
    /// Index: em0 = 0, em1 = 1 (also the direction byte of its frames).
    index: u8,
    regs: Regs,
    mac: [u8; 6],
    peer_mac: AtomicU64,
    rx: Ordered<NicRx, Mutex<IPL_NET, RxRing>>,
    tx: Ordered<NicTx, Mutex<IPL_NET, TxRing>>,
    stats: Stats,
    /// The frames this NIC sends (counted by the peer's receive path).
    out: Arc<Flow>,
    /// The frames this NIC receives.
    inc: Arc<Flow>,
    /// Bumped (and waiters woken) whenever the handler freed ring space.
    tx_progress: AtomicU32,
    restart: Ordered<NicRestart, Mutex<IPL_NET, Option<Arc<Task>>>>,
    fault_noipl: bool,
}

fn mac_of(v: u64) -> [u8; 6] {
    let b = v.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

impl Nic {
    /// Resets the NIC and sets up its rings; interrupts stay masked.
    fn attach(
        dev: PciDevice,
        index: u8,
        frames: u64,
        (out, inc): (Arc<Flow>, Arc<Flow>),
        fault_noipl: bool,
    ) -> Result<Self, &'static str> {
        let bar = dev.bar0_mem().ok_or("e1000 without a memory BAR 0")?;
        dev.enable();
        let regs = Regs(bar as usize);
        regs.write(IMC, u32::MAX);
        regs.write(CTRL, regs.read(CTRL) | CTRL_RST);
        let t = rdtsc();
        while regs.read(CTRL) & CTRL_RST != 0 {
            if rdtsc() - t > TSC_PER_US.load(Ordering::Relaxed) * 100_000 {
                return Err("e1000 reset did not complete");
            }
            core::hint::spin_loop();
        }
        regs.write(IMC, u32::MAX);
        let _ = regs.read(ICR);
        regs.write(CTRL, regs.read(CTRL) | CTRL_SLU);
        let (ral, rah) = (regs.read(RAL0), regs.read(RAH0));
        if rah & RAH_AV == 0 {
            return Err("e1000 has no valid MAC address in RAL0/RAH0");
        }
        let mac = mac_of(u64::from(ral) | u64::from(rah & 0xffff) << 32);
        for i in 0..128 {
            regs.write(MTA + 4 * i, 0);
        }

        let rx_desc: &'static mut [RxDesc] = Box::leak(Box::new([RxDesc::default(); RX_DESC]));
        let mut bufs: Vec<Buf> = (0..RX_DESC).map(|_| Box::new([0u8; BUF_SIZE])).collect();
        for (d, b) in rx_desc.iter_mut().zip(bufs.iter_mut()) {
            d.addr = bus_addr(b.as_ptr());
        }
        regs.write(RDBAL, bus_addr(rx_desc.as_ptr()) as u32);
        regs.write(RDBAH, (bus_addr(rx_desc.as_ptr()) >> 32) as u32);
        regs.write(RDLEN, (RX_DESC * 16) as u32);
        regs.write(RDH, 0);
        regs.write(RDT, (RX_DESC - 1) as u32);
        regs.write(RCTL, RCTL_EN | RCTL_BAM | RCTL_SECRC);

        let tx_desc: &'static mut [TxDesc] = Box::leak(Box::new([TxDesc::default(); TX_DESC]));
        let tx_bufs: Vec<Buf> = (0..TX_DESC).map(|_| Box::new([0u8; BUF_SIZE])).collect();
        regs.write(TDBAL, bus_addr(tx_desc.as_ptr()) as u32);
        regs.write(TDBAH, (bus_addr(tx_desc.as_ptr()) >> 32) as u32);
        regs.write(TDLEN, (TX_DESC * 16) as u32);
        regs.write(TDH, 0);
        regs.write(TDT, 0);
        regs.write(TIPG, 10 | 8 << 10 | 6 << 20);
        regs.write(TCTL, TCTL_EN | TCTL_PSP | 0x0f << 4 | 0x40 << 12);

        Ok(Self {
            name: if index == 0 { "em0" } else { "em1" },
            index,
            regs,
            mac,
            peer_mac: AtomicU64::new(0),
            rx: Ordered::new(Mutex::new(RxRing {
                desc: rx_desc,
                bufs,
                next: 0,
                expect: 0,
            })),
            tx: Ordered::new(Mutex::new(TxRing {
                desc: tx_desc,
                bufs: tx_bufs,
                tail: 0,
                clean: 0,
                in_flight: 0,
                to_send: frames,
                next_seq: 0,
                oactive: false,
            })),
            stats: Stats::default(),
            out,
            inc,
            tx_progress: AtomicU32::new(0),
            restart: Ordered::new(Mutex::new(None)),
            fault_noipl,
        })
    }

    fn link_up(&self) -> bool {
        self.regs.read(STATUS) & STATUS_LU != 0
    }

    fn enable_interrupts(&self) {
        self.regs
            .write(IMS, ICR_TXDW | ICR_LSC | ICR_RXDMT0 | ICR_RXO | ICR_RXT0);
    }

    /// Stops the NIC: interrupts masked, receiver and transmitter off.
    fn stop(&self) {
        self.regs.write(IMC, u32::MAX);
        self.regs.write(RCTL, 0);
        self.regs.write(TCTL, 0);
        let _ = self.regs.read(ICR);
    }

    /// The transmit routine (`if_start`): fills the ring from the frames
    /// left to send. Called by the sender thread and by the restart task,
    /// on either CPU.
    fn start(&self) {
        let dst = mac_of(self.peer_mac.load(Ordering::Relaxed));
        let me = cpu_id();
        let mut ctx = Ctx::new();
        let (mut tx, _) = ctx.lock(&self.tx);
        let mut queued = 0;
        let room = WINDOW.saturating_sub(tx.next_seq - self.out.received.load(Ordering::Acquire));
        while tx.to_send > 0 && tx.in_flight < TX_DESC - 1 && queued < room {
            let i = tx.tail;
            let seq = tx.next_seq;
            build_frame(&mut tx.bufs[i], &dst, &self.mac, self.index, seq);
            let addr = bus_addr(tx.bufs[i].as_ptr());
            tx.desc[i] = TxDesc {
                addr,
                len: FRAME_LEN as u16,
                cmd: TXD_EOP | TXD_IFCS | TXD_RS,
                ..TxDesc::default()
            };
            tx.tail = (i + 1) % TX_DESC;
            tx.in_flight += 1;
            tx.to_send -= 1;
            tx.next_seq += 1;
            queued += 1;
        }
        tx.oactive = tx.to_send > 0;
        if queued > 0 {
            let _ = self.stats.first_tx.compare_exchange(
                0,
                rdtsc(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            self.stats.queued_by[me].fetch_add(queued, Ordering::Relaxed);
            self.regs.write(TDT, tx.tail as u32);
        }
    }

    /// The interrupt handler: claims it if ICR had a cause.
    fn intr(&self) -> bool {
        let icr = self.regs.read(ICR);
        if icr == 0 {
            return false;
        }
        let me = cpu_id();
        if icr & (ICR_RXT0 | ICR_RXO | ICR_RXDMT0) != 0 {
            self.stats.rx_intr[me].fetch_add(1, Ordering::Relaxed);
        }
        if icr & ICR_TXDW != 0 {
            self.stats.tx_intr[me].fetch_add(1, Ordering::Relaxed);
        }
        self.rxeof();
        self.txeof();
        true
    }

    /// Checks and recycles every received frame.
    fn rxeof(&self) {
        let peer = mac_of(self.peer_mac.load(Ordering::Relaxed));
        let peer_dir = 1 - self.index;
        // A fresh context: the handler's entry (or the drain after the run).
        let mut ctx = Ctx::new();
        let (mut rx, _) = ctx.lock(&self.rx);
        let mut done = 0u64;
        let mut last = None;
        loop {
            let i = rx.next;
            // SAFETY: a descriptor of our ring; the device writes its status
            // by DMA, hence the volatile read.
            let status = unsafe { core::ptr::read_volatile(&raw const rx.desc[i].status) };
            if status & DESC_DD == 0 {
                break;
            }
            // The status read above is ordered before the reads of the
            // descriptor's length and the buffer (x86 loads stay in order;
            // this keeps the compiler from hoisting them).
            core::sync::atomic::fence(Ordering::Acquire);
            // SAFETY: as above.
            let len = usize::from(unsafe { core::ptr::read_volatile(&raw const rx.desc[i].len) });
            let expect = rx.expect;
            let ok = len == FRAME_LEN
                && check_frame(&rx.bufs[i][..FRAME_LEN], &self.mac, &peer, peer_dir, expect);
            if ok {
                self.stats.rx_ok.fetch_add(1, Ordering::Relaxed);
            } else {
                self.stats.rx_bad.fetch_add(1, Ordering::Relaxed);
            }
            rx.expect += 1;
            rx.desc[i].status = 0;
            rx.desc[i].len = 0;
            rx.next = (i + 1) % RX_DESC;
            last = Some(i);
            done += 1;
        }
        if let Some(i) = last {
            // Give the processed descriptors back.
            self.regs.write(RDT, i as u32);
            let now = rdtsc();
            let _ =
                self.stats
                    .first_rx
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            self.stats.last_rx.store(now, Ordering::Relaxed);
        }
        drop(rx);
        if done > 0 {
            self.inc.received.fetch_add(done, Ordering::SeqCst);
            // The sender of the peer NIC waits for these counts.
            wake_all();
        }
    }

    /// Reclaims transmitted descriptors; restarts a sender that found the
    /// ring full.
    fn txeof(&self) {
        let mut ctx = Ctx::new();
        let (mut tx, _) = ctx.lock(&self.tx);
        let mut freed = 0u64;
        while tx.in_flight > 0 {
            let i = tx.clean;
            // SAFETY: a descriptor of our ring, written back by the device.
            let status = unsafe { core::ptr::read_volatile(&raw const tx.desc[i].status) };
            if status & DESC_DD == 0 {
                break;
            }
            tx.desc[i].status = 0;
            tx.clean = (i + 1) % TX_DESC;
            tx.in_flight -= 1;
            freed += 1;
        }
        let restart = freed > 0 && tx.oactive;
        if restart {
            tx.oactive = false;
        }
        drop(tx);
        if freed > 0 {
            self.stats.tx_done.fetch_add(freed, Ordering::Relaxed);
            self.tx_progress.fetch_add(1, Ordering::SeqCst);
            if restart {
                let mut ctx = Ctx::new();
                let (task, _) = ctx.lock(&self.restart);
                if let Some(t) = (**task).as_ref() {
                    task_add(t, cpu_id());
                }
            }
            wake_all();
        }
    }

    /// How many received descriptors wait in the ring: what a thread-context
    /// statistic would read under the rx lock. With `fault=noipl` it takes
    /// the lock without raising the level.
    fn rx_ring_peek(&self) -> usize {
        let count = |rx: &RxRing| {
            rx.desc
                .iter()
                // SAFETY: descriptors of our ring, written by the device.
                .filter(|d| unsafe { core::ptr::read_volatile(&raw const d.status) } & DESC_DD != 0)
                .count()
        };
        // Only on CPU 0 (em0's ring): a CPU stuck with interrupts masked
        // takes no clock tick, so the other CPU must stay well to report it.
        let mut ctx = Ctx::new();
        if self.fault_noipl && cpu_id() == 0 {
            // Through the context like the correct path, so the witness
            // records the hold; only the level is wrong.
            let (rx, _) = ctx.lock_with(&self.rx, |m| {
                // SAFETY: the raw lock is taken here and the guard made for
                // it owns it: dropping the guard releases it.
                unsafe {
                    m.raw().lock_without_ipl_fault_injection();
                    m.make_guard_unchecked()
                }
            });
            let n = count(&rx);
            // Held for 10 ms, so the demonstration does not depend on
            // luck: the NIC interrupts this CPU hundreds of times a second
            // during the run.
            crate::apic::delay_us(10_000);
            drop(rx);
            n
        } else {
            let (rx, _) = ctx.lock(&self.rx);
            count(&rx)
        }
    }

    fn tx_left(&self) -> u64 {
        let mut ctx = Ctx::new();
        let (tx, _) = ctx.lock(&self.tx);
        tx.to_send
    }
}

fn build_frame(buf: &mut [u8; BUF_SIZE], dst: &[u8; 6], src: &[u8; 6], dir: u8, seq: u64) {
    buf[0..6].copy_from_slice(dst);
    buf[6..12].copy_from_slice(src);
    buf[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    buf[14..18].copy_from_slice(MAGIC);
    buf[18] = dir;
    buf[19] = 0;
    buf[20..28].copy_from_slice(&seq.to_le_bytes());
    for (k, b) in buf[28..FRAME_LEN].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_add(k as u8);
    }
}

fn check_frame(f: &[u8], me: &[u8; 6], peer: &[u8; 6], dir: u8, seq: u64) -> bool {
    f[0..6] == *me
        && f[6..12] == *peer
        && f[12..14] == ETHERTYPE.to_be_bytes()
        && f[14..18] == *MAGIC
        && f[18] == dir
        && f[20..28] == seq.to_le_bytes()
        && f[28..]
            .iter()
            .enumerate()
            .all(|(k, &b)| b == (seq as u8).wrapping_add(k as u8))
}

/// The NICs under test, for the watchdog's diagnostics.
static UNDER_TEST: Mutex<IPL_HIGH, Vec<Weak<Nic>>> = Mutex::new(Vec::new());

/// Prints each NIC's registers, lock states and counters (from the
/// watchdog, on the CPU that is not stuck).
fn diagnose() {
    let Some(nics) = UNDER_TEST.try_lock() else {
        return;
    };
    for nic in nics.iter().filter_map(Weak::upgrade) {
        let r = &nic.regs;
        let s = &nic.stats;
        print_emergency(format_args!(
            "diag {}: TDH {} TDT {} RDH {} RDT {} MPC {} | tx lock {} rx lock {} | queued {}/{} done {} rx ok {} bad {} | out.received {} in.received {} tx_progress {}\n",
            nic.name,
            r.read(TDH),
            r.read(TDT),
            r.read(RDH),
            r.read(RDT),
            r.read(MPC),
            if nic.tx.unordered().is_locked() {
                "held"
            } else {
                "free"
            },
            if nic.rx.unordered().is_locked() {
                "held"
            } else {
                "free"
            },
            s.queued_by[0].load(Ordering::Relaxed),
            s.queued_by[1].load(Ordering::Relaxed),
            s.tx_done.load(Ordering::Relaxed),
            s.rx_ok.load(Ordering::Relaxed),
            s.rx_bad.load(Ordering::Relaxed),
            nic.out.received.load(Ordering::Relaxed),
            nic.inc.received.load(Ordering::Relaxed),
            nic.tx_progress.load(Ordering::Relaxed),
        ));
    }
}

/// The deadline: set by a (non-MP-safe) timeout if the run takes too long.
static EXPIRED: AtomicBool = AtomicBool::new(false);

/// A sender: transmits `nic`'s frames from this CPU, sleeps while the ring
/// is full, then waits until the peer received them all.
fn sender(nic: &Nic, peer: &Nic, frames: u64) {
    watchdog::arm(true);
    loop {
        // Snapshot before transmitting: whatever the handlers do after
        // this point ends the sleep below (a snapshot taken after `start`
        // would miss completions that came in between, and sleep forever).
        let seen = nic.tx_progress.load(Ordering::SeqCst);
        let seen_rx = nic.out.received.load(Ordering::SeqCst);
        nic.start();
        watchdog::progress();
        // With fault=noipl: the rx ring whose interrupts this CPU takes.
        let _ = nic_for_cpu(nic, peer).rx_ring_peek();
        if nic.tx_left() == 0 || EXPIRED.load(Ordering::SeqCst) {
            break;
        }
        sleep_until(|| {
            nic.tx_progress.load(Ordering::SeqCst) != seen
                || nic.out.received.load(Ordering::SeqCst) != seen_rx
                || EXPIRED.load(Ordering::SeqCst)
        });
    }
    sleep_until(|| {
        watchdog::progress();
        nic.out.received.load(Ordering::SeqCst) >= frames || EXPIRED.load(Ordering::SeqCst)
    });
    watchdog::arm(false);
}

/// Of the two NICs, the one whose interrupts go to this CPU.
fn nic_for_cpu<'a>(a: &'a Nic, b: &'a Nic) -> &'a Nic {
    if usize::from(a.index) == cpu_id() {
        a
    } else {
        b
    }
}

/// Runs the NIC test.
pub(super) fn run(topo: &Topology, opts: &Options) -> Result<(), &'static str> {
    let devs: Vec<PciDevice> = pci::scan_bus0()
        .into_iter()
        .filter(|d| d.vendor == 0x8086 && d.device == 0x100e)
        .collect();
    if devs.len() != 2 {
        kprintln!(
            "selftest: nic: found {} e1000 (8086:100e), need 2",
            devs.len()
        );
        return Err("need exactly two e1000 NICs");
    }
    let frames = opts.frames;
    // Frames each NIC sends: em0 always, em1 unless the run is one-way.
    let sends = [frames, if opts.oneway { 0 } else { frames }];
    let (f01, f10) = (Arc::new(Flow::default()), Arc::new(Flow::default()));
    let flows = [(Arc::clone(&f01), Arc::clone(&f10)), (f10, f01)];
    let nics: Vec<Arc<Nic>> = devs
        .iter()
        .zip(flows)
        .enumerate()
        .map(|(i, (&d, f))| Nic::attach(d, i as u8, sends[i], f, opts.fault_noipl).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let (em0, em1) = (Arc::clone(&nics[0]), Arc::clone(&nics[1]));
    *UNDER_TEST.lock() = nics.iter().map(Arc::downgrade).collect();
    watchdog::set_diagnose(diagnose);
    em0.peer_mac.store(mac_u64(&em1.mac), Ordering::Relaxed);
    em1.peer_mac.store(mac_u64(&em0.mac), Ordering::Relaxed);
    for (nic, d) in nics.iter().zip(&devs) {
        let weak: Weak<Nic> = Arc::downgrade(nic);
        let mut ctx = Ctx::new();
        let (mut restart, _) = ctx.lock(&nic.restart);
        **restart = Some(Task::new(
            move || {
                if let Some(n) = weak.upgrade() {
                    n.start();
                }
            },
            true,
        ));
        drop(restart);
        let (line, pin) = d.interrupt();
        kprintln!(
            "selftest: nic: {} at 00:{:02x}.{} BAR0 {:#x} MAC {} INT{} line {line} (GSI {}) -> CPU {}, link {}",
            nic.name,
            d.slot,
            d.func,
            nic.regs.0,
            MacFmt(nic.mac),
            char::from(b'@' + pin.max(1)),
            topo.gsi_for_isa_irq(line),
            nic.index,
            if nic.link_up() { "up" } else { "down" },
        );
    }

    // em0's line to CPU 0 (MP-safe handler), em1's to CPU 1 (under the big lock).
    let mut handles: Vec<IntrHandle> = Vec::new();
    // References to each NIC before its handler holds one.
    let refs: Vec<usize> = nics.iter().map(Arc::strong_count).collect();
    for (nic, d) in nics.iter().zip(&devs) {
        let n = Arc::clone(nic);
        let gsi = topo.gsi_for_isa_irq(d.interrupt().0);
        let mpsafe = nic.index == 0;
        let h = intr_establish(
            gsi,
            Trigger::PCI,
            usize::from(nic.index),
            mpsafe,
            Arc::new(move || n.intr()),
        )
        .map_err(|_| "intr_establish failed")?;
        handles.push(h);
        nic.enable_interrupts();
    }

    let deadline = Timeout::new(
        || {
            EXPIRED.store(true, Ordering::SeqCst);
            wake_all();
        },
        false,
    );
    timeout_add(&deadline, DEADLINE_SECS * HZ);
    let big_before = [KERNEL_LOCK.acquisitions(0), KERNEL_LOCK.acquisitions(1)];
    let cpu_before: Vec<[u64; 4]> = CPUS.iter().take(2).map(cpu_counts).collect();
    let t0 = rdtsc();

    // CPU 1 sends on em0, CPU 0 on em1, at the same time.
    let (a, b) = (Arc::clone(&em0), Arc::clone(&em1));
    let other = smp::run_on(1, move || sender(&a, &b, sends[0]));
    sender(&em1, &em0, sends[1]);
    other.wait();
    let t1 = rdtsc();
    timeout_del(&deadline);

    // Interrupts off, then the barrier: no handler call is left running.
    for nic in &nics {
        nic.stop();
    }
    for h in &handles {
        intr_barrier(h);
    }
    let claimed: Vec<[u64; 2]> = handles
        .iter()
        .map(|h| [h.claimed(0), h.claimed(1)])
        .collect();
    let unclaimed: u64 = handles.iter().map(IntrHandle::unclaimed).sum();
    for h in handles {
        intr_disestablish(h);
    }
    // The handler table let go of each handler (and of the NIC it holds):
    // no call in flight or later keeps it.
    let leaked = nics
        .iter()
        .zip(&refs)
        .any(|(n, &r)| Arc::strong_count(n) != r);
    // Drain what the rings hold after the last interrupt.
    for nic in &nics {
        nic.rxeof();
        nic.txeof();
    }

    let us = |t: u64| t / TSC_PER_US.load(Ordering::Relaxed).max(1);
    if opts.oneway {
        kprintln!("selftest: nic: {frames} frames of {FRAME_LEN} bytes em0->em1 only");
    } else {
        kprintln!(
            "selftest: nic: {frames} frames of {FRAME_LEN} bytes each way, both ways at once"
        );
    }
    kprintln!(
        "  direction  sent    done    received  bad  missed(MPC)  hold ms  time ms  frames/s"
    );
    let mut failures: Vec<&str> = Vec::new();
    for (tx, rx, expect) in [(&em0, &em1, sends[0]), (&em1, &em0, sends[1])] {
        let (s, r) = (&tx.stats, &rx.stats);
        let sent: u64 = s.queued_by.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        let ok = r.rx_ok.load(Ordering::Relaxed);
        let bad = r.rx_bad.load(Ordering::Relaxed);
        let done = s.tx_done.load(Ordering::Relaxed);
        let first_rx = r.first_rx.load(Ordering::Relaxed);
        let hold = us(first_rx.saturating_sub(s.first_tx.load(Ordering::Relaxed)));
        let dur = us(r.last_rx.load(Ordering::Relaxed).saturating_sub(first_rx)).max(1);
        let missed = rx.regs.read(MPC);
        kprintln!(
            "  {}->{}   {sent:<7} {done:<7} {ok:<9} {bad:<4} {missed:<12} {:<8} {:<8} {}",
            tx.name,
            rx.name,
            hold / 1000,
            dur / 1000,
            ok * 1_000_000 / dur,
        );
        if sent != expect || done != expect || ok != expect || bad != 0 || missed != 0 {
            failures.push("a frame was lost, damaged, reordered or not reclaimed");
        }
    }
    // Both ways: from the first frame received either way to the last.
    let total: u64 =
        em0.stats.rx_ok.load(Ordering::Relaxed) + em1.stats.rx_ok.load(Ordering::Relaxed);
    let start = [&em0, &em1]
        .iter()
        .map(|n| n.stats.first_rx.load(Ordering::Relaxed))
        .filter(|&t| t != 0)
        .min()
        .unwrap_or(0);
    let end = em0
        .stats
        .last_rx
        .load(Ordering::Relaxed)
        .max(em1.stats.last_rx.load(Ordering::Relaxed));
    let both_us = us(end.saturating_sub(start)).max(1);
    kprintln!(
        "  in total: {total} frames in {} ms = {} frames/s (the whole run, with QEMU's receive hold: {} ms)",
        both_us / 1000,
        total * 1_000_000 / both_us,
        us(t1 - t0) / 1000,
    );
    kprintln!(
        "  hold: QEMU's e1000 queues what arrives for 1 s after RCTL is written (its flush_queue_timer); frames/s counts from the first frame received"
    );
    kprintln!(
        "  NIC  handler on CPU0  on CPU1  rx-cause CPU0/CPU1  tx-cause CPU0/CPU1  queued by CPU0/CPU1"
    );
    for (nic, c) in nics.iter().zip(&claimed) {
        let s = &nic.stats;
        let l = |a: &[AtomicU64; MAX_CPUS], i: usize| a[i].load(Ordering::Relaxed);
        kprintln!(
            "  {}  {:<15} {:<8} {:>8}/{:<9} {:>8}/{:<9} {:>8}/{}",
            nic.name,
            c[0],
            c[1],
            l(&s.rx_intr, 0),
            l(&s.rx_intr, 1),
            l(&s.tx_intr, 0),
            l(&s.tx_intr, 1),
            l(&s.queued_by, 0),
            l(&s.queued_by, 1),
        );
    }
    kprintln!(
        "  CPU  device intr  timer  wake IPIs in/out  task softints  softclock  sleeps  big lock"
    );
    for (i, before) in cpu_before.iter().enumerate() {
        let now = cpu_counts(&CPUS[i]);
        let st = &CPUS[i].stats;
        kprintln!(
            "  {i}    {:<12} {:<6} {:>6}/{:<9} {:<14} {:<10} {:<7} {}",
            now[0] - before[0],
            now[1] - before[1],
            now[2] - before[2],
            st.wake_sent.load(Ordering::Relaxed),
            now[3] - before[3],
            st.softclock.load(Ordering::Relaxed),
            st.sleeps.load(Ordering::Relaxed),
            KERNEL_LOCK.acquisitions(i) - big_before[i],
        );
    }
    if unclaimed > 0 {
        kprintln!("  unclaimed interrupts: {unclaimed}");
    }
    if leaked {
        failures.push("intr_disestablish left a handler reference behind");
    }
    if EXPIRED.load(Ordering::SeqCst) {
        failures.push("the run did not finish before its deadline");
    }
    if claimed[0][0] == 0 || claimed[1][1] == 0 {
        failures.push("a CPU serviced no NIC interrupt");
    }
    if claimed[0][1] != 0 || claimed[1][0] != 0 {
        failures.push("a NIC interrupt arrived on the CPU it is not routed to");
    }
    for nic in &nics {
        let q = &nic.stats.queued_by;
        let sending = sends[usize::from(nic.index)] > 0;
        if sending && (q[0].load(Ordering::Relaxed) == 0 || q[1].load(Ordering::Relaxed) == 0) {
            kprintln!("  note: {} was transmitted on from one CPU only", nic.name);
        }
    }
    if let Some((first, more)) = failures.split_first() {
        // The caller prints the first.
        for f in more {
            kprintln!("selftest: nic: FAIL: {f}");
        }
        return Err(first);
    }
    kprintln!("selftest: nic: PASS");
    Ok(())
}

fn cpu_counts(c: &crate::cpu::PerCpu) -> [u64; 4] {
    let s = &c.stats;
    [
        s.device.load(Ordering::Relaxed),
        s.timer.load(Ordering::Relaxed),
        s.wake_ipi.load(Ordering::Relaxed),
        s.softtask.load(Ordering::Relaxed),
    ]
}

fn mac_u64(m: &[u8; 6]) -> u64 {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(m);
    u64::from_le_bytes(b)
}

struct MacFmt([u8; 6]);

impl core::fmt::Display for MacFmt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}
