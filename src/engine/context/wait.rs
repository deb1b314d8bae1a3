//! `junos_sync_wait`: a master's caller waits until the backup holds what it queued.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::engine::app::App;
use crate::engine::context::lifecycle::State;
use crate::engine::context::Context;
use crate::engine::counters::Counters;
use crate::engine::error::Error;
use crate::engine::waits::Outcome;

impl<A: App> Context<A> {
    /// Master: waits until the backup has applied every TLV this context accepted before the
    /// call (or holds state at least that new: a full resync that completed after an overflow
    /// dropped some), at most `timeout` (zero: only checks). `Timeout` when not, also with no
    /// backup connected; `State` on a backup, from inside a callback of this context, before
    /// start, and once exiting (a wait in progress ends with it), or when a switchover ends the
    /// role waited on. Any thread; never polls: it sleeps until the loop thread publishes an
    /// acknowledgement or the deadline passes.
    pub fn wait(&self, timeout: Duration) -> Result<(), Error> {
        const CALL: &str = "junos_sync_wait";
        self.usable(CALL)?;
        let master = || self.shared.is_master.load(Ordering::SeqCst);
        if !master() {
            self.log(&format!("{CALL}: this context is a backup; only a master waits"));
            return Err(Error::State);
        }
        if self.shared.in_callback() {
            // The loop thread (thread mode) or the dispatching thread: what the wait needs
            // would never come while it blocks there.
            self.log(&format!("{CALL}: not allowed from inside a callback"));
            return Err(Error::State);
        }
        let running = || self.shared.life.state() == State::Running;
        if !running() {
            self.log(&format!("{CALL}: the context is not running (not started, or exiting)"));
            return Err(Error::State);
        }
        let c = &self.shared.counters;
        match self.shared.waits.wait(&self.shared.budget, timeout, || running() && master()) {
            Outcome::Reached => {
                Counters::bump(&c.waits_satisfied);
                Ok(())
            }
            Outcome::TimedOut => {
                Counters::bump(&c.waits_timed_out);
                Err(Error::Timeout)
            }
            // Not logged: an exit may be tearing the application's logger down.
            Outcome::Gone if self.shared.life.failed() => Err(Error::Internal),
            Outcome::Gone => Err(Error::State),
        }
    }

    /// How many `wait`s are sleeping now (a test's way to know its waiters are in place).
    #[doc(hidden)]
    pub fn waiters(&self) -> usize {
        self.shared.waits.waiting()
    }
}
