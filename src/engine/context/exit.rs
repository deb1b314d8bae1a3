//! `junos_sync_exit`: who tears a context down, on which thread, and when the application's
//! last reference to it goes.
//!
//! - From outside any callback: the loop is stopped and joined; it tells the DOWN owed and
//!   frees (thread mode) or hands everything to this thread, which does (dispatch mode); then
//!   whatever never reached the loop is freed here, before `exit` returns.
//! - From inside a callback: the context is `Halting`; the thread running that callback (the
//!   loop in thread mode, the dispatching thread in dispatch mode) tears down as soon as the
//!   callback returns, calling nothing but frees, and drops the application's reference last,
//!   so that a callback the teardown makes can still reach the context.
//! - From inside `bind_done` during `start`: `start` finishes the job.

use crate::engine::app::App;
use crate::engine::context::lifecycle::{ExitKind, State};
use crate::engine::context::{Context, Stage};

use super::dispatch::AppSide;

impl<A: App> Context<A> {
    /// The one way into an exit: Some (how it was called) the first time only. A second exit
    /// of the same context, from a callback that the first one causes (DOWN, frees), gets None
    /// and must do nothing.
    pub fn claim_exit(&self) -> Option<ExitKind> {
        let kind = if self.shared.in_callback() { ExitKind::FromCallback } else { ExitKind::Outside };
        self.shared.life.claim_exit(kind).then_some(kind)
    }

    /// Claims the exit and, the first time, tears the context down (see the module comment),
    /// dropping `owner` (the caller's reference to this context) once nothing of the context
    /// runs any more.
    pub fn exit<O: Send + 'static>(&self, owner: O) {
        if let Some(kind) = self.claim_exit() {
            self.exit_claimed(kind, owner);
        }
    }

    /// The teardown of an exit claimed with `claim_exit`.
    pub fn exit_claimed<O: Send + 'static>(&self, kind: ExitKind, owner: O) {
        // Waits in other threads end now (they see the state the claim left).
        self.shared.waits.wake_all();
        let hook = self.exit_hook.lock().take();
        if let Some(h) = hook {
            h();
        }
        if kind == ExitKind::FromCallback {
            // The thread running the callback finishes when it returns, and drops `owner` last.
            *self.last_ref.lock() = Some(Box::new(owner));
            self.wake_loop();
            return;
        }
        if matches!(*self.stage.lock(), Stage::None) && self.shared.life.state() == State::Stopping {
            // Inside `start` (from bind_done): start ends it.
            drop(owner);
            return;
        }
        match self.take_app_side() {
            Some(side) => self.finish_on_app_thread(*side, true),
            None => {
                self.stop_loop();
                self.free_stray();
            }
        }
        self.shared.life.advance(State::Stopping, State::Exited);
        drop(owner);
    }

    /// Ends the loop thread, if one runs: it frees (or, in dispatch mode, hands over) all it
    /// holds and tells DOWN if a connection was up.
    pub(super) fn stop_loop(&self) {
        let prev = std::mem::replace(&mut *self.stage.lock(), Stage::None);
        if let Stage::Loop(h) = prev {
            self.wake_loop();
            let _ = h.join();
        }
    }

    pub(super) fn wake_loop(&self) {
        let _ = self.waker.wake();
    }

    /// Frees what never reached a loop: queued before start, after a failed start, or racing
    /// the loop's end (or its death).
    pub(super) fn free_stray(&self) {
        let free = self.freer.lock().clone();
        let b = &self.shared.budget;
        self.ring.take(b, usize::MAX, |t, _| free(b.release_now(t)));
    }

    /// Frees what was queued but never reached a loop, with the callbacks `start` has in hand.
    pub(super) fn free_queued(&self, app: &mut A) {
        let b = &self.shared.budget;
        self.ring.take(b, usize::MAX, |t, _| app.free(b.release_now(t)));
    }

    /// Dispatch mode: ends the loop, then frees on this (the application's) thread everything
    /// the context holds, telling DOWN if `notify` and UP was told.
    pub(super) fn finish_on_app_thread(&self, mut side: AppSide<A>, notify: bool) {
        self.stop_loop();
        if let Some(q) = self.appq.lock().clone() {
            let unread = q.drain(&mut side.calls);
            side.d.finish(&mut side.calls, unread, notify);
        }
        self.free_stray();
        // The application's reference, if an exit from a callback left it here; the caller of
        // `dispatch` holds its own.
        let owner = self.last_ref.lock().take();
        drop(owner);
    }
}
