//! The raw smoke test: one frame from em0 to em1 by hand, through
//! descriptors in hugepage memory, no driver. It prints what the device
//! does at each step, which is how the simulator/QEMU differences were found.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mpsafe_em::desc::{Desc, RXD_STAT_DD, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS};
use mpsafe_em::device::IntrHandler;
use mpsafe_em::regs::{ICR_RXT0, RCTL_EN, Reg, Regs, TCTL_EN};
use mpsafe_em::uio::{DmaAllocator, DmaChunk, UioDevice};

/// `RCTL.SECRC`: strip the Ethernet CRC from received frames.
const RCTL_SECRC: u32 = 1 << 26;
/// `TCTL.PSP`: pad short packets.
const TCTL_PSP: u32 = 1 << 3;
/// Receive no buffers count (statistics, clear on read).
const RNBC: Reg = Reg(0x40a0);
/// Missed packets count.
const MPC: Reg = Reg(0x4010);
const NDESC: usize = 8;

/// Counts interrupts and keeps the causes it read.
struct Causes {
    dev: Arc<UioDevice>,
    calls: AtomicU32,
    seen: AtomicU32,
}

impl IntrHandler for Causes {
    fn intr(&self) -> bool {
        let icr = self.dev.read(Reg::ICR);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.seen.fetch_or(icr, Ordering::Relaxed);
        icr != 0
    }
}

fn ring(dma: &DmaAllocator) -> Result<(DmaChunk, &'static [Desc]), String> {
    let c = dma
        .alloc(NDESC * size_of::<Desc>(), 128)
        .map_err(|e| e.to_string())?;
    // SAFETY: the chunk is zeroed DMA memory of NDESC descriptors, 128-byte
    // aligned (more than Desc's 16), kept mapped by the allocator, which the
    // caller keeps alive (leaked for the program's life below).
    let descs = unsafe { std::slice::from_raw_parts(c.virt.as_ptr().cast::<Desc>(), NDESC) };
    Ok((c, descs))
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    None
}

fn frame(dst: [u8; 6], src: [u8; 6], seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // local experimental ethertype
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (i as u8) ^ (seq as u8);
    }
    f
}

