//! The oracle: every TLV a master makes is known by its id, and every callback about it is
//! checked as it happens, so that a leak and a double free can never balance out.
//!
//! - Each TLV is freed exactly once (a second free, a free of an id this node never made, or
//!   a TLV never freed by the time the node has exited is a violation).
//! - Queued TLVs are ack-notified only if queued with an acknowledgement requested, at most
//!   once, before their free, and in queue order; they are freed in queue order (but for the
//!   one `queue` itself drops when it overflows the backlog). Walked TLVs are never
//!   ack-notified.
//! - Nothing is ack-notified before a backup applied it: backups record, process-wide, each
//!   id their decode returned from (a hand-written peer, each id it read), and the master's
//!   side consults that when it is notified or freed.
//! - Nothing queued is freed before a backup applied it (and, if it asked for one, before its
//!   ack notification), except on a path that legitimately drops undelivered TLVs and that the
//!   test said it expects (`Undelivered`): exit, a switchover to backup, a backlog overflow, the
//!   failure of a context whose callback panicked on purpose. A
//!   walked TLV may be freed unapplied only if its walk never completed (the next walk
//!   replaces it): a completed walk (its `init_sync_done`) must have had every entry applied.
//!
//! A violation is recorded, not panicked on (a panic in a callback would kill the loop thread
//! and hide the first failure behind the second); `Node::exit` fails the test with them all.

#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::LazyLock;

use parking_lot::Mutex;

use crate::common::book::Book;

/// Ids some backup in this process applied.
static APPLIED: LazyLock<Mutex<HashSet<u64>>> = LazyLock::new(Default::default);

/// A backup applied TLV `id`: its decode returned (or a hand-written peer read its frame).
pub fn applied(id: u64) {
    APPLIED.lock().insert(id);
}

pub fn was_applied(id: u64) -> bool {
    APPLIED.lock().contains(&id)
}

/// Room for `n` more applied ids (a memory measurement must not see the registry grow).
pub fn reserve_applied(n: usize) {
    APPLIED.lock().reserve(n);
}

/// Paths on which the library frees TLVs that no backup applied, which a test may expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Undelivered {
    /// `exit` frees everything the context holds.
    Exit,
    /// A switchover to backup frees everything the master held.
    Switchover,
    /// A backlog overflow frees the backlog (the next backup session is a full resync), and
    /// `queue` frees at once the TLV that found the backlog over its limit.
    Overflow,
    /// A callback panicked on purpose: the context failed, and frees what it holds.
    Failure,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Origin {
    /// Queued, `pos`-th on this node, with an acknowledgement requested or not.
    Queued { pos: u64, ack: bool },
    /// Made by resync walk `walk` (from 1).
    Walked { walk: u32 },
}

#[derive(Debug)]
pub(crate) struct Life {
    origin: Origin,
    notified: bool,
    frees: u32,
}

/// How a TLV came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// Through `App::free`.
    Free,
    /// Through the freer, inside `queue` on the queueing thread: the backlog overflowed.
    QueueDrop,
    /// Through the freer, inside `exit`: TLVs that never reached the loop.
    ExitStray,
}

impl Book {
    pub(crate) fn violation(&mut self, what: String) {
        // A test that failed already tears its nodes down any way it can.
        if self.abandoned {
            return;
        }
        if self.violations.len() < 100 {
            eprintln!("[oracle] {what}");
            self.violations.push(what);
        }
    }

    /// A TLV is about to be queued: its position in the queue order.
    pub(crate) fn on_queue(&mut self, id: u64, ack: bool) {
        let pos = self.next_pos;
        self.next_pos += 1;
        self.pos_ids.push(id);
        self.made.push(id);
        self.live += 1;
        self.lives.insert(id, Life { origin: Origin::Queued { pos, ack }, notified: false, frees: 0 });
    }

