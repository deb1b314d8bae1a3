//! What a role needs from its surroundings while it runs on the loop thread: the application,
//! the shared flags, and the log. Every call into the application goes through here, so the
//! engine knows whether it reported UP and can always report the matching DOWN.

use std::sync::Arc;

use super::app::App;
use super::held::{Held, Releases};
use super::shared::Shared;

pub(crate) struct Env<A: App> {
    pub app: A,
    pub shared: Arc<Shared>,
    pub released: Releases,
    /// The application was told UP and not yet DOWN.
    up: bool,
}

impl<A: App> Env<A> {
    pub(crate) fn new(app: A, shared: Arc<Shared>) -> Self {
        Env { app, shared, released: Releases::default(), up: false }
    }

    pub(crate) fn log(&self, msg: &str) {
        self.shared.log(msg);
    }

    /// `junos_sync_exit` was called from inside a callback: call nothing but `free` from now on.
    pub(crate) fn halted(&self) -> bool {
        self.shared.halted()
    }

    /// Returns a counted TLV to the application for good.
    pub(crate) fn free(&mut self, h: Held<A::Tlv>) {
        let t = h.release(&mut self.released);
        self.app.free(t);
    }

    /// Publishes what `free` uncounted.
    pub(crate) fn settle(&mut self) {
        self.released.settle(&self.shared.budget);
    }

    /// Tells the application the connection came up or went down, once each way, never after
    /// a halt.
    pub(crate) fn conn_status(&mut self, up: bool) {
        if self.up != up && !self.halted() {
            self.up = up;
            self.app.conn_status(up);
        }
    }

    /// After the loop died of a bug: the DOWN the application is owed, if any.
    pub(crate) fn owed_down(&mut self) {
        if self.up && !self.halted() {
            self.up = false;
            self.app.conn_status(false);
        }
    }
}
