//! One TCP connection to the peer: socket, buffers, the transport (plain, or sealed after a
//! keyed handshake), and the liveness clock.
//!
//! Liveness counts complete frames, not bytes: a peer that announces a large frame and then
//! trickles it stays alive only if the frame completes within the keepalive time.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use snow::TransportState;

use crate::engine::error::Fault;
use crate::engine::net::addr;
use crate::proto::inbuf::{Frame, InBuf};
use crate::proto::noise::TAG_LEN;
use crate::proto::out::Out;
use crate::proto::seal::{Opener, Sealer, LOBBY_RECORD};
use crate::proto::wire::FrameKind;

/// The transport after a keyed handshake.
struct Sealed {
    noise: TransportState,
    tx: Sealer,
    rx: Opener,
    /// Stream offset (of `Conn::out`) where sealing began: what went before left in the clear.
    from: u64,
}

pub(crate) struct Conn {
    stream: TcpStream,
    pub token: Token,
    peer: Option<SocketAddr>,
    inbuf: InBuf,
    pub out: Out,
    sealed: Option<Box<Sealed>>,
    /// When the last complete frame arrived (or the connection started): the time of the read
    /// that completed it, so that taking a frame costs no clock read.
    last_rx: Instant,
    last_read: Instant,
    last_tx: Instant,
    /// Edge-triggered readiness not yet consumed (mio reports each edge once).
    pub readable: bool,
    pub writable: bool,
    /// Negotiated keepalive time (the smaller of the two sides').
    pub keepalive: Duration,
    /// The stream's protocol version, once the handshake chose it (1 before).
    version: u16,
}

