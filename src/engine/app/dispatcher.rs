//! Runs the loop's calls into the application, in order: on the loop thread as they are made
//! (thread mode) or on the application's thread, a bounded slice per dispatch (dispatch mode).
//! It owns the application's callbacks and the state that lives with them: the resync walk's
//! cursor, the TLV that cursor may point into, and whether UP was told.

use std::collections::VecDeque;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Instant;

use crate::engine::app::calls::{Batch, Call, Reply, WalkTag};
use crate::engine::app::App;
use crate::engine::queue::budget::{Held, Releases};
use crate::engine::shared::Shared;

/// How many calls (or entries of one) run between looks at the clock.
const CLOCK_EVERY: u32 = 32;

struct Walk<C> {
    id: u32,
    cursor: Option<C>,
    /// Entries with a TLV so far.
    count: u64,
    /// The number of the last walked TLV (its tag's `no`), and its size.
    last_no: u64,
    last_size: usize,
}

pub(crate) struct Dispatcher<A: App> {
    app: A,
    shared: Arc<Shared>,
    released: Releases,
    /// UP was told and DOWN not yet.
    up: bool,
    walk: Option<Walk<A::Cursor>>,
    /// The walk's last TLV, acknowledged while the cursor may still point into it: freed once
    /// the next `get_next` has returned.
    pinned: Option<A::Tlv>,
    /// Releases uncounted and waiting for their callbacks (a dispatch may stop among them).
    releasing: VecDeque<(A::Tlv, bool, Option<WalkTag>)>,
}

/// A clock that is read only every `CLOCK_EVERY` ticks.
struct Slice {
    until: Option<Instant>,
    ticks: u32,
}

impl Slice {
    fn over(&mut self) -> bool {
        let Some(t) = self.until else { return false };
        self.ticks += 1;
        self.ticks % CLOCK_EVERY == 0 && Instant::now() >= t
    }
}

impl<A: App> Dispatcher<A> {
    pub(crate) fn new(app: A, shared: Arc<Shared>) -> Self {
        Dispatcher {
            app,
            shared,
            released: Releases::default(),
            up: false,
            walk: None,
            pinned: None,
            releasing: VecDeque::new(),
        }
    }

    /// The callbacks, for the one call that does not queue: a backup's decode in thread mode.
    pub(crate) fn app(&mut self) -> &mut A {
        &mut self.app
    }

    fn halted(&self) -> bool {
        self.shared.halted()
    }

    /// Only frees (and the DOWN owed) from now on: the application let go of the context
    /// (exit from a callback), or a callback panicked and the context failed.
    fn muted(&self) -> bool {
        self.shared.muted()
    }

    /// A release, from the queue of calls or (thread mode) straight from the loop, ahead of
    /// any call queued after it. The common one, a plain free, happens at once: `sync_free_func` may not call into the
    /// library, so it need not find the room it makes (the next `run` publishes it). One with
    /// an ack notification (which may queue) or of the walk (whose cursor may point into it)
    /// waits in order for `run`.
    pub(crate) fn take_release(&mut self, tlv: Held<A::Tlv>, notify: bool, walk: Option<WalkTag>) {
        let t = tlv.release(&mut self.released);
        if !notify && walk.is_none() && self.releasing.is_empty() {
            self.app.free(t);
        } else {
            self.releasing.push_back((t, notify, walk));
        }
    }

    /// Runs calls from the front of `q` until it is empty (Ok(false)) or `until` has passed
    /// (Ok(true): calls remain). Results go to `out`.
    pub(crate) fn run(
        &mut self,
        q: &mut VecDeque<Call<A>>,
        out: &mut Vec<Reply<A::Tlv>>,
        until: Option<Instant>,
    ) -> bool {
        // What `take_release` freed at once is published first of all, and what this run
        // frees before it returns (no later run may come to publish it).
        self.released.settle(&self.shared.budget);
        let more = self.run_calls(q, out, until);
        self.released.settle(&self.shared.budget);
        more
    }

    fn run_calls(&mut self, q: &mut VecDeque<Call<A>>, out: &mut Vec<Reply<A::Tlv>>, until: Option<Instant>) -> bool {
        let mut slice = Slice { until, ticks: 0 };
        loop {
            if !self.releasing.is_empty() {
                // Uncounted before the application sees any of them: a callback may queue, and
                // must find the room these made.
                self.released.settle(&self.shared.budget);
                if !self.free_released(&mut slice) {
                    return true;
                }
            }
            let Some(call) = q.pop_front() else { return false };
            match call {
                Call::Conn(up) => self.conn(up),
                Call::Release { tlv, notify, walk } => {
                    self.take_release(tlv, notify, walk);
                    while let Some(Call::Release { .. }) = q.front() {
                        if slice.over() {
                            return true;
                        }
                        let Some(Call::Release { tlv, notify, walk }) = q.pop_front() else { unreachable!() };
                        self.take_release(tlv, notify, walk);
                    }
                }
                Call::SyncDone(n) if !self.muted() => self.app.init_sync_done(n as usize),
                Call::DbClear if !self.muted() => self.app.db_clear(),
                Call::BindDone(port) if !self.muted() => self.app.bind_done(port),
                Call::SyncDone(_) | Call::DbClear | Call::BindDone(_) => {}
                Call::Decode(mut b) => {
                    if !self.decode(&mut b, &mut slice) {
                        q.push_front(Call::Decode(b));
                        return true;
                    }
                    out.push(Reply::Spent(b));
                }
                Call::Mark(seq) => out.push(Reply::Applied(seq)),
                Call::Walk { id, budget } => {
                    if let Some(left) = self.walk(id, budget, &mut slice, out) {
                        q.push_front(Call::Walk { id, budget: left });
                        return true;
                    }
                }
                Call::WalkStop { id } => {
                    if self.walk.as_ref().is_some_and(|w| w.id == id) {
                        self.walk = None;
                        self.unpin();
                    }
                }
                Call::Install(app) => self.app = *app,
            }
            if slice.over() {
                return !q.is_empty() || !self.releasing.is_empty();
            }
        }
    }

