//! Speaking the wire format by hand: frames built with the crate's public `proto` module over a
//! raw `std::net::TcpStream`, to attack a live `Context` in the same process; a fake master
//! listener; a tap that forwards a real pair's connection and records both directions; and
//! the kernel's view of a loopback connection's queues.
//!
//! A hand-written peer is a backup to the oracle (tests/common/ledger.rs): every DATA frame it
//! takes (`next_frame`) counts as applied, so that what it then acknowledges may be freed.

#![allow(dead_code)]

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use junos_sync::proto::handshake::{Hello, Role, HANDSHAKE_VERSION};
use junos_sync::proto::noise::{Initiator, Psk};
use junos_sync::proto::seal::{Opener, Sealer};
use junos_sync::proto::wire::{self, push_frame, FrameError, FrameKind, HEADER_LEN};
use parking_lot::Mutex;

use crate::common::ledger;
use crate::common::time::deadline;
use crate::common::tlv::id_of;

/// A frame as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Got {
    pub kind: FrameKind,
    pub aux: u32,
    pub seq: u64,
    pub payload: Vec<u8>,
}

impl Got {
    pub fn hello(&self) -> Hello {
        Hello::decode(&self.payload).expect("a handshake payload")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// One complete frame.
pub fn frame(kind: FrameKind, aux: u32, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_frame(&mut out, kind, aux, seq, payload);
    out
}

/// A header (its CRC right) announcing a `len`-byte frame of `kind`, with no payload behind it.
pub fn bare_header(kind: FrameKind, seq: u64, len: u32) -> Vec<u8> {
    let mut h = wire::encode_header(kind, 0, seq, &[]);
    h[0..4].copy_from_slice(&len.to_le_bytes());
    wire::seal_header(&mut h);
    h.to_vec()
}

/// A backup's HELLO, as release 1.1 sends it (stream version 1: one DATA frame per TLV).
pub fn hello(session: u64, peer_session: u64, seq: u64) -> Hello {
    Hello {
        version: HANDSHAKE_VERSION,
        role: Role::Backup,
        flags: 0,
        keepalive_ms: 2000,
        max_version: 0,
        session,
        peer_session,
        seq,
    }
}

/// A master's WELCOME answering `h`, as release 1.1 sends it (stream version 1).
pub fn welcome(h: &Hello, session: u64, seq: u64) -> Hello {
    Hello {
        version: 1,
        max_version: 0,
        role: Role::Master,
        flags: 0,
        keepalive_ms: h.keepalive_ms,
        session,
        peer_session: h.session,
        seq,
    }
}

pub fn hello_frame(h: &Hello) -> Vec<u8> {
    frame(FrameKind::Hello, 0, 0, &h.encode())
}

/// A frame a peer took: a DATA frame's TLV (a BATCH frame's, every record's) is applied, as
/// far as the oracle knows.
fn taken(f: Got) -> Got {
    match f.kind {
        FrameKind::Data => {
            if let Some(id) = id_of(&f.payload) {
                ledger::applied(id);
            }
        }
        FrameKind::Batch if wire::check_batch(&f.payload, f.aux).is_ok() => {
            for (_, r) in wire::records(&f.payload) {
                if let Some(id) = id_of(&f.payload[r]) {
                    ledger::applied(id);
                }
            }
        }
        _ => {}
    }
    f
}

/// A backup's HELLO offering stream version 2 (BATCH frames), as this release sends it.
pub fn hello_v2(session: u64, peer_session: u64, seq: u64) -> Hello {
    Hello { max_version: 2, ..hello(session, peer_session, seq) }
}

/// A master's WELCOME answering `h` with stream version 2.
pub fn welcome_v2(h: &Hello, session: u64, seq: u64) -> Hello {
    Hello { version: 2, ..welcome(h, session, seq) }
}

/// A BATCH frame of `payloads` (records of `tlv_type` 7) whose first record is `seq`, with its
/// CRC (an unkeyed connection's).
pub fn batch(seq: u64, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut recs = Vec::new();
    for p in payloads {
        recs.extend_from_slice(&wire::record_header(7, p.len()));
        recs.extend_from_slice(p);
        recs.resize(recs.len() + wire::padded(p.len()) - p.len(), 0);
    }
    frame(FrameKind::Batch, payloads.len() as u32, seq, &recs)
}

/// The ids of a BATCH frame's records (intact payloads only).
pub fn batch_ids(f: &Got) -> Vec<u64> {
    wire::check_batch(&f.payload, f.aux).expect("a valid batch");
    wire::records(&f.payload).filter_map(|(_, r)| id_of(&f.payload[r])).collect()
}

/// The first frame of `bytes`, if it is complete (cheap: one frame, however much follows).
pub fn first_frame(bytes: &[u8]) -> Result<Option<Got>, FrameError> {
    if bytes.len() < HEADER_LEN {
        return Ok(None);
    }
    let h = wire::decode_header(bytes[..HEADER_LEN].try_into().unwrap())?;
    if bytes.len() < wire::frame_size(h.len) {
        return Ok(None);
    }
    let p = &bytes[HEADER_LEN..HEADER_LEN + h.len as usize];
    wire::verify(&h, p)?;
    Ok(Some(Got { kind: h.kind, aux: h.aux, seq: h.seq, payload: p.to_vec() }))
}

/// Cuts `bytes` into frames: the complete ones and the length of a partial one at the end.
pub fn parse_frames(bytes: &[u8]) -> Result<(Vec<Got>, usize), FrameError> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(f) = first_frame(&bytes[at..])? {
        at += wire::frame_size(f.payload.len() as u32);
        out.push(f);
    }
    Ok((out, bytes.len() - at))
}

/// A raw peer: writes what it is told, reads frames with deadlines.
pub struct Peer {
    pub s: TcpStream,
    /// Received bytes not yet taken as frames.
    pub buf: Vec<u8>,
    /// Every byte received.
    pub raw: Vec<u8>,
    pub eof: bool,
}

impl Peer {
    pub fn connect(port: u16) -> Peer {
        Peer::over(TcpStream::connect(loopback(port)).expect("connect"))
    }

