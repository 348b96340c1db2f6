//! From QEMU's PVH loader to Rust: the ELF note, the 32-bit entry, long
//! mode, and the 16-bit trampoline that brings the other CPUs up the same way.
//!
//! QEMU's `-kernel` takes an ELF with a `XEN_ELFNOTE_PHYS32_ENTRY` note (type
//! 18) in a `PT_NOTE` segment as a PVH kernel: it loads the segments at their
//! physical addresses (from 1 MiB, `kernel.ld`) and jumps to the note's
//! address in 32-bit protected mode, paging off, `ebx` holding the physical
//! address of the `hvm_start_info` block. The entry zeroes `.bss`, builds one
//! set of page tables (4 GiB identity-mapped with 2 MiB pages, the top GiB
//! uncached: it holds the PCI BARs, the IOAPIC at `0xFEC00000` and the local
//! APIC at `0xFEE00000`), turns on long mode and calls [`kmain_bsp`](crate::kmain_bsp).
//!
//! An application processor starts in real mode at `0x8000` (the SIPI vector
//! `0x08`), where the BSP copied the trampoline: it loads a flat 32-bit GDT,
//! enters protected mode and joins the BSP's path at `enter_long32`, which
//! reuses the page tables; in long mode it picks up the stack and CPU index
//! the BSP left in [`AP_BOOT_STACK`] and [`AP_BOOT_CPU`] and calls
//! [`kmain_ap`](crate::kmain_ap).

use core::sync::atomic::{AtomicU32, AtomicU64};

/// Where the trampoline is copied and the SIPI vector that points there
/// (`vector << 12`). Below 1 MiB, page-aligned, clear of the BIOS data area.
pub(crate) const TRAMPOLINE_ADDR: usize = 0x8000;

/// The top of the stack the next application processor starts on (0 while
/// none is starting). Written by the BSP before the SIPI, read by the AP's
/// long-mode entry.
pub(crate) static AP_BOOT_STACK: AtomicU64 = AtomicU64::new(0);
/// The CPU index the starting application processor takes.
pub(crate) static AP_BOOT_CPU: AtomicU32 = AtomicU32::new(0);
/// The physical address of `hvm_start_info`, saved by the 32-bit entry.
static START_INFO: AtomicU32 = AtomicU32::new(0);

