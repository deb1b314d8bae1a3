//! The one test application of the engine tests, and a node: one context running it, in the
//! mode of the test (tests/common/mode.rs). A master's database is a table of keys and values
//! its resync walk reads; what it queues is database operations (`put`) or tags of any size
//! (`queue`); a backup applies operations to its own table, and every TLV is tracked by id
//! (tests/common/ledger.rs). `exit` fails the test with whatever the oracle saw.
//!
//! In dispatch mode every node has an application thread of its own: it polls the context's
//! descriptor, dispatches, and calls `exit`. Every callback must run on the one thread the mode
//! says (the loop thread, or that application thread); `bind_done` may also run inside `start`
//! on its caller's thread, and the freer inside `queue` (an overflow) and inside `exit`.

#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use junos_sync::{App, Config, Context, Error, Freer, Logger, Stats, Status};
use parking_lot::{Mutex, MutexGuard};

use crate::common::book::{Book, LOG_KEEP, QUIET_LOG_KEEP};
use crate::common::env::env_lock;
use crate::common::ledger::{self, Site, Undelivered};
use crate::common::mode::{self, Mode};
use crate::common::time::wait_for;
use crate::common::tlv::{op_payload, parse, payload, Tag, OP_LEN};

/// Callbacks that panic when their bit is set in `State::panic_on`.
pub const PANIC_DECODE: u32 = 1;
pub const PANIC_ACK: u32 = 2;

/// What a node's application and its test share.
pub struct State {
    pub book: Mutex<Book>,
    /// Master: the database the resync walk reads, key -> value.
    pub db: Mutex<BTreeMap<u32, u32>>,
    /// Master: payload bytes of each walked entry.
    pub walk_len: AtomicUsize,
    next_id: AtomicU64,
    pub panic_on: AtomicU32,
    /// Backup: while set, decode waits (a stalled application).
    pub hold: AtomicBool,
    /// Backup: microseconds each decode takes (a slow application).
    pub decode_delay_us: AtomicUsize,
    pub mode: Mode,
    /// "master" or "backup" and the mode, for messages.
    pub name: String,
    /// The test's thread, which made the node.
    test_thread: ThreadId,
    /// Where every callback runs: the application thread (dispatch mode), or the loop thread
    /// (thread mode: whichever ran the first callback).
    callback_thread: Mutex<Option<ThreadId>>,
    /// The thread that runs `exit`.
    exit_thread: Mutex<Option<ThreadId>>,
}

