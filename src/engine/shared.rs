//! State shared between API callers and the loop thread: the lifecycle, the counters and the
//! byte budget, with no lock on the hot path.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::thread::ThreadId;

use parking_lot::Mutex;

use crate::engine::app::Logger;
use crate::engine::context::lifecycle::Lifecycle;
use crate::engine::counters::{Counters, Stats};
use crate::engine::queue::budget::Budget;
use crate::engine::queue::pace::Pace;
use crate::engine::queue::wake::Sleeper;
use crate::engine::status::Snapshot;
use crate::engine::waits::Waits;

pub(crate) struct Shared {
    /// The loop's sleep, which a producer that publishes after its announcement ends.
    pub sleeper: Sleeper,
    /// Where the context is in its life (`context/lifecycle.rs`).
    pub life: Lifecycle,
    pub is_master: AtomicBool,
    pub no_resync: AtomicBool,
    /// TLV bytes and ring slots the master holds (queued, unacknowledged or being walked), and
    /// the limit.
    pub budget: Budget,
    /// How far behind the loop is, for a producer to yield to it (`queue/pace.rs`).
    pub pace: Pace,
    /// `junos_sync_queue` found the backlog over its limit (with resync): the loop drops it
    /// and the next backup session is a full resync.
    pub overflow_requested: AtomicBool,
    /// `JUNOS_SYNC_OVERFLOW_REFUSE`: at the limit `junos_sync_queue` refuses, as with
    /// `no_resync`, instead of dropping the backlog.
    pub refuse_overflow: AtomicBool,
    /// Backup: bytes of a full resync's entries held until its end (0: applied as they come).
    pub resync_buffer: AtomicUsize,
    /// The thread that runs the application's callbacks right now: the loop thread in thread
    /// mode, the thread inside `dispatch` in dispatch mode. An API call from it is a call from
    /// inside a callback.
    callback_thread: Mutex<Option<ThreadId>>,
    /// The application's evContext, recorded for compatibility.
    pub event_context: AtomicUsize,
    logger: Mutex<Logger>,
    pub counters: Counters,
    /// The replication status, published by the loop thread every turn.
    pub status: Mutex<Snapshot>,
    /// `junos_sync_wait`'s waiters and what they wait for (`waits.rs`).
    pub waits: Waits,
}

impl Shared {
    pub(crate) fn new(is_master: bool, no_resync: bool, logger: Logger, backlog_limit: usize) -> Arc<Self> {
        Arc::new(Shared {
            sleeper: Sleeper::default(),
            life: Lifecycle::default(),
            is_master: AtomicBool::new(is_master),
            no_resync: AtomicBool::new(no_resync),
            budget: Budget::new(backlog_limit),
            pace: Pace::default(),
            overflow_requested: AtomicBool::new(false),
            refuse_overflow: AtomicBool::new(false),
            resync_buffer: AtomicUsize::new(0),
            callback_thread: Mutex::new(None),
            event_context: AtomicUsize::new(0),
            logger: Mutex::new(logger),
            counters: Counters::default(),
            status: Mutex::new(Snapshot::default()),
            waits: Waits::default(),
        })
    }

    /// Logs through the application's logger; the lock is released before the call.
    pub(crate) fn log(&self, msg: &str) {
        let l = self.logger.lock().clone();
        l(msg);
    }

    pub(crate) fn set_logger(&self, l: Logger) {
        *self.logger.lock() = l;
    }

    /// `junos_sync_exit` was called from inside a callback: nothing but frees from now on.
    pub(crate) fn halted(&self) -> bool {
        self.life.halted()
    }

    /// Only frees (and the DOWN owed) may run.
    pub(crate) fn muted(&self) -> bool {
        self.life.muted()
    }

    /// The calling thread runs this context's callbacks from now on (until `leave_callbacks`).
    pub(crate) fn enter_callbacks(&self) {
        *self.callback_thread.lock() = Some(std::thread::current().id());
    }

    pub(crate) fn leave_callbacks(&self) {
        *self.callback_thread.lock() = None;
    }

    /// Whether the calling thread is inside one of this context's callbacks.
    pub(crate) fn in_callback(&self) -> bool {
        *self.callback_thread.lock() == Some(std::thread::current().id())
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot(self.budget.held() as u64)
    }
}