core::arch::global_asm!(
    // The PVH note: name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY, a 32-bit address.
    ".pushsection .note.pvh, \"a\", @note",
    ".balign 4",
    ".long 4",
    ".long 4",
    ".long 18",
    ".asciz \"Xen\"",
    ".balign 4",
    ".long _pvh_start",
    ".popsection",

    // Page tables and the boot stack (in .bss, zeroed by the entry).
    ".pushsection .bss.boot, \"aw\", @nobits",
    ".balign 4096",
    "boot_pml4: .skip 4096",
    "boot_pdpt: .skip 4096",
    "boot_pd: .skip 4096 * 4",
    ".balign 16",
    "boot_stack: .skip 262144",
    "boot_stack_top:",
    ".popsection",

    // The boot GDT: null, 64-bit code (0x08), data (0x10).
    ".pushsection .rodata.boot, \"a\"",
    ".balign 16",
    "boot_gdt:",
    ".quad 0",
    ".quad 0x00af9a000000ffff",
    ".quad 0x00cf92000000ffff",
    "boot_gdt_ptr:",
    ".word boot_gdt_ptr - boot_gdt - 1",
    ".long boot_gdt",
    ".popsection",

    ".pushsection .text.boot, \"ax\"",
    ".code32",
    ".globl _pvh_start",
    "_pvh_start:",
    "cli",
    "cld",
    "mov %ebx, %esi",
    // Zero .bss (QEMU's loader need not).
    "mov $__bss_start, %edi",
    "mov $__bss_end, %ecx",
    "sub %edi, %ecx",
    "xor %eax, %eax",
    "rep stosb",
    "mov %esi, {start_info}",
    "mov $boot_stack_top, %esp",
    // PML4[0] -> PDPT; PDPT[0..4] -> the four page directories.
    "mov $boot_pdpt, %eax",
    "or $3, %eax",
    "mov %eax, boot_pml4",
    "mov $boot_pd, %eax",
    "or $3, %eax",
    "xor %ecx, %ecx",
    "1:",
    "mov %eax, boot_pdpt(,%ecx,8)",
    "add $4096, %eax",
    "inc %ecx",
    "cmp $4, %ecx",
    "jne 1b",
    // 2048 2 MiB pages: present, writable, large; the top GiB also PCD|PWT.
    "xor %ecx, %ecx",
    "2:",
    "mov %ecx, %eax",
    "shl $21, %eax",
    "or $0x83, %eax",
    "cmp $1536, %ecx",
    "jb 3f",
    "or $0x18, %eax",
    "3:",
    "mov %eax, boot_pd(,%ecx,8)",
    "inc %ecx",
    "cmp $2048, %ecx",
    "jne 2b",
    "jmp enter_long32",

    // Shared by the BSP and the APs: PAE, CR3, EFER.LME, paging, 64-bit GDT.
    "enter_long32:",
    "mov %cr4, %eax",
    "or $0x20, %eax",
    "mov %eax, %cr4",
    "mov $boot_pml4, %eax",
    "mov %eax, %cr3",
    "mov $0xC0000080, %ecx",
    "rdmsr",
    "or $0x100, %eax",
    "wrmsr",
    "mov %cr0, %eax",
    "or $0x80000001, %eax",
    "mov %eax, %cr0",
    "lgdt boot_gdt_ptr",
    "ljmp $0x08, $long_entry",

    ".code64",
    "long_entry:",
    "mov $0x10, %eax",
    "mov %eax, %ds",
    "mov %eax, %es",
    "mov %eax, %ss",
    "xor %eax, %eax",
    "mov %eax, %fs",
    "mov %eax, %gs",
    "xor %ebp, %ebp",
    "mov {ap_stack}(%rip), %rsp",
    "test %rsp, %rsp",
    "jnz 4f",
    "lea boot_stack_top(%rip), %rsp",
    "mov {start_info}(%rip), %edi",
    "call {bsp}",
    "ud2",
    "4:",
    "mov {ap_cpu}(%rip), %edi",
    "call {ap}",
    "ud2",
    ".popsection",

    // The AP trampoline, copied to TRAMPOLINE_ADDR and run there in real
    // mode: every address in it is computed relative to that copy.
    ".pushsection .rodata.trampoline, \"a\"",
    ".code16",
    ".globl ap_tramp_start",
    "ap_tramp_start:",
    "cli",
    "cld",
    "xor %ax, %ax",
    "mov %ax, %ds",
    "lgdtl {tramp} + (tramp_gdt_ptr - ap_tramp_start)",
    "mov %cr0, %eax",
    "or $1, %eax",
    "mov %eax, %cr0",
    "ljmpl $0x08, ${tramp} + (tramp32 - ap_tramp_start)",
    ".code32",
    "tramp32:",
    "mov $0x10, %ax",
    "mov %ax, %ds",
    "mov %ax, %es",
    "mov %ax, %ss",
    "mov $enter_long32, %eax",
    "jmp *%eax",
    ".balign 8",
    "tramp_gdt:",
    ".quad 0",
    ".quad 0x00cf9a000000ffff",
    ".quad 0x00cf92000000ffff",
    "tramp_gdt_ptr:",
    ".word 23",
    ".long {tramp} + (tramp_gdt - ap_tramp_start)",
    ".globl ap_tramp_end",
    "ap_tramp_end:",
    ".code64",
    ".popsection",
    start_info = sym START_INFO,
    ap_stack = sym AP_BOOT_STACK,
    ap_cpu = sym AP_BOOT_CPU,
    bsp = sym crate::kmain_bsp,
    ap = sym crate::kmain_ap,
    tramp = const TRAMPOLINE_ADDR,
    options(att_syntax),
);

