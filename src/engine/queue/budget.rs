//! The bytes and entries a master holds, counted in one word that `junos_sync_queue` claims
//! with one compare-and-swap: no lock, and no atomic read-modify-write that the loop shares.
//!
//! The claim word holds, side by side, the number of ring slots ever claimed (modulo
//! 2^COUNT_BITS) and the bytes ever charged (modulo 2^BYTES_BITS). The loop (and, in dispatch
//! mode, the application's thread) publishes the other half with plain counters: slots taken
//! out of the ring, bytes released. What is held is the difference, so the check against the
//! limit and the claim of the slot are one atomic step, exact however many threads queue.
//!
//! A TLV counted against the limit is a `Held`, and the only ways to get the TLV back out of
//! one also uncount it: freeing a counted TLV without uncounting it, or uncounting it twice,
//! does not compile.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::app::Tlv;

/// Bits of the claim word counting slots; the ring has at most `RING_SLOTS` of them in use.
const COUNT_BITS: u32 = 23;
/// Bits counting bytes: what is held must stay below 2^BYTES_BITS, which `MAX_LIMIT` ensures.
const BYTES_BITS: u32 = 64 - COUNT_BITS;
const BYTES_MASK: u64 = (1 << BYTES_BITS) - 1;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// Slots of the ring: entries queued and not yet taken by the loop, at most.
pub(crate) const RING_SLOTS: u64 = 1 << (COUNT_BITS - 1);
/// The largest backlog limit (1 TiB): held bytes stay below 2^BYTES_BITS with one TLV more.
pub(crate) const MAX_LIMIT: u64 = 1 << (BYTES_BITS - 1);
const _: () = assert!(MAX_LIMIT + crate::proto::wire::MAX_DATA_LEN as u64 + 8 < 1 << BYTES_BITS);

/// Bytes a TLV counts against the backlog limit: its payload and what its entry costs
/// besides (`ENTRY_COST`), so that a limit bounds memory however small the TLVs are.
pub(crate) fn counted_size<T: Tlv>(t: &T) -> u64 {
    t.payload_len() as u64 + ENTRY_COST
}

/// What an entry of the backlog costs besides its payload: the TLV's 8-byte C header and the
/// application's allocation of it (glibc's smallest chunk is 32 bytes), its ring slot, its
/// backlog entry (9 bytes) and lag stamp (19 B measured for 64 B TLVs beyond malloc's own
/// footprint, up to twice that in a growing queue). A 0-byte TLV counted as 8 bytes let 8 M
/// entries, 528 MB, under a 64 MiB limit.
pub(crate) const ENTRY_COST: u64 = 64;

/// Bytes held: charged (in a claim word) minus released (read before that word).
fn held_of(claim: u64, released: u64) -> u64 {
    (claim & BYTES_MASK).wrapping_sub(released) & BYTES_MASK
}

/// Why a TLV was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// It would take the bytes held past the backlog limit.
    OverLimit,
    /// The loop has not taken the `RING_SLOTS` entries queued before it.
    RingFull,
}

/// The claim word, the counters the loop publishes, and the limit.
pub(crate) struct Budget {
    claim: AtomicU64,
    /// Slots the loop has taken out of the ring (all time).
    taken: AtomicU64,
    /// Bytes released (all time, wrapping).
    released: AtomicU64,
    limit: AtomicU64,
}

/// A claimed ring slot: its index (all time, modulo 2^COUNT_BITS).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot(pub(super) u64);

impl Slot {
    /// The slot's number (all time, modulo 2^COUNT_BITS).
    pub(crate) fn index(self) -> u64 {
        self.0
    }
}

/// A TLV counted in a `Budget`. Its size is read from the TLV itself, not stored: a backlog
/// of millions of TLVs costs one pointer each.
pub(crate) struct Held<T> {
    tlv: T,
}

impl<T: Tlv> Held<T> {
    /// A TLV whose bytes a claim has charged (see `Ring::publish`).
    pub(super) fn charged(tlv: T) -> Self {
        Held { tlv }
    }

    pub(crate) fn tlv(&self) -> &T {
        &self.tlv
    }

    pub(crate) fn size(&self) -> usize {
        counted_size(&self.tlv) as usize
    }

    /// Uncounts the TLV into `r` (published at the next `settle`) and hands it back.
    pub(crate) fn release(self, r: &mut Releases) -> T {
        r.0 += self.size() as u64;
        self.tlv
    }
}

/// Bytes uncounted and not yet published: one atomic update per turn (or per dispatch) keeps
/// the counter's cache line from bouncing against `junos_sync_queue`.
#[derive(Default)]
pub(crate) struct Releases(u64);

