//! What a node's callbacks did: the backup's applied table and stream, the connection and
//! resync events, the log, and (tests/common/ledger.rs) the life of every TLV the node made.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::common::ledger::{Life, Undelivered};

/// The first log lines kept (a quiet node keeps fewer: its memory may be measured).
pub const LOG_KEEP: usize = 5000;
pub const QUIET_LOG_KEEP: usize = 200;

#[derive(Default)]
pub struct Book {
    /// Master: ids of every TLV made (queued or walked), in order.
    pub made: Vec<u64>,
    /// Master: ids ack-notified, in order.
    pub acked: Vec<u64>,
    /// Backup: ids decoded, in order (`u64::MAX` for a payload that is not intact).
    pub decoded: Vec<u64>,
    /// Backup: the table the decoded operations built (cleared by db_clear).
    pub table: BTreeMap<u32, u32>,
    pub ups: usize,
    pub downs: usize,
    pub clears: usize,
    pub sync_done: Vec<usize>,
    /// Backup: the table's size as each db_clear found it (before clearing), and as each
    /// init_sync_done left it: what a failover would have found then.
    pub sizes_at_clear: Vec<usize>,
    pub sizes_at_done: Vec<usize>,
    pub port: u16,
    /// The first lines logged, and how many there were.
    pub logs: Vec<String>,
    pub log_lines: usize,

    // The ledger's state (tests/common/ledger.rs).
    pub(crate) lives: HashMap<u64, Life>,
    /// Lives not freed yet.
    pub(crate) live: usize,
    /// Queue positions handed out (the order of `queue` calls, from one thread).
    pub(crate) next_pos: u64,
    /// The id queued at each position.
    pub(crate) pos_ids: Vec<u64>,
    pub(crate) last_acked_pos: Option<u64>,
    pub(crate) last_freed_pos: Option<u64>,
    /// Resync walks begun (`get_next` from the start), the ids each made, those that completed.
    pub(crate) walks: u32,
    pub(crate) walk_ids: HashMap<u32, Vec<u64>>,
    pub(crate) done_walks: HashSet<u32>,
    /// Whether the node is a master now (a backup's sync_done is no walk's).
    pub(crate) is_master: bool,
    /// What the test said may free TLVs no backup applied.
    pub(crate) allowed: HashSet<Undelivered>,
    pub(crate) exiting: bool,
    /// A callback panicked on purpose: the context fails.
    pub(crate) failed: bool,
    /// Ids below this were made before a switchover to backup.
    pub(crate) switched_below: Option<u64>,
    /// Queue positions below this were queued before the last backlog overflow.
    pub(crate) overflow_below: u64,
    /// The last queued TLV freed was dropped by an overflow.
    pub(crate) overflow_run: bool,
    /// Undelivered frees, by the path that allowed them.
    pub(crate) undelivered: HashMap<Undelivered, usize>,
    pub(crate) violations: Vec<String>,
    /// The test failed: its nodes' teardown is not judged.
    pub(crate) abandoned: bool,
}

impl Book {
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.iter().any(|l| l.contains(needle))
    }
    pub fn count_logged(&self, needle: &str) -> usize {
        self.logs.iter().filter(|l| l.contains(needle)).count()
    }
}
