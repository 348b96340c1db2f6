//! Every `EmConfig` field across its whole range: `attach` either refuses it
//! with a typed error without touching the device, or the interface comes
//! up and goes down without a panic and with every buffer back.
//!
//! A property test without a property-testing crate: for each field, its
//! boundary values plus seeded random values over the field's whole type
//! range (xorshift, fixed seed, so a failure reproduces).
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::convert::Infallible;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use mpsafe_em_sim::StdKernel;
use mpsafe_em_sim::desc::DescRing;
use mpsafe_em_sim::{
    Device, DeviceConfig, Em, EmConfig, EmError, Hardware, IntrHandler, KernelLock, Mode, Pool,
    Reg, Regs, Sink, TxStart, WireRate,
};

/// The simulated device, counting every way the driver touches it.
struct Spy {
    dev: Arc<Device>,
    touched: AtomicU64,
}

impl Spy {
    fn touch(&self) {
        self.touched.fetch_add(1, Ordering::Relaxed);
    }
}

impl Regs for Spy {
    fn read(&self, reg: Reg) -> u32 {
        self.touch();
        self.dev.read(reg)
    }
    fn write(&self, reg: Reg, value: u32) {
        self.touch();
        self.dev.write(reg, value);
    }
}

impl Hardware for Spy {
    type Error = Infallible;
    type Kernel = StdKernel;
    type Pool = Pool;
    fn queues(&self) -> usize {
        Hardware::queues(&*self.dev)
    }
    fn pool(&self) -> &Pool {
        self.dev.pool()
    }
    fn dma_alloc(&self, n: usize) -> Result<(u64, Arc<DescRing>), Infallible> {
        self.touch();
        Ok(self.dev.dma_alloc(n))
    }
    fn intr_establish(&self, h: Weak<dyn IntrHandler>) {
        self.touch();
        self.dev.establish(h);
    }
    fn intr_disestablish(&self) {
        self.dev.disestablish();
    }
    fn intr_barrier(&self) {
        self.dev.intr_barrier();
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Boundary values of a `max`-bounded integer field and `random` samples.
fn samples(rng: &mut Rng, max: u64, random: usize) -> Vec<u64> {
    let mut v = vec![
        0, 1, 2, 7, 8, 16, 59, 60, 67, 68, 79, 80, 81, 1500, 2034, 2035,
    ];
    v.extend([4095, 4096, 4097, 8192, 65535, 65536, 3_906_250, 3_906_251]);
    v.extend([1 << 24, (1 << 24) - 1, max / 2, max - 1, max]);
    v.extend((0..random).map(|_| rng.next() % max.saturating_add(1).max(1)));
    v.retain(|&x| x <= max);
    v
}

/// Attaches with `cfg` and, if accepted, brings the interface up and down.
fn exercise(dev: &Arc<Device>, pool: &Pool, cfg: EmConfig) -> Result<(), String> {
    let what = format!("{cfg:?}");
    let spy = Arc::new(Spy {
        dev: Arc::clone(dev),
        touched: AtomicU64::new(0),
    });
    let stack = Arc::new(Sink::new(pool.clone()));
    let r = catch_unwind(AssertUnwindSafe(|| {
        match Em::attach(Arc::clone(&spy), cfg, Arc::new(KernelLock::new()), stack) {
            Ok(em) => {
                em.up().map_err(|e| format!("up refused: {e}"))?;
                em.down();
                Ok(())
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                assert!(
                    matches!(e, EmError::RingSize { .. } | EmError::Field { .. }),
                    "{e:?}"
                );
                let t = spy.touched.load(Ordering::Relaxed);
                (t == 0)
                    .then_some(())
                    .ok_or(format!("refused ({e}) after touching the device {t} times"))
            }
        }
    }));
    let s = pool.stats();
    match r {
        Err(_) => Err(format!("panicked with {what}")),
        Ok(Err(e)) => Err(format!("{e} with {what}")),
        Ok(Ok(())) if s.in_use() != 0 || s.leaked != 0 => Err(format!("{s} with {what}")),
        Ok(Ok(())) => Ok(()),
    }
}

#[test]
#[cfg_attr(miri, ignore = "device threads: too slow under Miri")]
fn every_field_across_its_range_is_refused_or_works() {
    let pool = Pool::new(4096 + 1024, 2048);
    let dev = Device::new(
        DeviceConfig {
            wire: WireRate::Off,
            ..DeviceConfig::default()
        },
        pool.clone(),
    )
    .unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    type Set = fn(&mut EmConfig, u64);
    let fields: [(&str, u64, Set); 9] = [
        ("rx_desc", u32::MAX.into(), |c, v| c.rx_desc = v as u32),
        ("tx_desc", u32::MAX.into(), |c, v| c.tx_desc = v as u32),
        ("ifq_maxlen", u64::MAX, |c, v| c.ifq_maxlen = v as usize),
        ("ints_per_sec", u32::MAX.into(), |c, v| {
            c.ints_per_sec = v as u32
        }),
        ("mtu", u64::MAX, |c, v| c.mtu = v as usize),
        ("rx_lwm", u32::MAX.into(), |c, v| c.rx_lwm = v as u32),
        ("tx_bundle", u64::MAX, |c, v| c.tx_bundle = v as usize),
        ("rx_keep_watermarks", 1, |c, v| {
            c.rx_keep_watermarks = v != 0
        }),
        ("tx_start", 1, |c, v| {
            c.tx_start = if v == 0 {
                TxStart::Direct
            } else {
                TxStart::Delegated
            }
        }),
    ];
    // Every field the config has is here (or below: `mode` picks with the
    // value, `name` has its own list): its Debug names them all, so a new
    // field fails this until it is exercised too.
    let debug = format!("{:?}", EmConfig::new(Mode::Mpsafe));
    let listed: Vec<&str> = fields.iter().map(|f| f.0).chain(["mode", "name"]).collect();
    for field in debug
        .trim_start_matches("EmConfig {")
        .split(", ")
        .filter_map(|kv| kv.split_once(':'))
        .map(|(k, _)| k.trim())
    {
        assert!(
            listed.contains(&field),
            "EmConfig::{field} is not exercised"
        );
    }
    let mut failures = Vec::new();
    for (name, max, set) in fields {
        for v in samples(&mut rng, max, 12) {
            let mut cfg = EmConfig::new(Mode::ALL[(v % 4) as usize]);
            set(&mut cfg, v);
            if let Err(e) = exercise(&dev, &pool, cfg) {
                failures.push(format!("{name} = {v}: {e}"));
            }
        }
    }
    for name in [
        "",
        "em0",
        "a-name-of-16-byt",
        "a name of 17 byte",
        "ünïcödé-ëm0",
    ] {
        let mut cfg = EmConfig::new(Mode::Mpsafe);
        cfg.name = name.into();
        if let Err(e) = exercise(&dev, &pool, cfg) {
            failures.push(format!("name = {name:?}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    dev.shutdown();
}
