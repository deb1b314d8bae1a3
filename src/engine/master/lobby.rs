//! The master's listening socket and the connections still in their handshake.
//!
//! A connection leaves the lobby only with a valid HELLO from a backup of our protocol version,
//! and on a keyed master only once that HELLO arrived sealed with keys agreed in this very
//! handshake (which a replayed handshake message cannot give). A replayed KEY_INIT (its
//! ephemeral key seen before: `noise::ReplayWindow`) is refused before any Diffie-Hellman and
//! without a reply. Memory per connection is one small read buffer (frames are taken between
//! reads) and, keyed, small record buffers until the HELLO opens (`Conn::seal_unproven`); the
//! lobby holds at most `MAX_PENDING` connections, and when it is full the connection that has
//! proven least goes (unproven before keyed, then the oldest: it had the most time to speak);
//! each connection has the keepalive time, from its accept, to finish. Every line a peer can
//! cause here goes through one `LogLimit`.

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
use crate::proto::noise::{self, InitRefused, ReplayWindow};
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
    /// Every line a peer can cause in the lobby.
    log: LogLimit,
    /// The ephemeral keys of the KEY_INITs that authenticated here.
    replays: ReplayWindow,
}

impl Lobby {
    pub(crate) fn new(mut listener: TcpListener, reg: &Registry, keepalive: Duration) -> io::Result<Self> {
        reg.register(&mut listener, tokens::LISTENER, Interest::READABLE)?;
        Ok(Lobby {
            listener,
            acceptable: true,
            pending: Vec::new(),
            keepalive,
            log: LogLimit::default(),
            replays: ReplayWindow::default(),
        })
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
        let mut ready = Vec::new();
        self.accept(shared, keys, reg, now, &mut ready);
        self.advance_all(shared, keys, reg, now, &mut ready);
        for (kind, n) in self.log.due(now) {
            shared.log(&format!("junos-sync master: {n} more connections {kind} in the last minute, not logged"));
        }
        ready
    }

    /// Takes what every pending connection has sent; those that finished or failed leave.
    fn advance_all(&mut self, shared: &Shared, keys: &Keys, reg: &Registry, now: Instant, ready: &mut Vec<Arrival>) {
        for i in 0..self.pending.len() {
            let Some(p) = self.pending[i].as_mut() else { continue };
            let outcome = match advance(p, keys, &mut self.replays) {
                Ok(None) if now < p.deadline => continue,
                Ok(None) if p.keyed => Err(Refusal::Saying(Fault::Auth(
                    "no HELLO sealed with the agreed keys in time (a replayed handshake?)".into(),
                ))),
                Ok(None) => Err(Refusal::Saying(Fault::Silent("no handshake in time"))),
                Ok(Some(hello)) => {
                    hello.check_hello().map(|()| hello).map_err(|e| Refusal::Saying(Fault::Refused(e.to_string())))
                }
                Err(f) => Err(f),
            };
            let p = self.pending[i].take().expect("slot");
            match outcome {
                Ok(hello) => ready.push(Arrival { conn: p.conn, hello, keyed: p.keyed }),
                Err(Refusal::Silently(f)) => self.turn_away(shared, reg, p.conn, f, false, now),
                Err(Refusal::Saying(f)) => self.turn_away(shared, reg, p.conn, f, true, now),
            }
        }
    }

    /// Counts and logs a failed handshake (each kind once, then at most once a minute with
    /// a count; authentication failures once per outage), tells the peer why unless `tell`
    /// is false (a replay gets nothing), and closes it.
    fn turn_away(&mut self, shared: &Shared, reg: &Registry, c: Conn, f: Fault, tell: bool, now: Instant) {
        f.count(&shared.counters);
        let kind = if !tell { "refused as replays" } else { kind_of(&f) };
        if let Some(n) = self.log.note(kind, now) {
            shared.log(&format!("junos-sync master: refused connection from {}: {f}{}", c.peer_name(), more(n)));
        }
        if !tell {
            c.close(reg);
            return;
        }
        let code = if f.is_auth() { REFUSE_AUTH } else { REFUSE_OTHER };
        c.refuse(reg, code, &f.to_string());
    }

    /// A keyed backup completed its handshake: the authentication outage, if any, is over.
    pub(crate) fn authenticated(&mut self, shared: &Shared) {
        if let Some(n) = self.log.clear_kind(AUTH) {
            shared.log(&format!("junos-sync master: a backup authenticated; {n} failed attempts were not logged"));
        }
    }

    /// Whether more connections may be waiting to be accepted.
    pub(crate) fn busy(&self) -> bool {
        self.acceptable
    }

