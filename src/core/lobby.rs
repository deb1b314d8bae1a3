//! The master's listening socket and the connections still in their handshake.
//!
//! Nothing here can displace the real backup: a connection leaves the lobby only with a valid
//! HELLO from a backup of our protocol version. Everything else is refused with a log line.
//! The lobby is bounded (the oldest connection goes when it is full) and each connection has
//! the keepalive time to say HELLO.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};

use super::config::Config;
use super::conn::{io_reason, Conn};
use super::handshake::{Hello, Role, PROTOCOL_VERSION};
use super::shared::Shared;
use super::tokens;
use super::wire::{FrameKind, MAX_CONTROL_LEN};

/// Connections still in their handshake; more than this and the oldest is dropped.
const MAX_PENDING: usize = 64;

/// Binds the master's listening socket (SO_REUSEADDR is set by mio).
pub fn bind(cfg: &Config) -> io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::V4(cfg.sock_addr()))
}

pub struct Lobby {
    listener: TcpListener,
    acceptable: bool,
    pending: Vec<Option<Conn>>,
    keepalive: Duration,
}

impl Lobby {
    pub fn new(mut listener: TcpListener, reg: &Registry, keepalive: Duration) -> io::Result<Self> {
        reg.register(&mut listener, tokens::LISTENER, Interest::READABLE)?;
        Ok(Lobby { listener, acceptable: true, pending: Vec::new(), keepalive })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// Takes a readiness event if it is the lobby's; false if it belongs to someone else.
    pub fn on_event(&mut self, token: Token, readable: bool, writable: bool) -> bool {
        if token == tokens::LISTENER {
            self.acceptable = true;
            return true;
        }
        let Some(i) = tokens::pending_index(token) else { return false };
        if let Some(Some(c)) = self.pending.get_mut(i) {
            c.readable |= readable;
            c.writable |= writable;
        }
        true
    }

    /// Accepts and reads what is ready; returns the connections that said a valid HELLO, in
    /// the order they did.
    pub fn step(&mut self, shared: &Shared, reg: &Registry, now: Instant) -> Vec<(Conn, Hello)> {
        self.accept(shared, reg);
        let mut ready = Vec::new();
        for slot in &mut self.pending {
            let Some(c) = slot.as_mut() else { continue };
            match read_hello(c) {
                Ok(None) if c.peer_dead(now) => {
                    let c = slot.take().expect("slot");
                    shared.log(&format!("junos-sync master: no handshake from {} in time, closing", c.peer_name()));
                    c.close(reg);
                }
                Ok(None) => {}
                Ok(Some(hello)) => {
                    let c = slot.take().expect("slot");
                    match check_hello(&hello) {
                        Ok(()) => ready.push((c, hello)),
                        Err(why) => refuse(shared, reg, c, &why),
                    }
                }
                Err(why) => {
                    let c = slot.take().expect("slot");
                    shared.stats.frames_rejected.fetch_add(1, Ordering::Relaxed);
                    refuse(shared, reg, c, &why);
                }
            }
        }
        ready
    }

    /// Connections in their handshake.
    pub fn pending(&self) -> usize {
        self.pending.iter().flatten().count()
    }

    /// Whether more connections may be waiting to be accepted.
    pub fn busy(&self) -> bool {
        self.acceptable
    }

    fn accept(&mut self, shared: &Shared, reg: &Registry) {
        let mut accepted = 0;
        while self.acceptable && accepted < MAX_PENDING {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    accepted += 1;
                    let slot = self.free_slot(shared, reg);
                    match Conn::new(stream, tokens::pending(slot), reg, (512, MAX_CONTROL_LEN), self.keepalive) {
                        Ok(c) => self.pending[slot] = Some(c),
                        Err(e) => shared.log(&format!("junos-sync master: cannot register connection: {e}")),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.acceptable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: try again on the next event rather than spin.
                    shared.log(&format!("junos-sync master: accept failed: {e}"));
                    self.acceptable = false;
                }
            }
        }
    }

    /// A free slot, making one by dropping the longest-silent connection if the lobby is full.
    fn free_slot(&mut self, shared: &Shared, reg: &Registry) -> usize {
        if let Some(i) = self.pending.iter().position(Option::is_none) {
            return i;
        }
        if self.pending.len() < MAX_PENDING {
            self.pending.push(None);
            return self.pending.len() - 1;
        }
        let oldest = (0..self.pending.len())
            .min_by_key(|&i| self.pending[i].as_ref().map(|c| c.last_rx))
            .expect("the lobby is full");
        let c = self.pending[oldest].take().expect("full slot");
        shared.log(&format!("junos-sync master: too many connections in handshake, dropping {}", c.peer_name()));
        c.close(reg);
        oldest
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().flatten().map(|c| c.last_rx + c.keepalive).min()
    }

    pub fn shutdown(mut self, reg: &Registry) {
        for c in self.pending.drain(..).flatten() {
            c.close(reg);
        }
        let _ = reg.deregister(&mut self.listener);
    }
}

/// Reads a pending connection's first frame, if it has arrived.
fn read_hello(c: &mut Conn) -> Result<Option<Hello>, String> {
    while c.read_some().map_err(|e| io_reason(&e))? {}
    let Some(f) = c.inbuf.next_frame().map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    if f.header.kind != FrameKind::Hello {
        return Err(format!("first frame is {:?}, not a handshake", f.header.kind));
    }
    Hello::decode(c.inbuf.payload(&f)).map(Some).map_err(|e| e.to_string())
}

fn check_hello(h: &Hello) -> Result<(), String> {
    if h.version != PROTOCOL_VERSION {
        return Err(format!("protocol version {} is not ours ({PROTOCOL_VERSION})", h.version));
    }
    if h.role != Role::Backup {
        return Err("peer is a master too: two masters".to_string());
    }
    Ok(())
}

/// Logs a refused connection, tells the peer why (best effort) and closes it.
fn refuse(shared: &Shared, reg: &Registry, mut c: Conn, why: &str) {
    shared.log(&format!("junos-sync master: refused connection from {}: {why}", c.peer_name()));
    let msg = &why.as_bytes()[..why.len().min(200)];
    c.out.control(FrameKind::Refuse, 0, msg);
    let _ = c.flush(|_| &[]);
    c.close(reg);
}
