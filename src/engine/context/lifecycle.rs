//! A context's lifecycle: every state it can be in, the transitions between them, and the
//! thread allowed to make each. One atomic holds the state, so the hot path (`junos_sync_queue`)
//! and every callback site read it with one load.
//!
//! ```text
//!             start                 loop to be made
//!   Ready ──────────────▶ Starting ──────────────▶ Running ──────────────┐
//!     ▲   bind failed        │                       │  │                │ panic (loop thread,
//!     └──────────────────────┤                       │  │ exit from a    │ or a dispatched
//!                            │ exit from bind_done   │  │ callback       ▼ callback)
//!                            │                       │  └──────────▶ Halting ──▶ Dying
//!                            ▼                       │ exit from       │          │ DOWN owed
//!   (Ready, Failed) ──────▶ Stopping ◀───────────────┘ outside         │          ▼ and frees
//!            exit            │                                         │        Failed
//!                            ▼  the loop ended, everything freed       │
//!                          Exited ◀────────────────────────────────────┘
//! ```
//!
//! | transition | made by |
//! |---|---|
//! | Ready → Starting, Starting → Ready (bind failed) | `junos_sync_start`, on the caller's thread |
//! | Starting → Running | `junos_sync_start`, just before it makes the loop thread |
//! | Running → Exited | `junos_sync_start`, when the loop thread could not be made |
//! | Ready / Starting / Running / Dying / Failed → Stopping | `junos_sync_exit` outside any callback |
//! | Running / Dying → Halting | `junos_sync_exit` from inside a callback (the thread running it) |
//! | Running / Halting / Stopping → Dying | the thread on which a callback or the loop panicked |
//! | Dying → Failed | that same thread, once the DOWN owed was told and the TLVs freed |
//! | Stopping / Halting → Exited | the thread that finished the teardown (start, when the loop thread could not be made, from Running) |
//!
//! A second `junos_sync_exit` (one that a DOWN or a free of the first one makes) finds the
//! context Halting, Stopping or Exited and does nothing: `claim_exit` is the one transition
//! into those states. An exit while the context is Dying is claimed too (the dying thread then
//! finds its `Dying → Failed` refused and leaves the rest to the exit).

use std::sync::atomic::{AtomicU8, Ordering};

/// Where a context is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    /// Made by `junos_sync_init`, not started: settings (keys, dispatch mode) may change.
    Ready = 0,
    /// Inside `junos_sync_start`: binding, `bind_done`, making the loop thread.
    Starting = 1,
    /// The loop thread runs.
    Running = 2,
    /// `junos_sync_exit` from inside a callback: once that callback returns, the thread that ran
    /// it tears the context down, calling nothing but `sync_free_func` (no DOWN).
    Halting = 3,
    /// `junos_sync_exit` from outside any callback: the loop is stopped, the DOWN owed is told
    /// and every TLV freed before `junos_sync_exit` returns.
    Stopping = 4,
    /// A callback (or the loop) panicked: only frees and the DOWN owed run until `Failed`.
    Dying = 5,
    /// The loop is gone after a panic: every call but `junos_sync_exit` fails.
    Failed = 6,
    /// Nothing of the context runs any more.
    Exited = 7,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Ready,
            1 => State::Starting,
            2 => State::Running,
            3 => State::Halting,
            4 => State::Stopping,
            5 => State::Dying,
            6 => State::Failed,
            _ => State::Exited,
        }
    }

    /// Whether `self → to` is a transition of the diagram.
    fn may_become(self, to: State) -> bool {
        use State::*;
        matches!(
            (self, to),
            (Ready, Starting)
                | (Starting, Running | Ready | Stopping)
                | (Ready | Running | Dying | Failed, Stopping)
                | (Running | Dying, Halting)
                | (Running | Halting | Stopping, Dying)
                | (Dying, Failed)
                | (Stopping | Halting, Exited)
                | (Running, Exited)
        )
    }
}

/// How an exit was claimed: from inside a callback, or from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// From inside a callback: the teardown happens when the callback returns.
    FromCallback,
    /// From outside: the teardown happens in the call.
    Outside,
}

pub(crate) struct Lifecycle(AtomicU8);

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle(AtomicU8::new(State::Ready as u8))
    }
}

impl Lifecycle {
    pub(crate) fn state(&self) -> State {
        State::from_u8(self.0.load(Ordering::Acquire))
    }