    fn accept(&mut self, shared: &Shared, keys: &Keys, reg: &Registry, now: Instant, ready: &mut Vec<Arrival>) {
        let mut accepted = 0;
        while self.acceptable && accepted < MAX_PENDING {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    accepted += 1;
                    let slot = match self.free_slot() {
                        Some(i) => i,
                        None => {
                            // Full: first let everyone that has spoken move on (replays and
                            // garbage leave, a backup's KEY_INIT proves it), then evict.
                            self.advance_all(shared, keys, reg, now, ready);
                            match self.free_slot() {
                                Some(i) => i,
                                None => self.evict(shared, reg, now),
                            }
                        }
                    };
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
                        Err(e) => {
                            if let Some(n) = self.log.note("not registered", now) {
                                shared.log(&format!("junos-sync master: cannot register connection: {e}{}", more(n)));
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.acceptable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: try again on the next event rather than spin.
                    if let Some(n) = self.log.note("not accepted", now) {
                        shared.log(&format!("junos-sync master: accept failed: {e}{}", more(n)));
                    }
                    self.acceptable = false;
                }
            }
        }
    }

    /// A free slot, if any (growing the lobby up to its size).
    fn free_slot(&mut self) -> Option<usize> {
        if let Some(i) = self.pending.iter().position(Option::is_none) {
            return Some(i);
        }
        if self.pending.len() < MAX_PENDING {
            self.pending.push(None);
            return Some(self.pending.len() - 1);
        }
        None
    }

    /// Makes a slot in a full lobby by dropping the connection that has proven least: one
    /// that has not authenticated a KEY_INIT before one that has (which only a key holder
    /// can, each recording once), and among those the oldest (a backup sends its first message
    /// as it connects; one that said nothing valid for longest is the likeliest attacker).
    fn evict(&mut self, shared: &Shared, reg: &Registry, now: Instant) -> usize {
        let victim = (0..self.pending.len())
            .min_by_key(|&i| self.pending[i].as_ref().map(|p| (p.keyed, p.deadline)))
            .expect("the lobby is full");
        let p = self.pending[victim].take().expect("full slot");
        if let Some(n) = self.log.note("evicted from a full lobby", now) {
            shared.log(&format!(
                "junos-sync master: too many connections in handshake, dropping {}{}",
                p.conn.peer_name(),
                more(n)
            ));
        }
        p.conn.close(reg);
        victim
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().flatten().map(|p| p.deadline).chain(self.log.next_due()).min()
    }

    pub(crate) fn shutdown(mut self, reg: &Registry) {
        for p in self.pending.drain(..).flatten() {
            p.conn.close(reg);
        }
        let _ = reg.deregister(&mut self.listener);
    }
}

/// The kind of a failed handshake, for the log's rate limit.
fn kind_of(f: &Fault) -> &'static str {
    match f {
        Fault::Auth(_) => AUTH,
        Fault::Malformed(_) => "refused as malformed",
        Fault::Violation(_) => "refused as violations",
        Fault::Refused(_) => "refused",
        Fault::Silent(_) => "idle until their deadline",
        Fault::Io(_) | Fault::PeerRefused(_) | Fault::Local(_) => "closed in their handshake",
    }
}

const AUTH: &str = "failing authentication";

/// How a connection is turned away: with a REFUSE saying why, or without a word (a replay:
/// it gets nothing a recording could not already tell).
enum Refusal {
    Saying(Fault),
    Silently(Fault),
}

impl From<Fault> for Refusal {
    fn from(f: Fault) -> Self {
        Refusal::Saying(f)
    }
}

/// Takes what a connection in its handshake has sent, a frame at a time between reads.
/// Ok(Some): a HELLO (sealed if we hold keys); Ok(None): not yet.
fn advance(p: &mut Pending, keys: &Keys, replays: &mut ReplayWindow) -> Result<Option<Hello>, Refusal> {
    loop {
        if let Some(f) = p.conn.next_frame()? {
            let kind = f.header.kind;
            let payload = p.conn.payload(&f);
            match kind {
                FrameKind::Hello if p.keyed || keys.is_empty() => {
                    let hello = Hello::decode(payload).map_err(|e| Fault::Malformed(e.to_string()))?;
                    return Ok(Some(hello));
                }
                FrameKind::Hello => {
                    return Err(Fault::Auth("the peer has no key; this master requires one".into()).into())
                }
                FrameKind::KeyInit if keys.is_empty() => {
                    return Err(Fault::Auth("the peer uses a key; this master has none".into()).into());
                }
                FrameKind::KeyInit if !p.keyed => {
                    let (reply, transport, _) = match noise::respond_once(keys.psks(), payload, replays) {
                        Ok(r) => r,
                        Err(InitRefused::Replayed) => {
                            return Err(Refusal::Silently(Fault::Auth(InitRefused::Replayed.to_string())))
                        }
                        Err(e) => return Err(Fault::Auth(format!("{e} (another key?)")).into()),
                    };
                    p.conn.out.control(FrameKind::KeyReply, 0, &reply);
                    p.conn.flush(|_| None)?;
                    p.conn.seal_unproven(transport)?;
                    p.keyed = true;
                }
                k => return Err(Fault::Violation(format!("{k:?} frame where a handshake was due")).into()),
            }
            continue;
        }
        match p.conn.read_some() {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            // Sealed bytes that do not open: the peer never agreed keys with us.
            Err(Fault::Malformed(why)) if p.keyed => return Err(Fault::Auth(why).into()),
            Err(f) => return Err(f.into()),
        }
    }
}
