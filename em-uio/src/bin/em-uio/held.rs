//! `held`: frames sent to an interface while it is down survive an
//! interrupt's late re-arm.
//!
//! QEMU holds the frames that arrive for a disabled receiver, and delivers
//! them after `up`. But any write of the PCI command register (with bus
//! mastering on) makes it flush them into the device at once, and a
//! disabled receiver drops every one without a counter. The interrupt
//! thread writes that register to re-arm INTx after each handler, outside
//! the interrupt gate, so a handler that ran just before `stop` could
//! re-arm after it. This test makes that interleaving happen on purpose:
//! em1 down, INTx masked as the kernel's handler leaves it, eight frames
//! sent to em1, the interrupt thread's re-arm, em1 up: all eight arrive.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use mpsafe_em_uio::{PCI_COMMAND_INTX_DISABLE, UioDevice};

use crate::drive::Nic;
use crate::traffic::{OWN, write_frame};

const FRAMES: u64 = 8;

pub(crate) fn run(em0: &Nic, em1: &Nic, dev1: &UioDevice, run: u8) -> Result<(), String> {
    for n in [em0, em1] {
        n.stack.mark_up();
        n.em.up()
            .map_err(|e| format!("held: {}: up: {e}", n.name))?;
    }
    // QEMU's receive hold after the RCTL write of `up`.
    thread::sleep(Duration::from_millis(1200));
    em1.em.down();
    // INTx masked, as `uio_pci_generic`'s handler leaves it for the
    // interrupt thread to re-arm (this configuration write flushes nothing:
    // nothing is held for em1 yet).
    let c = dev1.pci().command().map_err(|e| e.to_string())?;
    dev1.pci()
        .set_command(c | PCI_COMMAND_INTX_DISABLE)
        .map_err(|e| e.to_string())?;
    for seq in 1..=FRAMES {
        let mut m = em0.pool.alloc().ok_or("held: em0's pool is empty")?;
        write_frame(&mut m, em1.mac, em0.mac, seq, run, OWN as u8);
        em0.em
            .transmit(0, m)
            .map_err(|e| format!("held: em0 refused frame {seq}: {e}"))?;
    }
    // QEMU transmits inside the TDT write; give the frames time to reach
    // em1's queue anyway.
    thread::sleep(Duration::from_millis(20));
    // The late re-arm of an interrupt handled just before stop.
    dev1.rearm_intx().map_err(|e| e.to_string())?;
    em1.stack.mark_up();
    em1.em.up().map_err(|e| format!("held: em1: up: {e}"))?;
    let received = || em1.stack.counts[OWN].received.load(Ordering::Relaxed);
    let t = Instant::now();
    while received() < FRAMES && t.elapsed() < Duration::from_secs(4) {
        thread::sleep(Duration::from_millis(10));
    }
    let got = received();
    for n in [em0, em1] {
        n.em.down();
    }
    println!(
        "held: {got} of {FRAMES} frames sent to em1 while it was down arrived after a re-arm of its interrupt line during the down"
    );
    if got != FRAMES {
        return Err(format!(
            "held: {} frames sent to em1 while it was down were lost (QEMU flushed them into the disabled receiver)",
            FRAMES - got
        ));
    }
    for n in [em0, em1] {
        let st = n.em.stats();
        if st.pool.in_use() != 0 || st.pool.leaked != 0 {
            return Err(format!("held: {}: {}", n.name, st.pool));
        }
    }
    Ok(())
}
