//! The local APIC (per CPU: EOI, IPIs, the timer, TPR), the IOAPIC (routes
//! each device line to a vector on one CPU), the 8259 PICs (masked) and the
//! PIT (only to measure the timer's and the TSC's rates once).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::arch::{inb, outb};
use crate::services::ipl::{IPL_HIGH, Mutex};

/// The local APIC's MMIO base (from the MADT; QEMU's is `0xFEE00000`).
static LAPIC_BASE: AtomicUsize = AtomicUsize::new(0xfee0_0000);

const LAPIC_ID: usize = 0x20;
const LAPIC_EOI: usize = 0xb0;
const LAPIC_SVR: usize = 0xf0;
const LAPIC_ICR_LOW: usize = 0x300;
const LAPIC_ICR_HIGH: usize = 0x310;
const LAPIC_LVT_TIMER: usize = 0x320;
const LAPIC_LVT_LINT0: usize = 0x350;
const LAPIC_LVT_ERROR: usize = 0x370;
const LAPIC_TIMER_INIT: usize = 0x380;
const LAPIC_TIMER_CURRENT: usize = 0x390;
const LAPIC_TIMER_DIVIDE: usize = 0x3e0;

const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
const ICR_PENDING: u32 = 1 << 12;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_LEVEL: u32 = 1 << 15;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_SELF: u32 = 0b01 << 18;

/// The spurious-interrupt vector (never EOI'd).
pub(crate) const VEC_SPURIOUS: u8 = 0xff;

fn lapic_read(reg: usize) -> u32 {
    // SAFETY: the local APIC page is identity-mapped uncached and `reg` is a
    // register offset within it; a read has no side effect on memory.
    unsafe { core::ptr::read_volatile((LAPIC_BASE.load(Ordering::Relaxed) + reg) as *const u32) }
}

fn lapic_write(reg: usize, v: u32) {
    // SAFETY: as for `lapic_read`; each CPU writes its own local APIC.
    unsafe { core::ptr::write_volatile((LAPIC_BASE.load(Ordering::Relaxed) + reg) as *mut u32, v) }
}

/// Uses the local APIC at `base` (every CPU's is at the same address).
pub(crate) fn set_lapic_base(base: usize) {
    LAPIC_BASE.store(base, Ordering::Relaxed);
}

/// This CPU's local APIC id.
pub(crate) fn lapic_id() -> u32 {
    lapic_read(LAPIC_ID) >> 24
}

/// Enables this CPU's local APIC: spurious vector, LINT0 (the 8259's
/// ExtINT) and the error LVT masked, TPR 0.
pub(crate) fn lapic_init() {
    lapic_write(LAPIC_SVR, 0x100 | u32::from(VEC_SPURIOUS));
    lapic_write(LAPIC_LVT_LINT0, LVT_MASKED);
    lapic_write(LAPIC_LVT_ERROR, LVT_MASKED);
    crate::arch::set_tpr(0);
}

/// Signals the end of the interrupt being serviced.
pub(crate) fn eoi() {
    lapic_write(LAPIC_EOI, 0);
}

/// Writes the ICR (interrupts masked meanwhile: an IPI sent by a handler
/// between the two writes would clobber the destination) and waits until
/// the APIC accepted it.
fn send_icr(dest_apic: u32, low: u32) {
    let s = crate::services::ipl::splraise(IPL_HIGH);
    lapic_write(LAPIC_ICR_HIGH, dest_apic << 24);
    lapic_write(LAPIC_ICR_LOW, low);
    while lapic_read(LAPIC_ICR_LOW) & ICR_PENDING != 0 {
        core::hint::spin_loop();
    }
    crate::services::ipl::splx(s);
}

/// Sends a fixed interrupt with `vector` to the CPU with local APIC id `dest`.
pub(crate) fn send_ipi(dest: u32, vector: u8) {
    send_icr(dest, u32::from(vector));
}

/// Sends a fixed interrupt with `vector` to this CPU.
pub(crate) fn send_self_ipi(vector: u8) {
    send_icr(0, ICR_SELF | u32::from(vector));
}

