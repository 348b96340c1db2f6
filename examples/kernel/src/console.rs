//! The serial console on COM1 (`-serial stdio` / `-nographic` on the host).
//!
//! One line at a time under an [`IPL_HIGH`] lock, so any context (a thread,
//! an interrupt handler, the panic handler) may print and lines from the two
//! CPUs never interleave.

use core::fmt::{self, Write};

use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550Tty};

use crate::services::ipl::{IPL_HIGH, Mutex};

const COM1: u16 = 0x3f8;

static CONSOLE: Mutex<IPL_HIGH, Option<Uart16550Tty<PioBackend>>> = Mutex::new(None);

/// Initialises COM1 (115200 8N1). Until then, prints are dropped.
pub(crate) fn init() {
    // SAFETY: COM1 is the kernel's alone; nothing else drives those ports.
    let uart = unsafe { Uart16550Tty::new_port(COM1, Config::default()) };
    if let Ok(uart) = uart {
        *CONSOLE.lock() = Some(uart);
    }
}

/// Writes `args` to the console (`kprintln!` calls this).
pub(crate) fn print(args: fmt::Arguments<'_>) {
    if let Some(uart) = CONSOLE.lock().as_mut() {
        let _ = uart.write_fmt(args);
    }
}

/// Writes `args` even if the console lock is held (by this CPU, which
/// panicked while printing): for the panic and exception paths only.
pub(crate) fn print_emergency(args: fmt::Arguments<'_>) {
    if let Some(mut guard) = CONSOLE.try_lock() {
        if let Some(uart) = guard.as_mut() {
            let _ = uart.write_fmt(args);
        }
        return;
    }
    // SAFETY: the holder is stuck (it is this CPU, or the other CPU while the
    // run is ending); a second driver instance only writes bytes to the port.
    if let Ok(mut uart) = unsafe { Uart16550Tty::new_port(COM1, Config::default()) } {
        let _ = uart.write_fmt(args);
    }
}

/// Prints a line to the serial console.
macro_rules! kprintln {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use kprintln;
