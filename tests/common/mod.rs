//! A Rust application for driving the engine in tests: TLVs are boxed byte vectors, the
//! database is a BTreeMap, and every callback is recorded.
//!
//! With `JUNOS_SYNC_TEST_DISPATCH=1` every `Side` runs in dispatch mode: a thread of its own
//! plays the application's event loop (polls the context's descriptor, dispatches, exits), and
//! every callback that runs anywhere else is counted in `Record::off_thread`, which `exit`
//! checks.

#![allow(dead_code)]

pub mod proxy;
pub mod tracked;
pub mod wire_peer;

/// xorshift64*: seeded schedules and inputs without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// An index below `n`.
    pub fn pick(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
}

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use junos_sync::{App, Config, Context, Logger, Tlv};
use parking_lot::Mutex;

pub struct Buf {
    pub ty: u32,
    pub data: Vec<u8>,
}

impl Tlv for Buf {
    fn tlv_type(&self) -> u32 {
        self.ty
    }
    fn payload(&self) -> &[u8] {
        &self.data
    }
}

#[derive(Default)]
pub struct Record {
    pub decoded: Vec<Vec<u8>>,
    pub db: BTreeMap<u32, u32>,
    pub acks: usize,
    pub frees: usize,
    pub ups: usize,
    pub downs: usize,
    pub clears: usize,
    pub sync_done: Vec<usize>,
    pub port: u16,
    pub logs: Vec<String>,
    /// Dispatch mode: the application's thread, and callbacks that ran on another.
    pub app_thread: Option<std::thread::ThreadId>,
    pub off_thread: usize,
}

impl Record {
    fn on_app_thread(&mut self) {
        if self.app_thread.is_some_and(|t| t != std::thread::current().id()) {
            self.off_thread += 1;
        }
    }
}

/// Whether the tests run in dispatch mode (`JUNOS_SYNC_TEST_DISPATCH=1`).
pub fn dispatch_mode() -> bool {
    std::env::var("JUNOS_SYNC_TEST_DISPATCH").is_ok_and(|v| v == "1")
}

pub type Shared = Arc<Mutex<Record>>;

/// Encodes a db op: key, value (value 0 = delete).
pub fn op(key: u32, value: u32) -> Buf {
    let mut d = key.to_be_bytes().to_vec();
    d.extend_from_slice(&value.to_be_bytes());
    Buf { ty: 1, data: d }
}

pub struct TestApp {
    pub rec: Shared,
    /// Master's database to walk (key -> value), snapshot at walk start.
    pub master_db: Arc<Mutex<BTreeMap<u32, u32>>>,
    pub walk_can: bool,
    pub allocated: Arc<AtomicUsize>,
    /// Microseconds each decode sleeps: a slow application.
    pub decode_delay_us: Arc<AtomicUsize>,
}

impl App for TestApp {
    type Tlv = Buf;
    type Cursor = u32;

    fn decode(&mut self, p: &mut [u8]) {
        let delay = self.decode_delay_us.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_micros(delay as u64));
        }
        let mut r = self.rec.lock();
        r.on_app_thread();
        r.decoded.push(p.to_vec());
        if p.len() == 8 {
            let k = u32::from_be_bytes(p[0..4].try_into().unwrap());
            let v = u32::from_be_bytes(p[4..8].try_into().unwrap());
            if v == 0 {
                r.db.remove(&k);
            } else {
                r.db.insert(k, v);
            }
        }
    }
    fn ack_notify(&mut self, _t: &Buf) {
        let mut r = self.rec.lock();
        r.on_app_thread();
        r.acks += 1;
    }
    fn free(&mut self, _t: Buf) {
        let mut r = self.rec.lock();
        r.on_app_thread();
        r.frees += 1;
    }
    fn freer(&self) -> junos_sync::Freer<Buf> {
        let r = self.rec.clone();
        std::sync::Arc::new(move |_t: Buf| r.lock().frees += 1)
    }
    fn get_next(&mut self, cursor: Option<u32>) -> Option<(u32, Option<Buf>)> {
        self.rec.lock().on_app_thread();
        let db = self.master_db.lock();
        let next = match cursor {
            None => db.iter().next(),
            Some(c) => db.range(c + 1..).next(),
        };
        next.map(|(&k, &v)| {
            self.allocated.fetch_add(1, Ordering::SeqCst);
            (k, Some(op(k, v)))
        })
    }
    fn conn_status(&mut self, up: bool) {
        let mut r = self.rec.lock();
        r.on_app_thread();
        if up {
            r.ups += 1
        } else {
            r.downs += 1
        }
    }
    fn init_sync_done(&mut self, n: usize) {
        let mut r = self.rec.lock();
        r.on_app_thread();
        r.sync_done.push(n);
    }
    fn bind_done(&mut self, port: u16) {
        self.rec.lock().port = port;
    }
    fn db_clear(&mut self) {
        let mut r = self.rec.lock();
        r.on_app_thread();
        r.clears += 1;
        r.db.clear();
    }
    fn can_walk(&self) -> bool {
        self.walk_can
    }
    fn can_decode(&self) -> bool {
        true
    }
}

