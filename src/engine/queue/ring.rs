//! The ring that carries TLVs from `junos_sync_queue` (any thread) to the loop thread: no
//! object is made per message and no lock is taken. A producer claims a slot and charges the
//! TLV's bytes in one compare-and-swap (`Budget::claim`), stores the TLV in the slot (one
//! release store) and is done; the loop takes the published TLVs in slot order, many per turn.
//!
//! Slots are claimed in order but may be published out of order by concurrent producers: the
//! loop stops at the first slot not yet published and takes it on a later turn (its producer
//! publishes right after its claim, and wakes the loop if it sleeps). So the order is the order
//! of the claims, which every producer's own calls, and calls ordered between threads by the
//! application, respect.
//!
//! Memory: segments of `SEG_SLOTS` slots (128 KiB for C TLVs, a word a slot), allocated the
//! first time the ring reaches them, normally by the loop a segment or two ahead of itself
//! (`make_ahead`), and reused in turn after that (a slot is reused only once the loop took what
//! it held, which the claim word guarantees).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crossbeam_utils::atomic::AtomicCell;

use super::budget::{Held, Slot, RING_SLOTS};
use crate::engine::app::Tlv;

const SEG_BITS: u32 = 14;
const SEG_SLOTS: usize = 1 << SEG_BITS;
const SEGS: usize = RING_SLOTS as usize / SEG_SLOTS;
/// Segments the loop makes ahead of the one it takes from.
const AHEAD: u64 = 2;

struct Segment<T> {
    slots: Box<[AtomicCell<Option<Held<T>>>]>,
    /// One bit per slot: the TLV asked for an ack notification. Set before the slot is
    /// published, cleared by the loop when it takes it.
    ack: Box<[AtomicU64]>,
}

