//! `junos_sync_wait`: what a wait needs, as the loop thread publishes it, and where waiters
//! sleep until it is there.
//!
//! Every TLV `junos_sync_queue` accepts gets a place in one order: its claim of a ring slot
//! (`Budget::claim`), which the claim word counts. A wait's target is that count when it is
//! called (`Budget::claimed`, two loads, nothing on the hot path), and it is satisfied once the
//! loop has published `applied` past it: every TLV claimed before that index was applied by the
//! backup (its ACK processed), or was dropped by an overflow whose full resync has since
//! completed. TLVs an overflow freed inside `junos_sync_queue` took no slot; each counts one
//! `ask`, and a wait that saw an ask needs a completed resync that started after it
//! (`covered`).
//!
//! The loop thread (`Progress`, owned by the master role) publishes after it processes
//! acknowledgements, in both modes: a wait never depends on the application dispatching. It
//! notifies only when a waiter is registered; a waiter registers under the lock before it
//! checks, so a publish it did not see finds it registered (each side's store before its load,
//! both sequentially consistent).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::engine::queue::budget::Budget;

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The backup holds what the wait asked for.
    Reached,
    /// Not within the timeout.
    TimedOut,
    /// The role waited on ended (a switchover), or the context is exiting or failed.
    Gone,
}

#[derive(Default)]
pub(crate) struct Waits {
    /// Claim indices below this are applied by the backup or covered by a completed resync.
    applied: AtomicU64,
    /// Asks covered by a completed full resync.
    covered: AtomicU64,
    /// TLVs `junos_sync_queue` accepted and freed at once for an overflow.
    asks: AtomicU64,
    /// The master role waited on: bumped once a switchover has set up the next role.
    role: AtomicU64,
    /// Waiters registered now.
    waiting: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

/// What one wait waits for.
#[derive(Clone, Copy, Debug)]
struct Target {
    role: u64,
    index: u64,
    asks: u64,
}

impl Waits {
    /// `junos_sync_queue` accepted a TLV and freed it for an overflow (before it asks the loop
    /// to drop the backlog).
    pub(crate) fn asked(&self) {
        self.asks.fetch_add(1, SeqCst);
    }

    fn target(&self, budget: &Budget) -> Target {
        Target { role: self.role.load(SeqCst), index: budget.claimed(), asks: self.asks.load(SeqCst) }
    }

    fn reached(&self, t: Target) -> bool {
        self.applied.load(SeqCst) >= t.index && self.covered.load(SeqCst) >= t.asks
    }

    /// Waits until the backup holds what was accepted before this call, at most `timeout`.
    /// `alive`: whether the context still runs as a master (checked at each wake-up).
    pub(crate) fn wait(&self, budget: &Budget, timeout: Duration, alive: impl Fn() -> bool) -> Outcome {
        let t = self.target(budget);
        if self.reached(t) {
            return Outcome::Reached;
        }
        if timeout.is_zero() {
            return Outcome::TimedOut;
        }
        // A timeout too large for the clock: no deadline.
        let deadline = Instant::now().checked_add(timeout);
        let mut g = self.lock.lock();
        self.waiting.fetch_add(1, SeqCst);
        let outcome = loop {
            if !alive() || self.role.load(SeqCst) != t.role {
                break Outcome::Gone;
            }
            if self.reached(t) {
                break Outcome::Reached;
            }
            match deadline {
                Some(d) if Instant::now() >= d => break Outcome::TimedOut,
                Some(d) => {
                    self.cv.wait_until(&mut g, d);
                }
                None => self.cv.wait(&mut g),
            }
        };
        self.waiting.fetch_sub(1, SeqCst);
        outcome
    }

    /// Waiters registered now (for tests and diagnostics).
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(SeqCst)
    }

    /// Wakes every waiter to look again (an exit, the loop's end, a new role).
    pub(crate) fn wake_all(&self) {
        drop(self.lock.lock());
        self.cv.notify_all();
    }

    /// Loop: publishes `applied` and `covered`, waking waiters only if there are any.
    fn publish(&self, applied: u64, covered: u64) {
        self.applied.store(applied, SeqCst);
        self.covered.store(covered, SeqCst);
        if self.waiting.load(SeqCst) > 0 {
            self.wake_all();
        }
    }

    /// Loop, after a switchover set up the next role: the waits of the last one end.
    pub(crate) fn role_changed(&self) {
        self.role.fetch_add(1, SeqCst);
        self.wake_all();
    }
}

/// The master's side of it, on the loop thread: which claim index the oldest queued TLV it
/// holds has, and whether an overflow's resync is owed.
pub(crate) struct Progress {
    /// The claim index of the oldest queued TLV the role holds: those before it are gone
    /// (acknowledged, or dropped by an overflow).
    left: u64,
    /// Asks covered by the resyncs completed.
    covered: u64,
    /// An overflow dropped TLVs: until a full resync completes, `applied` stays where it was,
    /// and that resync covers these asks.
    owed: Option<u64>,
    /// What was last published.
    shown: (u64, u64),
}

impl Progress {
    /// A master role whose first TLV has claim index `first`, with `covered` asks behind it.
    pub(crate) fn new(first: u64, covered: u64) -> Self {
        Progress { left: first, covered, owed: None, shown: (first, covered) }
    }