unsafe extern "C" {
    static ap_tramp_start: u8;
    static ap_tramp_end: u8;
}

/// The trampoline's bytes, to be copied to [`TRAMPOLINE_ADDR`].
pub(crate) fn trampoline() -> &'static [u8] {
    // SAFETY: both symbols label the same read-only section, start before
    // end; the bytes between them are the assembled trampoline and live for
    // the whole run.
    unsafe {
        let start = &raw const ap_tramp_start;
        let end = &raw const ap_tramp_end;
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// `hvm_start_info`, the PVH boot information (Xen's `start_info.h`).
#[repr(C)]
struct HvmStartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// One `hvm_memmap_table_entry` (an E820 entry).
#[repr(C)]
#[derive(Clone, Copy)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

const HVM_START_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;

/// What the kernel keeps from the boot information (copied out before the
/// low memory it sits in is reused).
pub(crate) struct BootInfo {
    /// The ACPI RSDP's physical address, if the loader gave one.
    pub(crate) rsdp: Option<u64>,
    /// The command line (`-append`), ASCII, at most 255 bytes.
    pub(crate) cmdline: [u8; 256],
    /// Its length.
    pub(crate) cmdline_len: usize,
    /// The largest RAM region above the kernel image: (start, length).
    pub(crate) free_ram: Option<(u64, u64)>,
}

impl BootInfo {
    /// The command line as a string (non-ASCII bytes make it empty).
    pub(crate) fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }
}

unsafe extern "C" {
    static __kernel_end: u8;
}

/// Reads the PVH start info the 32-bit entry saved.
///
/// # Safety
///
/// Once, on the BSP, before anything overwrites low memory (the AP
/// trampoline's copy).
pub(crate) unsafe fn boot_info() -> Result<BootInfo, &'static str> {
    let pa = START_INFO.load(core::sync::atomic::Ordering::Relaxed) as usize;
    if pa == 0 {
        return Err("no PVH start info (not booted by a PVH loader?)");
    }
    // SAFETY: the loader left a start-info block at `pa` (identity-mapped);
    // the magic is checked before any other field is trusted.
    let si = unsafe { &*(pa as *const HvmStartInfo) };
    if si.magic != HVM_START_MAGIC {
        return Err("bad PVH start info magic");
    }
    let mut info = BootInfo {
        rsdp: (si.rsdp_paddr != 0).then_some(si.rsdp_paddr),
        cmdline: [0; 256],
        cmdline_len: 0,
        free_ram: None,
    };
    if si.cmdline_paddr != 0 {
        let p = si.cmdline_paddr as usize as *const u8;
        while info.cmdline_len < info.cmdline.len() - 1 {
            // SAFETY: the command line is a NUL-terminated string the loader
            // placed in identity-mapped RAM; reading stops at the NUL.
            let b = unsafe { p.add(info.cmdline_len).read() };
            if b == 0 {
                break;
            }
            info.cmdline[info.cmdline_len] = b;
            info.cmdline_len += 1;
        }
    }
    let kernel_end = (&raw const __kernel_end) as u64;
    if si.version >= 1 && si.memmap_paddr != 0 {
        for i in 0..si.memmap_entries as usize {
            // SAFETY: `memmap_entries` entries follow `memmap_paddr` (start
            // info version 1 and later), in identity-mapped RAM.
            let e = unsafe {
                (si.memmap_paddr as usize as *const MemmapEntry)
                    .add(i)
                    .read_unaligned()
            };
            if e.kind != E820_RAM {
                continue;
            }
            let start = e.addr.max(kernel_end);
            let end = e.addr.saturating_add(e.size).min(crate::IDENTITY_MAPPED);
            if end > start && info.free_ram.is_none_or(|(_, len)| end - start > len) {
                info.free_ram = Some((start, end - start));
            }
        }
    }
    Ok(info)
}
