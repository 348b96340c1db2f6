//! Shared helpers for the mpsafe criterion benchmarks (`cargo bench -p mpsafe-benches`).
//!
//! Each bench file in `benches/` measures one primitive beside the peer a user
//! would otherwise pick, in the same run, so the ratios are comparable even on
//! a noisy shared machine.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::sync::atomic::{AtomicBool, Ordering};

/// A minimal test-and-test-and-set spinlock: the peer a kernel programmer
/// reaches for first. Also a [`lock_api::RawMutex`], so it can stand in as the
/// lock of the crates' `lock_api`-generic types.
#[derive(Debug, Default)]
pub struct SpinLock {
    locked: AtomicBool,
}

impl SpinLock {
    /// An unlocked spinlock.
    pub const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
        }
    }

    /// Spins until the lock is taken.
    pub fn lock(&self) {
        while !self.try_lock() {
            while self.locked.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Releases the lock.
    pub fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

// SAFETY: a caller holds the lock only after swinging the flag false -> true
// with Acquire (`try_lock`), and `unlock` stores false with Release: one holder
// at a time, each seeing the previous holder's writes.
unsafe impl lock_api::RawMutex for SpinLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self::new();
    type GuardMarker = lock_api::GuardNoSend;

    fn lock(&self) {
        SpinLock::lock(self);
    }

    fn try_lock(&self) -> bool {
        SpinLock::try_lock(self)
    }

    unsafe fn unlock(&self) {
        SpinLock::unlock(self);
    }
}

/// A table of measurements criterion cannot hold (tail latencies, counts),
/// written by a bench next to criterion's results so that `bench-report`
/// stamps it with the run and copies it into RESULTS.md as a group of its
/// own: `<criterion dir>/mpsafe-tails/<group, '/' as '_'>/new/tails.json`.
#[derive(Debug)]
pub struct Tails {
    /// The group name in RESULTS.md (`ifqueue/...`).
    pub group: String,
    /// The row the others are compared with, if any (named on a `Peer:` line).
    pub peer: Option<String>,
    /// One sentence on what the rows measure, printed above the table.
    pub about: String,
    /// Column headers after the first (`benchmark`) column.
    pub columns: Vec<String>,
    /// Each row: its name and its cells, already formatted.
    pub rows: Vec<(String, Vec<String>)>,
}

impl Tails {
    /// Writes the table under the criterion directory of this workspace
    /// (`$CARGO_TARGET_DIR/criterion`, else `target/criterion`).
    pub fn write(&self) -> std::io::Result<std::path::PathBuf> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let dir = target
            .join("criterion/mpsafe-tails")
            .join(self.group.replace('/', "_"))
            .join("new");
        std::fs::create_dir_all(&dir)?;
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|(name, cells)| serde_json::json!({ "name": name, "cells": cells }))
            .collect();
        let value = serde_json::json!({
            "group": self.group,
            "peer": self.peer,
            "about": self.about,
            "columns": self.columns,
            "rows": rows,
        });
        let path = dir.join("tails.json");
        std::fs::write(&path, format!("{value:#}\n"))?;
        Ok(path)
    }
}

/// The `p`-th percentile (0..=100, fractional allowed) of `sorted`, by the
/// nearest-rank rule; `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    // The small subtraction keeps a rank that is an integer in exact
    // arithmetic (99.9% of 1000) from rounding up past it.
    let rank = (p * sorted.len() as f64 / 100.0 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 50.0), Some(500));
        assert_eq!(percentile(&v, 99.0), Some(990));
        assert_eq!(percentile(&v, 99.9), Some(999));
        assert_eq!(percentile(&v, 100.0), Some(1000));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
