//! An interrupt gate behind a kernel's enter/exit hooks, its handler under
//! the lock order, and one completion reused across down/up cycles.
//!
//! ```text
//! cargo run --example intr_hooks -p mpsafe-barrier
//! ```
//!
//! Some kernels do not call a handler as a closure: their dispatcher calls
//! an `intr_enter(cpu)` hook, then the handler, then `intr_exit`. The gate's
//! guard form fits that: [`Gate::try_enter_on`] in the enter hook (counted on
//! the CPU the dispatcher names), the guard kept in the per-CPU dispatch
//! state, dropped in the exit hook. A driver whose handler takes its rx lock
//! enters through [`OrderedGate`], so the handler's context sits at the
//! gate's level and the witness checks what it takes after. Each `down`
//! waits for a "start barrier" task with a [`Completion`], the same one each
//! cycle, reset in between.

#![allow(clippy::std_instead_of_core)]

use std::sync::atomic::{AtomicU64, Ordering};

use mpsafe_barrier::{Completion, Gate, GateGuard, OrderedGate};
use mpsafe_order::Ordered;
use mpsafe_serializer::SpinMutex;

mpsafe_order::lock_order! {
    /// The interrupt gate: a handler runs inside it.
    pub Intr,
    /// The receive ring lock, taken by the handler.
    pub Rx,
}

/// What the dispatcher keeps for the interrupt it is running on one CPU.
struct Dispatch<'g> {
    cpu: usize,
    invocation: Option<GateGuard<'g>>,
}

/// The kernel's enter hook: `false` if the line is disabled (the driver is
/// stopping) and the handler must not run.
fn intr_enter<'g>(gate: &'g Gate, d: &mut Dispatch<'g>) -> bool {
    if !gate.is_enabled() {
        return false; // cheap early out; try_enter_on decides for sure
    }
    d.invocation = gate.try_enter_on(d.cpu);
    d.invocation.is_some()
}

/// The kernel's exit hook: the invocation ends; a barrier waiting for it
/// returns.
fn intr_exit(gate: &Gate, d: &mut Dispatch<'_>) {
    let invocation = d.invocation.take().expect("exit without enter");
    assert!(core::ptr::eq(invocation.gate(), gate));
}

struct Driver {
    line: Gate,
    intr: Ordered<Intr, Gate>,
    rx: Ordered<Rx, SpinMutex<u64>>,
    handled: AtomicU64,
}

impl Driver {
    /// The handler, entered through the ordered gate: its context may take
    /// the rx lock (declared after the gate), not the gate again.
    fn handler(&self) -> Option<u64> {
        self.intr.enter(|mut ctx| {
            // The held lock, at its level; `**` reaches the counter.
            let (mut rx, _) = ctx.lock(&self.rx);
            **rx += 1;
            self.handled.fetch_add(1, Ordering::Relaxed);
            **rx
        })
    }
}

fn main() {
    let drv = Driver {
        line: Gate::new(),
        intr: Ordered::new(Gate::new()),
        rx: Ordered::new(SpinMutex::new(0)),
        handled: AtomicU64::new(0),
    };

    // The dispatcher on two CPUs: enter hook, handler, exit hook.
    std::thread::scope(|s| {
        for cpu in 0..2 {
            let drv = &drv;
            s.spawn(move || {
                let mut d = Dispatch {
                    cpu,
                    invocation: None,
                };
                for _ in 0..500 {
                    if intr_enter(&drv.line, &mut d) {
                        drv.handler().expect("the driver's gate is enabled");
                        intr_exit(&drv.line, &mut d);
                    }
                }
            });
        }
    });
    assert_eq!(drv.handled.load(Ordering::Relaxed), 1000);

    // Down: disable the line, wait out a handler in flight.
    drv.line.disable();
    drv.line.barrier();
    let mut d = Dispatch {
        cpu: 1,
        invocation: None,
    };
    assert!(!intr_enter(&drv.line, &mut d), "disabled: not dispatched");
    drv.intr.unordered().disable();
    assert_eq!(drv.handler(), None);

    // Three down/up cycles, each waiting for the start routine's barrier
    // task (a thread here) with the same completion.
    let mut start_barrier: Completion = Completion::new();
    for cycle in 0..3 {
        std::thread::scope(|s| {
            s.spawn(|| start_barrier.signal());
            start_barrier.wait();
        });
        assert!(start_barrier.is_signalled());
        // The borrows ended with the scope: ready for the next down.
        start_barrier.reset();
        println!("down/up cycle {cycle}: start barrier passed");
    }
    assert!(!start_barrier.is_signalled());
    let rx = *drv.rx.unordered().lock();
    println!(
        "{} interrupts handled, rx counter {rx}",
        drv.handled.load(Ordering::Relaxed)
    );
}

#[test]
fn runs() {
    main();
}
