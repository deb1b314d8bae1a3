//! The path of calls into the application, as a role on the loop thread sees it (with the
//! shared state and the log). Roles make calls here; the runner runs them at once on this
//! thread (thread mode) or sends them to the application's thread (dispatch mode), and brings
//! back what they produced.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::engine::app::appq::AppQueue;
use crate::engine::app::calls::{Batch, Call, Reply, WalkTag};
use crate::engine::app::dispatcher::Dispatcher;
use crate::engine::app::App;
use crate::engine::queue::budget::Held;
use crate::engine::shared::Shared;

/// Dispatch mode: most memory of decodes on their way to the application at once (payload
/// bytes and the cost of every entry and batch: `Batch::cost`); past it the backup stops
/// reading (and acknowledging) until the application catches up.
const MAX_IN_FLIGHT: usize = 4 << 20;
/// Dispatch mode: a decode batch is sent once it holds this much.
const BATCH_BYTES: usize = 64 << 10;

pub(crate) enum Runner<A: App> {
    /// Thread mode: the application's callbacks, run here.
    Inline(Box<Dispatcher<A>>),
    /// Dispatch mode: the queue to the application's thread.
    AppThread(Arc<AppQueue<A>>),
}

pub(crate) struct AppPath<A: App> {
    pub shared: Arc<Shared>,
    runner: Runner<A>,
    /// Calls made and not yet run or sent.
    calls: VecDeque<Call<A>>,
    /// Replies not yet taken by the role.
    replies: Vec<Reply<A::Tlv>>,
    /// Backup: the last sequence number the application applied, and the last one handed to
    /// it.
    applied: u64,
    marked: u64,
    /// Dispatch mode, backup: payloads gathered for the next decode batch, the sequence number
    /// of the last of them, and the cost of decode batches sent and not yet spent.
    batch: Box<Batch>,
    batch_seq: u64,
    in_flight: usize,
    // Boxed as they travel in calls and come back: kept boxed, a batch is reused whole.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Batch>>,
}

impl<A: App> AppPath<A> {
    pub(crate) fn new(shared: Arc<Shared>, runner: Runner<A>) -> Self {
        AppPath {
            shared,
            runner,
            calls: VecDeque::new(),
            replies: Vec::new(),
            applied: 0,
            marked: 0,
            batch: Box::default(),
            batch_seq: 0,
            in_flight: 0,
            spare: Vec::new(),
        }
    }

    pub(crate) fn log(&self, msg: &str) {
        self.shared.log(msg);
    }

    /// `junos_sync_exit` was called from inside a callback: call nothing but `free` from now on.
    pub(crate) fn halted(&self) -> bool {
        self.shared.halted()
    }

    /// The queue to the application's thread, in dispatch mode.
    pub(crate) fn app_thread(&self) -> Option<&Arc<AppQueue<A>>> {
        match &self.runner {
            Runner::AppThread(q) => Some(q),
            Runner::Inline(_) => None,
        }
    }

    fn call(&mut self, c: Call<A>) {
        self.flush_batch();
        self.calls.push_back(c);
    }

    /// Runs (thread mode) or sends (dispatch mode) the calls made so far, and takes the
    /// replies that came back.
    pub(crate) fn deliver(&mut self) {
        self.flush_batch();
        match &mut self.runner {
            Runner::Inline(d) => {
                d.run(&mut self.calls, &mut self.replies, None);
            }
            Runner::AppThread(q) => {
                q.send(&mut self.calls);
                q.receive(&mut self.replies);
            }
        }
        // What the engine itself consumes; the rest is the master's walk.
        if self.replies.iter().any(|r| matches!(r, Reply::Applied(_) | Reply::Spent(_))) {
            for r in std::mem::take(&mut self.replies) {
                match r {
                    // Replies may trail a decode that ran inline meanwhile: never backwards.
                    Reply::Applied(seq) => self.applied = self.applied.max(seq),
                    Reply::Spent(mut b) => {
                        self.in_flight -= b.cost();
                        b.clear();
                        self.spare.push(b);
                    }
                    other => self.replies.push(other),
                }
            }
        }
    }

    /// The connection came up or went down.
    pub(crate) fn conn_status(&mut self, up: bool) {
        self.call(Call::Conn(up));
    }

