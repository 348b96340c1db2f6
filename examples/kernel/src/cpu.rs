//! Per-CPU state, the GDT/TSS each CPU loads, the shared IDT and the
//! interrupt entry stubs.
//!
//! Every vector enters through a 16-byte stub (`isr_stubs + 16 * vector`)
//! that pushes a zero error code where the CPU pushes none, then the vector,
//! and jumps to `isr_common`, which saves the caller-saved registers, calls
//! [`isr_dispatch`] with the frame and returns with `iretq`. The target has
//! no SSE (soft-float), so there is no vector state to save. All gates are
//! interrupt gates: a handler runs with interrupts masked until it returns.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use alloc::boxed::Box;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::model_specific::GsBase;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::structures::tss::TaskStateSegment;

use crate::console::print_emergency;

/// The most CPUs the kernel runs (QEMU's `-smp 2` uses two).
pub(crate) const MAX_CPUS: usize = 4;

/// One CPU's state. `index` must stay the first field: [`cpu_id`] reads it
/// at `gs:0`.
#[repr(C, align(128))]
pub(crate) struct PerCpu {
    /// This CPU's index (0 is the boot CPU).
    pub(crate) index: AtomicU32,
    /// Its local APIC id.
    pub(crate) apic_id: AtomicU32,
    /// Running the kernel (set by the CPU itself once it takes interrupts).
    pub(crate) online: AtomicBool,
    /// Halted in a sleeping wait: a waker must send the wake-up IPI.
    pub(crate) sleeping: AtomicBool,
    /// `vector + 1` of the handler running on this CPU, 0 outside handlers.
    pub(crate) in_intr: AtomicU32,
    /// Handler returns on this CPU (interrupt barriers wait for it to move).
    pub(crate) intr_exits: AtomicU64,
    /// Timer ticks taken by this CPU (the watchdog's heartbeat).
    pub(crate) heartbeat: AtomicU64,
    /// Every interrupt taken, by kind.
    pub(crate) stats: CpuStats,
}

/// Interrupt and wait counters of one CPU.
#[derive(Default)]
pub(crate) struct CpuStats {
    /// Device interrupts (vectors `0x50..=0x5f`), claimed or not.
    pub(crate) device: AtomicU64,
    /// Timer ticks.
    pub(crate) timer: AtomicU64,
    /// Wake-up IPIs received.
    pub(crate) wake_ipi: AtomicU64,
    /// Wake-up IPIs this CPU sent.
    pub(crate) wake_sent: AtomicU64,
    /// Softclock interrupts (timeouts run).
    pub(crate) softclock: AtomicU64,
    /// Task soft interrupts.
    pub(crate) softtask: AtomicU64,
    /// Halts in a sleeping wait.
    pub(crate) sleeps: AtomicU64,
    /// Waits that spun because sleeping was not allowed there.
    pub(crate) spin_waits: AtomicU64,
    /// Spurious or unexpected vectors.
    pub(crate) stray: AtomicU64,
}

impl PerCpu {
    const fn new() -> Self {
        Self {
            index: AtomicU32::new(0),
            apic_id: AtomicU32::new(0),
            online: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            in_intr: AtomicU32::new(0),
            intr_exits: AtomicU64::new(0),
            heartbeat: AtomicU64::new(0),
            stats: CpuStats {
                device: AtomicU64::new(0),
                timer: AtomicU64::new(0),
                wake_ipi: AtomicU64::new(0),
                wake_sent: AtomicU64::new(0),
                softclock: AtomicU64::new(0),
                softtask: AtomicU64::new(0),
                sleeps: AtomicU64::new(0),
                spin_waits: AtomicU64::new(0),
                stray: AtomicU64::new(0),
            },
        }
    }
}

/// Every CPU's state, by index.
pub(crate) static CPUS: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

/// How many CPUs are online.
pub(crate) fn online_cpus() -> usize {
    CPUS.iter()
        .filter(|c| c.online.load(Ordering::Acquire))
        .count()
}

/// This CPU's index (0 is the boot CPU), from `gs:0`.
pub(crate) fn cpu_id() -> usize {
    let id: u32;
    // SAFETY: GS base points at this CPU's `PerCpu` (set by `init_this_cpu`
    // before anything asks), whose first field is the index.
    unsafe {
        core::arch::asm!("mov {:e}, gs:[0]", out(reg) id, options(nostack, readonly, preserves_flags));
    }
    id as usize
}

/// This CPU's state.
pub(crate) fn this_cpu() -> &'static PerCpu {
    &CPUS[cpu_id()]
}

/// The IDT, built once by the boot CPU and loaded by every CPU.
static IDT: AtomicPtr<InterruptDescriptorTable> = AtomicPtr::new(core::ptr::null_mut());

/// The IST slot of the double-fault handler's own stack.
const DOUBLE_FAULT_IST: u16 = 0;