    /// A role taking over from another (a switchover): its start, published; the asks made so
    /// far were the last role's.
    pub(crate) fn take_over(first: u64, w: &Waits) -> Self {
        let p = Progress::new(first, w.asks.load(SeqCst));
        w.publish(p.shown.0, p.shown.1);
        p
    }

    /// A queued TLV was acknowledged.
    pub(crate) fn acked(&mut self) {
        self.left += 1;
    }

    /// The backup acknowledged a full resync's end: it holds the state the walk read, which
    /// includes everything an overflow before the walk dropped.
    pub(crate) fn resync_done(&mut self) {
        if let Some(asks) = self.owed.take() {
            self.covered = self.covered.max(asks);
        }
    }

    /// An overflow dropped everything the role held, up to claim index `taken` (all the ring
    /// had): a full resync is owed for it.
    pub(crate) fn overflowed(&mut self, taken: u64, w: &Waits) {
        self.left = taken;
        self.owed = Some(w.asks.load(SeqCst));
    }

    /// Publishes the change, if any, to the waiters.
    pub(crate) fn publish(&mut self, w: &Waits) {
        let applied = if self.owed.is_some() { self.shown.0 } else { self.left };
        if (applied, self.covered) != self.shown {
            self.shown = (applied, self.covered);
            w.publish(applied, self.covered);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn claim(b: &Budget, n: u64) {
        for _ in 0..n {
            b.claim(8).unwrap();
        }
    }

    #[test]
    fn a_wait_needs_what_was_claimed_before_it_and_an_overflow_needs_its_resync() {
        let (w, b) = (Waits::default(), Budget::new(usize::MAX));
        let mut p = Progress::new(0, 0);
        assert_eq!(w.wait(&b, Duration::ZERO, || true), Outcome::Reached, "nothing accepted yet");
        claim(&b, 3);
        assert_eq!(w.wait(&b, Duration::ZERO, || true), Outcome::TimedOut);
        p.acked();
        p.acked();
        p.publish(&w);
        assert_eq!(w.wait(&b, Duration::from_millis(1), || true), Outcome::TimedOut, "two of three");
        p.acked();
        p.publish(&w);
        assert_eq!(w.wait(&b, Duration::ZERO, || true), Outcome::Reached);
        // Two more claimed; an overflow (the walk's: no TLV freed inside queue) drops them.
        claim(&b, 2);
        p.overflowed(5, &w);
        p.publish(&w);
        assert_eq!(w.wait(&b, Duration::ZERO, || true), Outcome::TimedOut, "dropped, not applied");
        // Queued after the overflow, acknowledged after the resync's end (held back by the walk).
        claim(&b, 1);
        p.resync_done();
        p.publish(&w);
        assert_eq!(w.applied.load(SeqCst), 5);
        assert_eq!(w.wait(&b, Duration::ZERO, || true), Outcome::TimedOut, "the one after it");
        p.acked();
        p.publish(&w);
        assert_eq!(w.wait(&b, Duration::ZERO, || true), Outcome::Reached);
    }

    #[test]
    fn an_ask_without_a_claim_needs_the_resync_too() {
        let (w, b) = (Waits::default(), Budget::new(usize::MAX));
        let mut p = Progress::new(0, 0);
        w.asked();
        p.overflowed(0, &w);
        p.publish(&w);
        assert_eq!(w.wait(&b, Duration::ZERO, || true), Outcome::TimedOut);
        p.resync_done();
        p.publish(&w);
        assert_eq!(w.wait(&b, Duration::ZERO, || true), Outcome::Reached);
    }

    #[test]
    fn waiters_wake_on_publish_and_end_on_a_role_change() {
        let (w, b) = (Arc::new(Waits::default()), Arc::new(Budget::new(usize::MAX)));
        let mut p = Progress::new(0, 0);
        claim(&b, 1);
        let long = Duration::from_secs(600);
        let spawn = |w: &Arc<Waits>, b: &Arc<Budget>| {
            let (w, b) = (w.clone(), b.clone());
            std::thread::spawn(move || w.wait(&b, long, || true))
        };
        let waiters: Vec<_> = (0..4).map(|_| spawn(&w, &b)).collect();
        while w.waiting.load(SeqCst) < 4 {
            std::thread::yield_now();
        }
        p.acked();
        p.publish(&w);
        for t in waiters {
            assert_eq!(t.join().unwrap(), Outcome::Reached);
        }
        claim(&b, 1);
        let t = spawn(&w, &b);
        while w.waiting.load(SeqCst) < 1 {
            std::thread::yield_now();
        }
        w.role_changed();
        assert_eq!(t.join().unwrap(), Outcome::Gone);
    }

    /// Publishes at random moments against waiters registering: none misses its wake-up (each
    /// would sleep its full 600 s and fail the join's expectations by hanging).
    #[test]
    fn no_lost_wake_up() {
        let (w, b) = (Arc::new(Waits::default()), Arc::new(Budget::new(usize::MAX)));
        let mut p = Progress::new(0, 0);
        for round in 0..2000u64 {
            b.claim(8).unwrap();
            let (w2, b2) = (w.clone(), b.clone());
            let t = std::thread::spawn(move || w2.wait(&b2, Duration::from_secs(600), || true));
            for _ in 0..round % 7 {
                std::thread::yield_now();
            }
            p.acked();
            p.publish(&w);
            assert_eq!(t.join().unwrap(), Outcome::Reached, "round {round}");
        }
    }
}
