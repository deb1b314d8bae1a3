//! The master's ordered store of everything sent or to be sent, by sequence number, until the
//! backup acknowledges it.
//!
//! Sequence numbers are implicit (`front_seq + index`) so an entry costs only its own size.

use std::collections::VecDeque;

/// One sequenced item of the stream.
pub(crate) enum Entry<T> {
    /// A TLV from `junos_sync_queue`.
    Queued { tlv: T, ack: bool },
    /// A TLV from the resync walk (which entry it is follows from its sequence number: the
    /// walk's entries come right after its SYNC_BEGIN).
    Walked(T),
    /// Start of a full resync.
    SyncBegin,
    /// End of a full resync, with the number of entries walked.
    SyncEnd(u64),
}

pub(crate) struct Backlog<T> {
    entries: VecDeque<Entry<T>>,
    /// Sequence number of `entries[0]`; sequence 0 means "nothing", so this starts at 1.
    front_seq: u64,
    /// Next sequence number to hand to the writer.
    send_seq: u64,
}

impl<T> Default for Backlog<T> {
    fn default() -> Self {
        Backlog { entries: VecDeque::new(), front_seq: 1, send_seq: 1 }
    }
}

impl<T> Backlog<T> {
    pub fn front_seq(&self) -> u64 {
        self.front_seq
    }
    /// The sequence number the next pushed entry gets.
    pub fn next_seq(&self) -> u64 {
        self.front_seq + self.entries.len() as u64
    }
    pub fn send_seq(&self) -> u64 {
        self.send_seq
    }

    pub fn push(&mut self, e: Entry<T>) -> u64 {
        let seq = self.next_seq();
        self.entries.push_back(e);
        seq
    }

    pub fn get(&self, seq: u64) -> Option<&Entry<T>> {
        let i = seq.checked_sub(self.front_seq)?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    /// The next entry the writer has not taken yet; taking it advances the send position.
    pub fn take_unsent(&mut self) -> Option<(u64, &Entry<T>)> {
        let seq = self.send_seq;
        self.get(seq)?;
        self.send_seq += 1;
        self.get(seq).map(|e| (seq, e))
    }

    /// The next entry the writer has not taken, without taking it.
    pub fn peek_unsent(&self) -> Option<&Entry<T>> {
        self.get(self.send_seq)
    }

    /// Takes the entry `peek_unsent` showed.
    pub fn skip_unsent(&mut self) {
        if self.send_seq < self.next_seq() {
            self.send_seq += 1;
        }
    }

    /// Everything from `seq` on is to be sent again (a new connection).
    pub fn rewind(&mut self, seq: u64) {
        debug_assert!(seq >= self.front_seq && seq <= self.next_seq());
        self.send_seq = seq.clamp(self.front_seq, self.next_seq());
    }

    /// Removes the front entry if its sequence number is at most `upto`.
    pub fn pop_acked(&mut self, upto: u64) -> Option<(u64, Entry<T>)> {
        if self.front_seq > upto {
            return None;
        }
        let e = self.entries.pop_front()?;
        let seq = self.front_seq;
        self.front_seq += 1;
        if self.send_seq < self.front_seq {
            self.send_seq = self.front_seq;
        }
        Some((seq, e))
    }

    /// Empties the backlog while the connection stays (an overflow): what was sent keeps its
    /// numbers (their acknowledgements now free nothing), what was not loses them, and the
    /// next entry gets the number after the last one sent, so the backup's stream has no gap.
    pub fn take_all_after_sent(&mut self) -> VecDeque<Entry<T>> {
        self.front_seq = self.send_seq;
        std::mem::take(&mut self.entries)
    }

    /// Empties the backlog, keeping the numbering going: the next entry gets a fresh number.
    pub fn take_all(&mut self) -> VecDeque<Entry<T>> {
        self.front_seq = self.next_seq();
        self.send_seq = self.front_seq;
        std::mem::take(&mut self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: u32) -> Entry<u32> {
        Entry::Queued { tlv: v, ack: false }
    }

    #[test]
    fn sequence_numbers_survive_acks_and_resets() {
        let mut b = Backlog::default();
        assert_eq!(b.push(q(10)), 1);
        assert_eq!(b.push(q(11)), 2);
        assert_eq!(b.push(Entry::SyncEnd(2)), 3);
        assert!(matches!(b.take_unsent(), Some((1, Entry::Queued { tlv: 10, .. }))));
        assert!(matches!(b.take_unsent(), Some((2, _))));
        assert!(b.pop_acked(0).is_none());
        assert!(matches!(b.pop_acked(2), Some((1, _))));
        assert!(matches!(b.pop_acked(2), Some((2, _))));
        assert!(b.pop_acked(2).is_none());
        assert_eq!(b.send_seq(), 3);
        assert!(matches!(b.take_unsent(), Some((3, Entry::SyncEnd(2)))));
        assert!(b.take_unsent().is_none());
        b.rewind(3);
        assert!(matches!(b.take_unsent(), Some((3, _))));
        assert_eq!(b.take_all().len(), 1);
        assert_eq!(b.push(q(12)), 4);
        assert_eq!(b.front_seq(), 4);
        assert!(b.get(3).is_none());
        assert!(matches!(b.get(4), Some(Entry::Queued { tlv: 12, .. })));
    }

    #[test]
    fn an_overflow_on_a_live_connection_numbers_on_after_what_was_sent() {
        let mut b = Backlog::default();
        for v in 0..5 {
            b.push(q(v));
        }
        assert!(matches!(b.take_unsent(), Some((1, _))));
        assert!(matches!(b.take_unsent(), Some((2, _))));
        assert_eq!(b.take_all_after_sent().len(), 5);
        assert_eq!(b.push(Entry::SyncBegin), 3, "3..5 were never sent: their numbers are reused");
        assert!(b.pop_acked(2).is_none(), "acknowledging what was sent before frees nothing now");
        assert!(matches!(b.take_unsent(), Some((3, Entry::SyncBegin))));
        assert!(matches!(b.pop_acked(3), Some((3, Entry::SyncBegin))));
    }
}