    /// A TLV leaves the library: acknowledged (`notify`) or dropped.
    pub(crate) fn release(&mut self, tlv: Held<A::Tlv>, notify: bool, walk: Option<WalkTag>) {
        match &mut self.runner {
            // Thread mode, nothing queued ahead of it: straight to the dispatcher (the hot path
            // of every acknowledged TLV).
            Runner::Inline(d) if self.calls.is_empty() => d.take_release(tlv, notify, walk),
            _ => self.call(Call::Release { tlv, notify, walk }),
        }
    }

    /// Returns a TLV to the application for good, unacknowledged.
    pub(crate) fn free(&mut self, tlv: Held<A::Tlv>) {
        self.release(tlv, false, None);
    }

    pub(crate) fn bind_done(&mut self, port: u16) {
        self.call(Call::BindDone(port));
    }

    /// Switchover: every later call uses these callbacks.
    pub(crate) fn install(&mut self, app: A) {
        self.call(Call::Install(Box::new(app)));
    }

    /// Master: the backup acknowledged the end of the resync.
    pub(crate) fn sync_done(&mut self, n: u64) {
        self.call(Call::SyncDone(n));
    }

    /// Master: asks for more of walk `id`; what it yields comes back through `take_walk`.
    pub(crate) fn walk(&mut self, id: u32, budget: usize) {
        self.call(Call::Walk { id, budget });
        self.deliver();
    }

    pub(crate) fn walk_stop(&mut self, id: u32) {
        self.call(Call::WalkStop { id });
    }

    /// Master: the replies of the walk that came back.
    pub(crate) fn take_walk(&mut self) -> Vec<Reply<A::Tlv>> {
        std::mem::take(&mut self.replies)
    }

    /// Backup: applies one entry (sequence number `seq`), in stream order.
    pub(crate) fn decode(&mut self, payload: &mut [u8], seq: u64) {
        match &mut self.runner {
            Runner::Inline(d) => {
                if !self.calls.is_empty() {
                    d.run(&mut self.calls, &mut self.replies, None);
                }
                if !self.shared.muted() {
                    d.app().decode(payload);
                }
                self.applied = seq;
                self.marked = seq;
            }
            Runner::AppThread(_) => {
                self.batch.push(payload);
                self.batch_seq = seq;
                if self.batch.cost() >= BATCH_BYTES {
                    self.flush_batch();
                }
            }
        }
    }

    /// Backup: a full resync starts (frame `seq`).
    pub(crate) fn db_clear(&mut self, seq: u64) {
        self.call(Call::DbClear);
        self.mark(seq);
    }

    /// Backup: the resync ended with `n` entries (frame `seq`).
    pub(crate) fn backup_sync_done(&mut self, n: u64, seq: u64) {
        self.call(Call::SyncDone(n));
        self.mark(seq);
    }

    fn mark(&mut self, seq: u64) {
        self.marked = seq;
        self.calls.push_back(Call::Mark(seq));
    }

    fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let fresh = self.spare.pop().unwrap_or_default();
        let b = std::mem::replace(&mut self.batch, fresh);
        self.in_flight += b.cost();
        self.calls.push_back(Call::Decode(b));
        self.mark(self.batch_seq);
    }

    /// Backup: the last sequence number the application applied.
    pub(crate) fn applied(&self) -> u64 {
        self.applied
    }

    /// Backup: a new session starts after `seq` (nothing of the old one is in flight).
    pub(crate) fn set_applied(&mut self, seq: u64) {
        self.applied = seq;
        self.marked = seq;
    }

    /// Backup: whether more may be read and handed to the application now.
    pub(crate) fn can_take(&self) -> bool {
        self.in_flight + self.batch.cost() < MAX_IN_FLIGHT
    }

    /// Backup: whether entries are on their way to the application (then a new connection
    /// would name a resume point that is about to move).
    pub(crate) fn applying(&self) -> bool {
        self.marked > self.applied || !self.batch.is_empty()
    }

    /// Master: whether walk replies wait for the role (the loop must not sleep on them).
    pub(crate) fn replies_waiting(&self) -> bool {
        !self.replies.is_empty()
    }

    /// At the loop's end: frees what the role never took back, including replies still on
    /// their way (an exit from inside get_next leaves the slice's last ones).
    pub(crate) fn drop_unread(&mut self) {
        self.deliver();
        for r in std::mem::take(&mut self.replies) {
            if let Reply::Walked { tlv, .. } = r {
                self.free(tlv);
            }
        }
        self.deliver();
    }
}
