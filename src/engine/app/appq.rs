//! Dispatch mode's crossing between the loop thread and the application's thread: the calls
//! the loop made, the replies the application's thread produced, and the bell (an eventfd) the
//! application's own event loop watches. Neither side ever waits on the other: each takes the
//! whole other queue under a lock held for a swap.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::Waker;
use parking_lot::Mutex;

use crate::engine::app::calls::{Call, Reply};
use crate::engine::app::App;
use crate::sys::Bell;

pub(crate) struct AppQueue<A: App> {
    calls: Mutex<VecDeque<Call<A>>>,
    replies: Mutex<Vec<Reply<A::Tlv>>>,
    has_replies: AtomicBool,
    bell: Bell,
    waker: Arc<Waker>,
}

impl<A: App> AppQueue<A> {
    pub(crate) fn new(bell: Bell, waker: Arc<Waker>) -> Self {
        AppQueue {
            calls: Mutex::new(VecDeque::new()),
            replies: Mutex::new(Vec::new()),
            has_replies: AtomicBool::new(false),
            bell,
            waker,
        }
    }

    /// The descriptor the application watches for readability.
    pub(crate) fn fd(&self) -> std::os::fd::RawFd {
        self.bell.fd()
    }

    /// Loop thread: hands over `calls`, ringing the bell if the application had nothing.
    pub(crate) fn send(&self, calls: &mut VecDeque<Call<A>>) {
        if calls.is_empty() {
            return;
        }
        let was_empty = {
            let mut q = self.calls.lock();
            let e = q.is_empty();
            // A swap when it can: appending moves every call.
            if e {
                std::mem::swap(&mut *q, calls);
            } else {
                q.append(calls);
            }
            e
        };
        if was_empty {
            self.bell.ring();
        }
    }

    /// Loop thread: takes the replies the application's thread produced.
    pub(crate) fn receive(&self, out: &mut Vec<Reply<A::Tlv>>) {
        if self.has_replies.load(Ordering::Acquire) {
            let mut r = self.replies.lock();
            self.has_replies.store(false, Ordering::Release);
            out.append(&mut r);
        }
    }

    /// Loop thread, before sleeping: whether replies wait.
    pub(crate) fn replies_waiting(&self) -> bool {
        self.has_replies.load(Ordering::Acquire)
    }

    /// Application's thread: takes every call made so far. The bell is cleared first, so a call
    /// made after the take rings it again.
    pub(crate) fn take(&self, into: &mut VecDeque<Call<A>>) {
        self.bell.clear();
        let mut q = self.calls.lock();
        if into.is_empty() {
            std::mem::swap(into, &mut *q);
        } else {
            into.append(&mut q);
        }
    }

    /// Application's thread: hands replies to the loop and wakes it.
    pub(crate) fn answer(&self, replies: &mut Vec<Reply<A::Tlv>>) {
        if replies.is_empty() {
            return;
        }
        {
            let mut r = self.replies.lock();
            r.append(replies);
            self.has_replies.store(true, Ordering::Release);
        }
        let _ = self.waker.wake();
    }

    /// Application's thread: it stopped with work left (its slice ended): stay readable.
    pub(crate) fn ring(&self) {
        self.bell.ring();
    }

    /// Whether calls wait that the application's thread has not taken.
    pub(crate) fn calls_waiting(&self) -> bool {
        !self.calls.lock().is_empty()
    }

    /// After the loop has ended: everything it left, calls and unread replies.
    pub(crate) fn drain(&self, calls: &mut VecDeque<Call<A>>) -> Vec<Reply<A::Tlv>> {
        self.take(calls);
        self.has_replies.store(false, Ordering::Release);
        std::mem::take(&mut *self.replies.lock())
    }
}
