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
