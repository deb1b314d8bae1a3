//! The loop's sleep and a producer's wake-up: the loop sleeps in `poll` only after announcing
//! it and looking for work once more; a producer that finds the announcement after publishing
//! wakes it (one eventfd write). Between them, a Dekker pair of barriers: the producer's side
//! is the light one (a compiler barrier when the kernel's membarrier(2) is there to pair with,
//! see `sys::heavy_barrier`), so the hot path pays no fence per message; the loop pays the heavy
//! one once per sleep.

use std::sync::atomic::{AtomicBool, Ordering};

use mio::Waker;

#[derive(Default)]
pub(crate) struct Sleeper {
    sleeping: AtomicBool,
}

impl Sleeper {
    /// Producer, right after publishing: wakes the loop if it sleeps (or is about to). No
    /// system call unless it sleeps.
    #[inline]
    pub(crate) fn after_publish(&self, waker: &Waker) {
        crate::sys::light_barrier();
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            let _ = waker.wake();
        }
    }

    /// Loop, about to sleep: announces it. The caller then looks for work once more: anything
    /// published before a producer could see the announcement is found then, anything after
    /// it wakes the loop.
    pub(crate) fn announce(&self) {
        self.sleeping.store(true, Ordering::Relaxed);
        crate::sys::heavy_barrier();
    }

    /// Loop: awake again (or never slept).
    pub(crate) fn awake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }
}
