//! Addresses end to end, on the engine (`Context::set_address`, what `junos_sync_set_address`
//! calls): a pair over `::1`, and a dual-stack master on `::` reached over IPv4 and then IPv6,
//! each unkeyed and keyed, each through a full resync, a stream, a cut and the partial resync
//! after it. The status shows each peer as what it is (an IPv4 backup of `::` as IPv4).
//!
//! The cut: the backup's decode blocks, and in thread mode its loop with it, until the master
//! has declared the backup dead (keepalive time 1 s) and reported DOWN; then the backup finds
//! its connection gone, reconnects, and resumes after what it applied, which the master still
//! holds: a partial resync, no clear of the backup's table, nothing lost.
//!
//! Skipped (saying so) where `::1` cannot be bound. A small application of its own, not
//! tests/common's: only what these tests look at.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use junos_sync::{App, Config, Context, Freer, Logger, Stats, Tlv};
use parking_lot::{Condvar, Mutex};

const KEY: &[u8] = b"addresses-test-key-0123456789abc";
const KEEPALIVE_S: u32 = 1;

struct Entry(Vec<u8>);

impl Tlv for Entry {
    fn tlv_type(&self) -> u32 {
        1
    }
    fn payload(&self) -> &[u8] {
        &self.0
    }
}

/// A key and a value; value 0 deletes.
fn entry(k: u32, v: u32) -> Entry {
    Entry([k.to_be_bytes(), v.to_be_bytes()].concat())
}

#[derive(Default)]
struct Rec {
    /// Backup: what it applied.
    table: BTreeMap<u32, u32>,
    clears: usize,
    ups: usize,
    downs: usize,
    synced: usize,
    port: u16,
    logs: Vec<String>,
    bad: usize,
}

/// Closed: decode waits (and with it, in thread mode, the backup's loop).
#[derive(Default)]
struct Gate {
    closed: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn set(&self, closed: bool) {
        *self.closed.lock() = closed;
        self.cv.notify_all();
    }
}

/// The application of one side.
struct Peer {
    rec: Arc<Mutex<Rec>>,
    /// Master: its database, which the resync walks.
    db: Arc<Mutex<BTreeMap<u32, u32>>>,
    gate: Arc<Gate>,
}

impl App for Peer {
    type Tlv = Entry;
    type Cursor = u32;

    fn decode(&mut self, p: &mut [u8]) {
        let mut closed = self.gate.closed.lock();
        while *closed {
            self.gate.cv.wait(&mut closed);
        }
        drop(closed);
        let mut r = self.rec.lock();
        if p.len() != 8 {
            r.bad += 1;
            return;
        }
        let word = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        match word(4) {
            0 => r.table.remove(&word(0)),
            v => r.table.insert(word(0), v),
        };
    }
    fn ack_notify(&mut self, _: &Entry) {}
    fn free(&mut self, _: Entry) {}
    fn freer(&self) -> Freer<Entry> {
        Arc::new(drop)
    }
    fn get_next(&mut self, cursor: Option<u32>) -> Option<(u32, Option<Entry>)> {
        let from = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        let db = self.db.lock();
        let (&k, &v) = db.range((from, Bound::Unbounded)).next()?;
        Some((k, Some(entry(k, v))))
    }
    fn conn_status(&mut self, up: bool) {
        let mut r = self.rec.lock();
        if up {
            r.ups += 1;
        } else {
            r.downs += 1;
        }
    }
    fn init_sync_done(&mut self, _: usize) {
        self.rec.lock().synced += 1;
    }
    fn bind_done(&mut self, port: u16) {
        self.rec.lock().port = port;
    }
    fn db_clear(&mut self) {
        let mut r = self.rec.lock();
        r.table.clear();
        r.clears += 1;
    }
    fn can_walk(&self) -> bool {
        true
    }
    fn can_decode(&self) -> bool {
        true
    }
}