    /// `queue` refused it: it is the caller's again.
    pub(crate) fn on_refused(&mut self, id: u64) {
        if self.lives.remove(&id).is_some_and(|l| l.frees == 0) {
            self.live -= 1;
        }
        if let Some(i) = self.made.iter().rposition(|&m| m == id) {
            self.made.remove(i);
        }
    }

    /// `get_next` from the start of the database: a new walk.
    pub(crate) fn on_walk_start(&mut self) {
        self.walks += 1;
    }

    pub(crate) fn on_walked(&mut self, id: u64) {
        let walk = self.walks;
        self.made.push(id);
        self.walk_ids.entry(walk).or_default().push(id);
        self.live += 1;
        self.lives.insert(id, Life { origin: Origin::Walked { walk }, notified: false, frees: 0 });
    }

    /// Master: the backup acknowledged the end of the current walk, of `n` entries.
    pub(crate) fn on_walk_done(&mut self, n: usize) {
        let walk = self.walks;
        let ids = self.walk_ids.get(&walk).cloned().unwrap_or_default();
        if ids.len() != n {
            self.violation(format!("init_sync_done({n}) for walk {walk}, which made {} TLVs", ids.len()));
        }
        let missing: Vec<u64> = ids.iter().copied().filter(|&id| !was_applied(id)).take(5).collect();
        if !missing.is_empty() {
            self.violation(format!("init_sync_done for walk {walk}, whose entries {missing:x?}... no backup applied"));
        }
        self.done_walks.insert(walk);
    }

    pub(crate) fn on_ack_notify(&mut self, id: u64) {
        let Some(life) = self.lives.get_mut(&id) else {
            return self.violation(format!("ack_notify of TLV {id:#x}, which this node never made"));
        };
        let (frees, notified, origin) = (life.frees, life.notified, life.origin);
        life.notified = true;
        self.acked.push(id);
        if frees > 0 {
            self.violation(format!("ack_notify of TLV {id:#x} after its free"));
        }
        if notified {
            self.violation(format!("ack_notify of TLV {id:#x} twice"));
        }
        match origin {
            Origin::Walked { walk } => self.violation(format!("ack_notify of TLV {id:#x} of walk {walk}")),
            Origin::Queued { ack: false, .. } => {
                self.violation(format!("ack_notify of TLV {id:#x}, queued without an acknowledgement requested"))
            }
            Origin::Queued { pos, ack: true } => {
                if self.last_acked_pos.is_some_and(|last| pos <= last) {
                    self.violation(format!("ack_notify of TLV {id:#x} (queued {pos}th) out of queue order"));
                }
                self.last_acked_pos = Some(pos);
            }
        }
        if !was_applied(id) {
            self.violation(format!("ack_notify of TLV {id:#x} before any backup applied it"));
        }
    }

    pub(crate) fn on_free(&mut self, id: u64, site: Site) {
        let Some(life) = self.lives.get_mut(&id) else {
            return self.violation(format!("free of TLV {id:#x} ({site:?}), which this node never made"));
        };
        life.frees += 1;
        let (frees, notified, origin) = (life.frees, life.notified, life.origin);
        if frees > 1 {
            return self.violation(format!("TLV {id:#x} freed {frees} times ({site:?})"));
        }
        self.live -= 1;
        match origin {
            Origin::Walked { walk } => {
                if !was_applied(id) && self.done_walks.contains(&walk) {
                    self.violation(format!("TLV {id:#x} of completed walk {walk} freed, never applied"));
                }
            }
            Origin::Queued { .. } if site == Site::QueueDrop => self.undelivered(id, Undelivered::Overflow),
            Origin::Queued { pos, ack } => {
                let prev = self.last_freed_pos;
                if prev.is_some_and(|last| pos < last) {
                    self.violation(format!("TLV {id:#x} (queued {pos}th) freed out of queue order ({site:?})"));
                }
                self.last_freed_pos = Some(pos);
                let delivered = was_applied(id) && (notified || !ack);
                let path = if delivered {
                    None
                } else if self.failed {
                    Some(Undelivered::Failure)
                } else if self.exiting {
                    Some(Undelivered::Exit)
                } else if self.switched_below.is_some_and(|s| id < s) {
                    Some(Undelivered::Switchover)
                } else if pos < self.overflow_below || (self.overflow_run && self.none_live_between(prev, pos)) {
                    self.overflow_below = self.overflow_below.max(pos + 1);
                    Some(Undelivered::Overflow)
                } else {
                    let what = if was_applied(id) { "before its ack_notify" } else { "before any backup applied it" };
                    self.violation(format!("TLV {id:#x} (queued {pos}th) freed {what} ({site:?})"));
                    None
                };
                self.overflow_run = path == Some(Undelivered::Overflow);
                if let Some(path) = path {
                    self.undelivered(id, path);
                }
            }
        }
    }