impl Conn {
    pub(crate) fn new(
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
            peer: stream.peer_addr().ok().map(addr::canonical),
            stream,
            token,
            inbuf: InBuf::new(read_cap, max_payload),
            out: Out::default(),
            sealed: None,
            last_rx: now,
            last_read: now,
            last_tx: now,
            readable: true,
            writable: true,
            keepalive,
            version: 1,
        })
    }

    /// Moves the connection to another token (a master's handshake connection becoming its
    /// backup's).
    pub(crate) fn retoken(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        reg.reregister(&mut self.stream, token, Interest::READABLE | Interest::WRITABLE)?;
        self.token = token;
        self.readable = true;
        self.writable = true;
        Ok(())
    }

    /// Says no more (a FIN after what is written) but stays open, deregistered, so that what
    /// the peer still sends does not turn the close into a reset before it read our last
    /// frames; `close` it later.
    pub(crate) fn half_close(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.stream);
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    pub(crate) fn close(mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.stream);
        // What the peer sent and we did not read (its ACKs, keepalives) would make the close
        // a reset, and a reset can cost the peer what we wrote last and it has not read yet:
        // the REFUSE that says why. A bounded drain first makes it a FIN.
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            match io::Read::read(&mut self.stream, &mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    pub(crate) fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    pub(crate) fn peer_name(&self) -> String {
        self.peer.map_or_else(|| "unknown peer".to_string(), addr::show)
    }

    /// Whether a non-blocking connect has completed; Err if it failed.
    pub(crate) fn connected(&mut self) -> Result<bool, Fault> {
        if !self.writable && !self.readable {
            return Ok(false);
        }
        if let Ok(Some(e)) | Err(e) = self.stream.take_error() {
            return Err(e.into());
        }
        match self.stream.peer_addr() {
            Ok(a) => {
                self.peer = Some(addr::canonical(a));
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                self.writable = false;
                self.readable = false;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.is_some()
    }

    /// The handshake chose stream version `v`: from 2 on, the stream travels in BATCH frames,
    /// with a CRC32C unless the connection is sealed (the AEAD tag covers them).
    pub(crate) fn set_version(&mut self, v: u16) {
        self.version = v;
        self.inbuf.set_batch_crc(!self.is_sealed());
    }

    pub(crate) fn version(&self) -> u16 {
        self.version
    }

    /// Whether BATCH frames this side sends carry a CRC32C.
    pub(crate) fn batch_crc(&self) -> bool {
        !self.is_sealed()
    }

    /// Everything sent and received from now on is encrypted with `noise`. Nothing may be
    /// buffered either way: the peer cannot have sent sealed bytes before this point, and our
    /// handshake reply must have left in the clear.
    pub(crate) fn seal(&mut self, noise: TransportState) -> Result<(), Fault> {
        self.seal_with(noise, Sealer::default(), Opener::default())
    }

    /// `seal` for a peer that has not proven the key yet (a master's connection in its
    /// lobby): records of at most `LOBBY_RECORD` bytes, in buffers of about 3 KiB rather than
    /// 256 KiB, until `proven`.
    pub(crate) fn seal_unproven(&mut self, noise: TransportState) -> Result<(), Fault> {
        self.seal_with(noise, Sealer::with_record(LOBBY_RECORD), Opener::with_record(LOBBY_RECORD + TAG_LEN))
    }

    /// The peer proved the key: full-size records from now on.
    pub(crate) fn proven(&mut self) {
        if let Some(s) = self.sealed.as_deref_mut() {
            s.tx.grow();
            s.rx.grow();
        }
    }

    fn seal_with(&mut self, noise: TransportState, tx: Sealer, rx: Opener) -> Result<(), Fault> {
        if self.inbuf.buffered() > 0 {
            return Err(Fault::Violation("bytes after the key handshake message, before the keys were agreed".into()));
        }
        if self.out.pending() > 0 {
            return Err(Fault::Local("the key handshake reply could not be written at once".into()));
        }
        let from = self.out.taken();
        self.sealed = Some(Box::new(Sealed { noise, tx, rx, from }));
        Ok(())
    }

    /// The next complete frame, if one is buffered; it refreshes liveness.
    #[inline]
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, Fault> {
        match self.inbuf.next_frame() {
            Ok(Some(f)) => {
                self.last_rx = self.last_read;
                Ok(Some(f))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(Fault::Malformed(e.to_string())),
        }
    }

    /// The payload of a frame from `next_frame`. Valid until the next read.
    pub(crate) fn payload(&mut self, f: &Frame) -> &mut [u8] {
        self.inbuf.payload(f)
    }

    /// Whether a whole frame waits to be taken.
    pub(crate) fn frame_buffered(&self) -> bool {
        self.inbuf.frame_buffered()
    }

    /// Bytes received and not yet taken as frames.
    pub(crate) fn buffered(&self) -> usize {
        self.inbuf.buffered()
    }

    /// One read into the buffer. Ok(false): would block. Callers take frames between reads,
    /// which is what bounds the buffer.
    pub(crate) fn read_some(&mut self) -> Result<bool, Fault> {
        if !self.readable {
            return Ok(false);
        }
        let r = match self.sealed.as_deref_mut() {
            None => self.inbuf.fill(&mut self.stream),
            Some(s) => fill_sealed(s, &mut self.inbuf, &mut self.stream),
        };
        match r {
            Ok(0) => Err(Fault::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => {
                self.last_read = Instant::now();
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(Fault::Malformed(e.to_string())),
            Err(e) if e.kind() == io::ErrorKind::OutOfMemory => Err(Fault::Local(e.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether no complete frame has arrived for the keepalive time. Frames may have arrived
    /// while we were busy (their readiness not yet polled), so look before declaring anyone
    /// dead: read what is there, and a whole frame among it keeps the peer alive.
    pub(crate) fn peer_dead(&mut self, now: Instant) -> bool {
        if now.duration_since(self.last_rx) < self.keepalive {
            return false;
        }
        self.readable = true;
        for _ in 0..64 {
            if self.inbuf.frame_buffered() {
                return false;
            }
            if !matches!(self.read_some(), Ok(true)) {
                break;
            }
        }
        !self.inbuf.frame_buffered()
    }

    /// Queues a keepalive if we have been silent for a third of the keepalive time.
    pub(crate) fn keepalive_due(&mut self, now: Instant) {
        if self.out.pending() == 0 && now.duration_since(self.last_tx) >= self.keepalive / 3 {
            self.out.control(FrameKind::Keepalive, 0, &[]);
        }
    }

    /// The earliest instant at which `peer_dead` or `keepalive_due` may change.
    pub(crate) fn next_deadline(&self) -> Instant {
        (self.last_rx + self.keepalive).min(self.last_tx + self.keepalive / 3)
    }

    /// Writes what is queued; `payload_of` resolves zero-copy payloads. Ok(false): blocked.
    pub(crate) fn flush<'a>(&mut self, payload_of: impl Fn(u64) -> Option<&'a [u8]>) -> Result<bool, Fault> {
        if !self.writable {
            return Ok(self.out.pending() == 0 && !self.sealed.as_ref().is_some_and(|s| s.tx.busy()));
        }
        let before = (self.out.pending(), self.sealed.as_ref().map(|s| s.tx.delivered()));
        let r = match self.sealed.as_deref_mut() {
            None => self.out.flush(&mut self.stream, payload_of),
            Some(s) => flush_sealed(s, &mut self.out, &mut self.stream, payload_of),
        };
        if before != (self.out.pending(), self.sealed.as_ref().map(|s| s.tx.delivered())) {
            self.last_tx = Instant::now();
        }
        match r {
            Ok(false) => {
                self.writable = false;
                Ok(false)
            }
            Ok(true) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// The last sequence number whose frame is wholly on the wire, if any was sent.
    pub(crate) fn delivered_seq(&mut self) -> Option<u64> {
        let offset = match self.sealed.as_deref() {
            None => self.out.taken(),
            Some(s) => s.from + s.tx.delivered(),
        };
        self.out.deliver(offset)
    }

    /// A refusal the peer can read (in the clear before any key, sealed after), best effort,
    /// then the close.
    pub(crate) fn refuse(mut self, reg: &Registry, code: u32, why: &str) {
        self.say_refuse(code, why, |_| None);
        self.close(reg);
    }

    /// Queues a REFUSE and writes what it can now, best effort, even after an earlier write
    /// would have blocked (the socket may have room by now); `payload_of` as for `flush`.
    pub(crate) fn say_refuse<'a>(&mut self, code: u32, why: &str, payload_of: impl Fn(u64) -> Option<&'a [u8]>) {
        self.out.refuse(code, why);
        self.writable = true;
        let _ = self.flush(payload_of);
    }
}

/// One read of a sealed connection: the plaintext of every record already buffered goes into
/// `inbuf` while it has room; only with none buffered is the socket read (once). Ok(0) is end
/// of stream.
fn fill_sealed<R: io::Read>(s: &mut Sealed, inbuf: &mut InBuf, r: &mut R) -> io::Result<usize> {
    let mut moved = 0;
    loop {
        if s.rx.plain_ready() {
            match inbuf.fill(&mut s.rx) {
                Ok(n) => moved += n,
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory && moved > 0 => return Ok(moved),
                Err(e) => return Err(e),
            }
            if s.rx.plain_ready() {
                return Ok(moved); // the read buffer is full: frames first
            }
        } else if !s.rx.open_next(&mut s.noise)? {
            break;
        }
    }
    if moved > 0 {
        return Ok(moved);
    }
    let n = s.rx.read_from(&mut s.noise, r)?;
    if n == 0 {
        return Ok(0);
    }
    // What the read completed goes in now (a read that brought only part of a record moved
    // nothing, which is still progress).
    fill_sealed(s, inbuf, &mut io::empty()).map(|m| m.max(1))
}

/// Seals the output a record at a time and writes the records; Ok(true) once all is written.
fn flush_sealed<'a, W: Write>(
    s: &mut Sealed,
    out: &mut Out,
    w: &mut W,
    payload_of: impl Fn(u64) -> Option<&'a [u8]>,
) -> io::Result<bool> {
    loop {
        if out.pending() > 0 {
            // Fills the staging area up to one record; "blocked" only means it is full.
            out.flush(&mut s.tx.staging(), &payload_of)?;
        }
        if !s.tx.flush(&mut s.noise, w)? {
            return Ok(false);
        }
        if out.pending() == 0 {
            return Ok(true);
        }
    }
}
