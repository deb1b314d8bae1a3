//! The hand-off from `junos_sync_queue` (any thread) to the loop thread.
//!
//! A bounded crossbeam channel carries the common case: its slots are allocated once, so the
//! hot path allocates nothing. (The unbounded flavour allocates a block per 31 messages on the
//! producer's thread and frees it on the loop's; profiled, that cross-thread malloc/free
//! contended on glibc's arena lock and halved throughput.) A producer that finds the ring full
//! never waits: it spills into a mutex-protected queue, and so do all producers until the loop
//! has drained both, which keeps every producer's own order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;

pub(crate) struct Handoff<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
    spill: Mutex<VecDeque<T>>,
    /// Set when a producer found the ring full; cleared by the loop once ring and spill are
    /// both empty, under the spill lock.
    spilling: AtomicBool,
}

impl<T> Handoff<T> {
    pub fn new(ring: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(ring);
        Handoff { tx, rx, spill: Mutex::new(VecDeque::new()), spilling: AtomicBool::new(false) }
    }

    /// Any thread: hands `v` over. Never blocks on the loop (the spill lock is only ever held
    /// for a push or a swap).
    pub fn push(&self, mut v: T) {
        loop {
            if !self.spilling.load(Ordering::Acquire) {
                match self.tx.try_send(v) {
                    Ok(()) => return,
                    Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => v = back,
                }
                let mut s = self.spill.lock();
                self.spilling.store(true, Ordering::Release);
                s.push_back(v);
                return;
            }
            let mut s = self.spill.lock();
            if self.spilling.load(Ordering::Relaxed) {
                s.push_back(v);
                return;
            }
            // The loop ended the spill meanwhile: back to the ring.
        }
    }

    /// Loop thread: passes everything handed over so far to `f`, each producer's in order.
    /// `spare` is the loop's empty buffer, swapped with the spill so neither side reallocates.
    pub fn drain(&self, spare: &mut VecDeque<T>, mut f: impl FnMut(T)) {
        while let Ok(v) = self.rx.try_recv() {
            f(v);
        }
        if !self.spilling.load(Ordering::Acquire) {
            return;
        }
        {
            let mut s = self.spill.lock();
            std::mem::swap(&mut *s, spare);
            if spare.is_empty() && self.rx.is_empty() {
                self.spilling.store(false, Ordering::Release);
            }
        }
        // What a producer put in the ring before it spilled is visible now (the lock orders
        // it) and goes first.
        while let Ok(v) = self.rx.try_recv() {
            f(v);
        }
        for v in spare.drain(..) {
            f(v);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty() && (!self.spilling.load(Ordering::Acquire) || self.spill.lock().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_producer_keeps_its_order_through_spills() {
        const PRODUCERS: u64 = 4;
        const EACH: u64 = 50_000;
        let h = Arc::new(Handoff::new(64));
        let threads: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        h.push((p, i));
                    }
                })
            })
            .collect();
        let mut next = [0u64; PRODUCERS as usize];
        let mut spare = VecDeque::new();
        let mut got = 0;
        while got < PRODUCERS * EACH {
            h.drain(&mut spare, |(p, i)| {
                assert_eq!(i, next[p as usize], "producer {p} out of order");
                next[p as usize] += 1;
                got += 1;
            });
        }
        for t in threads {
            t.join().unwrap();
        }
        assert!(h.is_empty());
        assert!(!h.spilling.load(Ordering::SeqCst) || h.spill.lock().is_empty());
    }
}