    pub fn over(s: TcpStream) -> Peer {
        let _ = s.set_nodelay(true);
        Peer { s, buf: Vec::new(), raw: Vec::new(), eof: false }
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.s.write_all(bytes)
    }

    pub fn send_frame(&mut self, kind: FrameKind, aux: u32, seq: u64, payload: &[u8]) -> io::Result<()> {
        self.send(&frame(kind, aux, seq, payload))
    }

    pub fn send_hello(&mut self, h: &Hello) -> io::Result<()> {
        self.send(&hello_frame(h))
    }

    pub fn ack(&mut self, seq: u64) -> io::Result<()> {
        self.send_frame(FrameKind::Ack, 0, seq, &[])
    }

    /// One read of whatever arrives before `deadline`. Ok(false) at end of stream (a reset
    /// counts as one: the peer is gone either way).
    fn read_once(&mut self, deadline: Instant) -> io::Result<bool> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(ErrorKind::TimedOut, "deadline passed"));
        }
        self.s.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 64 * 1024];
        match self.s.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.raw.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                self.eof = true;
                Ok(false)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(io::Error::new(ErrorKind::TimedOut, "deadline passed"))
            }
            Err(e) => Err(e),
        }
    }

    /// The next frame, waiting up to `timeout`; None at end of stream. Panics on a bad frame
    /// or on the deadline.
    pub fn next_frame(&mut self, timeout: Duration) -> Option<Got> {
        let deadline = deadline(timeout);
        loop {
            if let Some(f) = first_frame(&self.buf).expect("the peer sent a valid frame") {
                self.buf.drain(..wire::frame_size(f.payload.len() as u32));
                return Some(taken(f));
            }
            if self.eof {
                return None;
            }
            match self.read_once(deadline) {
                Ok(_) => {}
                Err(e) => panic!("no frame within {timeout:?}: {e} ({} bytes buffered)", self.buf.len()),
            }
        }
    }

    /// The next frame, which must be of `kind`.
    pub fn expect(&mut self, kind: FrameKind, timeout: Duration) -> Got {
        match self.next_frame(timeout) {
            Some(f) if f.kind == kind => f,
            Some(f) => panic!("expected {kind:?}, got {:?} ({})", f.kind, f.text()),
            None => panic!("expected {kind:?}, got the end of the stream"),
        }
    }

    /// Whether the stream ends within `timeout` (what arrives meanwhile is kept). A pause at
    /// the test's own pace, not a deadline: not scaled.
    pub fn ends_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.eof {
            match self.read_once(deadline) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::TimedOut => return false,
                Err(e) => panic!("read: {e}"),
            }
        }
        true
    }

    /// Reads until the end of the stream, waiting up to `timeout` in all; what was not taken
    /// as frames yet. Panics if the stream does not end in time.
    pub fn read_to_end(&mut self, timeout: Duration) -> Vec<u8> {
        let deadline = deadline(timeout);
        while !self.eof {
            if let Err(e) = self.read_once(deadline) {
                panic!("the stream did not end within {timeout:?}: {e}");
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// Every frame until the end of the stream (and the bytes of a partial one at the end).
    pub fn frames_to_end(&mut self, timeout: Duration) -> (Vec<Got>, usize) {
        let rest = self.read_to_end(timeout);
        parse_frames(&rest).expect("valid frames")
    }

    /// Sends `h` and takes the WELCOME.
    pub fn handshake(&mut self, h: &Hello) -> Hello {
        self.send_hello(h).expect("send HELLO");
        self.expect(FrameKind::Welcome, Duration::from_secs(5)).hello()
    }

    /// Closes both ways.
    pub fn close(self) {
        let _ = self.s.shutdown(Shutdown::Both);
    }
}

/// A raw peer that holds the key: it makes the key handshake as a backup does, then speaks
/// frames through the sealed record layer.
pub struct KeyedPeer {
    pub s: TcpStream,
    noise: snow::TransportState,
    tx: Sealer,
    rx: Opener,
    /// Opened plaintext not yet taken as frames.
    plain: Vec<u8>,
    /// Every plaintext byte opened.
    pub raw: Vec<u8>,
    /// Ciphertext bytes read from the socket.
    pub cipher_read: u64,
    pub eof: bool,
}

/// Counts what a reader reads.
struct Counting<'a, R>(&'a mut R, &'a mut u64);

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(b)?;
        *self.1 += n as u64;
        Ok(n)
    }
}

