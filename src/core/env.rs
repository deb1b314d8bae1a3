//! What a role needs from its surroundings while it runs on the loop thread: the application,
//! the shared flags, and the log.

use std::sync::Arc;

use super::app::{App, Tlv};
use super::shared::Shared;

/// Bytes a TLV counts against the backlog limit: its payload and its 8-byte header.
pub fn held_size<T: Tlv>(t: &T) -> usize {
    t.payload().len() + 8
}

pub struct Env<A: App> {
    pub app: A,
    pub shared: Arc<Shared>,
    /// Bytes freed since the last `settle`: one atomic update per loop turn instead of one per
    /// TLV keeps the counter's cache line from bouncing against `junos_sync_queue`.
    released: usize,
}

impl<A: App> Env<A> {
    pub fn log(&self, msg: &str) {
        self.shared.log(msg);
    }

    /// `junos_sync_exit` was called from inside a callback: call nothing but `free` from now on.
    pub fn halted(&self) -> bool {
        self.shared.halted()
    }

    pub fn new(app: A, shared: Arc<Shared>) -> Self {
        Env { app, shared, released: 0 }
    }

    /// Returns a TLV to the application for good; it stops counting against the backlog at
    /// the next `settle`.
    pub fn free(&mut self, t: A::Tlv) {
        self.released += held_size(&t);
        self.app.free(t);
    }

    /// Publishes what `free` released.
    pub fn settle(&mut self) {
        if self.released > 0 {
            self.shared.release_bytes(std::mem::take(&mut self.released));
        }
    }
}
