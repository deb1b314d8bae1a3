//! A Rust application for driving the engine in tests: TLVs are boxed byte vectors, the
//! database is a BTreeMap, and every callback is recorded.

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
        self.rec.lock().acks += 1;
    }
    fn free(&mut self, _t: Buf) {
        self.rec.lock().frees += 1;
    }
    fn freer(&self) -> junos_sync::Freer<Buf> {
        let r = self.rec.clone();
        std::sync::Arc::new(move |_t: Buf| r.lock().frees += 1)
    }
    fn get_next(&mut self, cursor: Option<u32>) -> Option<(u32, Option<Buf>)> {
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
        if up {
            r.ups += 1
        } else {
            r.downs += 1
        }
    }
    fn init_sync_done(&mut self, n: usize) {
        self.rec.lock().sync_done.push(n);
    }
    fn bind_done(&mut self, port: u16) {
        self.rec.lock().port = port;
    }
    fn db_clear(&mut self) {
        let mut r = self.rec.lock();
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
    pub ctx: Option<Context<TestApp>>,
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
        let app = TestApp {
            rec: rec.clone(),
            master_db: db.clone(),
            walk_can: true,
            allocated: allocated.clone(),
            decode_delay_us: decode_delay_us.clone(),
        };
        let ctx = Context::new(cfg, app, logger(&rec)).expect("init");
        Side { rec, db, allocated, decode_delay_us, ctx: Some(ctx) }
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
        if let Some(c) = self.ctx.take() {
            c.exit(());
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
