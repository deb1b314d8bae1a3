//! The master's listening socket and the connections still in their handshake.
//!
//! A connection leaves the lobby only with a valid HELLO from a backup of our protocol version,
//! and on a keyed master only once that HELLO arrived sealed with keys agreed in this very
//! handshake (which a replayed handshake message cannot give). Memory per connection is one
//! small read buffer (frames are taken between reads), the lobby holds at most `MAX_PENDING`
//! connections (the one closest to its deadline goes when it is full), and each connection has
//! the keepalive time, from its accept, to finish.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};

use crate::engine::config::Config;
use crate::engine::error::Fault;
use crate::engine::keys::Keys;
use crate::engine::log_limit::{more, LogLimit};
use crate::engine::net::addr;
use crate::engine::net::conn::Conn;
use crate::engine::net::tokens;
use crate::engine::shared::Shared;
use crate::proto::handshake::Hello;
use crate::proto::noise;
use crate::proto::wire::{FrameKind, MAX_CONTROL_LEN, REFUSE_AUTH, REFUSE_OTHER};

/// Connections still in their handshake; more than this and the oldest is dropped.
const MAX_PENDING: usize = 64;
/// Read buffer of a connection in its handshake: one largest control frame and change.
const LOBBY_READ_CAP: usize = 512;

/// Binds the master's listening socket (SO_REUSEADDR; `::` takes IPv4 too) on the first of
/// the configured addresses that binds, and says where it is bound (the port chosen for 0);
/// otherwise says why each did not.
pub(crate) fn bind(cfg: &Config) -> Result<(TcpListener, SocketAddr), String> {
    let mut why = Vec::new();
    for a in cfg.sock_addrs() {
        match crate::sys::tcp_listener(a) {
            Ok(l) => {
                let at = l.local_addr().unwrap_or(a);
                return Ok((TcpListener::from_std(l), at));
            }
            Err(e) => why.push(format!("{}: {e}", addr::show(a))),
        }
    }
    Err(why.join("; "))
}

/// A connection that finished its handshake.
pub(crate) struct Arrival {
    pub conn: Conn,
    pub hello: Hello,
    /// The backup proved it holds one of our keys.
    pub keyed: bool,
}

struct Pending {
    conn: Conn,
    deadline: Instant,
    /// Keys agreed: everything from here on is sealed.
    keyed: bool,
}

pub(crate) struct Lobby {
    listener: TcpListener,
    acceptable: bool,
    pending: Vec<Option<Pending>>,
    keepalive: Duration,
    auth_log: LogLimit,
}

impl Lobby {
    pub(crate) fn new(mut listener: TcpListener, reg: &Registry, keepalive: Duration) -> io::Result<Self> {
        reg.register(&mut listener, tokens::LISTENER, Interest::READABLE)?;
        Ok(Lobby { listener, acceptable: true, pending: Vec::new(), keepalive, auth_log: LogLimit::default() })
    }

    pub(crate) fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// Takes a readiness event of the lobby's (the listener or a pending connection).
    pub(crate) fn on_event(&mut self, token: Token, readable: bool, writable: bool) {
        if token == tokens::LISTENER {
            self.acceptable = true;
            return;
        }
        let Some(i) = tokens::pending_index(token) else { return };
        if let Some(Some(p)) = self.pending.get_mut(i) {
            p.conn.readable |= readable;
            p.conn.writable |= writable;
        }
    }

    /// Accepts and reads what is ready; returns the connections that finished their
    /// handshake, in the order they did.
    pub(crate) fn step(&mut self, shared: &Shared, keys: &Keys, reg: &Registry, now: Instant) -> Vec<Arrival> {
        self.accept(shared, reg, now);
        let mut ready = Vec::new();
        for i in 0..self.pending.len() {
            let Some(p) = self.pending[i].as_mut() else { continue };
            let outcome = match advance(p, keys) {
                Ok(None) if now < p.deadline => continue,
                Ok(None) if p.keyed => {
                    Err(Fault::Auth("no HELLO sealed with the agreed keys in time (a replayed handshake?)".into()))
                }
                Ok(None) => Err(Fault::Silent("no handshake in time")),
                Ok(Some(hello)) => hello.check_hello().map(|()| hello).map_err(|e| Fault::Refused(e.to_string())),
                Err(f) => Err(f),
            };
            let p = self.pending[i].take().expect("slot");
            match outcome {
                Ok(hello) => ready.push(Arrival { conn: p.conn, hello, keyed: p.keyed }),
                Err(f) => self.turn_away(shared, reg, p.conn, f, now),
            }
        }
        ready
    }

