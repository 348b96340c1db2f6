//! Bringing up the application processors, and handing them work.
//!
//! Each AP gets its own stack, is started with INIT, STARTUP, STARTUP at the
//! trampoline (see [`crate::boot`]), reaches [`crate::kmain_ap`], comes
//! online and then sits in [`ap_idle`]: it sleeps until the boot CPU hands
//! it a job with [`run_on`], runs it, and sleeps again.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::apic;
use crate::boot::{AP_BOOT_CPU, AP_BOOT_STACK, TRAMPOLINE_ADDR, trampoline};
use crate::cpu::{CPUS, MAX_CPUS};
use crate::services::ipl::{IPL_HIGH, Mutex};
use crate::services::wait::{sleep_until, wake_all, wake_cpu};

/// Each AP's kernel stack.
const AP_STACK: usize = 256 * 1024;

/// Starts every CPU in `apic_ids` but the boot CPU's (`bsp`), one at a
/// time. Returns how many came online (the boot CPU included).
pub(crate) fn start_aps(apic_ids: &[u32], bsp: u32) -> usize {
    let code = trampoline();
    assert!(code.len() <= 4096, "trampoline larger than a page");
    // SAFETY: the page at TRAMPOLINE_ADDR is conventional memory the kernel
    // does not otherwise use (the PVH start info was copied out before).
    unsafe {
        core::ptr::copy_nonoverlapping(code.as_ptr(), TRAMPOLINE_ADDR as *mut u8, code.len());
    }
    let mut online = 1;
    for &id in apic_ids.iter().filter(|&&id| id != bsp) {
        if online == MAX_CPUS {
            break;
        }
        let index = online;
        let stack = vec![0u8; AP_STACK].leak();
        let top = (stack.as_ptr_range().end as u64) & !15;
        AP_BOOT_CPU.store(index as u32, Ordering::Relaxed);
        AP_BOOT_STACK.store(top, Ordering::Release);
        let up = apic::start_ap(id, (TRAMPOLINE_ADDR >> 12) as u8, || {
            CPUS[index].online.load(Ordering::Acquire)
        });
        AP_BOOT_STACK.store(0, Ordering::Release);
        if up {
            online += 1;
        } else {
            crate::console::kprintln!("smp: CPU with APIC id {id} did not start");
        }
    }
    online
}

type Job = Box<dyn FnOnce() + Send>;

static WORK: [Mutex<IPL_HIGH, Option<Job>>; MAX_CPUS] = [const { Mutex::new(None) }; MAX_CPUS];

/// A job handed to another CPU; [`Done::wait`] sleeps until it returned.
pub(crate) struct Done(AtomicBool);

impl Done {
    /// Sleeps until the job has returned.
    pub(crate) fn wait(&self) {
        sleep_until(|| self.0.load(Ordering::SeqCst));
    }
}

/// Runs `f` on CPU `cpu` (an AP in [`ap_idle`]), which must be idle.
pub(crate) fn run_on(cpu: usize, f: impl FnOnce() + Send + 'static) -> Arc<Done> {
    let done = Arc::new(Done(AtomicBool::new(false)));
    let d = Arc::clone(&done);
    let job: Job = Box::new(move || {
        f();
        d.0.store(true, Ordering::SeqCst);
        wake_all();
    });
    let prev = WORK[cpu].lock().replace(job);
    assert!(prev.is_none(), "CPU {cpu} is busy");
    wake_cpu(cpu);
    done
}

/// An AP's life after boot: sleep until handed a job, run it.
pub(crate) fn ap_idle(cpu: usize) -> ! {
    loop {
        sleep_until(|| WORK[cpu].lock().is_some());
        let job = WORK[cpu].lock().take();
        if let Some(job) = job {
            job();
        }
    }
}