impl KeyedPeer {
    /// Connects and makes the key handshake with `key`.
    pub fn connect(port: u16, key: &[u8]) -> KeyedPeer {
        let mut p = Peer::connect(port);
        let (init, msg) = Initiator::start(&Psk::derive(key));
        p.send_frame(FrameKind::KeyInit, 0, 0, &msg).unwrap();
        let reply = p.expect(FrameKind::KeyReply, Duration::from_secs(5));
        assert!(p.buf.is_empty(), "bytes after the KEY_REPLY before the keys were agreed");
        let noise = init.finish(&reply.payload).expect("the master proved the key");
        KeyedPeer {
            s: p.s,
            noise,
            tx: Sealer::default(),
            rx: Opener::default(),
            plain: Vec::new(),
            raw: Vec::new(),
            cipher_read: p.raw.len() as u64,
            eof: false,
        }
    }

    pub fn send_frame(&mut self, kind: FrameKind, aux: u32, seq: u64, payload: &[u8]) -> io::Result<()> {
        let f = frame(kind, aux, seq, payload);
        let mut fed = 0;
        while fed < f.len() || self.tx.busy() {
            if fed < f.len() {
                fed += self.tx.staging().write(&f[fed..]).unwrap_or(0);
            }
            self.tx.flush(&mut self.noise, &mut self.s)?;
        }
        Ok(())
    }

    pub fn ack(&mut self, seq: u64) -> io::Result<()> {
        self.send_frame(FrameKind::Ack, 0, seq, &[])
    }

