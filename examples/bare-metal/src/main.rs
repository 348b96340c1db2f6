//! A kernel's view of the mpsafe crates: a `#![no_std]`, `#![no_main]` binary
//! for `x86_64-unknown-none` that uses every primitive once, with the pieces a
//! kernel supplies itself ([`kernel`]): its spin lock as the `RawMutex`, its
//! sleep as the [`Wait`](mpsafe_serializer::Wait), its packet type and its
//! tick counter; the queues use the allocation-free `ArrayFifo` and
//! `ArrayPriq` disciplines and `ArrayInputQueue`, and live in `static`s.
//!
//! There is no heap and no OS underneath, but the binary is linked as a plain
//! static ELF (`-C relocation-model=static`) whose `_start` runs the checks
//! in [`checks`] and leaves through the Linux `exit` system call, so a Linux
//! host executes it directly: exit status 0 when every check holds, 1 (after
//! one line on stderr naming the failed check's source line) when one does
//! not. `.ci/run` builds and runs it this way:
//!
//! ```text
//! cargo rustc -p mpsafe-bare-metal --release --target x86_64-unknown-none \
//!     -- -C relocation-model=static
//! ./target/x86_64-unknown-none/release/mpsafe-bare-metal; echo $?
//! ```
//!
//! Built for the host instead (as `cargo build --workspace` and `cargo
//! clippy --workspace` do), the same checks run from an ordinary `main`: only
//! the entry point, the panic handler and the two system calls differ
//! ([`sys`]), so the host build type-checks and lints every line the kernel
//! build uses.
//!
//! The guide's chapter "Using the crates from a kernel" walks through it.

#![no_std]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
extern crate std;

mod checks;
mod kernel;
mod sys;

/// Fails the program, naming the source line, unless `cond` holds.
macro_rules! check {
    ($cond:expr) => {
        if !$cond {
            $crate::sys::fail(line!());
        }
    };
}
pub(crate) use check;

/// Host build: the same checks from an ordinary `main`.
#[cfg(not(target_os = "none"))]
fn main() {
    checks::run();
    sys::exit(0);
}

// The kernel's entry point. Linux starts a static ELF at `_start` with the
// stack pointer 16-byte aligned and no return address pushed; a Rust function
// expects the alignment a `call` leaves, so `_start` makes that call itself.
#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym entry,
);

/// Runs every check and exits 0 (a failed one exits 1 from inside).
#[cfg(target_os = "none")]
extern "C" fn entry() -> ! {
    checks::run();
    sys::exit(0)
}

/// A panic (an index out of range, say) is a failure too: report its line.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    sys::fail(info.location().map_or(0, |l| l.line()))
}