/// Runs the smoke test on `em0` → `em1`.
pub(crate) fn run(em0: &Arc<UioDevice>, em1: &Arc<UioDevice>) -> Result<(), String> {
    let dma = DmaAllocator::new();
    let m0 = em0.mac().ok_or("em0: RAH0 not valid")?;
    let m1 = em1.mac().ok_or("em1: RAH0 not valid")?;
    println!(
        "smoke: em0 {} mac {m0:02x?} link {}; em1 {} mac {m1:02x?} link {}",
        em0.pci().bdf(),
        em0.link_up(),
        em1.pci().bdf(),
        em1.link_up()
    );
    let h = Arc::new(Causes {
        dev: Arc::clone(em1),
        calls: AtomicU32::new(0),
        seen: AtomicU32::new(0),
    });
    em1.establish(Arc::downgrade(&(Arc::clone(&h) as Arc<dyn IntrHandler>)));

    // em1 receives: an 8-descriptor ring, 7 buffers posted.
    let (rxc, rx) = ring(&dma)?;
    let mut bufs = Vec::new();
    for d in rx.iter().take(NDESC - 1) {
        let b = dma.alloc(2048, 2048).map_err(|e| e.to_string())?;
        d.post_rx(b.bus);
        bufs.push(b);
    }
    em1.write(Reg::rdbal(0), rxc.bus as u32);
    em1.write(Reg::rdbah(0), (rxc.bus >> 32) as u32);
    em1.write(Reg::rdlen(0), (NDESC * 16) as u32);
    em1.write(Reg::rdh(0), 0);
    em1.write(Reg::rdt(0), 0);
    em1.write(Reg::RCTL, RCTL_EN | RCTL_SECRC);
    em1.write(Reg::IMS, ICR_RXT0);
    em1.write(Reg::rdt(0), (NDESC - 1) as u32);

    // em0 transmits one 60-byte frame.
    let (txc, tx) = ring(&dma)?;
    let tb = dma.alloc(2048, 2048).map_err(|e| e.to_string())?;
    let f = frame(m1, m0, 1, 60);
    // SAFETY: the buffer is 2048 bytes of DMA memory the device does not
    // own yet (no descriptor points at it).
    unsafe { std::ptr::copy_nonoverlapping(f.as_ptr(), tb.virt.as_ptr(), f.len()) };
    em0.write(Reg::tdbal(0), txc.bus as u32);
    em0.write(Reg::tdbah(0), (txc.bus >> 32) as u32);
    em0.write(Reg::tdlen(0), (NDESC * 16) as u32);
    em0.write(Reg::tdh(0), 0);
    em0.write(Reg::tdt(0), 0);
    em0.write(Reg::TCTL, TCTL_EN | TCTL_PSP);
    tx[0].post_tx(tb.bus, 60, TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS);
    let t0 = Instant::now();
    em0.write(Reg::tdt(0), 1);

    let rx_at = wait_until(Duration::from_secs(2), || {
        rx[0].rx_writeback().status & RXD_STAT_DD != 0
    })
    .ok_or("em1: frame never arrived (no DD within 2 s)")?;
    let tx_done = tx[0].tx_done().is_some();
    let wb = rx[0].rx_writeback();
    // SAFETY: DD is set: the device finished writing the buffer, and the
    // acquire in rx_writeback orders this read after it.
    let got = unsafe { std::slice::from_raw_parts(bufs[0].virt.as_ptr(), usize::from(wb.len)) };
    println!(
        "smoke: rx DD after {:?} (TDH {} TX DD {tx_done}), len {} status {:#x} errors {:#x}, payload {}",
        rx_at,
        em0.read(Reg::tdh(0)),
        wb.len,
        wb.status,
        wb.errors,
        if got == &f[..] { "equal" } else { "DIFFERENT" }
    );
    if got != &f[..] {
        return Err(format!("payload differs: sent {f:02x?}, got {got:02x?}"));
    }
    let intr_at = wait_until(Duration::from_secs(2), || {
        h.calls.load(Ordering::Relaxed) > 0
    });
    println!(
        "smoke: em1 interrupt {} after send (calls {}, causes {:#x}), {:?} from doorbell",
        if intr_at.is_some() {
            "arrived"
        } else {
            "MISSING"
        },
        h.calls.load(Ordering::Relaxed),
        h.seen.load(Ordering::Relaxed),
        t0.elapsed()
    );
    if intr_at.is_none() {
        return Err("no interrupt from em1".into());
    }

    // What happens when the receive ring is empty: RDT = RDH, then send.
    let rdh = em1.read(Reg::rdh(0));
    em1.write(Reg::rdt(0), rdh);
    let (_, _) = (em1.read(RNBC), em1.read(MPC));
    let f2 = frame(m1, m0, 2, 60);
    // SAFETY: the device is done with the buffer (TX DD seen or TDH moved).
    unsafe { std::ptr::copy_nonoverlapping(f2.as_ptr(), tb.virt.as_ptr(), f2.len()) };
    tx[1].post_tx(tb.bus, 60, TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS);
    em0.write(Reg::tdt(0), 2);
    let sent = wait_until(Duration::from_secs(1), || tx[1].tx_done().is_some());
    std::thread::sleep(Duration::from_millis(50));
    let (rnbc, mpc) = (em1.read(RNBC), em1.read(MPC));
    println!(
        "smoke: empty rx ring: TX DD {:?}, em1 RNBC {rnbc} MPC {mpc} ICR {:#x} RDH {}",
        sent,
        em1.read(Reg::ICR),
        em1.read(Reg::rdh(0))
    );
    // Post one more buffer: is a held frame delivered then?
    let before = rx[rdh as usize].rx_writeback().status;
    em1.write(Reg::rdt(0), (rdh + 1) % NDESC as u32);
    let late = wait_until(Duration::from_millis(500), || {
        rx[rdh as usize].rx_writeback().status & RXD_STAT_DD != 0
    });
    println!(
        "smoke: after posting a buffer: slot {rdh} status {before:#x} -> {:#x} ({late:?})",
        rx[rdh as usize].rx_writeback().status
    );
    em1.write(Reg::RCTL, 0);
    em0.write(Reg::TCTL, 0);
    em1.disestablish();
    em1.intr_barrier();
    em0.reset().map_err(|e| e.to_string())?;
    em1.reset().map_err(|e| e.to_string())?;
    // DMA memory goes away only after both devices were reset.
    drop(dma);
    println!("smoke: ok");
    Ok(())
}
