//! A node: one context running the test application (tests/common/app.rs) in the mode of the
//! test (tests/common/mode.rs). `exit` fails the test with whatever the oracle saw.
//!
//! In dispatch mode every node has an application thread of its own: it polls the context's
//! descriptor, dispatches, and calls `exit`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use junos_sync::{Config, Context, Error, Stats, Status};
use parking_lot::{Mutex, MutexGuard};

use crate::common::app::{logger, Inside, State, Tracked, IN_QUEUE, IN_START};
use crate::common::book::Book;
use crate::common::env::env_lock;
use crate::common::ledger::Undelivered;
use crate::common::mode::{self, Mode};
use crate::common::time::wait_for;
use crate::common::tlv::{op_payload, payload, Tag, OP_LEN};

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
            hook: Mutex::new(None),
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

    /// A reference of its own to the context, for another thread (or a hook: take a `Weak`),
    /// which may outlive the node's `exit`.
    pub fn shared_ctx(&self) -> Arc<Context<Tracked>> {
        self.ctx.clone().expect("context not exited")
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