impl<T> Segment<T> {
    fn new() -> Self {
        Segment {
            slots: (0..SEG_SLOTS).map(|_| AtomicCell::new(None)).collect(),
            ack: (0..SEG_SLOTS / 64).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// Whether a slot holding a `T` is one plain atomic word (what the C layer's TLV handle is
/// checked to be, at compile time).
pub(crate) const fn slots_are_lock_free<T>() -> bool {
    AtomicCell::<Option<Held<T>>>::is_lock_free()
}

pub(crate) struct Ring<T> {
    segs: Box<[OnceLock<Segment<T>>]>,
    /// Loop only: the slots taken so far (all time).
    taken: AtomicU64,
}

impl<T: Tlv> Ring<T> {
    pub(crate) fn new() -> Self {
        Ring { segs: (0..SEGS).map(|_| OnceLock::new()).collect(), taken: AtomicU64::new(0) }
    }

    fn at(&self, index: u64) -> (&Segment<T>, usize) {
        let i = (index % RING_SLOTS) as usize;
        let seg = self.segs[i >> SEG_BITS].get_or_init(Segment::new);
        (seg, i & (SEG_SLOTS - 1))
    }

    /// Loop, entering the segment of slot `index`: makes the next `AHEAD` segments, so that
    /// producers seldom allocate one. A producer's allocation of 128 KiB comes from the
    /// application's heap, where a large request first consolidates every small free chunk:
    /// the TLVs this loop freed, which the producer's next mallocs then carve out again
    /// (glibc: a tenth of a producer's time).
    fn make_ahead(&self, index: u64) {
        for k in 1..=AHEAD {
            let i = ((index + k * SEG_SLOTS as u64) % RING_SLOTS) as usize;
            self.segs[i >> SEG_BITS].get_or_init(Segment::new);
        }
    }

    /// Loop: the slots taken so far (all time).
    pub(crate) fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Producer: stores `tlv` in the slot its claim charged it for.
    pub(crate) fn publish(&self, slot: Slot, tlv: T, ack: bool) {
        let (seg, i) = self.at(slot.0);
        if ack {
            seg.ack[i / 64].fetch_or(1 << (i % 64), Ordering::Relaxed);
        }
        seg.slots[i].store(Some(Held::charged(tlv)));
    }

    /// Loop: takes the published TLVs in slot order, at most `max`, and tells `budget` the
    /// room they leave. Returns how many it took.
    pub(crate) fn take(&self, budget: &super::budget::Budget, max: usize, mut f: impl FnMut(Held<T>, bool)) -> usize {
        let start = self.taken.load(Ordering::Relaxed);
        let mut n = start;
        'segments: while n - start < max as u64 {
            // One segment lookup per run of slots in it.
            let (seg, first) = self.at(n);
            if first == 0 {
                self.make_ahead(n);
            }
            for i in first..SEG_SLOTS {
                if n - start >= max as u64 {
                    break 'segments;
                }
                let Some(tlv) = seg.slots[i].take() else { break 'segments };
                let bit = 1u64 << (i % 64);
                let ack = seg.ack[i / 64].load(Ordering::Relaxed) & bit != 0;
                if ack {
                    seg.ack[i / 64].fetch_and(!bit, Ordering::Relaxed);
                }
                n += 1;
                f(tlv, ack);
            }
        }
        if n > start {
            self.taken.store(n, Ordering::Relaxed);
            budget.note_taken(n);
        }
        (n - start) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::super::budget::Budget;
    use super::*;
    use std::sync::Arc;

    struct T(u64, u64);
    impl Tlv for T {
        fn tlv_type(&self) -> u32 {
            0
        }
        fn payload(&self) -> &[u8] {
            &[]
        }
    }

    #[test]
    fn every_producer_keeps_its_order_and_the_ack_bits_follow_their_tlvs() {
        const PRODUCERS: u64 = 4;
        const EACH: u64 = 200_000;
        let b = Arc::new(Budget::new(usize::MAX));
        let r = Arc::new(Ring::new());
        let threads: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (b, r) = (b.clone(), r.clone());
                std::thread::spawn(move || {
                    let mut i = 0;
                    while i < EACH {
                        match b.claim(super::super::budget::counted_size(&T(p, i))) {
                            Ok(s) => {
                                r.publish(s, T(p, i), (p + i) % 3 == 0);
                                i += 1;
                            }
                            Err(_) => std::thread::yield_now(), // ring full: the loop is behind
                        }
                    }
                })
            })
            .collect();
        let mut next = [0u64; PRODUCERS as usize];
        let mut got = 0;
        let mut rel = super::super::budget::Releases::default();
        while got < PRODUCERS * EACH {
            got += r.take(&b, 1000, |t, ack| {
                let (p, i) = (t.tlv().0, t.tlv().1);
                assert_eq!(i, next[p as usize], "producer {p} out of order");
                assert_eq!(ack, (p + i) % 3 == 0, "ack bit of ({p}, {i})");
                next[p as usize] += 1;
                let _ = t.release(&mut rel);
            }) as u64;
            rel.settle(&b);
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.held(), 0);
        assert_eq!(r.take(&b, 10, |_, _| unreachable!()), 0);
    }

    #[test]
    fn a_full_ring_refuses_and_reuses_its_slots_once_taken() {
        let b = Budget::new(usize::MAX);
        let r = Ring::new();
        for i in 0..RING_SLOTS {
            r.publish(b.claim(8).unwrap(), T(0, i), false);
        }
        assert!(b.claim(8).is_err(), "the ring holds RING_SLOTS at most");
        let mut rel = super::super::budget::Releases::default();
        let mut want = 0;
        assert_eq!(
            r.take(&b, 5, |t, _| {
                assert_eq!(t.tlv().1, want);
                want += 1;
                let _ = t.release(&mut rel);
            }),
            5
        );
        for i in 0..5 {
            r.publish(b.claim(8).unwrap(), T(1, i), true);
        }
        assert!(b.claim(8).is_err());
        let mut seen = 0;
        r.take(&b, usize::MAX, |t, ack| {
            let (p, i) = (t.tlv().0, t.tlv().1);
            if seen < RING_SLOTS - 5 {
                assert_eq!((p, i, ack), (0, seen + 5, false));
            } else {
                assert_eq!((p, i, ack), (1, seen - (RING_SLOTS - 5), true));
            }
            seen += 1;
            let _ = t.release(&mut rel);
        });
        assert_eq!(seen, RING_SLOTS);
    }
}
