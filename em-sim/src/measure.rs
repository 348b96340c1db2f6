//! Repeated measurements: per-thread CPU clocks, to tell the driver's CPU
//! time from the simulated device's, and medians with their spread.
//!
//! The simulated device is threads of this process (`em-device`, the DMA
//! engine and the wire; `em-intr`, which only delivers interrupts and runs
//! the driver's handler). Process CPU time alone charges the device's work
//! to the driver, so a mode that makes the device thread busier looks
//! costlier. [`ThreadCpu`] reads each thread's own CPU clock (the clock
//! `CLOCK_THREAD_CPUTIME_ID` reads inside the thread) from outside, by
//! thread name.

use std::time::Duration;

/// CPU time consumed so far by the calling thread (`CLOCK_THREAD_CPUTIME_ID`),
/// or `None` where unsupported.
pub fn current_thread_cpu() -> Option<Duration> {
    #[cfg(all(unix, not(miri)))]
    {
        clock(libc::CLOCK_THREAD_CPUTIME_ID)
    }
    #[cfg(any(not(unix), miri))]
    {
        None
    }
}

#[cfg(all(unix, not(miri)))]
fn clock(id: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes
    // it, and an unknown clock id is reported through the return value.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// The CPU clock of thread `tid` of this process: what glibc's
/// `pthread_getcpuclockid` returns, and what `CLOCK_THREAD_CPUTIME_ID`
/// means inside that thread (Linux's `MAKE_THREAD_CPUCLOCK(tid,
/// CPUCLOCK_SCHED)`: the inverted tid shifted left by 3, or the per-thread
/// bit 4 and the scheduler clock 2).
#[cfg(all(target_os = "linux", not(miri)))]
fn thread_clock_id(tid: u32) -> libc::clockid_t {
    ((!tid) << 3) as libc::clockid_t | 4 | 2
}

/// One thread's CPU time, as read by [`ThreadCpu::snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadTime {
    /// Kernel thread id.
    pub tid: u32,
    /// Thread name (`/proc/self/task/<tid>/comm`, at most 15 bytes).
    pub name: String,
    /// CPU time consumed so far (user + system).
    pub cpu: Duration,
}

/// CPU time of every live thread of this process, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadCpu {
    /// The threads, in `/proc/self/task` order.
    pub threads: Vec<ThreadTime>,
}

impl ThreadCpu {
    /// Reads every live thread's CPU clock (Linux: `/proc/self/task` for
    /// the ids and names, `clock_gettime` on each thread's CPU clock).
    /// `None` where unsupported.
    pub fn snapshot() -> Option<Self> {
        #[cfg(all(target_os = "linux", not(miri)))]
        {
            let mut threads = Vec::new();
            for entry in std::fs::read_dir("/proc/self/task").ok()? {
                let Ok(entry) = entry else { continue };
                let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                let name = std::fs::read_to_string(entry.path().join("comm"))
                    .map(|s| s.trim_end().to_string())
                    .unwrap_or_default();
                // A thread that exited between read_dir and here has no clock.
                if let Some(cpu) = clock(thread_clock_id(tid)) {
                    threads.push(ThreadTime { tid, name, cpu });
                }
            }
            Some(Self { threads })
        }
        #[cfg(any(not(target_os = "linux"), miri))]
        {
            None
        }
    }

    /// Total CPU time of the threads named `name`.
    pub fn named(&self, name: &str) -> Duration {
        self.threads
            .iter()
            .filter(|t| t.name == name)
            .map(|t| t.cpu)
            .sum()
    }

    /// CPU time the threads named `name` consumed from `earlier` to `self`,
    /// counting only threads alive at both snapshots (matched by tid).
    pub fn named_since(&self, earlier: &Self, name: &str) -> Duration {
        self.threads
            .iter()
            .filter(|t| t.name == name)
            .filter_map(|t| {
                earlier
                    .threads
                    .iter()
                    .find(|e| e.tid == t.tid)
                    .map(|e| t.cpu.saturating_sub(e.cpu))
            })
            .sum()
    }
}

