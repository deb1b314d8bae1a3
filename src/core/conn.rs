//! One TCP connection to the peer: socket, buffers, and the liveness clock.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::inbuf::InBuf;
use super::out::Out;
use super::wire::FrameKind;

pub struct Conn {
    pub stream: TcpStream,
    pub token: Token,
    pub peer: Option<SocketAddr>,
    pub inbuf: InBuf,
    pub out: Out,
    pub last_rx: Instant,
    pub last_tx: Instant,
    /// Edge-triggered readiness not yet consumed (mio reports each edge once).
    pub readable: bool,
    pub writable: bool,
    /// Negotiated keepalive time (the smaller of the two sides').
    pub keepalive: Duration,
}

impl Conn {
    pub fn new(
        mut stream: TcpStream,
        token: Token,
        registry: &Registry,
        (read_cap, max_payload): (usize, u32),
        keepalive: Duration,
    ) -> io::Result<Self> {
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        let _ = stream.set_nodelay(true);
        let now = Instant::now();
        Ok(Conn {
            peer: stream.peer_addr().ok(),
            stream,
            token,
            inbuf: InBuf::new(read_cap, max_payload),
            out: Out::default(),
            last_rx: now,
            last_tx: now,
            readable: true,
            writable: true,
            keepalive,
        })
    }

    pub fn close(mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.stream);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    pub fn peer_name(&self) -> String {
        self.peer.map_or_else(|| "unknown peer".to_string(), |a| a.to_string())
    }

    /// Whether the peer has been silent for longer than the keepalive time. Bytes may have
    /// arrived while we were busy (their readiness event not yet polled), so look before
    /// declaring anyone dead.
    pub fn peer_dead(&mut self, now: Instant) -> bool {
        if now.duration_since(self.last_rx) < self.keepalive {
            return false;
        }
        self.readable = true;
        !matches!(self.read_some(), Ok(true))
    }

    /// Queues a keepalive if we have been silent for a third of the keepalive time.
    pub fn keepalive_due(&mut self, now: Instant) {
        if self.out.pending() == 0 && now.duration_since(self.last_tx) >= self.keepalive / 3 {
            self.out.control(FrameKind::Keepalive, 0, &[]);
        }
    }

    /// The earliest instant at which `peer_dead` or `keepalive_due` may change.
    pub fn next_deadline(&self) -> Instant {
        (self.last_rx + self.keepalive).min(self.last_tx + self.keepalive / 3)
    }

    /// Writes what is queued; `payload_of` resolves zero-copy payloads. Ok(false): blocked.
    pub fn flush<'a>(&mut self, payload_of: impl Fn(u64) -> &'a [u8]) -> io::Result<bool> {
        if !self.writable || self.out.pending() == 0 {
            return Ok(self.out.pending() == 0);
        }
        let before = self.out.pending();
        let r = self.out.flush(&mut self.stream, payload_of);
        if self.out.pending() != before {
            self.last_tx = Instant::now();
        }
        match r {
            Ok(false) => {
                self.writable = false;
                Ok(false)
            }
            other => other,
        }
    }

    /// One read into the buffer. Ok(false): would block. Err(UnexpectedEof): peer closed.
    pub fn read_some(&mut self) -> io::Result<bool> {
        if !self.readable {
            return Ok(false);
        }
        match self.inbuf.fill(&mut self.stream) {
            Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {
                self.last_rx = Instant::now();
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }
}

/// Says why an I/O error ended a connection, in words for a log line.
pub fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "connection closed by peer".to_string(),
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        _ => e.to_string(),
    }
}
