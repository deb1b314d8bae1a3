//! The master's ordered store of everything sent or to be sent, by sequence number, until the
//! backup acknowledges it.
//!
//! Sequence numbers are implicit (`front + index`). An entry costs one slot of `tlvs` (a
//! C TLV's handle: one word, `None` for the resync markers) and one byte of `flags`: 9 bytes,
//! where an enum of the four kinds took 16 (a million queued 64-byte TLVs held 8 MB less).
//! The few SYNC_END markers keep their count in `ends`.

use std::collections::VecDeque;

/// One sequenced item of the stream, as pushed and as taken out.
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

/// An entry still in the backlog, as the writer sees it.
pub(crate) enum Peek<'a, T> {
    Tlv(&'a T),
    SyncBegin,
    SyncEnd(u64),
}

const ACK: u8 = 1;
const WALKED: u8 = 2;
const BEGIN: u8 = 4;
const END: u8 = 8;

/// Entries in sequence order, each in two parallel queues.
struct Entries<T> {
    tlvs: VecDeque<Option<T>>,
    flags: VecDeque<u8>,
    /// (sequence number, entries walked) of each SYNC_END in `tlvs`, in order.
    ends: VecDeque<(u64, u64)>,
    /// Sequence number of the first entry.
    front: u64,
}

impl<T> Entries<T> {
    fn new(front: u64) -> Self {
        Entries { tlvs: VecDeque::new(), flags: VecDeque::new(), ends: VecDeque::new(), front }
    }

    fn len(&self) -> usize {
        self.tlvs.len()
    }

    fn push(&mut self, e: Entry<T>) {
        let seq = self.front + self.tlvs.len() as u64;
        let (tlv, flags) = match e {
            Entry::Queued { tlv, ack } => (Some(tlv), if ack { ACK } else { 0 }),
            Entry::Walked(tlv) => (Some(tlv), WALKED),
            Entry::SyncBegin => (None, BEGIN),
            Entry::SyncEnd(n) => {
                self.ends.push_back((seq, n));
                (None, END)
            }
        };
        self.tlvs.push_back(tlv);
        self.flags.push_back(flags);
    }

    fn get(&self, i: usize) -> Option<Peek<'_, T>> {
        match self.tlvs.get(i)? {
            Some(t) => Some(Peek::Tlv(t)),
            None if self.flags[i] == END => {
                let seq = self.front + i as u64;
                let n = self.ends.iter().find(|&&(s, _)| s == seq).map_or(0, |&(_, n)| n);
                Some(Peek::SyncEnd(n))
            }
            None => Some(Peek::SyncBegin),
        }
    }

    fn pop_front(&mut self) -> Option<Entry<T>> {
        let tlv = self.tlvs.pop_front()?;
        let flags = self.flags.pop_front().unwrap_or(0);
        self.front += 1;
        Some(match tlv {
            Some(tlv) if flags & WALKED != 0 => Entry::Walked(tlv),
            Some(tlv) => Entry::Queued { tlv, ack: flags & ACK != 0 },
            None if flags == END => Entry::SyncEnd(self.ends.pop_front().map_or(0, |(_, n)| n)),
            None => Entry::SyncBegin,
        })
    }
}

/// Entries taken out of the backlog at once, in order.
pub(crate) struct Taken<T>(Entries<T>);

impl<T> Iterator for Taken<T> {
    type Item = Entry<T>;
    fn next(&mut self) -> Option<Entry<T>> {
        self.0.pop_front()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.0.len(), Some(self.0.len()))
    }
}

impl<T> ExactSizeIterator for Taken<T> {}

pub(crate) struct Backlog<T> {
    /// `entries.front` is the sequence number of the first; sequence 0 means "nothing", so
    /// it starts at 1.
    entries: Entries<T>,
    /// Next sequence number to hand to the writer.
    send_seq: u64,
}

/// Bytes an entry holding a `T` costs in the backlog (what the C layer's TLV handle is checked
/// to keep at 9, at compile time).
pub(crate) const fn entry_bytes<T>() -> usize {
    std::mem::size_of::<Option<crate::engine::queue::budget::Held<T>>>() + 1
}

impl<T> Default for Backlog<T> {
    fn default() -> Self {
        Backlog { entries: Entries::new(1), send_seq: 1 }
    }
}

impl<T> Backlog<T> {
    pub fn front_seq(&self) -> u64 {
        self.entries.front
    }
    /// The sequence number the next pushed entry gets.
    pub fn next_seq(&self) -> u64 {
        self.entries.front + self.entries.len() as u64
    }
    pub fn send_seq(&self) -> u64 {
        self.send_seq
    }

    pub fn push(&mut self, e: Entry<T>) -> u64 {
        let seq = self.next_seq();
        self.entries.push(e);
        seq
    }

