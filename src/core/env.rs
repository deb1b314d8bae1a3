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
}

impl<A: App> Env<A> {
    pub fn log(&self, msg: &str) {
        self.shared.log(msg);
    }

    /// `junos_sync_exit` was called from inside a callback: call nothing but `free` from now on.
    pub fn halted(&self) -> bool {
        self.shared.halted()
    }

    /// Returns a TLV to the application for good and stops counting it against the backlog.
    pub fn free(&mut self, t: A::Tlv) {
        self.shared.release_bytes(held_size(&t));
        self.app.free(t);
    }
}
