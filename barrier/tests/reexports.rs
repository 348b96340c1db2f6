//! The wait strategies are reachable through this crate alone: a user names
//! `Completion<Spin>` or a `W: Wait` bound without depending on
//! `mpsafe-serializer`.
#![cfg(not(mpsafe_loom))]

use mpsafe_barrier::{Completion, DefaultWait, Spin, Wait};

fn signalled<W: Wait>() -> bool {
    let done = Completion::<W>::new();
    done.signal();
    done.wait();
    done.is_signalled()
}

#[test]
fn reexported_waits_drive_a_completion() {
    assert!(signalled::<Spin>());
    assert!(signalled::<DefaultWait>());
    #[cfg(feature = "std")]
    assert!(signalled::<mpsafe_barrier::Futex>());
}