/// One side: its application's records and its context.
struct Node {
    rec: Arc<Mutex<Rec>>,
    db: Arc<Mutex<BTreeMap<u32, u32>>>,
    gate: Arc<Gate>,
    ctx: Option<Context<Peer>>,
}

impl Node {
    /// A started context for `cfg`, at `address` (`set_address`) when given, keyed when asked.
    fn start(cfg: Config, address: Option<(&str, u16)>, keyed: bool) -> Node {
        let rec = Arc::new(Mutex::new(Rec::default()));
        let db = Arc::default();
        let gate = Arc::new(Gate::default());
        let app = Peer { rec: rec.clone(), db: Arc::clone(&db), gate: gate.clone() };
        let r = rec.clone();
        let logger: Logger = Arc::new(move |m: &str| {
            eprintln!("[log] {m}");
            r.lock().logs.push(m.to_string());
        });
        let ctx = Context::new(cfg, app, logger).expect("init");
        if keyed {
            ctx.set_auth_key(KEY).expect("key");
        }
        if let Some((a, port)) = address {
            ctx.set_address(a, port).expect("set_address");
        }
        ctx.start().expect("start");
        Node { rec, db, gate, ctx: Some(ctx) }
    }

    fn ctx(&self) -> &Context<Peer> {
        self.ctx.as_ref().expect("running")
    }

    fn put(&self, k: u32, v: u32, ack: bool) {
        self.db.lock().insert(k, v);
        assert!(self.ctx().queue(entry(k, v), ack).is_ok(), "queue");
    }

    fn stats(&self) -> Stats {
        self.ctx().stats().expect("stats")
    }

    fn peer_ip(&self) -> Option<IpAddr> {
        self.ctx().status().expect("status").peer.map(|a| a.ip())
    }

    fn ups_downs(&self) -> (usize, usize) {
        let r = self.rec.lock();
        (r.ups, r.downs)
    }

    fn logged(&self, needle: &str) -> bool {
        self.rec.lock().logs.iter().any(|l| l.contains(needle))
    }

