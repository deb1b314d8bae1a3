//! Issue 17, finding 10: a dispatch-mode master whose application does not dispatch (stuck, or
//! busy elsewhere) while unkeyed peers cycle sessions through its port. Each session used to
//! leave its calls (UP, the walk's requests, DOWN) queued for the application, about 120 B a
//! session, without bound. Sessions the application never saw now leave nothing behind.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
    // The application does not dispatch while peers come and go, each a new backup session
    // that gets a WELCOME (a full resync starts: the walk is asked for), then closes.
    let t0 = Instant::now();
    for s in 0..SESSIONS {
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
        while link(&ctx) != LinkState::Down {
            assert!(Instant::now() < end, "session {s}: the master never saw the peer go");
            std::thread::sleep(Duration::from_micros(200));
        }
    }
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
    assert!(u <= 2, "{u} sessions the application never saw were kept for it");
    ctx.exit(());
}