    pub fn get(&self, seq: u64) -> Option<Peek<'_, T>> {
        let i = seq.checked_sub(self.entries.front)?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    /// The next entry the writer has not taken yet; taking it advances the send position.
    pub fn take_unsent(&mut self) -> Option<(u64, Peek<'_, T>)> {
        let seq = self.send_seq;
        if seq >= self.next_seq() {
            return None;
        }
        self.send_seq += 1;
        self.get(seq).map(|e| (seq, e))
    }

    /// The next entry the writer has not taken, without taking it.
    pub fn peek_unsent(&self) -> Option<Peek<'_, T>> {
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
        debug_assert!(seq >= self.front_seq() && seq <= self.next_seq());
        self.send_seq = seq.clamp(self.front_seq(), self.next_seq());
    }

    /// Removes the front entry if its sequence number is at most `upto`.
    pub fn pop_acked(&mut self, upto: u64) -> Option<(u64, Entry<T>)> {
        let seq = self.entries.front;
        if seq > upto {
            return None;
        }
        let e = self.entries.pop_front()?;
        if self.send_seq < self.entries.front {
            self.send_seq = self.entries.front;
        }
        Some((seq, e))
    }

    /// Empties the backlog while the connection stays (an overflow): what was sent keeps its
    /// numbers (their acknowledgements now free nothing), what was not loses them, and the
    /// next entry gets the number after the last one sent, so the backup's stream has no gap.
    pub fn take_all_after_sent(&mut self) -> Taken<T> {
        Taken(std::mem::replace(&mut self.entries, Entries::new(self.send_seq)))
    }

    /// Empties the backlog, keeping the numbering going: the next entry gets a fresh number.
    pub fn take_all(&mut self) -> Taken<T> {
        let next = self.next_seq();
        self.send_seq = next;
        Taken(std::mem::replace(&mut self.entries, Entries::new(next)))
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
        assert!(matches!(b.take_unsent(), Some((1, Peek::Tlv(&10)))));
        assert!(matches!(b.take_unsent(), Some((2, _))));
        assert!(b.pop_acked(0).is_none());
        assert!(matches!(b.pop_acked(2), Some((1, _))));
        assert!(matches!(b.pop_acked(2), Some((2, _))));
        assert!(b.pop_acked(2).is_none());
        assert_eq!(b.send_seq(), 3);
        assert!(matches!(b.take_unsent(), Some((3, Peek::SyncEnd(2)))));
        assert!(b.take_unsent().is_none());
        b.rewind(3);
        assert!(matches!(b.take_unsent(), Some((3, _))));
        assert_eq!(b.take_all().len(), 1);
        assert_eq!(b.push(q(12)), 4);
        assert_eq!(b.front_seq(), 4);
        assert!(b.get(3).is_none());
        assert!(matches!(b.get(4), Some(Peek::Tlv(&12))));
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
        assert!(matches!(b.take_unsent(), Some((3, Peek::SyncBegin))));
        assert!(matches!(b.pop_acked(3), Some((3, Entry::SyncBegin))));
    }

    #[test]
    fn every_kind_comes_back_as_it_went_in() {
        let mut b = Backlog::default();
        let kinds = [
            Entry::Queued { tlv: 1, ack: true },
            Entry::SyncBegin,
            Entry::Walked(2),
            Entry::SyncEnd(7),
            Entry::Queued { tlv: 3, ack: false },
            Entry::SyncBegin,
            Entry::SyncEnd(9),
            Entry::Walked(4),
        ];
        for e in kinds {
            b.push(e);
        }
        assert!(matches!(b.get(4), Some(Peek::SyncEnd(7))));
        assert!(matches!(b.get(7), Some(Peek::SyncEnd(9))));
        assert!(matches!(b.get(6), Some(Peek::SyncBegin)));
        let mut got = vec![];
        while let Some((seq, e)) = b.pop_acked(5) {
            got.push((seq, e));
        }
        assert!(matches!(
            got[..],
            [
                (1, Entry::Queued { tlv: 1, ack: true }),
                (2, Entry::SyncBegin),
                (3, Entry::Walked(2)),
                (4, Entry::SyncEnd(7)),
                (5, Entry::Queued { tlv: 3, ack: false }),
            ]
        ));
        assert!(matches!(b.get(7), Some(Peek::SyncEnd(9))), "the second end keeps its count");
        let rest: Vec<_> = b.take_all().collect();
        assert!(matches!(rest[..], [Entry::SyncBegin, Entry::SyncEnd(9), Entry::Walked(4)]));
        assert_eq!(b.push(Entry::SyncEnd(1)), 9);
        assert!(matches!(b.take_unsent(), Some((9, Peek::SyncEnd(1)))));
    }
}