impl Releases {
    pub(crate) fn settle(&mut self, b: &Budget) {
        if self.0 > 0 {
            b.released.fetch_add(std::mem::take(&mut self.0), Ordering::Release);
        }
    }
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Self {
        Budget {
            claim: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            released: AtomicU64::new(0),
            limit: AtomicU64::new((limit as u64).min(MAX_LIMIT)),
        }
    }

    /// Bytes held: queued, walked, or released and not yet freed.
    pub(crate) fn held(&self) -> usize {
        // Released first: every byte released was charged before, so the difference with a
        // claim word read later never goes below zero.
        let released = self.released.load(Ordering::Acquire);
        held_of(self.claim.load(Ordering::Acquire), released) as usize
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed) as usize
    }

    /// Sets the limit (at most `MAX_LIMIT`).
    pub(crate) fn set_limit(&self, bytes: usize) {
        self.limit.store((bytes as u64).min(MAX_LIMIT), Ordering::Relaxed);
    }

    /// Claims a ring slot for a TLV of `size` counted bytes and charges them, unless that
    /// takes what is held past the limit (the first TLV always fits, so one larger than the
    /// limit still moves) or the ring is full. One compare-and-swap on the claim word.
    pub(crate) fn claim(&self, size: u64) -> Result<Slot, Refusal> {
        let limit = self.limit.load(Ordering::Relaxed);
        // Read before the claim word (see `held`); a stale value only overstates what is held.
        let mut released = self.released.load(Ordering::Acquire);
        let mut cur = self.claim.load(Ordering::Acquire);
        loop {
            let count = cur >> BYTES_BITS;
            let queued = self.not_taken(count, Ordering::Acquire);
            if queued >= RING_SLOTS {
                return Err(Refusal::RingFull);
            }
            let held = held_of(cur, released);
            if held > 0 && held + size > limit {
                let now = self.released.load(Ordering::Acquire);
                if now == released {
                    return Err(Refusal::OverLimit);
                }
                // Room was made meanwhile: look again with a claim word read after it.
                released = now;
                cur = self.claim.load(Ordering::Acquire);
                continue;
            }
            let next = (((count + 1) & COUNT_MASK) << BYTES_BITS) | ((cur + size) & BYTES_MASK);
            match self.claim.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(Slot(count)),
                Err(now) => cur = now,
            }
        }
    }

    /// TLVs ever claimed (all time, not wrapping): the claim word's count, which wraps, read
    /// against the slots the loop has taken. Two loads and no write: what a wait reads for its
    /// target, leaving `claim` to the producers. Exact: the count is at most `RING_SLOTS`
    /// ahead of the `taken` read after it, and behind the one read before it only by what was
    /// taken in between; both are well inside the word's 2^COUNT_BITS.
    pub(crate) fn claimed(&self) -> u64 {
        loop {
            let before = self.taken.load(Ordering::SeqCst);
            let count = self.claim.load(Ordering::SeqCst) >> BYTES_BITS;
            let after = self.taken.load(Ordering::SeqCst);
            // Claimed lies in [before, after + RING_SLOTS], narrower than the wrap.
            if after - before < RING_SLOTS {
                return before + (count.wrapping_sub(before) & COUNT_MASK);
            }
        }
    }

    /// Counts `t` whatever the limit: the resync walk paces itself before it takes an entry.
    pub(crate) fn charge<T: Tlv>(&self, t: T) -> Held<T> {
        let size = counted_size(&t);
        let mut cur = self.claim.load(Ordering::Relaxed);
        loop {
            let next = (cur & !BYTES_MASK) | ((cur + size) & BYTES_MASK);
            match self.claim.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Held { tlv: t },
                Err(now) => cur = now,
            }
        }
    }

    /// Entries claimed before `slot` that the loop has not taken out of the ring yet.
    pub(crate) fn not_taken_before(&self, slot: Slot) -> u64 {
        self.not_taken(slot.0, Ordering::Relaxed)
    }

    /// Slots claimed before claim count `count` and not taken by the loop yet.
    fn not_taken(&self, count: u64, order: Ordering) -> u64 {
        count.wrapping_sub(self.taken.load(order)) & COUNT_MASK
    }

    /// Loop: it has taken `n` slots out of the ring in all (publishes room to producers).
    pub(super) fn note_taken(&self, n: u64) {
        self.taken.store(n, Ordering::Release);
    }

    /// Uncounts at once: for frees off the loop thread, where nothing batches.
    pub(crate) fn release_now<T: Tlv>(&self, h: Held<T>) -> T {
        self.released.fetch_add(h.size() as u64, Ordering::Release);
        h.tlv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) struct B(pub usize);
    impl Tlv for B {
        fn tlv_type(&self) -> u32 {
            0
        }
        fn payload(&self) -> &[u8] {
            &[]
        }
        fn payload_len(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn counts_in_and_out_exactly() {
        let b = Budget::new(100);
        let s = b.claim(564).expect("the first TLV always fits");
        let big = Held::charged(B(500));
        assert_eq!((s.0, b.held()), (0, 564));
        assert_eq!(b.claim(9).err(), Some(Refusal::OverLimit));
        assert_eq!(b.held(), 564, "a refused claim leaves no trace");
        let mut r = Releases::default();
        let _ = big.release(&mut r);
        assert_eq!(b.held(), 564, "published only at settle");
        r.settle(&b);
        assert_eq!(b.held(), 0);
        let w = b.charge(B(200));
        assert_eq!((w.size(), b.held()), (264, 264), "the walk's charge ignores the limit");
        let _ = b.release_now(w);
        assert_eq!(b.held(), 0);
        assert_eq!(b.claim(8).map(|s| s.0).ok(), Some(1), "a charge takes no slot");
    }

    #[test]
    fn the_ring_bound_and_the_wrap_of_both_counters() {
        let b = Budget::new(usize::MAX);
        assert_eq!(b.limit() as u64, MAX_LIMIT);
        // Far into the life of a context: both halves of the claim word wrap.
        let start = COUNT_MASK - 2;
        b.claim.store((start << BYTES_BITS) | (BYTES_MASK - 10), Ordering::Relaxed);
        b.released.store(BYTES_MASK - 10, Ordering::Relaxed);
        b.taken.store(start, Ordering::Relaxed);
        for i in 0..8 {
            let s = b.claim(24).unwrap();
            assert_eq!(s.0, (start + i) & COUNT_MASK);
        }
        assert_eq!(b.held(), 8 * 24, "held survives the wrap of the byte count");
        b.taken.store(start.wrapping_add(8).wrapping_sub(RING_SLOTS), Ordering::Relaxed);
        assert_eq!(b.claim(24).err(), Some(Refusal::RingFull));
        b.taken.store(start + 1, Ordering::Relaxed);
        assert!(b.claim(24).is_ok());
    }

    #[test]
    fn claimed_counts_all_time_across_the_wrap() {
        let b = Budget::new(usize::MAX);
        assert_eq!(b.claimed(), 0);
        // Far into the life of a context: the claim word's count has wrapped several times.
        let total = 5 * (COUNT_MASK + 1) - 3;
        b.claim.store((total & COUNT_MASK) << BYTES_BITS, Ordering::Relaxed);
        b.taken.store(total, Ordering::Relaxed);
        assert_eq!(b.claimed(), total, "nothing queued");
        for i in 1..=10 {
            b.claim(8).unwrap();
            assert_eq!(b.claimed(), total + i, "across the wrap of the count");
        }
        // The most that can be queued ahead of the loop.
        b.taken.store(total + 10 - (RING_SLOTS - 1), Ordering::Relaxed);
        assert_eq!(b.claimed(), total + 10);
    }

    #[test]
    fn many_threads_never_hold_more_than_the_limit() {
        // Below what one thread holds at most (100 TLVs of 16-63 bytes): every thread meets it.
        const LIMIT: u64 = 2_000;
        let b = std::sync::Arc::new(Budget::new(LIMIT as usize));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    // Each thread holds up to 100 TLVs before it gives them back, so that what
                    // is held keeps pressing against the limit.
                    let (mut ok, mut mine) = (0u64, Vec::new());
                    let give_back = |mine: &mut Vec<u64>| {
                        b.released.fetch_add(mine.iter().sum(), Ordering::Release);
                        b.taken.fetch_add(mine.len() as u64, Ordering::Release);
                        mine.clear();
                    };
                    for i in 0..20_000u64 {
                        let size = 16 + i % 48;
                        let taken = b.claim(size).is_ok();
                        if taken {
                            ok += 1;
                            mine.push(size);
                            // A lower bound of what is held (charged read before released):
                            // `held()` reads them the other way round, an upper bound that
                            // other threads' releases in between can lift past the limit.
                            let charged = b.claim.load(Ordering::Acquire);
                            let lower = held_of(charged, b.released.load(Ordering::Acquire));
                            if lower < BYTES_MASK / 2 {
                                assert!(lower <= LIMIT, "held at least {lower}, over the limit");
                            }
                        }
                        if mine.len() == 100 || (!taken && i % 3 == 0) {
                            give_back(&mut mine);
                        }
                    }
                    give_back(&mut mine);
                    ok
                })
            })
            .collect();
        let ok: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(ok > 0);
        assert_eq!(b.held(), 0, "every charge was released");
    }
}
