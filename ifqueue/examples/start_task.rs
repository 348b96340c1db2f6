//! Seed 002's delegated start: the transmitting CPUs only enqueue and post a
//! request; a task thread runs the start routine.
//!
//! ```text
//! cargo run --example start_task -p mpsafe-ifqueue
//! ```
//!
//! Two threads transmit through a [`StartTask`]; the task thread fills an
//! 8-slot ring and marks the queue `oactive` when it is full; the "device"
//! (the main thread) sends what the ring holds, clears `oactive` and posts a
//! request, so the restart also runs on the task thread. `stop` makes one
//! last pass: nothing stays queued.

#![allow(clippy::std_instead_of_core)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use mpsafe_ifqueue::{Config, Fifo, IfQueue, StartTask};

const RING: usize = 8;
const PER_CPU: usize = 500;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ring = Mutex::new(Vec::with_capacity(RING));
    let ifq = IfQueue::from_fn(Fifo::new(), Config::with_maxlen(1024), |q, _owner| {
        let mut ring = ring.lock().unwrap();
        loop {
            if ring.len() == RING && q.set_oactive_unless(|| false) {
                break; // full: the device's completion requests a restart
            }
            match q.dequeue() {
                Some(frame) => ring.push(frame),
                None => break,
            }
        }
    })?;
    let task: StartTask = StartTask::new();
    let sent = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| task.run(&ifq));
        let cpus: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..PER_CPU {
                        task.transmit(&ifq, vec![0u8; 60]).expect("room for all");
                    }
                })
            })
            .collect();
        // The device: send what the ring holds, then restart (delegated).
        while sent.load(Ordering::Relaxed) < 2 * PER_CPU {
            let n = std::mem::take(&mut *ring.lock().unwrap()).len();
            sent.fetch_add(n, Ordering::Relaxed);
            if ifq.is_oactive() {
                ifq.clear_oactive();
                task.request();
            }
            std::thread::yield_now();
        }
        for cpu in cpus {
            cpu.join().unwrap();
        }
        task.stop();
    });
    assert!(ifq.is_empty());
    assert_eq!(ifq.counters().packets, (2 * PER_CPU) as u64);
    println!(
        "{} frames sent through the task thread; {task:?}",
        sent.into_inner()
    );
    Ok(())
}

#[test]
fn runs() {
    main().unwrap();
}
