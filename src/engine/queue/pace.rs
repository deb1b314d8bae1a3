//! Keeping a producer from running far ahead of the loop on a CPU the two share.
//!
//! A call to `junos_sync_queue` costs its thread a few nanoseconds; framing, writing and
//! freeing the TLV cost the loop several times that. On one CPU (a pinned daemon, or a machine
//! busy with other work) the scheduler gives both threads the same time, so a burst ran ahead
//! of the loop by about half its length: 4 M queued 64-byte TLVs held 110 MB of the
//! application's memory, all of it fresh pages (a fault every 50 TLVs) and out of cache by the
//! time the loop framed and freed it. So once every `CHECK_EVERY` claims a producer looks how
//! far behind the loop is, and beyond `BEHIND` entries it yields its CPU (`sched_yield`): the
//! loop, runnable and behind, gets to run. That is never a sleep or a wait for the loop: on a
//! CPU of its own, or with the loop asleep waiting for the network, the call returns at once.

use std::sync::atomic::{AtomicU64, Ordering};

use super::budget::{Budget, Slot};

/// Claims between two looks: a look costs two loads, a yield one system call.
const CHECK_EVERY: u64 = 1024;
/// Entries the loop may be behind before a producer yields: ring slots not taken and entries
/// taken but not framed while the connection could take them (about 2 MB of 64-byte TLVs).
pub(crate) const BEHIND: u64 = 16 * 1024;

#[derive(Default)]
pub(crate) struct Pace {
    /// Loop, every turn: entries it holds unframed while its connection is writable (0 with
    /// no connection, or one that is full: then the loop waits for the network, not the CPU).
    unframed: AtomicU64,
}

impl Pace {
    /// Loop: publishes what it holds unframed and could write now.
    pub(crate) fn set_unframed(&self, n: u64) {
        if self.unframed.load(Ordering::Relaxed) != n {
            self.unframed.store(n, Ordering::Relaxed);
        }
    }

    /// Producer, right after its claim of `slot`: whether to yield the CPU to the loop.
    #[inline]
    pub(crate) fn should_yield(&self, budget: &Budget, slot: Slot) -> bool {
        slot.index() % CHECK_EVERY == 0
            && budget.not_taken_before(slot) + self.unframed.load(Ordering::Relaxed) > BEHIND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_producer_yields_only_on_its_check_and_only_when_the_loop_is_behind() {
        let b = Budget::new(usize::MAX);
        let p = Pace::default();
        let mut yields = vec![];
        for _ in 0..3 * CHECK_EVERY {
            let s = b.claim(8).unwrap();
            if p.should_yield(&b, s) {
                yields.push(s.index());
            }
        }
        assert!(yields.is_empty(), "3 K entries behind is not behind: {yields:?}");
        // The loop, framing nothing, holds BEHIND entries it could write.
        p.set_unframed(BEHIND);
        let mut checked = 0;
        for _ in 0..3 * CHECK_EVERY {
            let s = b.claim(8).unwrap();
            checked += u64::from(s.index() % CHECK_EVERY == 0);
            if p.should_yield(&b, s) {
                yields.push(s.index());
            }
        }
        assert_eq!(yields, [3 * CHECK_EVERY, 4 * CHECK_EVERY, 5 * CHECK_EVERY]);
        assert_eq!(checked, 3);
        // Its connection is full (or gone): the producer keeps its CPU however far behind.
        p.set_unframed(0);
        yields.clear();
        for _ in 0..3 * CHECK_EVERY {
            let s = b.claim(8).unwrap();
            if p.should_yield(&b, s) {
                yields.push(s.index());
            }
        }
        assert!(yields.is_empty(), "{yields:?}");
        // Ring slots not taken count too: 9 K claimed so far, none taken.
        let mut far = 0;
        while b.claimed() < BEHIND + 2 * CHECK_EVERY {
            far += u64::from(p.should_yield(&b, b.claim(8).unwrap()));
        }
        assert!(far >= 1, "{} entries in the ring and no yield", b.claimed());
    }
}
