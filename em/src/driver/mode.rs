//! The mode policy: for each path and mode, what the path enters.
//!
//! A path asks the policy ([`Mode::entry`]) for its [`Entry`] and runs with
//! the guard that entry gives (a [`Proof`]); the `*_locked` code below it
//! takes that proof as an argument. Adding a mode is one variant here plus
//! one column of [`Mode::entry`].

use alloc::format;
use alloc::string::String;
use core::fmt;

use mpsafe_order::Held;
use mpsafe_serializer::{Serialized, TaskOwner};

use super::order::BigLock;

use crate::biglock::{KernelGuard, Path};
use crate::kernel::Kernel;

/// Which locking design the driver runs: chosen at attach, changed at run
/// time (DragonFly's
/// `kern.intr_mpsafe` switch, OpenBSD's `IFXF_MPSAFE` opt-in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Everything under one giant lock: the kernel before 2015.
    BigLock,
    /// Seed 000: rx completion under an rx mutex only; the rest of the
    /// interrupt, tx completion, refill, start and ioctl under the big lock.
    RxUnlocked,
    /// Seeds 002 and 001: no big lock anywhere; the ifq serializer
    /// serializes start, a combiner tx completion, the rx mutex the ring.
    Mpsafe,
    /// Seed 001 (DragonFly, 2005): one blocking serializer per interface
    /// (the ifnet serializer) covers the interrupt handler, start, init and
    /// ioctl; no big lock anywhere.
    Serialized,
}

/// What a path enters before it runs, in a given [`Mode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// Nothing beyond the path's own fine-grained locks (rx mutex, ifq
    /// serializer, combiner).
    Unlocked,
    /// The big lock ([`KernelLock`](crate::KernelLock)).
    BigLock,
    /// The interface's ifnet [`Serializer`](mpsafe_serializer::Serializer),
    /// entered once at the top of the interrupt, start or ioctl and handed
    /// down as a proof.
    Serializer,
}

impl Mode {
    /// The four modes, in the order the demo runs them.
    pub const ALL: [Mode; 4] = [
        Mode::BigLock,
        Mode::RxUnlocked,
        Mode::Mpsafe,
        Mode::Serialized,
    ];

    /// The policy: what `path` enters in this mode. `Path::Ioctl` always
    /// runs inside the ifnet serializer as well; its entry says what it
    /// takes on top of it.
    pub const fn entry(self, path: Path) -> Entry {
        match (self, path) {
            (Mode::BigLock, _) => Entry::BigLock,
            (Mode::RxUnlocked, Path::Interrupt | Path::Rx) => Entry::Unlocked,
            (Mode::RxUnlocked, _) => Entry::BigLock,
            (Mode::Mpsafe, _) => Entry::Unlocked,
            (Mode::Serialized, _) => Entry::Serializer,
        }
    }

    /// Whether `path` takes the big lock in this mode.
    pub const fn locks(self, path: Path) -> bool {
        matches!(self.entry(path), Entry::BigLock)
    }

    /// Name as the demo's `--mode` flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::BigLock => "biglock",
            Mode::RxUnlocked => "rx-unlocked",
            Mode::Mpsafe => "mpsafe",
            Mode::Serialized => "serialized",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        Self::ALL[usize::from(v)]
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl core::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!("unknown mode {s:?}: expected biglock, rx-unlocked, mpsafe or serialized")
            })
    }
}

/// The guard a path's [`Entry`] gave it: the proof its `*_locked` code
/// takes. Dropping it leaves the entry.
pub(crate) enum Proof<'a, K: Kernel> {
    /// [`Entry::Unlocked`].
    Unlocked,
    /// [`Entry::Unlocked`] for the start routine: the ifq serializer's
    /// owner token serializes it.
    Task(&'a TaskOwner<'a>),
    /// [`Entry::BigLock`]: the big lock, taken by this path.
    Big(Held<'a, BigLock, KernelGuard<'a, K::BigLock>>),
    /// [`Entry::Serializer`]: inside this interface's ifnet serializer
    /// (entered by the caller at the top of the path).
    Ifnet(&'a Serialized<'a, K::Wait>),
}

impl<K: Kernel> fmt::Debug for Proof<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proof::Unlocked => "Unlocked",
            Proof::Task(_) => "Task",
            Proof::Big(_) => "Big",
            Proof::Ifnet(_) => "Ifnet",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_matches_the_seeds() {
        for p in Path::ALL {
            assert_eq!(Mode::BigLock.entry(p), Entry::BigLock);
            assert_eq!(Mode::Mpsafe.entry(p), Entry::Unlocked);
            assert_eq!(Mode::Serialized.entry(p), Entry::Serializer);
            assert!(!Mode::Serialized.locks(p));
        }
        assert_eq!(Mode::RxUnlocked.entry(Path::Rx), Entry::Unlocked);
        assert_eq!(Mode::RxUnlocked.entry(Path::Interrupt), Entry::Unlocked);
        assert_eq!(Mode::RxUnlocked.entry(Path::TxEof), Entry::BigLock);
        assert_eq!(Mode::RxUnlocked.entry(Path::RxFill), Entry::BigLock);
        for m in Mode::ALL {
            assert_eq!(Mode::from_u8(m.to_u8()), m);
            assert_eq!(m.name().parse::<Mode>(), Ok(m));
        }
        assert!("fast".parse::<Mode>().unwrap_err().contains("unknown mode"));
    }
}
