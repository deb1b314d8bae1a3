//! An application that knows every TLV by name: each one carries a unique id in its first 8
//! payload bytes, and the book records which ids were created, freed (and how often),
//! acknowledged and decoded. "Freed exactly once" and "never ack-notified before delivery" are
//! then exact checks, not counts that a double free and a leak could balance.
//!
//! Callbacks can be told to panic (`PANIC_*`), to kill the loop thread on purpose.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use junos_sync::{App, Config, Context, Error, Logger, Stats, Tlv};
use parking_lot::Mutex;

/// Every payload carries this after its id, so a sniffer can tell application bytes at a glance.
pub const MARK: &[u8; 8] = b"SECRET!!";
/// Shortest payload: id and mark.
pub const MIN_LEN: usize = 16;

pub struct Tag {
    pub id: u64,
    pub data: Vec<u8>,
}

impl Tlv for Tag {
    fn tlv_type(&self) -> u32 {
        7
    }
    fn payload(&self) -> &[u8] {
        &self.data
    }
}

fn pattern(id: u64, i: usize) -> u8 {
    (id.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8
}

/// The payload of TLV `id`: the id, the mark, then `len - 16` pattern bytes.
pub fn payload(id: u64, len: usize) -> Vec<u8> {
    let len = len.max(MIN_LEN);
    let mut d = Vec::with_capacity(len);
    d.extend_from_slice(&id.to_le_bytes());
    d.extend_from_slice(MARK);
    d.extend((MIN_LEN..len).map(|i| pattern(id, i)));
    d
}

/// The id a payload names, if it is one of ours, intact.
pub fn id_of(p: &[u8]) -> Option<u64> {
    if p.len() < MIN_LEN || &p[8..16] != MARK {
        return None;
    }
    let id = u64::from_le_bytes(p[..8].try_into().unwrap());
    p.iter().enumerate().skip(MIN_LEN).all(|(i, &b)| b == pattern(id, i)).then_some(id)
}

/// Whether `hay` contains application bytes: the mark of any payload.
pub fn leaks_payload(hay: &[u8]) -> bool {
    hay.windows(MARK.len()).any(|w| w == MARK)
}

#[derive(Default)]
pub struct Book {
    /// Ids of every TLV made (queued by the test or walked), in order.
    pub allocated: Vec<u64>,
    pub freed: HashMap<u64, u32>,
    /// Ids ack-notified, in order.
    pub acked: Vec<u64>,
    /// Backup: ids decoded, in order (`u64::MAX` for a payload that is not intact).
    pub decoded: Vec<u64>,
    pub ups: usize,
    pub downs: usize,
    pub clears: usize,
    pub sync_done: Vec<usize>,
    pub port: u16,
    /// The first `LOG_KEEP` log lines, and how many there were.
    pub logs: Vec<String>,
    pub log_lines: usize,
}

const LOG_KEEP: usize = 5000;
/// Lines a quiet node keeps: its memory is measured.
const QUIET_LOG_KEEP: usize = 200;

impl Book {
    /// Frees so far, counting repeats.
    pub fn frees(&self) -> usize {
        self.freed.values().map(|&n| n as usize).sum()
    }
    pub fn freed_ids(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.freed.keys().copied().collect();
        v.sort_unstable();
        v
    }
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.iter().any(|l| l.contains(needle))
    }
    pub fn count_logged(&self, needle: &str) -> usize {
        self.logs.iter().filter(|l| l.contains(needle)).count()
    }
    /// Every TLV made was freed exactly once, and nothing else was.
    pub fn check_freed_exactly_once(&self) {
        let twice: Vec<_> = self.freed.iter().filter(|(_, &n)| n != 1).collect();
        assert!(twice.is_empty(), "TLVs freed more than once (id, times): {twice:?}");
        let mut made = self.allocated.clone();
        made.sort_unstable();
        let freed = self.freed_ids();
        let leaked: Vec<_> = made.iter().filter(|id| !self.freed.contains_key(id)).take(20).collect();
        assert!(leaked.is_empty(), "{} of {} TLVs never freed, e.g. {leaked:?}", made.len() - freed.len(), made.len());
        assert_eq!(freed, made, "freed ids that were never made");
    }
}

pub type SharedBook = Arc<Mutex<Book>>;

/// Callbacks that panic when their bit is set in `Tracked::panic_on`.
pub const PANIC_DECODE: u32 = 1;
pub const PANIC_ACK: u32 = 2;

pub struct Tracked {
    pub book: SharedBook,
    /// Master: the database the resync walk reads, key -> payload length.
    pub db: Arc<Mutex<BTreeMap<u32, usize>>>,
    pub next_id: Arc<AtomicU64>,
    pub panic_on: Arc<AtomicU32>,
    /// Backup: while set, decode waits (a slow application, for batching acknowledgements).
    pub hold: Arc<AtomicBool>,
}

impl App for Tracked {
    type Tlv = Tag;
    type Cursor = u32;

