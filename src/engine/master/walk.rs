//! The master's full resync: the walk of the application's database, paced by room to send
//! and by the backlog limit, and the TLVs queued while it runs held back until it ends.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Master, OUT_HIGH_WATER};
use crate::engine::app::calls::Reply;
use crate::engine::app::path::AppPath;
use crate::engine::app::App;
use crate::engine::master::backlog::Entry;

/// The resync walk in progress; its cursor lives with the application's callbacks.
pub(super) struct Walk {
    pub(super) id: u32,
    /// The sequence number of its SYNC_BEGIN: entry `no` of the walk is `base + no`.
    pub(super) base: u64,
    /// A request for more is out (dispatch mode: its replies have not all come back).
    pub(super) requested: bool,
    /// The first request went out: the database is being read (TLVs queued before it are
    /// carried by the walk).
    pub(super) asked: bool,
}

impl<A: App> Master<A> {
    /// Ends the walk in progress, if any: the TLVs queued during it join the queue.
    pub(super) fn abort_walk(&mut self, app: &mut AppPath<A>) {
        if let Some(w) = self.walk.take() {
            app.walk_stop(w.id);
            while let Some((tlv, ack)) = self.held_back.pop_front() {
                self.push_queued(tlv, ack, Instant::now());
            }
        }
    }

    /// Walks the database while there is room to send: asks for a budget's worth of entries
    /// and takes what came back (at once in thread mode, when the application dispatches in
    /// dispatch mode).
    pub(super) fn walk_step(&mut self, app: &mut AppPath<A>) {
        loop {
            for r in app.take_walk() {
                self.on_walked(app, r);
            }
            // What was walked goes to the output first, so that the budget sees it: a thread
            // mode walk answers at once, and without this one loop turn would walk all that the
            // backlog limit allows, into a backup that reads nothing, answering nobody else.
            self.fill();
            let budget = self.walk_budget(app);
            let Some(w) = self.walk.as_mut() else { break };
            if w.requested || budget == 0 || app.halted() {
                break;
            }
            w.requested = true;
            let first = !std::mem::replace(&mut w.asked, true);
            let id = w.id;
            if first && self.overload.in_row > 0 {
                // After an aborted resync the backlog was dropped already: what was queued
                // since is read from the database by this walk, and freed now (as the overflow
                // would), so that the walk starts with the whole limit before it.
                for (tlv, _) in std::mem::take(&mut self.held_back) {
                    app.free(tlv);
                }
            }
            app.walk(id, budget);
            if app.app_thread().is_some() {
                break;
            }
        }
        self.fill();
        if self.walk_starved(app) && !self.walk_starving {
            // Before the walk's first request, what fills the backlog is carried by the walk
            // and dropped without a word (`overflow`).
            if self.walk.as_ref().is_some_and(|w| w.asked) {
                app.log("junos-sync master: TLVs queued during the resync walk fill the backlog");
            }
            self.walk_starving = true;
        }
    }

    pub(super) fn on_walked(&mut self, app: &mut AppPath<A>, r: Reply<A::Tlv>) {
        let current = |w: &Option<Walk>, id: u32| w.as_ref().is_some_and(|w| w.id == id);
        match r {
            Reply::Walked { tag, tlv } if current(&self.walk, tag.id) => {
                self.last_walked_size = tlv.size();
                self.walked_bytes += tlv.size();
                let seq = self.backlog.push(Entry::Walked(tlv));
                debug_assert_eq!(Some(seq), self.walk.as_ref().map(|w| w.base + tag.no.get()));
                self.stamps.queued(seq, Instant::now());
                if let Some(r) = self.resync.as_mut() {
                    r.walked += 1;
                }
            }
            // A walk aborted while its entries were on their way.
            Reply::Walked { tlv, .. } => app.free(tlv),
            Reply::WalkPaused { id } if current(&self.walk, id) => {
                if let Some(w) = self.walk.as_mut() {
                    w.requested = false;
                }
            }
            Reply::WalkEnd { id, count } if current(&self.walk, id) => {
                self.walk = None;
                let end = self.backlog.push(Entry::SyncEnd(count));
                self.resume_from = Some(end);
                while let Some((tlv, ack)) = self.held_back.pop_front() {
                    self.push_queued(tlv, ack, Instant::now());
                }
            }
            Reply::WalkPaused { .. } | Reply::WalkEnd { .. } | Reply::Applied(_) | Reply::Spent(_) => {}
        }
    }

    /// Bytes the walk may take now: room to send them, what it has in flight within half the
    /// backlog limit (the other half is for the queue), and the whole backlog within the
    /// limit (with one more entry sized like the last). 0: not now.
    fn walk_budget(&self, app: &AppPath<A>) -> usize {
        let Some(l) = self.link.as_ref() else { return 0 };
        if self.walk_waits() {
            return 0;
        }
        let limit = app.shared.budget.limit();
        // Refusing producers at the limit, the walk takes its half on top of what they hold:
        // they cannot starve it, and what is held stays within one and a half limits.
        let refuse = app.shared.refuse_overflow.load(Ordering::Relaxed);
        let held = if refuse { self.walked_bytes } else { app.shared.budget.held() } + self.last_walked_size;
        if l.conn.out.pending() >= OUT_HIGH_WATER || self.walked_bytes >= limit / 2 || held > limit {
            return 0;
        }
        (OUT_HIGH_WATER - l.conn.out.pending()).min(limit / 2 - self.walked_bytes).min(limit + 1 - held)
    }

    pub(super) fn walk_may_go(&self, app: &AppPath<A>) -> bool {
        self.walk.as_ref().is_some_and(|w| !w.requested) && self.walk_budget(app) > 0
    }

    /// The walk waits for room that only acknowledgements of its own entries can make; with
    /// none in flight, what fills the backlog is TLVs queued during the walk, which cannot
    /// move until it ends. That is an overflow: drop the backlog and walk again.
    fn walk_starved(&self, app: &AppPath<A>) -> bool {
        self.walk.as_ref().is_some_and(|w| !w.requested)
            && !app.shared.refuse_overflow.load(Ordering::Relaxed)
            && !self.walk_waits()
            && self.walked_bytes == 0
            && app.shared.budget.held() + self.last_walked_size > app.shared.budget.limit()
    }
}