pub struct Side {
    pub rec: Shared,
    pub db: Arc<Mutex<BTreeMap<u32, u32>>>,
    pub allocated: Arc<AtomicUsize>,
    pub decode_delay_us: Arc<AtomicUsize>,
    pub ctx: Option<Arc<Context<TestApp>>>,
    app_loop: Option<AppLoop>,
}

/// Dispatch mode: the thread that plays the application's event loop.
struct AppLoop {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl AppLoop {
    fn spawn(ctx: Arc<Context<TestApp>>, rec: Shared) -> AppLoop {
        let fd = ctx.enable_dispatch().expect("dispatch mode");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            rec.lock().app_thread = Some(std::thread::current().id());
            tx.send(()).unwrap();
            loop {
                let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd; a short timeout so that `stop` is seen promptly.
                unsafe { libc::poll(&mut p, 1, 5) };
                if st.load(Ordering::SeqCst) {
                    // Exit runs where the callbacks run, as the API asks in dispatch mode.
                    ctx.exit(());
                    return;
                }
                let _ = ctx.dispatch();
            }
        });
        rx.recv().unwrap();
        AppLoop { stop, thread }
    }
}

pub fn logger(rec: &Shared) -> Logger {
    let r = rec.clone();
    Arc::new(move |m: &str| {
        eprintln!("[log] {m}");
        r.lock().logs.push(m.to_string());
    })
}

impl Side {
    pub fn new(cfg: Config) -> Side {
        let rec: Shared = Arc::default();
        let db = Arc::new(Mutex::new(BTreeMap::new()));
        let allocated = Arc::new(AtomicUsize::new(0));
        let decode_delay_us = Arc::new(AtomicUsize::new(0));
        let mut s = Side { rec, db, allocated, decode_delay_us, ctx: None, app_loop: None };
        let ctx = Arc::new(Context::new(cfg, s.app(), logger(&s.rec)).expect("init"));
        if dispatch_mode() {
            s.app_loop = Some(AppLoop::spawn(ctx.clone(), s.rec.clone()));
        }
        s.ctx = Some(ctx);
        s
    }

    /// An application over this side's records and database (for init and switchover).
    pub fn app(&self) -> TestApp {
        TestApp {
            rec: self.rec.clone(),
            master_db: self.db.clone(),
            walk_can: true,
            allocated: self.allocated.clone(),
            decode_delay_us: self.decode_delay_us.clone(),
        }
    }

    /// Turns a backup into the master (its decoded table becomes the database it walks).
    pub fn promote(&self, cfg: Config) {
        *self.db.lock() = self.rec.lock().db.clone();
        self.rec.lock().port = 0;
        self.ctx().switchover(cfg, self.app()).expect("switchover");
        // Dispatch mode: bind_done after a switchover comes with the next dispatch.
        wait_for("bind_done of the switchover", 10, || self.rec.lock().port != 0);
    }

    pub fn ctx(&self) -> &Context<TestApp> {
        self.ctx.as_ref().unwrap()
    }

    /// Master side: apply to own db and queue.
    pub fn put(&self, k: u32, v: u32, ack: bool) {
        if v == 0 {
            self.db.lock().remove(&k);
        } else {
            self.db.lock().insert(k, v);
        }
        self.allocated.fetch_add(1, Ordering::SeqCst);
        assert!(self.ctx().queue(op(k, v), ack).is_ok());
    }

    pub fn exit(&mut self) {
        let Some(c) = self.ctx.take() else { return };
        match self.app_loop.take() {
            Some(l) => {
                l.stop.store(true, Ordering::SeqCst);
                l.thread.join().expect("application thread");
                let off = self.rec.lock().off_thread;
                assert_eq!(off, 0, "{off} callbacks ran off the application's thread");
            }
            None => c.exit(()),
        }
    }
}

pub fn master_cfg(no_resync: bool) -> Config {
    Config::new(true, no_resync, 0x7f00_0001, 0, 2)
}

pub fn backup_cfg(port: u16, no_resync: bool) -> Config {
    Config::new(false, no_resync, 0x7f00_0001, port, 2)
}

pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}
