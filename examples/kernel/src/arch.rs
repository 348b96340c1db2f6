//! Small x86-64 instructions the rest of the kernel uses: port I/O, the task
//! priority register (CR8), the time-stamp counter, halting, leaving QEMU.

use core::arch::asm;

use x86_64::instructions::port::Port;

/// Writes a byte to an I/O port.
pub(crate) fn outb(port: u16, value: u8) {
    // SAFETY: the kernel owns every port it names (PIC, PIT, PCI config,
    // COM1, isa-debug-exit); a write has no memory effect the compiler sees.
    unsafe { Port::new(port).write(value) }
}

/// Reads a byte from an I/O port.
pub(crate) fn inb(port: u16) -> u8 {
    // SAFETY: as for `outb`.
    unsafe { Port::new(port).read() }
}

/// Writes a 32-bit word to an I/O port.
pub(crate) fn outl(port: u16, value: u32) {
    // SAFETY: as for `outb`.
    unsafe { Port::new(port).write(value) }
}

/// Reads a 32-bit word from an I/O port.
pub(crate) fn inl(port: u16) -> u32 {
    // SAFETY: as for `outb`.
    unsafe { Port::new(port).read() }
}

/// The task priority class in CR8 (the local APIC's TPR bits 7:4): the CPU
/// takes no interrupt whose vector's class (`vector >> 4`) is at or below it.
pub(crate) fn tpr() -> u8 {
    let v: u64;
    // SAFETY: reading CR8 has no side effect.
    unsafe { asm!("mov {}, cr8", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v as u8
}

/// Sets the task priority class (see [`tpr`]). Lowering it lets pending
/// interrupts of the classes it no longer blocks in at once (if enabled).
pub(crate) fn set_tpr(class: u8) {
    // SAFETY: CR8 only gates interrupt delivery on this CPU. It is a compiler
    // barrier (no `nomem`): memory accesses made under a raised level stay
    // under it.
    unsafe { asm!("mov cr8, {}", in(reg) u64::from(class), options(nostack, preserves_flags)) };
}

/// The time-stamp counter.
pub(crate) fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effect.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Whether maskable interrupts are enabled on this CPU (RFLAGS.IF).
pub(crate) fn interrupts_enabled() -> bool {
    x86_64::instructions::interrupts::are_enabled()
}

/// Masks interrupts on this CPU.
pub(crate) fn cli() {
    x86_64::instructions::interrupts::disable();
}

/// Unmasks interrupts on this CPU.
pub(crate) fn sti() {
    x86_64::instructions::interrupts::enable();
}

/// Enables interrupts and halts in one step: an interrupt that became
/// pending while they were masked wakes the `hlt` instead of slipping in
/// before it (STI's one-instruction shadow).
pub(crate) fn sti_hlt() {
    x86_64::instructions::interrupts::enable_and_hlt();
}

/// QEMU's `isa-debug-exit` device (`iobase=0xf4,iosize=0x04`): a write of
/// `v` ends QEMU with status `(v << 1) | 1`.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Ends the run: QEMU exits with `(status << 1) | 1`. Without the device
/// (another machine), halts forever.
pub(crate) fn exit_qemu(status: u32) -> ! {
    outl(DEBUG_EXIT_PORT, status);
    loop {
        cli();
        x86_64::instructions::hlt();
    }
}
