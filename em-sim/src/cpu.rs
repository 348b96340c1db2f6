//! Process CPU time, to report CPU cost per packet beside packets/s.
//!
//! On a shared 2-core machine wall-clock throughput moves with whatever else
//! runs; CPU time spent per packet moves much less, so the demo reports both.

use std::time::Duration;

/// User plus system CPU time consumed so far by every thread of this process
/// (including threads that already exited), or `None` where unsupported.
pub fn process_cpu_time() -> Option<Duration> {
    #[cfg(all(unix, not(miri)))]
    {
        let mut usage = core::mem::MaybeUninit::<libc::rusage>::uninit();
        // SAFETY: `usage` points to writable memory of the right size and
        // type; getrusage only writes it, and we read it only on success.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: getrusage returned 0, so it initialised the whole struct.
        let usage = unsafe { usage.assume_init() };
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        Some(tv(usage.ru_utime) + tv(usage.ru_stime))
    }
    #[cfg(any(not(unix), miri))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg_attr(miri, ignore = "FFI")]
    fn cpu_time_moves_forward() {
        let a = super::process_cpu_time().unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = super::process_cpu_time().unwrap();
        assert!(b >= a);
    }
}

/// The CPUs this thread may run on (its affinity mask), in ascending
/// order.
///
/// # Errors
///
/// `sched_getaffinity` failed.
#[cfg(target_os = "linux")]
pub fn allowed_cpus() -> Result<Vec<usize>, String> {
    // SAFETY: `cpu_set_t` is a plain bit array; all zeros is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed;
    // pid 0 is the calling thread.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Err(format!(
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE, inside the set.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins the calling thread to `cpu` and checks that it runs there.
///
/// # Errors
///
/// `cpu` beyond `CPU_SETSIZE`, `sched_setaffinity` refused (a CPU not in
/// the process's cpuset), or the thread found running elsewhere.
#[cfg(target_os = "linux")]
pub fn pin_to(cpu: usize) -> Result<(), String> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(format!("CPU {cpu} is beyond CPU_SETSIZE"));
    }
    // SAFETY: as in `allowed_cpus`, all zeros is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed; pid 0 is the
    // calling thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(format!(
            "sched_setaffinity to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // The kernel moves the calling thread before sched_setaffinity returns.
    // SAFETY: no arguments; returns the current CPU or -1.
    let on = unsafe { libc::sched_getcpu() };
    if usize::try_from(on).ok() != Some(cpu) {
        return Err(format!("pinned to CPU {cpu} but running on {on}"));
    }
    Ok(())
}

/// Without Linux's affinity calls: an error naming that.
///
/// # Errors
///
/// Always.
#[cfg(not(target_os = "linux"))]
pub fn allowed_cpus() -> Result<Vec<usize>, String> {
    Err("CPU affinity needs Linux".into())
}

/// Without Linux's affinity calls: an error naming that.
///
/// # Errors
///
/// Always.
#[cfg(not(target_os = "linux"))]
pub fn pin_to(_cpu: usize) -> Result<(), String> {
    Err("CPU affinity needs Linux".into())
}

#[cfg(all(test, target_os = "linux"))]
mod affinity_tests {
    use super::*;

    /// A thread pinned to each CPU it may use runs there; a CPU beyond the
    /// set's size is an error.
    #[test]
    fn pins_the_calling_thread() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let t = std::thread::spawn(move || {
            for &c in &cpus {
                pin_to(c).unwrap();
            }
        });
        t.join().unwrap();
        assert!(pin_to(libc::CPU_SETSIZE as usize).is_err());
    }
}