    fn exit(&mut self) {
        self.gate.set(false);
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

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn ipv6_loopback() -> bool {
    let ok = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !ok {
        eprintln!("skipped: no IPv6 on loopback (cannot bind ::1)");
    }
    ok
}

fn master(address: &str, keyed: bool, entries: u32) -> Node {
    let m = Node::start(Config::new(true, false, 0, 0, KEEPALIVE_S), Some((address, 0)), keyed);
    assert_ne!(m.rec.lock().port, 0, "bind_done");
    for k in 0..entries {
        m.put(k, k + 1, false);
    }
    m
}

/// A backup of the master at `address` (`set_address`; `None`: the 1.0 way, IPv4 127.0.0.1 in
/// the state). The state has no address or port when `set_address` gives them.
fn backup(address: Option<&str>, port: u16, keyed: bool) -> Node {
    match address {
        Some(a) => Node::start(Config::new(false, false, 0x7f00_0001, 1, KEEPALIVE_S), Some((a, port)), keyed),
        None => Node::start(Config::new(false, false, 0x7f00_0001, port, KEEPALIVE_S), None, keyed),
    }
}

/// Waits until `b` holds exactly `m`'s database.
fn converged(m: &Node, b: &Node) {
    wait_for("the backup's table to equal the master's", || *m.db.lock() == b.rec.lock().table);
}

/// A backup new to the master: its full resync, then `n` changes streamed (every tenth
/// acknowledged) from key `from`.
fn resync_and_stream(m: &Node, b: &Node, from: u32, n: u32) {
    wait_for("the initial resync", || b.rec.lock().synced == 1);
    assert_eq!(b.rec.lock().clears, 1);
    for k in 0..n {
        m.put(from + k % (n / 2), k + 1, k % 10 == 0);
    }
    converged(m, b);
}

/// The cut and the partial resync after it, with changes queued during the cut and after it.
fn cut_and_resume(m: &Node, b: &Node, from: u32) {
    let s0 = m.stats();
    let (m_ups, m_downs) = m.ups_downs();
    let (b_ups, clears) = (b.ups_downs().0, b.rec.lock().clears);
    b.gate.set(true);
    for k in from..from + 100 {
        m.put(k, k, false);
    }
    wait_for("the master to declare the stalled backup dead", || m.rec.lock().downs > m_downs);
    assert!(m.logged("declaring it dead"));
    for k in from + 100..from + 200 {
        m.put(k, k, false);
    }
    b.gate.set(false);
    wait_for("the backup to come back", || b.ups_downs().0 > b_ups && m.ups_downs().0 > m_ups);
    converged(m, b);
    let s1 = m.stats();
    assert_eq!(s1.partial_resyncs, s0.partial_resyncs + 1, "the session resumed");
    assert_eq!(s1.full_resyncs, s0.full_resyncs, "no full resync after the cut");
    assert_eq!(b.rec.lock().clears, clears, "the backup's table was not cleared");
    assert_eq!(b.rec.lock().bad, 0);
    for k in from + 200..from + 300 {
        m.put(k, k, true);
    }
    converged(m, b);
}

fn pair_over_ipv6_loopback(keyed: bool) {
    if !ipv6_loopback() {
        return;
    }
    let mut m = master("::1", keyed, 3000);
    let port = m.rec.lock().port;
    assert!(!m.logged("WARNING: listening on"), "::1 is loopback");
    let mut b = backup(Some("::1"), port, keyed);
    resync_and_stream(&m, &b, 10_000, 3000);
    assert_eq!(m.peer_ip(), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    let st = b.ctx().status().unwrap();
    assert_eq!(st.peer.map(|a| (a.ip(), a.port())), Some((IpAddr::V6(Ipv6Addr::LOCALHOST), port)));
    assert_eq!(st.peer_address().as_deref(), Some("::1"));
    assert!(b.logged(&format!("connected to master [::1]:{port}")));
    assert_eq!(st.keyed, keyed);
    cut_and_resume(&m, &b, 20_000);
    assert_eq!(m.stats().auth_failures, 0);
    b.exit();
    m.exit();
}

#[test]
fn pair_over_ipv6_loopback_unkeyed() {
    pair_over_ipv6_loopback(false);
}

#[test]
fn pair_over_ipv6_loopback_keyed() {
    pair_over_ipv6_loopback(true);
}

fn dual_stack_master(keyed: bool) {
    if !ipv6_loopback() {
        return;
    }
    let mut m = master("::", keyed, 2000);
    let port = m.rec.lock().port;
    assert_eq!(
        m.logged(&format!("WARNING: listening on [::]:{port} without an authentication key")),
        !keyed,
        ":: is not loopback: warned unkeyed, not keyed"
    );

    // Over IPv4, as a 1.0 backup connects: the master shows it as IPv4, not ::ffff:127.0.0.1.
    let mut a = backup(None, port, keyed);
    resync_and_stream(&m, &a, 10_000, 2000);
    assert_eq!(m.peer_ip(), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(a.peer_ip(), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    cut_and_resume(&m, &a, 20_000);
    a.exit();
    wait_for("the master to see the IPv4 backup go", || m.ups_downs().0 == m.ups_downs().1);

    // Over IPv6, on the same listener: a backup new to the master, so a full resync first.
    let mut b = backup(Some("::1"), port, keyed);
    resync_and_stream(&m, &b, 30_000, 2000);
    assert_eq!(m.peer_ip(), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    cut_and_resume(&m, &b, 40_000);
    let s = m.stats();
    assert_eq!((s.full_resyncs, s.partial_resyncs), (2, 2));
    b.exit();
    m.exit();
}

#[test]
fn dual_stack_master_unkeyed() {
    dual_stack_master(false);
}

#[test]
fn dual_stack_master_keyed() {
    dual_stack_master(true);
}