    /// One read of ciphertext (opening a record when it is complete) before `deadline`.
    fn read_once(&mut self, deadline: Instant) -> io::Result<()> {
        if self.rx.plain_ready() {
            let before = self.plain.len();
            self.rx.read_to_end(&mut self.plain)?;
            self.raw.extend_from_slice(&self.plain[before..]);
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(ErrorKind::TimedOut, "deadline passed"));
        }
        self.s.set_read_timeout(Some(left))?;
        match self.rx.read_from(&mut self.noise, &mut Counting(&mut self.s, &mut self.cipher_read)) {
            Ok(0) => self.eof = true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => self.eof = true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(io::Error::new(ErrorKind::TimedOut, "deadline passed"))
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// The next frame, waiting up to `timeout`; None at end of stream.
    pub fn next_frame(&mut self, timeout: Duration) -> Option<Got> {
        let deadline = deadline(timeout);
        loop {
            if let Some(f) = first_frame(&self.plain).expect("the peer sent a valid frame") {
                self.plain.drain(..wire::frame_size(f.payload.len() as u32));
                return Some(taken(f));
            }
            if self.eof {
                return None;
            }
            if let Err(e) = self.read_once(deadline) {
                panic!("no frame within {timeout:?}: {e}");
            }
        }
    }

    /// Sends `h` sealed and takes the WELCOME.
    pub fn handshake(&mut self, h: &Hello) -> Hello {
        self.send_frame(FrameKind::Hello, 0, 0, &h.encode()).expect("send HELLO");
        match self.next_frame(Duration::from_secs(5)) {
            Some(f) if f.kind == FrameKind::Welcome => f.hello(),
            other => panic!("expected a WELCOME, got {other:?}"),
        }
    }

    /// Reads and opens until the end of the stream (a record that does not open ends it too).
    pub fn read_to_end(&mut self, timeout: Duration) {
        let deadline = deadline(timeout);
        while !self.eof {
            match self.read_once(deadline) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::InvalidData => self.eof = true,
                Err(e) => panic!("the stream did not end within {timeout:?}: {e}"),
            }
        }
    }
}

/// The kernel's queues of a loopback TCP connection from /proc/net/tcp, as seen from the
/// socket bound to `local` and connected to `remote`: (bytes sent and not yet acknowledged by
/// the other end, bytes received and not yet read by the application).
pub fn tcp_queues(local: u16, remote: u16) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port_of = |addr: &str| addr.split(':').nth(1).and_then(|p| u16::from_str_radix(p, 16).ok());
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || port_of(f[1]) != Some(local) || port_of(f[2]) != Some(remote) {
            continue;
        }
        let (tx, rx) = f[4].split_once(':')?;
        return Some((u64::from_str_radix(tx, 16).ok()?, u64::from_str_radix(rx, 16).ok()?));
    }
    None
}

/// Bytes written by the master at port `theirs` to us at `mine` that the kernel still holds:
/// in flight on its side, received and not yet read on ours.
pub fn kernel_held(mine: u16, theirs: u16) -> u64 {
    let (tx, _) = tcp_queues(theirs, mine).expect("the master's end in /proc/net/tcp");
    let (_, rx) = tcp_queues(mine, theirs).expect("our end in /proc/net/tcp");
    tx + rx
}

/// Bytes a connection carried one way, recorded as they pass.
type Recording = Arc<Mutex<Vec<u8>>>;

/// A forwarding proxy for a real pair that records what each connection carried, both ways.
pub struct Tap {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// Per connection, in accept order: (backup to master bytes, master to backup bytes).
    conns: Arc<Mutex<Vec<(Recording, Recording)>>>,
    acceptor: Option<JoinHandle<()>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, log: Recording) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                log.lock().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

impl Tap {
    pub fn new(upstream: u16) -> Tap {
        let l = TcpListener::bind(loopback(0)).unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<_>>> = Arc::default();
        let (st, cs) = (stop.clone(), conns.clone());
        let acceptor = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((down, _)) => {
                        down.set_nonblocking(false).unwrap();
                        let Ok(up) = TcpStream::connect(loopback(upstream)) else { continue };
                        let _ = (down.set_nodelay(true), up.set_nodelay(true));
                        let logs: (Recording, Recording) = Default::default();
                        cs.lock().push(logs.clone());
                        let (d2, u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                        std::thread::spawn(move || pump(down, up, logs.0));
                        std::thread::spawn(move || pump(u2, d2, logs.1));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Tap { port, stop, conns, acceptor: Some(acceptor) }
    }

    /// What connection `i` carried so far: (backup to master, master to backup).
    pub fn recorded(&self, i: usize) -> Option<(Vec<u8>, Vec<u8>)> {
        let c = self.conns.lock();
        c.get(i).map(|(up, down)| (up.lock().clone(), down.lock().clone()))
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// The resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    let kb: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value");
    kb * 1024
}