thread_local! {
    /// The node (its state's address) inside whose `queue`, or `start`, this thread is.
    static IN_QUEUE: Cell<usize> = const { Cell::new(0) };
    static IN_START: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as inside a call of the node at `key` while it lives.
struct Inside(&'static std::thread::LocalKey<Cell<usize>>);

impl Inside {
    fn enter(key: &'static std::thread::LocalKey<Cell<usize>>, st: &State) -> Inside {
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

    /// A callback runs: on the mode's callback thread, or it is a violation.
    fn on_callback(&self, what: &str) {
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

    fn new_id(&self) -> u64 {
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
    st: Arc<State>,
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
        b.table.clear();
    }
    fn can_walk(&self) -> bool {
        true
    }
    fn can_decode(&self) -> bool {
        true
    }
}

fn logger(st: &Arc<State>, print: bool) -> Logger {
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

/// Dispatch mode: the node's application thread.
struct AppLoop {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl AppLoop {
    fn spawn(ctx: Arc<Context<Tracked>>, st: Arc<State>) -> AppLoop {
        let fd = ctx.enable_dispatch().expect("dispatch mode");
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            *st.callback_thread.lock() = Some(std::thread::current().id());
            tx.send(()).unwrap();
            let mut failed = false;
            loop {
                let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd; a short timeout so that `halt` is seen promptly.
                unsafe { libc::poll(&mut p, 1, 5) };
                if halt.load(Ordering::SeqCst) {
                    // Exit where the callbacks run, as the API asks of dispatch mode.
                    ctx.exit(());
                    return;
                }
                // A failed context fails every dispatch: its loop waits for the exit.
                if !failed && p.revents != 0 {
                    failed = ctx.dispatch().is_err();
                }
            }
        });
        rx.recv().unwrap();
        AppLoop { stop, thread }
    }
}

/// One context running the test application.
pub struct Node {
    pub st: Arc<State>,
    ctx: Option<Arc<Context<Tracked>>>,
    app_loop: Option<AppLoop>,
}

impl std::ops::Deref for Node {
    type Target = State;
    fn deref(&self) -> &State {
        &self.st
    }
}

impl Node {
    /// A node in the running test's mode; its log lines are printed.
    pub fn new(cfg: Config) -> Node {
        Node::build(cfg, true)
    }

    /// A node whose log lines are not printed (the test harness keeps printed output in memory,
    /// which a memory measurement must not see) and of which only the first few are kept.
    pub fn quiet(cfg: Config) -> Node {
        Node::build(cfg, false)
    }

    fn build(cfg: Config, print: bool) -> Node {
        let mode = mode::running().mode;
        // Ids of different nodes never collide: a stray free shows up as foreign.
        static NODES: AtomicU64 = AtomicU64::new(1);
        let role = if cfg.is_master { "master" } else { "backup" };
        let st = Arc::new(State {
            book: Mutex::new(Book { is_master: cfg.is_master, ..Book::default() }),
            db: Mutex::new(BTreeMap::new()),
            walk_len: AtomicUsize::new(OP_LEN),
            next_id: AtomicU64::new(NODES.fetch_add(1, Ordering::SeqCst) << 40),
            panic_on: AtomicU32::new(0),
            hold: AtomicBool::new(false),
            decode_delay_us: AtomicUsize::new(0),
            mode,
            name: format!("{role}, {mode:?} mode").to_lowercase(),
            test_thread: std::thread::current().id(),
            callback_thread: Mutex::new(None),
            exit_thread: Mutex::new(None),
        });
        let ctx = {
            // The environment a context reads at init is the test's that holds the lock.
            let _env = env_lock();
            Context::new(cfg, Tracked { st: st.clone() }, logger(&st, print)).expect("init")
        };
        let ctx = Arc::new(ctx);
        let app_loop = (mode == Mode::Dispatch).then(|| AppLoop::spawn(ctx.clone(), st.clone()));
        Node { st, ctx: Some(ctx), app_loop }
    }

    pub fn ctx(&self) -> &Context<Tracked> {
        self.ctx.as_ref().expect("context not exited")
    }

    pub fn book(&self) -> MutexGuard<'_, Book> {
        self.st.book.lock()
    }

    /// Starts it (a master binds, calling bind_done on this thread).
    pub fn start(&self) {
        self.try_start().expect("start");
    }

    pub fn try_start(&self) -> Result<(), Error> {
        let _in = Inside::enter(&IN_START, &self.st);
        self.ctx().start()
    }

    /// Master: the port it listens on.
    pub fn port(&self) -> u16 {
        self.book().port
    }

    pub fn stats(&self) -> Stats {
        self.ctx().stats().expect("stats")
    }

    pub fn status(&self) -> Status {
        self.ctx().status().expect("status")
    }

    /// Master: keys 1..=n (each its own value) for the resync walk, `len` payload bytes each.
    pub fn fill_db(&self, n: u32, len: usize) {
        assert!(len >= OP_LEN, "a walked entry is an operation: at least {OP_LEN} bytes");
        self.walk_len.store(len, Ordering::Relaxed);
        let mut db = self.db.lock();
        for k in 1..=n {
            db.insert(k, k);
        }
    }

    /// A new tag of `len` payload bytes (not yet the node's: see `try_queue_tlv`).
    pub fn tag(&self, len: usize) -> Tag {
        let id = self.st.new_id();
        Tag { id, data: payload(id, len) }
    }

    /// Queues `t`; its id. A refused TLV comes back, the caller's again.
    pub fn try_queue_tlv(&self, t: Tag, ack: bool) -> Result<u64, (Error, Tag)> {
        let id = t.id;
        self.book().on_queue(id, ack);
        let r = {
            let _in = Inside::enter(&IN_QUEUE, &self.st);
            self.ctx().queue(t, ack)
        };
        r.map(|()| id).map_err(|(e, t)| {
            self.book().on_refused(t.id);
            (e, t)
        })
    }

    pub fn try_queue(&self, len: usize, ack: bool) -> Result<u64, (Error, Tag)> {
        self.try_queue_tlv(self.tag(len), ack)
    }

    /// Queues a new tag of `len` payload bytes; its id.
    pub fn queue(&self, len: usize, ack: bool) -> u64 {
        self.try_queue(len, ack).map_err(|(e, _)| e).expect("queue")
    }

    /// Master: sets `key` to `value` (0: deletes it) in its database and queues the operation;
    /// its id. Refused, the database is as it was and the operation comes back.
    pub fn try_put(&self, key: u32, value: u32, ack: bool) -> Result<u64, (Error, Tag)> {
        let old = if value == 0 { self.db.lock().remove(&key) } else { self.db.lock().insert(key, value) };
        let id = self.st.new_id();
        let t = Tag { id, data: op_payload(id, key, value, OP_LEN) };
        self.try_queue_tlv(t, ack).inspect_err(|_| {
            let mut db = self.db.lock();
            match old {
                Some(v) => db.insert(key, v),
                None => db.remove(&key),
            };
        })
    }

    pub fn put(&self, key: u32, value: u32, ack: bool) -> u64 {
        self.try_put(key, value, ack).map_err(|(e, _)| e).expect("queue")
    }

    /// The test expects this path to free TLVs no backup applied.
    pub fn allow(&self, path: Undelivered) {
        self.book().allowed.insert(path);
    }

    /// Backup: whether its table is the master's database.
    pub fn holds(&self, master: &Node) -> bool {
        self.book().table == *master.db.lock()
    }

    /// An application over this node's state (a switchover brings one).
    pub fn app(&self) -> Tracked {
        Tracked { st: self.st.clone() }
    }

    /// Switches role. Switching to backup, what the master held may be freed undelivered (if
    /// the test allows `Switchover`).
    pub fn switchover(&self, cfg: Config) -> Result<(), Error> {
        {
            let mut b = self.book();
            if b.is_master && !cfg.is_master {
                b.switched_below = Some(self.next_id.load(Ordering::SeqCst));
            }
            b.is_master = cfg.is_master;
        }
        self.ctx().switchover(cfg, self.app())
    }

    /// Turns a backup into the master: its table becomes the database it walks.
    pub fn promote(&self, cfg: Config) {
        *self.db.lock() = self.book().table.clone();
        self.book().port = 0;
        self.switchover(cfg).expect("switchover");
        // Dispatch mode: bind_done after a switchover comes with the next dispatch.
        wait_for("bind_done of the switchover", 10, || self.port() != 0);
    }

    /// Exits (on the application thread in dispatch mode), then fails the test with every
    /// violation the oracle saw and every TLV never freed.
    pub fn exit(&mut self) {
        let Some(ctx) = self.ctx.take() else { return };
        {
            let mut b = self.book();
            b.exiting = true;
            b.abandoned = std::thread::panicking();
        }
        match self.app_loop.take() {
            Some(l) => {
                *self.exit_thread.lock() = *self.callback_thread.lock();
                l.stop.store(true, Ordering::SeqCst);
                l.thread.join().expect("the application thread");
            }
            None => {
                *self.exit_thread.lock() = Some(std::thread::current().id());
                ctx.exit(());
            }
        }
        drop(ctx);
        if !std::thread::panicking() {
            self.check();
        }
    }

    /// Fails with what the oracle saw so far (every TLV freed only after exit).
    pub fn check(&self) {
        let b = self.book();
        b.check(&self.name);
        if self.ctx.is_none() {
            assert_eq!(b.ups, b.downs, "{}: exited without the DOWN owed for its UP", self.name);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.exit();
    }
}