/// Sets up CPU `index` (the caller): GS base, its own GDT and TSS (with a
/// double-fault stack), the IDT. The boot CPU builds the IDT first.
pub(crate) fn init_this_cpu(index: usize, apic_id: u32) {
    let me = &CPUS[index];
    me.index.store(index as u32, Ordering::Relaxed);
    me.apic_id.store(apic_id, Ordering::Relaxed);
    GsBase::write(VirtAddr::from_ptr(me));

    let df_stack = Box::leak(Box::new([0u8; 16384]));
    let mut tss = TaskStateSegment::new();
    tss.interrupt_stack_table[DOUBLE_FAULT_IST as usize] =
        VirtAddr::from_ptr(df_stack.as_ptr_range().end);
    let tss: &'static TaskStateSegment = Box::leak(Box::new(tss));
    let gdt: &'static mut GlobalDescriptorTable = Box::leak(Box::new(GlobalDescriptorTable::new()));
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = gdt.append(Descriptor::tss_segment(tss));
    gdt.load();
    // SAFETY: the selectors name the descriptors just loaded (64-bit code,
    // flat data, this CPU's TSS), all 'static.
    unsafe {
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(data);
        ES::set_reg(data);
        load_tss(tss_sel);
    }

    if index == 0 {
        IDT.store(Box::leak(build_idt()), Ordering::Release);
    }
    let idt = IDT.load(Ordering::Acquire);
    // SAFETY: the IDT is leaked ('static) and never written after it is
    // published; the boot CPU publishes it before starting the others.
    unsafe { (*idt).load() };
}

unsafe extern "C" {
    static isr_stubs: u8;
}

/// The address of vector `v`'s entry stub.
fn stub(v: usize) -> VirtAddr {
    VirtAddr::from_ptr(&raw const isr_stubs)
        .as_u64()
        .checked_add(16 * v as u64)
        .map(VirtAddr::new)
        .expect("stub address")
}

fn build_idt() -> Box<InterruptDescriptorTable> {
    let mut idt = Box::new(InterruptDescriptorTable::new());
    macro_rules! set {
        ($($field:ident = $v:expr),* $(,)?) => {$(
            // SAFETY: the stub at this address is the entry for vector $v:
            // it handles the error code the CPU does or does not push.
            unsafe { idt.$field.set_handler_addr(stub($v)); }
        )*};
    }
    set!(
        divide_error = 0,
        debug = 1,
        non_maskable_interrupt = 2,
        breakpoint = 3,
        overflow = 4,
        bound_range_exceeded = 5,
        invalid_opcode = 6,
        device_not_available = 7,
        invalid_tss = 10,
        segment_not_present = 11,
        stack_segment_fault = 12,
        general_protection_fault = 13,
        page_fault = 14,
        x87_floating_point = 16,
        alignment_check = 17,
        machine_check = 18,
        simd_floating_point = 19,
        virtualization = 20,
    );
    // SAFETY: as above, and the double-fault handler gets its own stack (a
    // kernel stack overflow would otherwise fault again and reset the CPU).
    unsafe {
        idt.double_fault
            .set_handler_addr(stub(8))
            .set_stack_index(DOUBLE_FAULT_IST);
    }
    for (i, entry) in idt.slice_mut(32..=255).iter_mut().enumerate() {
        // SAFETY: stub `32 + i` is the entry for that vector.
        unsafe { entry.set_handler_addr(stub(32 + i)) };
    }
    idt
}

/// What `isr_common` pushed, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct TrapFrame {
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rax: u64,
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

core::arch::global_asm!(
    ".pushsection .text.isr, \"ax\"",
    ".balign 16",
    ".globl isr_stubs",
    "isr_stubs:",
    ".set vec, 0",
    ".rept 256",
    ".balign 16",
    // Vectors 8, 10-14, 17, 21, 29, 30 come with an error code.
    ".if vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 || vec == 29 || vec == 30",
    ".else",
    "push 0",
    ".endif",
    "push vec",
    "jmp isr_common",
    ".set vec, vec + 1",
    ".endr",
    "isr_common:",
    "push rax",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    // 9 registers + vector + error + the CPU's 5 words: 128 bytes, and the
    // CPU aligned RSP to 16 before pushing, so the call is aligned.
    "mov rdi, rsp",
    "cld",
    "call {dispatch}",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rax",
    "add rsp, 16",
    "iretq",
    ".popsection",
    dispatch = sym isr_dispatch,
);

const EXCEPTION_NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor overrun",
    "invalid TSS",
    "segment not present",
    "stack fault",
    "general protection",
    "page fault",
    "reserved",
    "x87 FP",
    "alignment check",
    "machine check",
    "SIMD FP",
    "virtualization",
    "control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection",
    "VMM communication",
    "security",
    "reserved",
];

/// Every interrupt and exception lands here (interrupts masked).
extern "C" fn isr_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector as usize;
    if vector < 32 {
        let cr2 = x86_64::registers::control::Cr2::read_raw();
        print_emergency(format_args!(
            "\nEXCEPTION {vector} ({}) on CPU {} error {:#x} rip {:#x} rsp {:#x} cr2 {cr2:#x}\n",
            EXCEPTION_NAMES[vector],
            cpu_id(),
            frame.error,
            frame.rip,
            frame.rsp,
        ));
        crate::arch::exit_qemu(crate::EXIT_EXCEPTION);
    }
    let me = this_cpu();
    me.in_intr.store(vector as u32 + 1, Ordering::Relaxed);
    crate::services::intr::dispatch(vector as u8);
    me.in_intr.store(0, Ordering::Relaxed);
    // Release: a barrier that sees the count move sees the handler's writes.
    me.intr_exits.fetch_add(1, Ordering::Release);
}