    /// Moves from `from` to `to`; false (and no change) if the context is not in `from`.
    pub(crate) fn advance(&self, from: State, to: State) -> bool {
        debug_assert!(from.may_become(to), "{from:?} -> {to:?} is not a lifecycle transition");
        self.0.compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Moves to `to` from whatever state allows it; the state it left, or None if `to` cannot
    /// be reached from the current state.
    pub(crate) fn advance_any(&self, to: State) -> Option<State> {
        let mut cur = self.state();
        loop {
            if !cur.may_become(to) {
                return None;
            }
            match self.0.compare_exchange(cur as u8, to as u8, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(cur),
                Err(v) => cur = State::from_u8(v),
            }
        }
    }

    /// The one way into an exit: true the first time only. `kind` says whether the caller runs
    /// inside a callback of this context.
    pub(crate) fn claim_exit(&self, kind: ExitKind) -> bool {
        let to = match kind {
            ExitKind::FromCallback => State::Halting,
            ExitKind::Outside => State::Stopping,
        };
        self.advance_any(to).is_some()
    }

    /// `junos_sync_exit` was called from inside a callback: nothing but frees from now on.
    pub(crate) fn halted(&self) -> bool {
        self.state() == State::Halting
    }

    /// Only frees (and the DOWN owed) may run: the application let go of the context from
    /// inside a callback, or a callback panicked.
    pub(crate) fn muted(&self) -> bool {
        matches!(self.state(), State::Halting | State::Dying | State::Failed | State::Exited)
    }

    /// The context failed: calls other than `junos_sync_exit` return an internal error.
    pub(crate) fn failed(&self) -> bool {
        self.state() == State::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_is_claimed_once_whatever_the_path() {
        for (path, kind) in [
            (&[State::Starting, State::Running][..], ExitKind::FromCallback),
            (&[State::Starting, State::Running][..], ExitKind::Outside),
            (&[][..], ExitKind::Outside),
            (&[State::Starting][..], ExitKind::Outside),
        ] {
            let l = Lifecycle::default();
            let mut at = State::Ready;
            for &s in path {
                assert!(l.advance(at, s), "{at:?} -> {s:?}");
                at = s;
            }
            assert!(l.claim_exit(kind), "{path:?} {kind:?}");
            assert!(!l.claim_exit(ExitKind::Outside), "claimed twice after {path:?}");
            assert!(!l.claim_exit(ExitKind::FromCallback), "claimed twice after {path:?}");
        }
    }

    #[test]
    fn a_failed_context_can_still_exit_and_a_dying_one_cannot_be_revived() {
        let l = Lifecycle::default();
        assert!(l.advance(State::Ready, State::Starting) && l.advance(State::Starting, State::Running));
        assert!(!l.muted());
        assert_eq!(l.advance_any(State::Dying), Some(State::Running));
        assert!(l.muted() && !l.failed());
        assert!(l.advance(State::Dying, State::Failed) && l.failed());
        assert!(l.claim_exit(ExitKind::Outside));
        assert!(l.advance(State::Stopping, State::Exited));
        assert_eq!(l.advance_any(State::Dying), None, "nothing after Exited");
    }

    #[test]
    fn an_exit_while_dying_wins_over_failed() {
        for kind in [ExitKind::FromCallback, ExitKind::Outside] {
            let l = Lifecycle::default();
            assert!(l.advance(State::Ready, State::Starting) && l.advance(State::Starting, State::Running));
            assert_eq!(l.advance_any(State::Dying), Some(State::Running));
            assert!(l.claim_exit(kind), "{kind:?}");
            assert!(!l.advance(State::Dying, State::Failed), "the dying thread must leave it to the exit");
            assert!(l.muted() || kind == ExitKind::Outside);
        }
    }

    #[test]
    fn halting_mutes_and_only_the_exit_path_leaves_it() {
        let l = Lifecycle::default();
        assert!(l.advance(State::Ready, State::Starting) && l.advance(State::Starting, State::Running));
        assert!(l.claim_exit(ExitKind::FromCallback));
        assert!(l.halted() && l.muted());
        assert_eq!(l.advance_any(State::Stopping), None);
        assert_eq!(l.advance_any(State::Dying), Some(State::Halting), "a panic in the teardown");
    }
}
