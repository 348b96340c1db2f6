//! TEMPORARY stand-in for `mpsafe_barrier::StartBarrier` (same API) until that
//! crate is committed.
#![allow(dead_code, missing_docs, unreachable_pub)]

use core::fmt;
use core::marker::PhantomData;

use mpsafe_serializer::{DefaultWait, Task, TaskOwner, TaskSerializer, Wait};

use crate::sync::{AtomicUsize, Ordering};

pub struct StartBarrier<W = DefaultWait> {
    generation: AtomicUsize,
    _w: PhantomData<fn() -> W>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BarrierError {
    WouldDeadlock,
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("start barrier called from inside the serializer")
    }
}

impl core::error::Error for BarrierError {}

impl<W: Wait> StartBarrier<W> {
    pub fn new() -> Self {
        Self {
            generation: AtomicUsize::new(0),
            _w: PhantomData,
        }
    }

    pub fn run_locked(&self, _owner: &TaskOwner<'_>) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn wait(
        &self,
        serializer: &TaskSerializer,
        task: Task,
        run: impl FnMut(Task, &TaskOwner<'_>),
    ) -> Result<(), BarrierError> {
        #[cfg(feature = "std")]
        if serializer.is_owned_by_current_thread() {
            return Err(BarrierError::WouldDeadlock);
        }
        let g = self.generation.load(Ordering::Acquire);
        if serializer.add(task, run) {
            return Ok(());
        }
        while self.generation.load(Ordering::Acquire) == g {
            #[cfg(loom)]
            loom::thread::yield_now();
            #[cfg(not(loom))]
            core::hint::spin_loop();
        }
        Ok(())
    }
}
