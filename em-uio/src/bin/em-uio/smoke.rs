//! The raw smoke test: one frame from em0 to em1 by hand, through
//! descriptors in hugepage memory, no driver. It prints what the device
//! does at each step, which is how the simulator/QEMU differences were found.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mpsafe_em_sim::BufState;
use mpsafe_em_sim::desc::{RXD_STAT_DD, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS};
use mpsafe_em_sim::hw::IntrHandler;
use mpsafe_em_sim::regs::{ICR_RXT0, RCTL_EN, Reg, Regs, TCTL_EN};
use mpsafe_em_uio::{DmaAllocator, UioDevice};

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
    let err = |e: mpsafe_em_uio::UioError| e.to_string();
    let pool = dma.pool(16, 2048).map_err(err)?;
    let (rx_bus, rx) = dma.ring(NDESC).map_err(err)?;
    for i in 0..NDESC - 1 {
        let m = pool.alloc().ok_or("pool empty")?;
        rx.get(i).post_rx(m.into_ring(BufState::OnRxRing));
    }
    em1.write(Reg::rdbal(0), rx_bus as u32);
    em1.write(Reg::rdbah(0), (rx_bus >> 32) as u32);
    em1.write(Reg::rdlen(0), (NDESC * 16) as u32);
    em1.write(Reg::rdh(0), 0);
    em1.write(Reg::rdt(0), 0);
    em1.write(Reg::RCTL, RCTL_EN | RCTL_SECRC);
    em1.write(Reg::IMS, ICR_RXT0);
    em1.write(Reg::rdt(0), (NDESC - 1) as u32);

    // em0 transmits one 60-byte frame.
    let (tx_bus, tx) = dma.ring(NDESC).map_err(err)?;
    let f = frame(m1, m0, 1, 60);
    let mut m = pool.alloc().ok_or("pool empty")?;
    m.data_mut().ok_or("not a DMA pool")?[..f.len()].copy_from_slice(&f);
    m.set_len(f.len() as u16);
    em0.write(Reg::tdbal(0), tx_bus as u32);
    em0.write(Reg::tdbah(0), (tx_bus >> 32) as u32);
    em0.write(Reg::tdlen(0), (NDESC * 16) as u32);
    em0.write(Reg::tdh(0), 0);
    em0.write(Reg::tdt(0), 0);
    em0.write(Reg::TCTL, TCTL_EN | TCTL_PSP);
    tx.get(0).post_tx(
        m.into_ring(BufState::OnTxRing),
        60,
        TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS,
    );
    let t0 = Instant::now();
    em0.write(Reg::tdt(0), 1);

    let rx_at = wait_until(Duration::from_secs(2), || {
        rx.get(0).rx_writeback().status & RXD_STAT_DD != 0
    })
    .ok_or("em1: frame never arrived (no DD within 2 s)")?;
    let tx_done = tx.get(0).tx_done();
    let wb = rx.get(0).rx_writeback();
    // SAFETY: this smoke test posted both buffers on rings it drives; the
    // receive slot has DD (waited for above) and the transmit slot its
    // write-back (checked on the next line before use).
    let mut got = unsafe { pool.reclaim(wb.addr, BufState::OnRxRing) };
    got.set_len(wb.len);
    let got_bytes = got.data().ok_or("not a DMA pool")?.to_vec();
    let tx_addr = tx_done.ok_or("TX DD not written back")?;
    // SAFETY: as above: our transmit slot, written back.
    let sent = unsafe { pool.reclaim(tx_addr, BufState::OnTxRing) };
    pool.free_all([got, sent]);
    let got = &got_bytes[..];
    println!(
        "smoke: rx DD after {:?} (TDH {} TX DD {}), len {} status {:#x} errors {:#x}, payload {}",
        rx_at,
        em0.read(Reg::tdh(0)),
        tx_done.is_some(),
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
    let rdh = em1.read(Reg::rdh(0)) as usize;
    em1.write(Reg::rdt(0), rdh as u32);
    let (_, _) = (em1.read(RNBC), em1.read(MPC));
    let f2 = frame(m1, m0, 2, 60);
    let mut m = pool.alloc().ok_or("pool empty")?;
    m.data_mut().ok_or("not a DMA pool")?[..f2.len()].copy_from_slice(&f2);
    m.set_len(60);
    tx.get(1).post_tx(
        m.into_ring(BufState::OnTxRing),
        60,
        TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS,
    );
    em0.write(Reg::tdt(0), 2);
    let sent = wait_until(Duration::from_secs(1), || tx.get(1).tx_done().is_some());
    std::thread::sleep(Duration::from_millis(50));
    let (rnbc, mpc) = (em1.read(RNBC), em1.read(MPC));
    println!(
        "smoke: empty rx ring: TX DD {:?}, em1 RNBC {rnbc} MPC {mpc} ICR {:#x} RDH {}",
        sent,
        em1.read(Reg::ICR),
        em1.read(Reg::rdh(0))
    );
    // Post one more buffer: is a held frame delivered then?
    let before = rx.get(rdh).rx_writeback().status;
    em1.write(Reg::rdt(0), ((rdh + 1) % NDESC) as u32);
    let late = wait_until(Duration::from_millis(500), || {
        rx.get(rdh).rx_writeback().status & RXD_STAT_DD != 0
    });
    println!(
        "smoke: after posting a buffer: slot {rdh} status {before:#x} -> {:#x} ({late:?})",
        rx.get(rdh).rx_writeback().status
    );
    // Frames sent while the receiver holds after an RCTL write: in order?
    em1.write(Reg::rdt(0), (NDESC - 1) as u32);
    em1.write(Reg::RCTL, RCTL_EN | RCTL_SECRC);
    for (k, slot) in (2..5).enumerate() {
        let f = frame(m1, m0, 10 + k as u32, 60 + 100 * k);
        let mut m = pool.alloc().ok_or("pool empty")?;
        m.data_mut().ok_or("not a DMA pool")?[..f.len()].copy_from_slice(&f);
        m.set_len(f.len() as u16);
        tx.get(slot).post_tx(
            m.into_ring(BufState::OnTxRing),
            f.len() as u16,
            TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS,
        );
        em0.write(Reg::tdt(0), slot as u32 + 1);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let mut order = Vec::new();
    for slot in 2..5 {
        let wb = rx.get(slot).rx_writeback();
        if wb.status & RXD_STAT_DD == 0 {
            // Not written back: the device may still fill it, so it stays
            // posted (reclaimed at the end, after the reset).
            order.push(0);
            continue;
        }
        // SAFETY: our receive slot, written back (DD): the device is done
        // with the buffer until we post it again below.
        let mut m = unsafe { pool.reclaim(wb.addr, BufState::OnRxRing) };
        m.set_len(wb.len);
        let d = m.data().ok_or("not a DMA pool")?;
        order.push(if d.len() >= 18 {
            u32::from_be_bytes(d[14..18].try_into().expect("4 bytes"))
        } else {
            0
        });
        let again = m.into_ring(BufState::OnRxRing);
        rx.get(slot).post_rx(again);
    }
    println!("smoke: frames 10, 11, 12 sent during the receiver's hold arrived as {order:?}");
    // Frames sent while the receiver is disabled for longer than the hold:
    // does QEMU keep them until RCTL.EN comes back?
    em1.write(Reg::RCTL, 0);
    let (rdh, rdt) = (
        em1.read(Reg::rdh(0)) as usize,
        em1.read(Reg::rdt(0)) as usize,
    );
    for (k, slot) in (5..7).enumerate() {
        let f = frame(m1, m0, 20 + k as u32, 60);
        let mut m = pool.alloc().ok_or("pool empty")?;
        m.data_mut().ok_or("not a DMA pool")?[..f.len()].copy_from_slice(&f);
        m.set_len(f.len() as u16);
        tx.get(slot).post_tx(
            m.into_ring(BufState::OnTxRing),
            60,
            TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS,
        );
        em0.write(Reg::tdt(0), slot as u32 + 1);
    }
    std::thread::sleep(Duration::from_millis(1300));
    em1.write(Reg::RCTL, RCTL_EN | RCTL_SECRC);
    std::thread::sleep(Duration::from_millis(1500));
    println!(
        "smoke: 2 frames sent while the receiver was disabled for 1.3 s: RDH {rdh} -> {} (RDT {rdt}): {} delivered",
        em1.read(Reg::rdh(0)),
        (em1.read(Reg::rdh(0)) as usize + NDESC - rdh) % NDESC
    );
    // What CTRL.RST resets: on the 8254x, everything (rings, RCTL, TCTL).
    em1.mmio().write(Reg::CTRL, mpsafe_em_sim::regs::CTRL_RST);
    println!(
        "smoke: after CTRL.RST: CTRL {:#x} RCTL {:#x} RDLEN {} RDH {} RDT {} IMS {:#x}",
        em1.read(Reg::CTRL),
        em1.read(Reg::RCTL),
        em1.read(Reg::rdlen(0)),
        em1.read(Reg::rdh(0)),
        em1.read(Reg::rdt(0)),
        em1.read(Reg::IMS)
    );
    em1.write(Reg::RCTL, 0);
    em0.write(Reg::TCTL, 0);
    em1.disestablish();
    em1.intr_barrier();
    em0.reset().map_err(|e| e.to_string())?;
    em1.reset().map_err(|e| e.to_string())?;
    // Every buffer back: the devices are stopped, so reclaim what the rings
    // still hold (the second frame's tx buffer, the posted rx buffers).
    let mut back = Vec::new();
    for slot in 1..7 {
        if let Some(a) = tx.get(slot).tx_done() {
            // SAFETY: both devices are reset (above): our slots, untouched.
            back.push(unsafe { pool.reclaim(a, BufState::OnTxRing) });
        }
    }
    for i in 1..NDESC - 1 {
        // SAFETY: as above: the devices are reset, the slots are ours.
        back.push(unsafe { pool.reclaim(rx.get(i).rx_writeback().addr, BufState::OnRxRing) });
    }
    pool.free_all(back);
    let st = pool.stats();
    println!("smoke: {st}");
    if st.in_use() != 0 || st.leaked != 0 {
        return Err(format!("buffers not all back: {st}"));
    }
    println!("smoke: ok");
    Ok(())
}