/// Median, extremes and spread of repeated measurements of one quantity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median (the mean of the two middle samples for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Summarises `samples`, ignoring NaNs; `None` if none are left.
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            n,
            median,
            min: v[0],
            max: v[n - 1],
        })
    }

    /// Spread as a fraction of the median: `(max - min) / median` (0 for a
    /// single sample; infinite for a zero median with unequal samples).
    pub fn spread(&self) -> f64 {
        let range = self.max - self.min;
        if range == 0.0 {
            0.0
        } else {
            range / self.median.abs()
        }
    }

    /// Whether `other`'s range overlaps this one's: two modes whose ranges
    /// overlap cannot be told apart by these runs.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.min <= other.max && other.min <= self.max
    }
}

/// Durations in nanoseconds, counted in log-linear buckets: exact below
/// 64 ns, then 32 buckets per power of two (each within 1/32 of the values
/// it holds), so a percentile is read to about 3% in constant memory
/// however long the run. The maximum is kept exactly.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

/// Values below it have a bucket each.
const EXACT: u64 = 64;
/// Buckets per power of two above [`EXACT`].
const SUB_BITS: u32 = 5;

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        // 64 exact buckets, then 32 per power of two from 2^6 to 2^63.
        Self {
            buckets: vec![0; EXACT as usize + (64 - 6) * (1 << SUB_BITS)],
            count: 0,
            max: 0,
        }
    }

    fn index(ns: u64) -> usize {
        if ns < EXACT {
            return ns as usize;
        }
        let e = 63 - ns.leading_zeros(); // 6..=63
        let sub = (ns >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1);
        EXACT as usize + ((e - 6) as usize) * (1 << SUB_BITS) + sub as usize
    }

    /// The largest value bucket `i` holds.
    fn upper(i: usize) -> u64 {
        if i < EXACT as usize {
            return i as u64;
        }
        let k = i - EXACT as usize;
        let e = (k >> SUB_BITS) as u32 + 6;
        let sub = (k & ((1 << SUB_BITS) - 1)) as u64;
        let width = 1u64 << (e - SUB_BITS);
        ((1u64 << e) + sub * width).saturating_add(width - 1)
    }

    /// Counts one duration.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[Self::index(ns)] += 1;
        self.count += 1;
        self.max = self.max.max(ns);
    }

    /// Adds `other`'s counts to this one's.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` (0 to 1), in nanoseconds: the upper end of
    /// the bucket it falls in (never above the maximum); `None` if empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Self::upper(i).min(self.max));
            }
        }
        Some(self.max)
    }

    /// p50, p99, p99.9 and the maximum; `None` if empty.
    pub fn summary(&self) -> Option<LatencySummary> {
        Some(LatencySummary {
            count: self.count,
            p50_ns: self.quantile(0.5)?,
            p99_ns: self.quantile(0.99)?,
            p999_ns: self.quantile(0.999)?,
            max_ns: self.max,
        })
    }
}

