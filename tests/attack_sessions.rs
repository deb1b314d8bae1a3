//! Issue 17, finding 10: a dispatch-mode master whose application does not dispatch (stuck, or
//! busy elsewhere) while unkeyed peers cycle sessions through its port. Each session used to
//! leave its calls (UP, the walk's requests, DOWN) queued for the application, about 120 B a
//! session, without bound. Once a few KiB of calls wait (the library's `UNSEEN_KEPT`, 256
//! calls, about 64 sessions), sessions the application never saw leave nothing behind.
//!
//! Finding 3's rest: the lines each admitted session causes ("connected, full resync",
//! "dropping backup") were logged for every session a peer cycled; now 100 of each kind a
//! minute, then counted.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::wire_peer::{hello, Peer};
use junos_sync::{App, Config, Context, Freer, LinkState, Logger, Tlv};

struct Bytes(Vec<u8>);

impl Tlv for Bytes {
    fn tlv_type(&self) -> u32 {
        1
    }
    fn payload(&self) -> &[u8] {
        &self.0
    }
}

/// Counts the link changes it is told of.
struct Counting {
    ups: Arc<AtomicU64>,
    downs: Arc<AtomicU64>,
    port: Arc<AtomicU64>,
}

impl App for Counting {
    type Tlv = Bytes;
    type Cursor = u32;
    fn decode(&mut self, _: &mut [u8]) {}
    fn ack_notify(&mut self, _: &Bytes) {}
    fn free(&mut self, _: Bytes) {}
    fn freer(&self) -> Freer<Bytes> {
        Arc::new(drop)
    }
    fn get_next(&mut self, _: Option<u32>) -> Option<(u32, Option<Bytes>)> {
        None
    }
    fn conn_status(&mut self, up: bool) {
        if up { &self.ups } else { &self.downs }.fetch_add(1, Ordering::SeqCst);
    }
    fn init_sync_done(&mut self, _: usize) {}
    fn bind_done(&mut self, port: u16) {
        self.port.store(port.into(), Ordering::SeqCst);
    }
    fn db_clear(&mut self) {}
    fn can_walk(&self) -> bool {
        true
    }
    fn can_decode(&self) -> bool {
        true
    }
}

fn link(ctx: &Context<Counting>) -> LinkState {
    ctx.status().unwrap().state
}

/// Peers `0..n` each pass the handshake (a full resync starts for each), are shown as the
/// backup, and close, the next only once the master saw the last go.
fn cycle_sessions(ctx: &Context<Counting>, port: u16, n: u64) {
    for s in 0..n {
        let mut p = Peer::connect(port);
        let me = p.s.local_addr().unwrap();
        let w = p.handshake(&hello(0x5e55_0000 + s, 0, 0));
        assert!(w.seq < u64::MAX);
        // The master shows this session before it goes (its status is published every turn),
        // then shows it gone: only then may the next backup take its place.
        let end = Instant::now() + common::time::secs(10);
        while ctx.status().unwrap().peer != Some(me) {
            assert!(Instant::now() < end, "session {s}: never shown");
            std::thread::sleep(Duration::from_micros(200));
        }
        p.close();
        while link(ctx) != LinkState::Down {
            assert!(Instant::now() < end, "session {s}: the master never saw the peer go");
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

#[test]
fn sessions_a_peer_cycles_cost_at_most_100_lines_of_each_kind_a_minute() {
    const SESSIONS: u64 = 300;
    let bound = Arc::new(AtomicU64::new(0));
    let app = Counting { ups: Arc::default(), downs: Arc::default(), port: bound.clone() };
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let l = lines.clone();
    let log: Logger = Arc::new(move |m: &str| l.lock().unwrap().push(m.to_string()));
    let ctx = Context::new(Config::new(true, false, 0x7f00_0001, 0, 30), app, log).unwrap();
    ctx.start().unwrap();
    let port = bound.load(Ordering::SeqCst) as u16;
    cycle_sessions(&ctx, port, SESSIONS);
    assert_eq!(ctx.stats().unwrap().connections, SESSIONS, "every session passed the handshake");
    // Each drop was logged before the master showed the link down, which `cycle_sessions`
    // waited for.
    let count = |pat: &str| lines.lock().unwrap().iter().filter(|m| m.contains(pat)).count();
    let (up, down) = (count("connected, full resync"), count("dropping backup"));
    eprintln!("{SESSIONS} sessions logged {up} connected and {down} dropped lines");
    assert_eq!(up, 100, "the first 100 sessions of the minute are each logged, no more");
    assert_eq!(down, 100, "the first 100 drops of the minute are each logged, no more");
    assert!(lines.lock().unwrap().len() <= 210, "{:?}", lines.lock().unwrap().len());
    ctx.exit(());
}

#[test]
fn sessions_a_stuck_dispatch_mode_master_never_showed_leave_nothing_queued() {
    const SESSIONS: u64 = 1000;
    let (ups, downs) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let bound = Arc::new(AtomicU64::new(0));
    let app = Counting { ups: ups.clone(), downs: downs.clone(), port: bound.clone() };
    let quiet: Logger = Arc::new(|_: &str| {});
    let ctx = Context::new(Config::new(true, false, 0x7f00_0001, 0, 30), app, quiet).unwrap();
    let fd = ctx.enable_dispatch().unwrap();
    ctx.start().unwrap();
    // sync_bind_done_func runs inside start, on this thread, in either mode.
    let port = bound.load(Ordering::SeqCst) as u16;
    assert_ne!(port, 0);
    // The application does not dispatch while peers come and go.
    let t0 = Instant::now();
    cycle_sessions(&ctx, port, SESSIONS);
    eprintln!("{SESSIONS} sessions in {:?}", t0.elapsed());
    assert_eq!(ctx.stats().unwrap().connections, SESSIONS, "every session passed the handshake");
    // Now the application dispatches: what was kept for it.
    let end = Instant::now() + common::time::secs(10);
    loop {
        ctx.dispatch().unwrap();
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut p, 1, 0) } == 0 || Instant::now() > end {
            break;
        }
    }
    let (u, d) = (ups.load(Ordering::SeqCst), downs.load(Ordering::SeqCst));
    eprintln!("after {SESSIONS} sessions the application is told of {u} UPs and {d} DOWNs");
    assert_eq!(u, d, "every UP told has its DOWN");
    // 256 calls of 4 per session, and the one that was current.
    assert!(u <= 66, "{u} sessions the application never saw were kept for it");
    assert!(u > 0, "the first sessions are kept: an application that dispatches sees each");
    ctx.exit(());
}
