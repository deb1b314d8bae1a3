//! The one test application of the engine tests. A master's database is a table of keys and
//! values its resync walk reads; what it queues is database operations or tags of any size
//! (tests/common/tlv.rs); a backup applies operations to its own table. Every callback is
//! recorded in the node's book, every TLV in its ledger (tests/common/ledger.rs), and every
//! callback must run on the one thread the mode says (the loop thread, or the node's
//! application thread in dispatch mode); `bind_done` may also run inside `start` on its
//! caller's thread, and the freer inside `queue` (an overflow) and inside `exit`.

#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;

use junos_sync::{App, Freer, Logger};
use parking_lot::Mutex;

use crate::common::book::{Book, LOG_KEEP, QUIET_LOG_KEEP};
use crate::common::ledger::{self, Site};
use crate::common::mode::Mode;
use crate::common::tlv::{op_payload, parse, Tag};

/// Callbacks that panic when their bit is set in `State::panic_on`.
pub const PANIC_DECODE: u32 = 1;
pub const PANIC_ACK: u32 = 2;

/// Run at the start of every callback (its name given), on the callback's thread: a test's way
/// into the context from inside one.
pub type Hook = Box<dyn FnMut(&'static str) + Send>;

/// What a node's application and its test share.
pub struct State {
    pub book: Mutex<Book>,
    /// Master: the database the resync walk reads, key -> value.
    pub db: Mutex<BTreeMap<u32, u32>>,
    /// Master: payload bytes of each walked entry.
    pub walk_len: AtomicUsize,
    pub(crate) next_id: AtomicU64,
    pub panic_on: AtomicU32,
    /// Backup: while set, decode waits (a stalled application).
    pub hold: AtomicBool,
    /// Backup: microseconds each decode takes (a slow application).
    pub decode_delay_us: AtomicUsize,
    pub mode: Mode,
    /// "master" or "backup" and the mode, for messages.
    pub name: String,
    /// The test's thread, which made the node.
    pub(crate) test_thread: ThreadId,
    /// Where every callback runs: the application thread (dispatch mode), or the loop thread
    /// (thread mode: whichever ran the first callback).
    pub(crate) callback_thread: Mutex<Option<ThreadId>>,
    /// The thread that runs `exit`.
    pub(crate) exit_thread: Mutex<Option<ThreadId>>,
    /// Called first thing by every callback but the logger and the freer (see `Hook`).
    pub hook: Mutex<Option<Hook>>,
}

thread_local! {
    /// The node (its state's address) inside whose `queue`, or `start`, this thread is.
    pub(crate) static IN_QUEUE: Cell<usize> = const { Cell::new(0) };
    pub(crate) static IN_START: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as inside a call of the node at `key` while it lives.
pub(crate) struct Inside(&'static std::thread::LocalKey<Cell<usize>>);

impl Inside {
    pub(crate) fn enter(key: &'static std::thread::LocalKey<Cell<usize>>, st: &State) -> Inside {
        key.with(|c| c.set(st as *const State as usize));
        Inside(key)
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.with(|c| c.set(0));
    }
}

impl State {
    fn addr(&self) -> usize {
        self as *const State as usize
    }

    /// A callback runs: on the mode's callback thread, or it is a violation. Then the test's
    /// hook, if it set one (taken out while it runs: no lock is held).
    fn on_callback(&self, what: &'static str) {
        self.check_thread(what);
        let hook = self.hook.lock().take();
        if let Some(mut h) = hook {
            h(what);
            let mut slot = self.hook.lock();
            if slot.is_none() {
                *slot = Some(h);
            }
        }
    }

    fn check_thread(&self, what: &str) {
        let me = std::thread::current().id();
        let mut t = self.callback_thread.lock();
        match *t {
            Some(c) if c == me => return,
            None if self.mode == Mode::Thread && me != self.test_thread => {
                *t = Some(me);
                return;
            }
            _ => {}
        }
        let expected = *t;
        drop(t);
        self.book.lock().violation(format!(
            "{}: {what} ran on thread {me:?}, not the callback thread ({expected:?}) of {:?} mode",
            self.name, self.mode
        ));
    }

    pub(crate) fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// The freer: inside `queue` (the backlog overflowed) or `exit` (TLVs that never reached
    /// the loop), on the thread making that call.
    fn freed_by_freer(&self, t: Tag) {
        let me = std::thread::current().id();
        let in_queue = IN_QUEUE.with(Cell::get) == self.addr();
        let exit_thread = *self.exit_thread.lock();
        let mut b = self.book.lock();
        let site = if in_queue {
            Site::QueueDrop
        } else if b.exiting && exit_thread == Some(me) {
            Site::ExitStray
        } else {
            b.violation(format!("{}: the freer ran on {me:?} outside queue and exit (TLV {:#x})", self.name, t.id));
            Site::Free
        };
        b.on_free(t.id, site);
    }
}

/// The application: every callback recorded in the node's book.
pub struct Tracked {
    pub(crate) st: Arc<State>,
}

impl App for Tracked {
    type Tlv = Tag;
    type Cursor = u32;

    fn decode(&mut self, p: &mut [u8]) {
        self.st.on_callback("decode");
        while self.st.hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_micros(200));
        }
        let delay = self.st.decode_delay_us.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay as u64));
        }
        if self.st.panic_on.load(Ordering::SeqCst) & PANIC_DECODE != 0 {
            self.st.book.lock().failed = true;
            panic!("test application: decode panics on purpose");
        }
        let parsed = parse(p);
        {
            let mut b = self.st.book.lock();
            b.decoded.push(parsed.map_or(u64::MAX, |(id, _)| id));
            match parsed {
                Some((_, Some((k, 0)))) => {
                    b.table.remove(&k);
                }
                Some((_, Some((k, v)))) => {
                    b.table.insert(k, v);
                }
                _ => {}
            }
        }
        if let Some((id, _)) = parsed {
            ledger::applied(id);
        }
    }
    fn ack_notify(&mut self, t: &Tag) {
        self.st.on_callback("ack_notify");
        if self.st.panic_on.load(Ordering::SeqCst) & PANIC_ACK != 0 {
            self.st.book.lock().failed = true;
            panic!("test application: ack_notify panics on purpose");
        }
        self.st.book.lock().on_ack_notify(t.id);
    }
    fn free(&mut self, t: Tag) {
        self.st.on_callback("free");
        self.st.book.lock().on_free(t.id, Site::Free);
    }
    fn freer(&self) -> Freer<Tag> {
        let st = self.st.clone();
        Arc::new(move |t: Tag| st.freed_by_freer(t))
    }
    fn get_next(&mut self, cursor: Option<u32>) -> Option<(u32, Option<Tag>)> {
        self.st.on_callback("get_next");
        if cursor.is_none() {
            self.st.book.lock().on_walk_start();
        }
        let db = self.st.db.lock();
        let next = match cursor {
            None => db.iter().next(),
            Some(c) => db.range(c + 1..).next(),
        };
        next.map(|(&k, &v)| {
            let id = self.st.new_id();
            self.st.book.lock().on_walked(id);
            (k, Some(Tag { id, data: op_payload(id, k, v, self.st.walk_len.load(Ordering::Relaxed)) }))
        })
    }
    fn conn_status(&mut self, up: bool) {
        self.st.on_callback("conn_status");
        let mut b = self.st.book.lock();
        if up {
            b.ups += 1;
        } else {
            b.downs += 1;
        }
    }
    fn init_sync_done(&mut self, n: usize) {
        self.st.on_callback("init_sync_done");
        let mut b = self.st.book.lock();
        b.sync_done.push(n);
        if b.is_master {
            b.on_walk_done(n);
        } else {
            let n = b.table.len();
            b.sizes_at_done.push(n);
        }
    }
    fn bind_done(&mut self, port: u16) {
        if IN_START.with(Cell::get) != self.st.addr() {
            self.st.on_callback("bind_done");
        }
        self.st.book.lock().port = port;
    }
    fn db_clear(&mut self) {
        self.st.on_callback("db_clear");
        let mut b = self.st.book.lock();
        b.clears += 1;
        let n = b.table.len();
        b.sizes_at_clear.push(n);
        b.table.clear();
    }
    fn can_walk(&self) -> bool {
        true
    }
    fn can_decode(&self) -> bool {
        true
    }
}

pub(crate) fn logger(st: &Arc<State>, print: bool) -> Logger {
    let st = st.clone();
    let keep = if print { LOG_KEEP } else { QUIET_LOG_KEEP };
    Arc::new(move |m: &str| {
        if print {
            eprintln!("[log {}] {m}", st.name);
        }
        let mut b = st.book.lock();
        if m.contains("backlog over its limit") {
            b.on_overflow();
        }
        b.log_lines += 1;
        if b.logs.len() < keep {
            b.logs.push(m.to_string());
        }
    })
}