    fn decode(&mut self, p: &mut [u8]) {
        while self.hold.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        if self.panic_on.load(Ordering::SeqCst) & PANIC_DECODE != 0 {
            panic!("test application: decode panics on purpose");
        }
        self.book.lock().decoded.push(id_of(p).unwrap_or(u64::MAX));
    }
    fn ack_notify(&mut self, t: &Tag) {
        if self.panic_on.load(Ordering::SeqCst) & PANIC_ACK != 0 {
            panic!("test application: ack_notify panics on purpose");
        }
        self.book.lock().acked.push(t.id);
    }
    fn free(&mut self, t: Tag) {
        *self.book.lock().freed.entry(t.id).or_default() += 1;
    }
    fn freer(&self) -> junos_sync::Freer<Tag> {
        let b = self.book.clone();
        Arc::new(move |t: Tag| *b.lock().freed.entry(t.id).or_default() += 1)
    }
    fn get_next(&mut self, cursor: Option<u32>) -> Option<(u32, Option<Tag>)> {
        let db = self.db.lock();
        let next = match cursor {
            None => db.iter().next(),
            Some(c) => db.range(c + 1..).next(),
        };
        next.map(|(&k, &len)| {
            let id = self.next_id.fetch_add(1, Ordering::SeqCst);
            self.book.lock().allocated.push(id);
            (k, Some(Tag { id, data: payload(id, len) }))
        })
    }
    fn conn_status(&mut self, up: bool) {
        let mut b = self.book.lock();
        if up {
            b.ups += 1;
        } else {
            b.downs += 1;
        }
    }
    fn init_sync_done(&mut self, n: usize) {
        self.book.lock().sync_done.push(n);
    }
    fn bind_done(&mut self, port: u16) {
        self.book.lock().port = port;
    }
    fn db_clear(&mut self) {
        self.book.lock().clears += 1;
    }
    fn can_walk(&self) -> bool {
        true
    }
    fn can_decode(&self) -> bool {
        true
    }
}

/// One context with a tracked application.
pub struct Node {
    pub book: SharedBook,
    pub db: Arc<Mutex<BTreeMap<u32, usize>>>,
    pub next_id: Arc<AtomicU64>,
    pub panic_on: Arc<AtomicU32>,
    pub hold: Arc<AtomicBool>,
    pub ctx: Option<Context<Tracked>>,
}

fn book_logger(book: &SharedBook, print: bool) -> Logger {
    let b = book.clone();
    let keep = if print { LOG_KEEP } else { QUIET_LOG_KEEP };
    Arc::new(move |m: &str| {
        if print {
            eprintln!("[log] {m}");
        }
        let mut b = b.lock();
        b.log_lines += 1;
        if b.logs.len() < keep {
            b.logs.push(m.to_string());
        }
    })
}

impl Node {
    pub fn new(cfg: Config) -> Node {
        Node::build(cfg, true)
    }

    /// A node whose log lines are not printed (the test harness keeps printed output in
    /// memory, which a memory measurement must not see) and of which only the first few are kept.
    pub fn quiet(cfg: Config) -> Node {
        Node::build(cfg, false)
    }

    fn build(cfg: Config, print: bool) -> Node {
        let book = SharedBook::default();
        let db = Arc::new(Mutex::new(BTreeMap::new()));
        // Ids of different nodes never collide: a stray free shows up as foreign.
        static NODES: AtomicU64 = AtomicU64::new(1);
        let next_id = Arc::new(AtomicU64::new(NODES.fetch_add(1, Ordering::SeqCst) << 40));
        let panic_on = Arc::new(AtomicU32::new(0));
        let hold = Arc::new(AtomicBool::new(false));
        let app = Tracked {
            book: book.clone(),
            db: db.clone(),
            next_id: next_id.clone(),
            panic_on: panic_on.clone(),
            hold: hold.clone(),
        };
        let ctx = Context::new(cfg, app, book_logger(&book, print)).expect("init");
        Node { book, db, next_id, panic_on, hold, ctx: Some(ctx) }
    }

    pub fn ctx(&self) -> &Context<Tracked> {
        self.ctx.as_ref().expect("context not exited")
    }

    pub fn start(&self) {
        self.ctx().start().expect("start");
    }

    /// Master: the port it listens on.
    pub fn port(&self) -> u16 {
        self.book.lock().port
    }

    pub fn stats(&self) -> Stats {
        self.ctx().stats().expect("stats")
    }

    /// Master: `n` database entries of `len` payload bytes for the resync walk.
    pub fn fill_db(&self, n: u32, len: usize) {
        let mut db = self.db.lock();
        for k in 0..n {
            db.insert(k, len);
        }
    }

    /// A new TLV with a `len`-byte payload, counted as made.
    pub fn tag(&self, len: usize) -> Tag {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        self.book.lock().allocated.push(id);
        Tag { id, data: payload(id, len) }
    }

    /// Queues a new TLV; its id. A refused TLV comes back uncounted (it is the caller's).
    pub fn try_queue(&self, len: usize, ack: bool) -> Result<u64, (Error, Tag)> {
        let t = self.tag(len);
        let id = t.id;
        self.ctx().queue(t, ack).map(|()| id).map_err(|(e, t)| {
            self.book.lock().allocated.retain(|&a| a != t.id);
            (e, t)
        })
    }

    pub fn queue(&self, len: usize, ack: bool) -> u64 {
        self.try_queue(len, ack).map_err(|(e, _)| e).expect("queue")
    }

    pub fn exit(&mut self) {
        if let Some(c) = self.ctx.take() {
            c.exit(());
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.exit();
    }
}
