//! Thread mode: acknowledged TLVs that need no `ack_notify` go back to the thread that queues,
//! which frees them inside `junos_sync_queue`. The allocator's per-thread cache then takes back
//! on that thread what it handed out there, instead of the loop thread freeing memory another
//! thread allocated (glibc's arena lock and cache misses on the hot path).
//!
//! Bounded in count and bytes; what does not fit, and what waits longer than the loop's next
//! turn without traffic, the loop frees itself.

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};

use super::app::Tlv;

/// Most TLVs waiting, and most payload bytes.
const MAX_COUNT: usize = 16 * 1024;
const MAX_BYTES: usize = 4 << 20;
/// A queue call frees this many at once (one look at the current free function for all), and
/// only once that many wait.
const PER_CALL: usize = 16;

pub(crate) struct Returns<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
    bytes: AtomicUsize,
}

impl<T: Tlv> Returns<T> {
    pub(crate) fn new() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(MAX_COUNT);
        Returns { tx, rx, bytes: AtomicUsize::new(0) }
    }

    /// Loop thread: hands `t` back, or gives it back to the caller when full.
    pub(crate) fn give(&self, t: T) -> Result<(), T> {
        let n = t.payload_len();
        if self.bytes.load(Ordering::Relaxed) + n > MAX_BYTES {
            return Err(t);
        }
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.tx.try_send(t).map_err(|e| {
            self.bytes.fetch_sub(n, Ordering::Relaxed);
            e.into_inner()
        })
    }

    /// Queueing thread: whether a batch waits.
    pub(crate) fn batch_ready(&self) -> bool {
        self.rx.len() >= PER_CALL
    }

    /// Queueing thread: frees a batch.
    pub(crate) fn take_some(&self, free: impl Fn(T)) {
        for _ in 0..PER_CALL {
            let Ok(t) = self.rx.try_recv() else { return };
            self.bytes.fetch_sub(t.payload_len(), Ordering::Relaxed);
            free(t);
        }
    }

    /// Frees all (the loop when the application is quiet, and exit).
    pub(crate) fn take_all(&self, mut free: impl FnMut(T)) {
        while let Ok(t) = self.rx.try_recv() {
            self.bytes.fetch_sub(t.payload_len(), Ordering::Relaxed);
            free(t);
        }
    }
}
