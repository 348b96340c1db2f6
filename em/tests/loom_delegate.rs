//! loom model of the delegated start (`TxStart::Delegated`: a transmit
//! queues and adds the queue's start task) against `stop`.
//!
//! Run with
//! `RUSTFLAGS="--cfg mpsafe_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom -p mpsafe-em --test loom_delegate`.
//!
//! Reverts checked (made, the model seen failing, restored; `.ci/mutants`
//! makes each again): the start task running the start body directly,
//! outside the send queue's start serializer (stop's start barrier then
//! misses it); stop without its barriers; stop clearing RUNNING after them.
#![cfg(all(mpsafe_loom, feature = "std"))]
// Test code, on std (the model threads, std's Arc and Mutex in the fakes).
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod support;

use loom::sync::Arc;
use mpsafe_em::{Mode, TxError, TxStart};
use support::{config, model, rig, spawn};

/// A CPU transmits through the start task while another runs the task
/// once and the interface goes down: the task's start body runs inside the
/// send queue's start serializer, so stop's start barrier waits for it;
/// after `down` the packet was posted (and completed or flushed) or purged,
/// and the fakes saw no start body beside stop's reset.
fn delegated_start_against_stop(mode: Mode) {
    model(move || {
        let mut cfg = config(mode);
        cfg.tx_start = TxStart::Delegated;
        let r = Arc::new(rig(cfg, 2));
        let task = support::deferred("em0-start0");
        let sender = {
            let r = Arc::clone(&r);
            spawn(move || match r.em.transmit(0, r.pool.frame(60)) {
                Ok(()) => 1,
                Err(TxError::Down(b)) => {
                    r.pool.give_back([b]);
                    0
                }
                Err(e) => panic!("unexpected refusal: {e}"),
            })
        };
        let runner = spawn(move || task.run_once("start task"));
        r.em.down();
        let sent = sender.join().unwrap();
        runner.join().unwrap();
        r.down_and_check(sent);
    });
}

#[test]
fn delegated_start_against_stop_mpsafe() {
    delegated_start_against_stop(Mode::Mpsafe);
}

#[test]
fn delegated_start_against_stop_biglock() {
    delegated_start_against_stop(Mode::BigLock);
}
