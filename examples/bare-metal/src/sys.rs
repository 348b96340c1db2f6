//! The two services the program needs from below: leave with a status, and
//! write one line of diagnostics. On bare metal these are Linux system calls
//! made directly (the binary is run on a Linux host); on the host, `std`.

/// Writes `bare-metal: check failed at line <line>` to stderr and exits 1.
pub(crate) fn fail(line: u32) -> ! {
    const PREFIX: &[u8] = b"bare-metal: check failed at line ";
    let mut buf = [0u8; PREFIX.len() + 11];
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    // Decimal digits without core::fmt (which would dwarf the binary).
    let mut digits = [0u8; 10];
    let (mut n, mut k) = (line, digits.len());
    loop {
        k -= 1;
        digits[k] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let end = PREFIX.len() + digits.len() - k;
    buf[PREFIX.len()..end].copy_from_slice(&digits[k..]);
    buf[end] = b'\n';
    write_stderr(&buf[..=end]);
    exit(1)
}

#[cfg(all(target_os = "none", target_arch = "x86_64"))]
mod imp {
    use core::arch::asm;

    /// Linux x86-64 system call numbers.
    const SYS_WRITE: usize = 1;
    const SYS_EXIT_GROUP: usize = 231;

    pub(crate) fn exit(status: i32) -> ! {
        // SAFETY: exit_group(2) takes one integer, touches no memory of ours
        // and does not return.
        unsafe {
            asm!(
                "syscall",
                in("rax") SYS_EXIT_GROUP,
                in("rdi") status,
                options(noreturn, nostack),
            )
        }
    }

    pub(crate) fn write_stderr(bytes: &[u8]) {
        // SAFETY: write(2) only reads `bytes.len()` bytes at `bytes.as_ptr()`,
        // which the slice borrows for the call; the kernel clobbers rcx and
        // r11 and returns in rax, all declared. A short or failed write of a
        // diagnostic is ignored: the exit status carries the verdict.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_WRITE => _,
                in("rdi") 2usize,
                in("rsi") bytes.as_ptr(),
                in("rdx") bytes.len(),
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack, readonly),
            );
        }
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    use std::io::Write;

    pub(crate) fn exit(status: i32) -> ! {
        std::process::exit(status)
    }

    pub(crate) fn write_stderr(bytes: &[u8]) {
        let _ = std::io::stderr().write_all(bytes);
    }
}

pub(crate) use imp::{exit, write_stderr};