    /// Counts and logs a failed handshake (authentication failures once per outage), tells
    /// the peer why, and closes it.
    fn turn_away(&mut self, shared: &Shared, reg: &Registry, c: Conn, f: Fault, now: Instant) {
        f.count(&shared.counters);
        let line = |extra: String| format!("junos-sync master: refused connection from {}: {f}{extra}", c.peer_name());
        if f.is_auth() {
            if let Some(n) = self.auth_log.note("auth", now) {
                shared.log(&line(more(n)));
            }
        } else {
            shared.log(&line(String::new()));
        }
        let code = if f.is_auth() { REFUSE_AUTH } else { REFUSE_OTHER };
        c.refuse(reg, code, &f.to_string());
    }

    /// A keyed backup completed its handshake: the authentication outage, if any, is over.
    pub(crate) fn authenticated(&mut self, shared: &Shared) {
        if let Some(n) = self.auth_log.clear() {
            shared.log(&format!("junos-sync master: a backup authenticated; {n} failed attempts were not logged"));
        }
    }

    /// Whether more connections may be waiting to be accepted.
    pub(crate) fn busy(&self) -> bool {
        self.acceptable
    }

    fn accept(&mut self, shared: &Shared, reg: &Registry, now: Instant) {
        let mut accepted = 0;
        while self.acceptable && accepted < MAX_PENDING {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    accepted += 1;
                    let slot = self.free_slot(shared, reg);
                    match Conn::new(
                        stream,
                        tokens::pending(slot),
                        reg,
                        (LOBBY_READ_CAP, MAX_CONTROL_LEN),
                        self.keepalive,
                    ) {
                        Ok(conn) => {
                            self.pending[slot] = Some(Pending { conn, deadline: now + self.keepalive, keyed: false })
                        }
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

    /// A free slot, making one by dropping the connection nearest its deadline if the lobby
    /// is full.
    fn free_slot(&mut self, shared: &Shared, reg: &Registry) -> usize {
        if let Some(i) = self.pending.iter().position(Option::is_none) {
            return i;
        }
        if self.pending.len() < MAX_PENDING {
            self.pending.push(None);
            return self.pending.len() - 1;
        }
        let oldest = (0..self.pending.len())
            .min_by_key(|&i| self.pending[i].as_ref().map(|p| p.deadline))
            .expect("the lobby is full");
        let p = self.pending[oldest].take().expect("full slot");
        shared.log(&format!("junos-sync master: too many connections in handshake, dropping {}", p.conn.peer_name()));
        p.conn.close(reg);
        oldest
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().flatten().map(|p| p.deadline).min()
    }

    pub(crate) fn shutdown(mut self, reg: &Registry) {
        for p in self.pending.drain(..).flatten() {
            p.conn.close(reg);
        }
        let _ = reg.deregister(&mut self.listener);
    }
}

/// Takes what a connection in its handshake has sent, a frame at a time between reads.
/// Ok(Some): a HELLO (sealed if we hold keys); Ok(None): not yet.
fn advance(p: &mut Pending, keys: &Keys) -> Result<Option<Hello>, Fault> {
    loop {
        if let Some(f) = p.conn.next_frame()? {
            let kind = f.header.kind;
            let payload = p.conn.payload(&f);
            match kind {
                FrameKind::Hello if p.keyed || keys.is_empty() => {
                    return Hello::decode(payload).map(Some).map_err(|e| Fault::Malformed(e.to_string()));
                }
                FrameKind::Hello => return Err(Fault::Auth("the peer has no key; this master requires one".into())),
                FrameKind::KeyInit if keys.is_empty() => {
                    return Err(Fault::Auth("the peer uses a key; this master has none".into()));
                }
                FrameKind::KeyInit if !p.keyed => {
                    let (reply, transport, _) =
                        noise::respond(keys.psks(), payload).map_err(|e| Fault::Auth(format!("{e} (another key?)")))?;
                    p.conn.out.control(FrameKind::KeyReply, 0, &reply);
                    p.conn.flush(|_| None)?;
                    p.conn.seal(transport)?;
                    p.keyed = true;
                }
                k => return Err(Fault::Violation(format!("{k:?} frame where a handshake was due"))),
            }
            continue;
        }
        match p.conn.read_some() {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            // Sealed bytes that do not open: the peer never agreed keys with us.
            Err(Fault::Malformed(why)) if p.keyed => return Err(Fault::Auth(why)),
            Err(f) => return Err(f),
        }
    }
}