/// INIT, then the two STARTUPs, to the application processor `dest`, which
/// starts in real mode at `page << 12`.
pub(crate) fn start_ap(dest: u32, page: u8, started: impl Fn() -> bool) -> bool {
    send_icr(dest, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
    delay_us(10_000);
    for _ in 0..2 {
        send_icr(dest, ICR_STARTUP | ICR_ASSERT | u32::from(page));
        delay_us(200);
        if started() {
            return true;
        }
    }
    // Give it up to a second to reach Rust.
    let deadline = crate::arch::rdtsc() + TSC_PER_US.load(Ordering::Relaxed) * 1_000_000;
    while crate::arch::rdtsc() < deadline {
        if started() {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

/// Timer counts (at divide-by-16) per tick, and TSC counts per microsecond,
/// both measured against the PIT by [`calibrate`].
pub(crate) static TIMER_PER_TICK: AtomicU64 = AtomicU64::new(0);
/// TSC counts per microsecond.
pub(crate) static TSC_PER_US: AtomicU64 = AtomicU64::new(1000);

const PIT_HZ: u64 = 1_193_182;

/// Reads PIT channel 2's current count (latched, so both bytes belong to
/// the same instant).
fn pit2_count() -> u16 {
    outb(0x43, 0b1000_0000);
    let lo = inb(0x42);
    let hi = inb(0x42);
    u16::from_le_bytes([lo, hi])
}

/// Measures the local APIC timer and the TSC against PIT channel 2.
///
/// Channel 2 free-runs (mode 2, count 65536); each round samples the PIT
/// count, the local APIC count and the TSC back to back at both ends of a
/// ~10 ms window, so the rates compare over the same interval whatever the
/// loop's own delays (a virtual CPU descheduled by the host in between
/// would otherwise stretch one clock's window and not the other's). The
/// median of five rounds is kept. `hz` is the tick rate the timer will run at.
pub(crate) fn calibrate(hz: u64) {
    const ROUNDS: usize = 5;
    const WINDOW: u16 = (PIT_HZ / 100) as u16;
    let g = inb(0x61) & !0x03;
    outb(0x61, g | 0x01);
    outb(0x43, 0b1011_0100);
    outb(0x42, 0);
    outb(0x42, 0);
    lapic_write(LAPIC_TIMER_DIVIDE, 0b0011);
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
    let mut lapic_per_s = [0u64; ROUNDS];
    let mut tsc_per_s = [0u64; ROUNDS];
    for r in 0..ROUNDS {
        lapic_write(LAPIC_TIMER_INIT, u32::MAX);
        let p0 = pit2_count();
        let l0 = lapic_read(LAPIC_TIMER_CURRENT);
        let t0 = crate::arch::rdtsc();
        // The count runs down from 65535 and wraps: wait for WINDOW ticks.
        while p0.wrapping_sub(pit2_count()) < WINDOW {
            core::hint::spin_loop();
        }
        let p1 = pit2_count();
        let l1 = lapic_read(LAPIC_TIMER_CURRENT);
        let t1 = crate::arch::rdtsc();
        let pit = u64::from(p0.wrapping_sub(p1)).max(1);
        lapic_per_s[r] = u64::from(l0 - l1) * PIT_HZ / pit;
        tsc_per_s[r] = (t1 - t0) * PIT_HZ / pit;
    }
    lapic_write(LAPIC_TIMER_INIT, 0);
    outb(0x61, g);
    lapic_per_s.sort_unstable();
    tsc_per_s.sort_unstable();
    TIMER_PER_TICK.store(lapic_per_s[ROUNDS / 2] / hz, Ordering::Relaxed);
    TSC_PER_US.store(
        (tsc_per_s[ROUNDS / 2] / 1_000_000).max(1),
        Ordering::Relaxed,
    );
}

/// Starts this CPU's periodic timer on `vector` at the calibrated rate.
pub(crate) fn start_timer(vector: u8) {
    lapic_write(LAPIC_TIMER_DIVIDE, 0b0011);
    lapic_write(LAPIC_LVT_TIMER, LVT_PERIODIC | u32::from(vector));
    lapic_write(
        LAPIC_TIMER_INIT,
        TIMER_PER_TICK
            .load(Ordering::Relaxed)
            .clamp(1, u64::from(u32::MAX)) as u32,
    );
}

/// Busy-waits `us` microseconds on the TSC.
pub(crate) fn delay_us(us: u64) {
    let end = crate::arch::rdtsc() + TSC_PER_US.load(Ordering::Relaxed) * us;
    while crate::arch::rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Remaps the 8259 PICs to vectors `0x20..=0x2f` (clear of the exceptions,
/// should one ever fire) and masks every line: the IOAPIC delivers instead.
pub(crate) fn mask_8259() {
    for (cmd, data, base, cascade) in [(0x20, 0x21, 0x20, 4), (0xa0, 0xa1, 0x28, 2)] {
        outb(cmd, 0x11);
        outb(data, base);
        outb(data, cascade);
        outb(data, 0x01);
        outb(data, 0xff);
    }
}

/// One IOAPIC: MMIO base and the first global system interrupt it serves.
pub(crate) struct IoApic {
    base: usize,
    gsi_base: u32,
    pins: u32,
}

/// The IOAPIC (QEMU has one). Register select/window pairs are not atomic,
/// hence the lock.
static IOAPIC: Mutex<IPL_HIGH, Option<IoApic>> = Mutex::new(None);

impl IoApic {
    fn read(&self, reg: u32) -> u32 {
        // SAFETY: IOREGSEL at +0 and IOWIN at +0x10 of the identity-mapped,
        // uncached IOAPIC page; the caller holds the IOAPIC lock.
        unsafe {
            core::ptr::write_volatile(self.base as *mut u32, reg);
            core::ptr::read_volatile((self.base + 0x10) as *const u32)
        }
    }

    fn write(&self, reg: u32, v: u32) {
        // SAFETY: as for `read`.
        unsafe {
            core::ptr::write_volatile(self.base as *mut u32, reg);
            core::ptr::write_volatile((self.base + 0x10) as *mut u32, v);
        }
    }
}

/// Takes the IOAPIC at `base` serving GSIs from `gsi_base`; masks every pin.
/// Returns the number of pins.
pub(crate) fn ioapic_init(base: usize, gsi_base: u32) -> u32 {
    let mut io = IoApic {
        base,
        gsi_base,
        pins: 0,
    };
    io.pins = ((io.read(1) >> 16) & 0xff) + 1;
    for pin in 0..io.pins {
        io.write(0x10 + 2 * pin, LVT_MASKED);
        io.write(0x11 + 2 * pin, 0);
    }
    let pins = io.pins;
    *IOAPIC.lock() = Some(io);
    pins
}

/// How a line signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trigger {
    /// Level-triggered (PCI INTx), else edge.
    pub level: bool,
    /// Active low (PCI INTx), else high.
    pub active_low: bool,
}

impl Trigger {
    /// PCI INTx: level-triggered, active low.
    pub const PCI: Self = Self {
        level: true,
        active_low: true,
    };
}

/// Routes `gsi` to `vector` on the CPU with local APIC id `dest`, unmasked
/// unless `masked`. `Err` if no IOAPIC serves `gsi`.
pub(crate) fn ioapic_route(
    gsi: u32,
    vector: u8,
    dest: u32,
    trigger: Trigger,
    masked: bool,
) -> Result<(), ()> {
    let g = IOAPIC.lock();
    let io = g.as_ref().ok_or(())?;
    let pin = gsi
        .checked_sub(io.gsi_base)
        .filter(|&p| p < io.pins)
        .ok_or(())?;
    let mut low = u32::from(vector);
    if trigger.active_low {
        low |= 1 << 13;
    }
    if trigger.level {
        low |= 1 << 15;
    }
    if masked {
        low |= LVT_MASKED;
    }
    // Mask while the entry is half written.
    io.write(0x10 + 2 * pin, LVT_MASKED);
    io.write(0x11 + 2 * pin, dest << 24);
    io.write(0x10 + 2 * pin, low);
    Ok(())
}

/// Masks `gsi`.
pub(crate) fn ioapic_mask(gsi: u32) {
    let g = IOAPIC.lock();
    if let Some(io) = g.as_ref()
        && let Some(pin) = gsi.checked_sub(io.gsi_base).filter(|&p| p < io.pins)
    {
        let low = io.read(0x10 + 2 * pin);
        io.write(0x10 + 2 * pin, low | LVT_MASKED);
    }
}
