//! What the loop asks of the application, in stream order, and what comes back.
//!
//! The roles never call the application themselves: they make `Call`s, which a `Dispatcher`
//! runs in order, on the loop thread as they are made (thread mode) or on the application's
//! thread when it dispatches (dispatch mode). Results (walked entries, applied sequence
//! numbers, spent buffers) come back as `Reply`s. One path for both modes keeps their
//! semantics the same by construction.

use crate::engine::app::App;
use crate::engine::queue::budget::Held;

/// Which walked entry a TLV is: resync `id`, entry `no` (from 1) of that walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WalkTag {
    pub id: u32,
    pub no: std::num::NonZeroU64,
}

pub(crate) enum Call<A: App> {
    /// The connection came up or went down.
    Conn(bool),
    /// A TLV leaves the library: acknowledged (`notify`: call `ack_notify` first) or dropped.
    /// It counts against the backlog until it is freed. A walked TLV the walk's cursor may
    /// still point into is kept until the next `get_next` returns.
    Release { tlv: Held<A::Tlv>, notify: bool, walk: Option<WalkTag> },
    /// The initial resync completed with this many entries.
    SyncDone(u64),
    /// Backup: a full resync starts; clear the database.
    DbClear,
    /// Master: listening on this port (after a switchover).
    BindDone(u16),
    /// Backup, dispatch mode: entries to apply, copied out of the read buffer.
    Decode(Box<Batch>),
    /// Backup: everything before this call has been applied up to this sequence number.
    Mark(u64),
    /// Master: walk on in resync `id` until `budget` more bytes are walked.
    Walk { id: u32, budget: usize },
    /// Master: resync `id` is over (its connection went); forget the cursor.
    WalkStop { id: u32 },
    /// A switchover's callbacks: every later call uses them (boxed: calls are queued by the
    /// million and must stay small).
    Install(Box<A>),
}

pub(crate) enum Reply<T> {
    /// An entry of the walk, counted in the budget.
    Walked { tag: WalkTag, tlv: Held<T> },
    /// The walk took its budget; ask again for more.
    WalkPaused { id: u32 },
    /// The walk ended (`get_next` returned NULL) after `count` entries with a TLV.
    WalkEnd { id: u32, count: u64 },
    /// Backup: applied up to this sequence number.
    Applied(u64),
    /// A decode batch's memory, back for reuse (allocated and freed on the loop thread).
    Spent(Box<Batch>),
}

/// Memory per payload in a batch besides its bytes: its (offset, length), doubled for the
/// vector's growth.
pub(crate) const ITEM_COST: usize = 2 * std::mem::size_of::<(usize, usize)>();
/// Memory per batch besides its entries: the box, its vectors' headers, and the calls that
/// carry it, with the allocator's overhead.
pub(crate) const BATCH_COST: usize = 256;

/// Payloads copied out of a read buffer, each at an offset that is a multiple of 8 (so 8-aligned
/// in memory from the global allocator, as the read buffer's are; the C layer copies any that
/// is not), applied in order.
#[derive(Default)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    /// (offset, length) of each payload.
    items: Vec<(usize, usize)>,
    /// Items already applied (a dispatch may stop in the middle of a batch).
    done: usize,
}

impl Batch {
    pub(crate) fn push(&mut self, payload: &[u8]) {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(payload);
        self.bytes.resize(at + payload.len().div_ceil(8) * 8, 0);
        self.items.push((at, payload.len()));
    }

    /// What the batch costs in memory, counting each entry and the batch itself, not only
    /// payload bytes: an empty payload still takes its place in `items` (twice its size in
    /// a growing vector), and a batch its box and the two calls that carry it (Decode, Mark).
    pub(crate) fn cost(&self) -> usize {
        self.bytes.len() + self.items.len() * ITEM_COST + BATCH_COST
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Empties it, keeping its memory.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
        self.done = 0;
    }

    /// Whether every payload has been applied.
    pub(crate) fn finished(&self) -> bool {
        self.done >= self.items.len()
    }

    /// The next payload to apply, if any.
    pub(crate) fn next_payload(&mut self) -> Option<&mut [u8]> {
        let &(at, len) = self.items.get(self.done)?;
        self.done += 1;
        Some(&mut self.bytes[at..at + len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_come_back_aligned_and_intact() {
        let mut b = Batch::default();
        let ps: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; usize::from(i) * 3]).collect();
        for p in &ps {
            b.push(p);
        }
        for p in &ps {
            let got = b.next_payload().unwrap();
            assert_eq!(got.as_ptr() as usize % 8, 0, "glibc's malloc aligns to 16");
            assert_eq!(&got[..], &p[..]);
        }
        assert!(b.next_payload().is_none());
        b.clear();
        assert!(b.is_empty());
    }
}
