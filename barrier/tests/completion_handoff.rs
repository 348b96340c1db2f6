//! The port of OpenBSD's `ifq_barrier`/`sched_barrier` pattern: the waiter
//! keeps its [`Completion`] on its own stack, hands a raw pointer to another
//! thread (the task that will signal it), waits, and returns, popping the
//! frame. `signal` must not touch the completion after the store that lets
//! the waiter return, or it uses freed stack memory.
//!
//! The test strategy's `wake_all` (the one thing `signal` does after deciding
//! to wake) gives the waiter many chances to run, then checks that the waiter
//! has *not* returned: while `signal` still has work to do on the word, the
//! frame must still be there. The waiter's `wait` never sleeps (a spurious
//! return, which the futex contract allows), so it is always re-reading the
//! word, ready to return. Also run under Miri (`cargo +nightly miri test -p
//! mpsafe-barrier --test completion_handoff`) for the stack accesses.
#![cfg(all(not(mpsafe_loom), feature = "std"))]

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use mpsafe_barrier::Completion;
use mpsafe_serializer::{Futex, Wait};

/// Set by the waiter once `wait` has returned (its completion is gone).
static RETURNED: AtomicBool = AtomicBool::new(false);

/// Never sleeps; its wake-up checks that the waiter is still waiting.
struct Spurious;

impl Wait for Spurious {
    fn wait(_word: &AtomicU32, _expected: u32) {
        std::thread::yield_now();
    }
    fn wake_one(word: &AtomicU32) {
        Self::wake_all(word);
    }
    fn wake_all(_word: &AtomicU32) {
        for _ in 0..if cfg!(miri) { 20 } else { 100 } {
            if RETURNED.load(Ordering::SeqCst) {
                break;
            }
            std::thread::yield_now();
        }
        assert!(
            !RETURNED.load(Ordering::SeqCst),
            "the waiter returned (and freed the completion) while signal was still waking it"
        );
    }
}

/// A raw pointer to a completion on another thread's stack.
struct Handoff(*const ());

// SAFETY: the pointee is a `Completion`, which is `Sync`; the waiter keeps it
// alive until `signal` has made it return.
unsafe impl Send for Handoff {}

/// One round: a completion on this frame, signalled through a raw pointer by
/// another thread; returns once signalled, popping the completion.
#[inline(never)]
fn wait_on_stack<W: Wait>() -> std::thread::JoinHandle<()> {
    let done: Completion<W> = Completion::new();
    let ptr = Handoff(core::ptr::from_ref(&done).cast());
    let signaller = std::thread::spawn(move || {
        let ptr = ptr;
        // SAFETY: the waiter cannot return before the signal below.
        let done = unsafe { &*ptr.0.cast::<Completion<W>>() };
        // Signal only once the waiter has announced itself, so `signal`
        // takes its wake-up path.
        while !format!("{done:?}").contains("waiters: true") {
            std::thread::yield_now();
        }
        done.signal();
    });
    done.wait();
    RETURNED.store(true, Ordering::SeqCst);
    signaller
}

/// Overwrites the stack area the completion lived in.
#[inline(never)]
fn scribble() -> u64 {
    let junk = core::hint::black_box([0xA5u64; 16]);
    junk.iter().sum()
}

fn rounds<W: Wait>() {
    for _ in 0..if cfg!(miri) { 4 } else { 20 } {
        RETURNED.store(false, Ordering::SeqCst);
        let signaller = wait_on_stack::<W>();
        core::hint::black_box(scribble());
        signaller.join().expect("signaller");
    }
}

#[test]
fn stack_completion_signalled_through_a_pointer() {
    rounds::<Spurious>();
    // Miri rejects the `atomic-wait` futex call itself (it passes a reference
    // where the syscall wants a raw pointer), so the futex rounds run natively.
    if !cfg!(miri) {
        rounds::<Futex>();
    }
}
