//! The bytes a master holds, with one owner. A TLV counted against the backlog limit is a
//! `Held`, and the only ways to get the TLV back out of one also uncount it: freeing a counted
//! TLV without uncounting it, or uncounting it twice, does not compile.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::engine::app::Tlv;

/// Bytes a TLV counts against the backlog limit: its payload and its 8-byte C header.
fn counted_size<T: Tlv>(t: &T) -> usize {
    t.payload_len() + 8
}

/// The held-bytes counter and its limit, shared by `junos_sync_queue` callers and the loop.
pub(crate) struct Budget {
    held: AtomicUsize,
    limit: AtomicUsize,
}

/// A TLV counted in a `Budget`. Its size is read from the TLV itself, not stored: a backlog
/// of millions of TLVs costs one pointer each.
pub(crate) struct Held<T> {
    tlv: T,
}

impl<T: Tlv> Held<T> {
    pub(crate) fn tlv(&self) -> &T {
        &self.tlv
    }

    pub(crate) fn size(&self) -> usize {
        counted_size(&self.tlv)
    }

    /// Uncounts the TLV into `r` (published at the next `settle`) and hands it back.
    pub(crate) fn release(self, r: &mut Releases) -> T {
        r.0 += self.size();
        self.tlv
    }
}

/// Bytes uncounted on the loop thread and not yet published: one atomic update per loop turn
/// keeps the counter's cache line from bouncing against `junos_sync_queue`.
#[derive(Default)]
pub(crate) struct Releases(usize);

impl Releases {
    pub(crate) fn settle(&mut self, b: &Budget) {
        if self.0 > 0 {
            b.held.fetch_sub(std::mem::take(&mut self.0), Ordering::Relaxed);
        }
    }
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Self {
        Budget { held: AtomicUsize::new(0), limit: AtomicUsize::new(limit) }
    }

    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    pub(crate) fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// Counts `t` unless that takes the total past the limit (the first TLV always fits, so
    /// one larger than the limit still moves); over it, `t` comes back uncounted.
    pub(crate) fn try_charge<T: Tlv>(&self, t: T) -> Result<Held<T>, T> {
        let size = counted_size(&t);
        let before = self.held.fetch_add(size, Ordering::Relaxed);
        if before > 0 && before + size > self.limit() {
            self.held.fetch_sub(size, Ordering::Relaxed);
            return Err(t);
        }
        Ok(Held { tlv: t })
    }

    /// Counts `t` whatever the limit: the resync walk paces itself before it takes an entry.
    pub(crate) fn charge<T: Tlv>(&self, t: T) -> Held<T> {
        self.held.fetch_add(counted_size(&t), Ordering::Relaxed);
        Held { tlv: t }
    }

    /// Uncounts at once: for frees off the loop thread, where nothing batches.
    pub(crate) fn release_now<T: Tlv>(&self, h: Held<T>) -> T {
        self.held.fetch_sub(h.size(), Ordering::Relaxed);
        h.tlv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct B(usize);
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
        let big = b.try_charge(B(500)).ok().expect("the first TLV always fits");
        assert_eq!(b.held(), 508);
        assert!(b.try_charge(B(1)).is_err());
        assert_eq!(b.held(), 508, "a refused charge leaves no trace");
        let mut r = Releases::default();
        let _ = big.release(&mut r);
        assert_eq!(b.held(), 508, "published only at settle");
        r.settle(&b);
        assert_eq!(b.held(), 0);
        let w = b.charge(B(200));
        assert_eq!((w.size(), b.held()), (208, 208));
        let _ = b.release_now(w);
        assert_eq!(b.held(), 0);
    }
}
