//! The loop's sleep and a producer's wake-up: the loop sleeps in `poll` only after announcing
//! it and looking for work once more; a producer that finds the announcement after publishing
//! wakes it (one eventfd write). Between them, a Dekker pair of barriers: the producer's side
//! is the light one (a compiler barrier when the kernel's membarrier(2) is there to pair with,
//! see `sys::heavy_barrier`), so the hot path pays no fence per message; the loop pays the heavy
//! one once per sleep.

use std::sync::atomic::{AtomicBool, Ordering};

use mio::Waker;

#[derive(Default)]
pub(crate) struct Sleeper {
    sleeping: AtomicBool,
}

impl Sleeper {
    /// Producer, right after publishing: wakes the loop if it sleeps (or is about to). No
    /// system call unless it sleeps.
    #[inline]
    pub(crate) fn after_publish(&self, waker: &Waker) {
        crate::sys::light_barrier();
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            let _ = waker.wake();
        }
    }

    /// Loop, about to sleep: announces it. The caller then looks for work once more: anything
    /// published before a producer could see the announcement is found then, anything after
    /// it wakes the loop.
    pub(crate) fn announce(&self) {
        self.sleeping.store(true, Ordering::Relaxed);
        crate::sys::heavy_barrier();
    }

    /// Loop: awake again (or never slept).
    pub(crate) fn awake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use mio::{Events, Poll, Token, Waker};

    use super::super::budget::{Budget, Releases};
    use super::super::ring::Ring;
    use super::*;
    use crate::engine::app::Tlv;

    struct T;
    impl Tlv for T {
        fn tlv_type(&self) -> u32 {
            0
        }
        fn payload(&self) -> &[u8] {
            &[]
        }
    }

    /// The protocol between a producer and the loop, one entry at a time: the producer
    /// publishes (after a random pause, so that publishes land before, during and after the
    /// loop's announcement) and then waits for the loop to take it; the loop takes, announces,
    /// looks again and sleeps (5 s at most). A wake-up lost in any of those interleavings
    /// leaves an entry waiting for the whole sleep: none may.
    #[test]
    fn no_publish_is_left_waiting_for_a_sleeping_loop() {
        const N: u64 = 5_000;
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let budget = Arc::new(Budget::new(usize::MAX));
        let ring = Arc::new(Ring::new());
        let sleeper = Arc::new(Sleeper::default());
        let taken = Arc::new(AtomicU64::new(0));
        let producer = {
            let (budget, ring, sleeper, waker, taken) =
                (budget.clone(), ring.clone(), sleeper.clone(), waker.clone(), taken.clone());
            std::thread::spawn(move || {
                let (mut x, mut lost) = (0x9e37_79b9_7f4a_7c15u64, 0u64);
                for i in 0..N {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let until = Instant::now() + Duration::from_nanos(x % 30_000);
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                    ring.publish(budget.claim(8).unwrap(), T, false);
                    sleeper.after_publish(&waker);
                    let deadline = Instant::now() + Duration::from_secs(2);
                    while taken.load(Ordering::Acquire) <= i {
                        if Instant::now() > deadline {
                            lost += 1;
                            break;
                        }
                        std::thread::yield_now();
                    }
                }
                lost
            })
        };
        let mut events = Events::with_capacity(8);
        let mut rel = Releases::default();
        let (mut got, mut sleeps) = (0u64, 0u64);
        while got < N {
            let mut take = || {
                ring.take(&budget, usize::MAX, |t, _| {
                    let _ = t.release(&mut rel);
                }) as u64
            };
            got += take();
            taken.store(got, Ordering::Release);
            if got == N {
                break;
            }
            sleeper.announce();
            let n = take();
            if n > 0 {
                got += n;
                taken.store(got, Ordering::Release);
                sleeper.awake();
                continue;
            }
            sleeps += 1;
            poll.poll(&mut events, Some(Duration::from_secs(5))).unwrap();
            sleeper.awake();
        }
        let lost = producer.join().unwrap();
        assert_eq!(lost, 0, "{lost} publishes waited for a sleeping loop ({sleeps} sleeps)");
        assert!(sleeps > N / 10, "the loop slept only {sleeps} times: the test did not test");
    }
}
