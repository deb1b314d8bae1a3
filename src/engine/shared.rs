//! State shared between API callers and the loop thread: flags, counters and the byte budget,
//! with no lock on the hot path.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;

use parking_lot::Mutex;

use crate::engine::app::Logger;
use crate::engine::budget::Budget;
use crate::engine::status::Snapshot;

/// A context's counters, as the API reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Master: sessions that started with a full resync.
    pub full_resyncs: u64,
    /// Master: sessions where a returning backup resumed.
    pub partial_resyncs: u64,
    /// Master: backup connections that passed the handshake.
    pub connections: u64,
    /// Connections ended for malformed input or a protocol violation.
    pub frames_rejected: u64,
    /// Master: times the backlog went over its limit.
    pub overflows: u64,
    /// Master: TLV bytes held.
    pub backlog_bytes: u64,
    /// Handshakes that failed authentication (wrong key, or a keyed and an unkeyed side).
    pub auth_failures: u64,
    /// Well-formed handshakes refused (another version, the same role, a live backup).
    pub handshakes_refused: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub full_resyncs: AtomicU64,
    pub partial_resyncs: AtomicU64,
    pub connections: AtomicU64,
    pub frames_rejected: AtomicU64,
    pub overflows: AtomicU64,
    pub auth_failures: AtomicU64,
    pub handshakes_refused: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(n: &AtomicU64) {
        n.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, backlog_bytes: usize) -> Stats {
        let g = |n: &AtomicU64| n.load(Ordering::Relaxed);
        Stats {
            full_resyncs: g(&self.full_resyncs),
            partial_resyncs: g(&self.partial_resyncs),
            connections: g(&self.connections),
            frames_rejected: g(&self.frames_rejected),
            overflows: g(&self.overflows),
            backlog_bytes: backlog_bytes as u64,
            auth_failures: g(&self.auth_failures),
            handshakes_refused: g(&self.handshakes_refused),
        }
    }
}

pub(crate) struct Shared {
    /// The loop is about to sleep (or sleeps) in `poll`; a producer that sees it wakes it.
    pub sleeping: AtomicBool,
    /// `junos_sync_exit` was called from a callback: the loop tears down and ends.
    halt: AtomicBool,
    /// The loop thread died of a bug: every later call fails with `Error::Internal`.
    failed: AtomicBool,
    /// The loop thread is dying: only frees (and the DOWN owed) run while it cleans up, after
    /// which `failed` is set (so the DOWN comes before any call fails).
    dying: AtomicBool,
    /// Any of `halt`, `dying`, `failed`: one load on the path of every callback.
    quiet: AtomicBool,
    pub is_master: AtomicBool,
    pub no_resync: AtomicBool,
    /// TLV bytes the master holds (queued, unacknowledged or being walked), and the limit.
    pub budget: Budget,
    /// `junos_sync_queue` found the backlog over its limit (with resync): the loop drops it
    /// and the next backup session is a full resync.
    pub overflow_requested: AtomicBool,
    pub loop_thread: Mutex<Option<ThreadId>>,
    /// The application's evContext, recorded for compatibility.
    pub event_context: AtomicUsize,
    logger: Mutex<Logger>,
    pub counters: Counters,
    /// The replication status, published by the loop thread every turn.
    pub status: Mutex<Snapshot>,
}

impl Shared {
    pub(crate) fn new(is_master: bool, no_resync: bool, logger: Logger, backlog_limit: usize) -> Arc<Self> {
        Arc::new(Shared {
            sleeping: AtomicBool::new(false),
            halt: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            dying: AtomicBool::new(false),
            quiet: AtomicBool::new(false),
            is_master: AtomicBool::new(is_master),
            no_resync: AtomicBool::new(no_resync),
            budget: Budget::new(backlog_limit),
            overflow_requested: AtomicBool::new(false),
            loop_thread: Mutex::new(None),
            event_context: AtomicUsize::new(0),
            logger: Mutex::new(logger),
            counters: Counters::default(),
            status: Mutex::new(Snapshot::default()),
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

    pub(crate) fn halted(&self) -> bool {
        self.halt.load(Ordering::Acquire)
    }

    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Only frees and the DOWN owed may run (see `dying`).
    pub(crate) fn muted(&self) -> bool {
        self.quiet.load(Ordering::Acquire)
    }

    /// `junos_sync_exit` was called from a callback.
    pub(crate) fn set_halt(&self) {
        self.halt.store(true, Ordering::Release);
        self.quiet.store(true, Ordering::Release);
    }

    /// The loop died of a bug: callbacks stop (but for frees and the DOWN owed) ...
    pub(crate) fn set_dying(&self) {
        self.dying.store(true, Ordering::Release);
        self.quiet.store(true, Ordering::Release);
    }

    /// ... and then every call fails.
    pub(crate) fn set_failed(&self) {
        self.failed.store(true, Ordering::Release);
        self.quiet.store(true, Ordering::Release);
    }

    pub(crate) fn on_loop_thread(&self) -> bool {
        *self.loop_thread.lock() == Some(std::thread::current().id())
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot(self.budget.held())
    }
}