    /// Whether every TLV queued after position `after` and before `pos` is freed (or was
    /// refused): an overflow frees the queue from its front up to what reached the loop, which
    /// can be more than was queued when it said so.
    fn none_live_between(&self, after: Option<u64>, pos: u64) -> bool {
        let from = after.map_or(0, |a| a + 1);
        (from..pos)
            .all(|q| self.pos_ids.get(q as usize).is_none_or(|id| self.lives.get(id).is_none_or(|l| l.frees > 0)))
    }

    fn undelivered(&mut self, id: u64, path: Undelivered) {
        *self.undelivered.entry(path).or_default() += 1;
        if !self.allowed.contains(&path) {
            self.violation(format!("TLV {id:#x} freed undelivered on the {path:?} path, which the test did not allow"));
        }
    }

    /// A backlog overflow: what is queued so far may be dropped (and what reaches the loop
    /// before it drops its hand-off, see `none_live_between`).
    pub(crate) fn on_overflow(&mut self) {
        self.overflow_below = self.next_pos;
    }

    /// Room for `n` more TLVs, either side (a memory measurement must not see the book grow).
    pub fn reserve(&mut self, n: usize) {
        self.lives.reserve(n);
        self.made.reserve(n);
        self.pos_ids.reserve(n);
        self.acked.reserve(n);
        self.decoded.reserve(n);
    }

    /// TLVs made, not freed yet.
    pub fn unfreed(&self) -> usize {
        self.live
    }

    pub fn freed(&self, id: u64) -> bool {
        self.lives.get(&id).is_some_and(|l| l.frees > 0)
    }

    /// Which of `ids` were freed, in `ids` order.
    pub fn freed_among(&self, ids: &[u64]) -> Vec<u64> {
        ids.iter().copied().filter(|&id| self.freed(id)).collect()
    }

    pub fn all_freed(&self, ids: &[u64]) -> bool {
        ids.iter().all(|&id| self.freed(id))
    }

    /// Frees so far, counting repeats.
    pub fn frees(&self) -> usize {
        self.lives.values().map(|l| l.frees as usize).sum()
    }

    /// How many undelivered TLVs `path` freed.
    pub fn undelivered_by(&self, path: Undelivered) -> usize {
        self.undelivered.get(&path).copied().unwrap_or(0)
    }

    /// Fails with every violation seen and every TLV never freed.
    pub fn check(&self, who: &str) {
        let mut leaked: Vec<u64> = self.lives.iter().filter(|(_, l)| l.frees == 0).map(|(&id, _)| id).collect();
        leaked.sort_unstable();
        let mut problems = self.violations.clone();
        if !leaked.is_empty() {
            problems.push(format!(
                "{} of {} TLVs never freed, e.g. {:x?}",
                leaked.len(),
                self.lives.len(),
                &leaked[..leaked.len().min(10)]
            ));
        }
        assert!(problems.is_empty(), "{who}: the oracle saw {} problems:\n  {}", problems.len(), problems.join("\n  "));
    }
}
