//! State shared between API callers and the loop thread: flags and counters, no locks on the
//! hot path.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;

use parking_lot::Mutex;

use super::app::Logger;

#[derive(Default)]
pub struct Stats {
    pub full_resyncs: AtomicU64,
    pub partial_resyncs: AtomicU64,
    pub connections: AtomicU64,
    pub frames_rejected: AtomicU64,
    pub overflows: AtomicU64,
}

pub struct Shared {
    /// The loop is about to sleep (or sleeps) in `poll`; a producer that sees it wakes it.
    pub sleeping: AtomicBool,
    /// `junos_sync_exit` was called from a callback: the loop tears down and ends.
    pub halt: AtomicBool,
    pub is_master: AtomicBool,
    /// Payload bytes the master holds (queued, unacknowledged or being walked).
    pub held_bytes: AtomicUsize,
    pub backlog_limit: AtomicUsize,
    /// The master's backlog went over the limit (with resync): the loop drops it and the next
    /// backup session is a full resync.
    pub overflow: AtomicBool,
    pub no_resync: AtomicBool,
    pub loop_thread: Mutex<Option<ThreadId>>,
    /// The application's evContext, recorded for compatibility.
    pub event_context: AtomicUsize,
    pub logger: Mutex<Logger>,
    pub stats: Stats,
}

impl Shared {
    pub fn new(is_master: bool, no_resync: bool, logger: Logger, backlog_limit: usize) -> Arc<Self> {
        Arc::new(Shared {
            sleeping: AtomicBool::new(false),
            halt: AtomicBool::new(false),
            is_master: AtomicBool::new(is_master),
            held_bytes: AtomicUsize::new(0),
            backlog_limit: AtomicUsize::new(backlog_limit),
            overflow: AtomicBool::new(false),
            no_resync: AtomicBool::new(no_resync),
            loop_thread: Mutex::new(None),
            event_context: AtomicUsize::new(0),
            logger: Mutex::new(logger),
            stats: Stats::default(),
        })
    }

    /// Logs through the application's logger; the lock is released before the call.
    pub fn log(&self, msg: &str) {
        let l = self.logger.lock().clone();
        l(msg);
    }

    pub fn halted(&self) -> bool {
        self.halt.load(Ordering::Acquire)
    }

    pub fn on_loop_thread(&self) -> bool {
        *self.loop_thread.lock() == Some(std::thread::current().id())
    }

    pub fn release_bytes(&self, n: usize) {
        self.held_bytes.fetch_sub(n, Ordering::Relaxed);
    }
}