    /// After the loop has ended (exit): frees every TLV in `q`, with the callbacks current at
    /// each point, and tells the DOWN owed if `notify`. Nothing else runs: the application has
    /// let go of the context.
    pub(crate) fn finish(&mut self, q: &mut VecDeque<Call<A>>, unread: Vec<Reply<A::Tlv>>, notify: bool) {
        while let Some((t, _, _)) = self.releasing.pop_front() {
            self.app.free(t);
        }
        self.unpin();
        // Walked TLVs the loop never took.
        for r in unread {
            if let Reply::Walked { tlv, .. } = r {
                let t = tlv.release(&mut self.released);
                self.app.free(t);
            }
        }
        for call in q.drain(..) {
            match call {
                Call::Release { tlv, .. } => {
                    let t = tlv.release(&mut self.released);
                    self.app.free(t);
                }
                Call::Install(app) => self.app = *app,
                Call::Conn(false) if notify && self.up => {
                    self.up = false;
                    self.app.conn_status(false);
                }
                _ => {}
            }
        }
        self.released.settle(&self.shared.budget);
        if notify && self.up {
            self.up = false;
            self.app.conn_status(false);
        }
    }

    /// After a panic: the DOWN the application is owed, if it was told UP.
    pub(crate) fn owed_down(&mut self) {
        self.conn(false);
    }

    fn conn(&mut self, up: bool) {
        if self.up != up && !self.halted() {
            self.up = up;
            self.app.conn_status(up);
        }
    }

    /// Notifies and frees what `run` uncounted; false if the slice ended first.
    fn free_released(&mut self, slice: &mut Slice) -> bool {
        while let Some((t, notify, _)) = self.releasing.front() {
            // Called while the TLV is still in the queue: if the callback panics, the TLV is
            // not lost in the unwinding but freed with the rest.
            if *notify && !self.muted() {
                self.app.ack_notify(t);
            }
            let Some((t, _, walk)) = self.releasing.pop_front() else { break };
            let cursor_in_it =
                walk.is_some_and(|tag| self.walk.as_ref().is_some_and(|w| w.id == tag.id && w.last_no == tag.no.get()));
            if cursor_in_it {
                self.unpin();
                self.pinned = Some(t);
            } else {
                self.app.free(t);
            }
            if slice.over() {
                return self.releasing.is_empty();
            }
        }
        true
    }

    fn unpin(&mut self) {
        if let Some(t) = self.pinned.take() {
            self.app.free(t);
        }
    }

    /// Applies a batch; false if the slice ended first (the batch knows where it stopped).
    fn decode(&mut self, b: &mut Batch, slice: &mut Slice) -> bool {
        while !self.muted() {
            let Some(p) = b.next_payload() else { return true };
            self.app.decode(p);
            if slice.over() {
                return b.finished();
            }
        }
        true
    }

    /// Walks resync `id` on until `budget` bytes are walked, it ends, or the slice ends (then
    /// Some(budget left)).
    fn walk(&mut self, id: u32, budget: usize, slice: &mut Slice, out: &mut Vec<Reply<A::Tlv>>) -> Option<usize> {
        if self.walk.as_ref().is_none_or(|w| w.id != id) {
            self.unpin();
            self.walk = Some(Walk { id, cursor: None, count: 0, last_no: 0, last_size: 0 });
        }
        let mut spent = 0;
        loop {
            if self.muted() {
                return None;
            }
            // The budget was room when asked for; `junos_sync_queue` may have taken some since.
            // Like the queue, the walk keeps the whole backlog within the limit, one entry at
            // a time (sized like the last).
            let last_size = self.walk.as_ref().map_or(0, |w| w.last_size);
            let b = &self.shared.budget;
            if spent >= budget || b.held() + last_size > b.limit() {
                out.push(Reply::WalkPaused { id });
                return None;
            }
            let cursor = self.walk.as_ref().and_then(|w| w.cursor);
            let next = self.app.get_next(cursor);
            self.unpin();
            if self.muted() {
                // Exit from inside get_next: nothing more is walked; its TLV goes back.
                if let Some((_, Some(t))) = next {
                    self.app.free(t);
                }
                return None;
            }
            let w = self.walk.as_mut().expect("walking");
            match next {
                None => {
                    out.push(Reply::WalkEnd { id, count: w.count });
                    self.walk = None;
                    return None;
                }
                Some((cur, tlv)) => {
                    w.cursor = Some(cur);
                    if let Some(t) = tlv {
                        let t = self.shared.budget.charge(t);
                        spent += t.size();
                        w.count += 1;
                        w.last_no += 1;
                        w.last_size = t.size();
                        let no = NonZeroU64::new(w.last_no).expect("counted from 1");
                        out.push(Reply::Walked { tag: WalkTag { id, no }, tlv: t });
                    }
                }
            }
            if slice.over() {
                return Some(budget.saturating_sub(spent).max(1));
            }
        }
    }
}