/// The tail of a [`LatencyHistogram`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencySummary {
    /// Durations counted.
    pub count: u64,
    /// Median, ns.
    pub p50_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// 99.9th percentile, ns.
    pub p999_ns: u64,
    /// Largest, ns (exact).
    pub max_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Burns `d` of this thread's CPU time (not wall time: the machine is
    /// shared, so wall time says little about CPU received).
    fn spin(d: Duration) {
        let t = current_thread_cpu().unwrap();
        let mut x = 0u64;
        while current_thread_cpu().unwrap() - t < d {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
    }

    #[test]
    fn latency_histogram_reads_percentiles_within_its_bucket_width() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.summary(), None);
        // 1..=10_000 ns, once each.
        for ns in 1..=10_000u64 {
            h.record(Duration::from_nanos(ns));
        }
        let s = h.summary().unwrap();
        assert_eq!((s.count, s.max_ns), (10_000, 10_000));
        for (got, want) in [(s.p50_ns, 5_000), (s.p99_ns, 9_900), (s.p999_ns, 9_990)] {
            // The bucket's upper end: at or above the true value, within 1/32.
            assert!(got >= want && got <= want + want / 32, "{got} for {want}");
        }
        // Exact below 64 ns; a huge value lands in a bucket and is the max.
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_nanos(40));
        h.record(Duration::from_secs(3));
        assert_eq!(h.quantile(0.5), Some(40));
        assert_eq!(h.quantile(1.0), Some(3_000_000_000));
        let mut m = LatencyHistogram::new();
        m.merge(&h);
        m.merge(&h);
        assert_eq!((m.count(), m.summary().unwrap().max_ns), (4, 3_000_000_000));
        // Every bucket's upper end maps back to that bucket.
        for i in 0..h.buckets.len() - 1 {
            assert_eq!(LatencyHistogram::index(LatencyHistogram::upper(i)), i);
        }
    }

    #[test]
    fn median_and_spread() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (3, 2.0, 1.0, 3.0));
        assert_eq!(s.spread(), 1.0);
        let s = Summary::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        let s = Summary::of(&[5.0]).unwrap();
        assert_eq!((s.median, s.spread()), (5.0, 0.0));
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[f64::NAN]).is_none());
        let s = Summary::of(&[f64::NAN, 10.0, 11.0]).unwrap();
        assert_eq!((s.n, s.median), (2, 10.5));
        assert!(Summary::of(&[0.0, 1.0]).unwrap().spread() > 1.0);
    }

    #[test]
    fn overlap() {
        let a = Summary::of(&[1.0, 2.0]).unwrap();
        let b = Summary::of(&[2.0, 3.0]).unwrap();
        let c = Summary::of(&[2.5, 3.0]).unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !c.overlaps(&a));
    }

    #[test]
    #[cfg_attr(miri, ignore = "FFI")]
    #[cfg(target_os = "linux")]
    fn another_threads_clock_is_its_own() {
        use std::sync::mpsc;
        // A named thread spins ~60 ms, reports its own clock, then waits;
        // its clock read from outside must match what it read inside, and
        // must not include the CPU the spinning thread here burns.
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let h = std::thread::Builder::new()
            .name("measure-test".into())
            .spawn(move || {
                spin(Duration::from_millis(60));
                tx.send(current_thread_cpu().unwrap()).unwrap();
                done_rx.recv().unwrap();
            })
            .unwrap();
        let inside = rx.recv().unwrap();
        spin(Duration::from_millis(120)); // this thread, not that one
        let snap = ThreadCpu::snapshot().unwrap();
        let outside = snap.named("measure-test");
        done_tx.send(()).unwrap();
        h.join().unwrap();
        assert!(inside >= Duration::from_millis(20), "{inside:?}");
        // Between its own last read and the snapshot it only blocked.
        assert!(outside >= inside, "{outside:?} < {inside:?}");
        assert!(
            outside < inside + Duration::from_millis(30),
            "{outside:?} vs {inside:?}"
        );
        // The process clock saw both.
        let me = snap.threads.iter().map(|t| t.cpu).max().unwrap_or_default();
        assert!(me >= Duration::from_millis(60));
    }

    #[test]
    #[cfg_attr(miri, ignore = "FFI")]
    #[cfg(target_os = "linux")]
    fn named_since_counts_the_interval() {
        let d = std::thread::Builder::new()
            .name("measure-since".into())
            .spawn(|| {
                let a = ThreadCpu::snapshot().unwrap();
                spin(Duration::from_millis(30));
                let b = ThreadCpu::snapshot().unwrap();
                assert_eq!(b.named_since(&a, "no-such-thread"), Duration::ZERO);
                b.named_since(&a, "measure-since")
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(d >= Duration::from_millis(10), "{d:?}");
    }
}
