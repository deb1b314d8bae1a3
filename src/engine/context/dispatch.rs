//! Dispatch mode, the context's side: from `start` on, every callback runs inside `dispatch`,
//! on the thread that calls it, a bounded slice at a time.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::app::appq::AppQueue;
use crate::engine::app::calls::{Call, Reply};
use crate::engine::app::dispatcher::Dispatcher;
use crate::engine::app::App;
use crate::engine::context::lifecycle::State;
use crate::engine::context::{Context, Stage};
use crate::engine::error::Error;
use crate::sys::Bell;

/// How long one dispatch runs the application's callbacks before it returns (and leaves its
/// descriptor readable): a resync walk of a million entries must not freeze its event loop.
const DISPATCH_SLICE: Duration = Duration::from_millis(1);

/// What runs on the application's thread in dispatch mode.
pub(super) struct AppSide<A: App> {
    pub(super) d: Dispatcher<A>,
    pub(super) calls: VecDeque<Call<A>>,
    pub(super) replies: Vec<Reply<A::Tlv>>,
}

impl<A: App> AppSide<A> {
    pub(super) fn new(d: Dispatcher<A>) -> Self {
        AppSide { d, calls: VecDeque::new(), replies: Vec::new() }
    }
}

impl<A: App> Context<A> {
    /// Dispatch mode: from `start` on, every callback runs inside `dispatch`, on the thread
    /// that calls it. Before `start`; returns the descriptor to watch for readability (the
    /// same one if called again).
    pub fn enable_dispatch(&self) -> Result<RawFd, Error> {
        self.usable("junos_sync_get_fd")?;
        let mut appq = self.appq.lock();
        if let Some(q) = appq.as_ref() {
            return Ok(q.fd());
        }
        if !matches!(*self.stage.lock(), Stage::Unstarted(_)) {
            self.log("junos_sync_get_fd: the context is started: call it before junos_sync_start");
            return Err(Error::State);
        }
        let bell = Bell::new().map_err(|e| {
            self.log(&format!("junos_sync_get_fd: cannot create an eventfd: {e}"));
            Error::NoMem
        })?;
        let q = Arc::new(AppQueue::new(bell, self.waker.clone()));
        let fd = q.fd();
        *appq = Some(q);
        Ok(fd)
    }

    /// Back to thread mode, before `start` (the application's loop could not take the
    /// descriptor).
    pub fn disable_dispatch(&self) {
        if matches!(*self.stage.lock(), Stage::Unstarted(_)) {
            *self.appq.lock() = None;
        }
    }

    /// Dispatch mode, once started: the application's side, taken out for a dispatch or the
    /// teardown (None in thread mode, before start, and while a dispatch runs it).
    pub(super) fn take_app_side(&self) -> Option<Box<AppSide<A>>> {
        self.app_side.lock().take()
    }

    /// Dispatch mode: runs the callbacks that are due, for about a millisecond at most, and
    /// never blocks. The descriptor stays readable while more are due.
    pub fn dispatch(&self) -> Result<(), Error> {
        self.usable("junos_sync_dispatch")?;
        let Some(q) = self.appq.lock().clone() else {
            self.log("junos_sync_dispatch: the context is not in dispatch mode (see junos_sync_get_fd)");
            return Err(Error::State);
        };
        let Some(mut side) = self.take_app_side() else {
            if matches!(self.shared.life.state(), State::Ready | State::Starting) {
                return Ok(()); // not started: nothing is due
            }
            self.log("junos_sync_dispatch: not allowed from inside a callback");
            return Err(Error::State);
        };
        q.take(&mut side.calls);
        let until = Instant::now() + DISPATCH_SLICE;
        self.shared.enter_callbacks();
        let r = catch_unwind(AssertUnwindSafe(|| side.d.run(&mut side.calls, &mut side.replies, Some(until))));
        self.shared.leave_callbacks();
        q.answer(&mut side.replies);
        let more = r.unwrap_or_else(|_| {
            self.shared.life.advance_any(State::Dying);
            self.log("junos_sync_dispatch: internal error: a callback panicked; the context failed (only junos_sync_exit is useful now)");
            // The DOWN owed, before any call fails (it may exit the context).
            self.shared.enter_callbacks();
            let _ = catch_unwind(AssertUnwindSafe(|| side.d.owed_down()));
            self.shared.leave_callbacks();
            self.shared.life.advance(State::Dying, State::Failed);
            false
        });
        if self.shared.life.halted() {
            // junos_sync_exit from inside a callback: finish it here, on this thread.
            self.finish_on_app_thread(*side, false);
            self.shared.life.advance(State::Halting, State::Exited);
            return Ok(());
        }
        if more || q.calls_waiting() {
            q.ring();
        }
        *self.app_side.lock() = Some(side);
        if self.shared.life.failed() {
            return Err(Error::Internal);
        }
        Ok(())
    }
}
