//! The backup role: connects to the master (retrying with capped backoff), applies what it
//! sends in sequence order, and acknowledges in batches.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Registry, Token};

use super::app::App;
use super::config::{keepalive_ms, Config};
use super::conn::{io_reason, Conn};
use super::env::Env;
use super::handshake::{Hello, Role, FLAG_NO_RESYNC, FLAG_RESUME, PROTOCOL_VERSION};
use super::tokens;
use super::wire::{FrameKind, MAX_DATA_LEN};

const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Read buffer: large enough that a stream of small frames is applied many per read.
const READ_CAP: usize = 256 * 1024;
const MAX_READS_PER_STEP: usize = 64;

enum State {
    /// Not a backup in service (placeholder while a context changes role).
    Dormant,
    /// Waiting to try again.
    Idle {
        at: Instant,
    },
    /// TCP connect in progress.
    Connecting(Conn),
    /// HELLO sent, waiting for WELCOME.
    Handshake(Conn),
    Up(Conn),
}

pub struct Backup {
    cfg: Config,
    state: State,
    backoff: Duration,
    session: u64,
    master_session: u64,
    last_applied: u64,
    last_acked: u64,
    /// Entries applied so far by the full resync in progress.
    walked: Option<u64>,
}

impl Backup {
    pub fn new(cfg: Config, session: u64) -> Self {
        Backup {
            cfg,
            state: State::Idle { at: Instant::now() },
            backoff: BACKOFF_MIN,
            session,
            master_session: 0,
            last_applied: 0,
            last_acked: 0,
            walked: None,
        }
    }

    /// A backup that never connects: stands in while a context changes role.
    pub fn dormant() -> Self {
        let mut b = Backup::new(Config::new(false, true, 0, 0, 0), 0);
        b.state = State::Dormant;
        b
    }

    pub fn describe(&self) -> String {
        let st = match &self.state {
            State::Dormant => "dormant".to_string(),
            State::Idle { .. } => "idle".to_string(),
            State::Connecting(_) => "connecting".to_string(),
            State::Handshake(_) => "handshake".to_string(),
            State::Up(c) => {
                format!("up(r={} w={} out={} inbuf={})", c.readable, c.writable, c.out.pending(), c.inbuf.buffered())
            }
        };
        format!("backup: {st}, applied {}, acked {}, walked {:?}", self.last_applied, self.last_acked, self.walked)
    }

    fn conn_mut(&mut self) -> Option<&mut Conn> {
        match &mut self.state {
            State::Idle { .. } | State::Dormant => None,
            State::Connecting(c) | State::Handshake(c) | State::Up(c) => Some(c),
        }
    }

    pub fn on_event(&mut self, token: Token, readable: bool, writable: bool) {
        if token != tokens::CONN {
            return;
        }
        if let Some(c) = self.conn_mut() {
            c.readable |= readable;
            c.writable |= writable;
        }
    }

    /// Does all the work that is ready. Returns true if more is ready right away.
    pub fn step<A: App>(&mut self, env: &mut Env<A>, reg: &Registry, now: Instant) -> bool {
        let r = match &mut self.state {
            State::Dormant => Ok(false),
            State::Idle { at } => {
                if now >= *at {
                    self.connect(env, reg);
                }
                Ok(false)
            }
            State::Connecting(c) => match connect_done(c) {
                Ok(true) => {
                    self.send_hello();
                    Ok(true)
                }
                other => other,
            },
            State::Handshake(_) => self.handshake(env),
            State::Up(_) => self.receive(env),
        };
        match r {
            Ok(busy) => {
                if env.halted() {
                    return false;
                }
                self.timers(env, reg, now);
                // A liveness check in `timers` may have read bytes that no event will announce.
                busy || matches!(&self.state, State::Up(c) if c.readable)
            }
            Err(why) => {
                self.fail(env, reg, &why);
                false
            }
        }
    }

    fn connect<A: App>(&mut self, env: &mut Env<A>, reg: &Registry) {
        let addr = SocketAddr::V4(self.cfg.sock_addr());
        let r = TcpStream::connect(addr)
            .and_then(|s| Conn::new(s, tokens::CONN, reg, (READ_CAP, MAX_DATA_LEN), self.cfg.keepalive));
        match r {
            Ok(mut c) => {
                // Readiness means nothing until the connect completes.
                c.readable = false;
                c.writable = false;
                self.state = State::Connecting(c);
            }
            Err(e) => {
                env.log(&format!("junos-sync backup: cannot connect to {addr}: {e}"));
                self.retry_later();
            }
        }
    }

    fn send_hello(&mut self) {
        let State::Connecting(mut c) = std::mem::replace(&mut self.state, State::Idle { at: Instant::now() }) else {
            return;
        };
        let hello = Hello {
            version: PROTOCOL_VERSION,
            role: Role::Backup,
            flags: if self.cfg.no_resync { FLAG_NO_RESYNC } else { 0 },
            keepalive_ms: keepalive_ms(self.cfg.keepalive),
            session: self.session,
            peer_session: self.master_session,
            seq: self.last_applied,
        };
        c.out.control(FrameKind::Hello, 0, &hello.encode());
        c.last_rx = Instant::now();
        c.readable = true;
        self.state = State::Handshake(c);
    }

    fn handshake<A: App>(&mut self, env: &mut Env<A>) -> Result<bool, String> {
        let State::Handshake(c) = &mut self.state else {
            return Ok(false);
        };
        c.flush(|_| &[]).map_err(|e| io_reason(&e))?;
        while c.read_some().map_err(|e| io_reason(&e))? {}
        let Some(f) = c.inbuf.next_frame().map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        let payload = c.inbuf.payload(&f);
        let w = match f.header.kind {
            FrameKind::Welcome => Hello::decode(payload).map_err(|e| e.to_string())?,
            FrameKind::Refuse => return Err(format!("master refused us: {}", String::from_utf8_lossy(payload))),
            k => return Err(format!("expected a handshake, got {k:?}")),
        };
        if w.version != PROTOCOL_VERSION || w.role != Role::Master || w.peer_session != self.session {
            let why = if w.version != PROTOCOL_VERSION {
                format!("protocol version {} is not ours ({PROTOCOL_VERSION})", w.version)
            } else if w.role != Role::Master {
                "peer is a backup too: two backups".to_string()
            } else {
                "handshake answers another session".to_string()
            };
            c.out.control(FrameKind::Refuse, 0, why.as_bytes());
            let _ = c.flush(|_| &[]);
            return Err(why);
        }
        let State::Handshake(mut c) = std::mem::replace(&mut self.state, State::Idle { at: Instant::now() }) else {
            unreachable!("state checked above")
        };
        c.keepalive = Duration::from_millis(u64::from(w.keepalive_ms.max(1000))).min(self.cfg.keepalive);
        if w.flags & FLAG_RESUME == 0 {
            self.walked = None;
        }
        self.master_session = w.session;
        self.last_applied = w.seq;
        self.last_acked = w.seq;
        self.backoff = BACKOFF_MIN;
        let more = c.inbuf.buffered() > 0;
        self.state = State::Up(c);
        env.log(&format!(
            "junos-sync backup: connected to master {}{}",
            self.cfg.sock_addr(),
            if w.flags & FLAG_RESUME != 0 { ", resuming" } else { "" }
        ));
        env.app.conn_status(true);
        Ok(more)
    }

    /// Applies every complete frame, then acknowledges once for the whole batch.
    fn receive<A: App>(&mut self, env: &mut Env<A>) -> Result<bool, String> {
        let mut r = Ok(());
        for _ in 0..MAX_READS_PER_STEP {
            r = self.apply_buffered(env);
            if r.is_err() || env.halted() {
                break;
            }
            let State::Up(c) = &mut self.state else { break };
            // One cumulative ACK per read buffer applied: the master frees steadily.
            if self.last_applied > self.last_acked {
                c.out.control(FrameKind::Ack, self.last_applied, &[]);
                self.last_acked = self.last_applied;
                if let Err(e) = c.flush(|_| &[]) {
                    r = Err(io_reason(&e));
                    break;
                }
            }
            match c.read_some() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    r = Err(io_reason(&e));
                    break;
                }
            }
        }
        if env.halted() {
            return Ok(false);
        }
        let State::Up(c) = &mut self.state else {
            return Ok(false);
        };
        // Acknowledge what was applied even if the stream then turned bad.
        if self.last_applied > self.last_acked {
            c.out.control(FrameKind::Ack, self.last_applied, &[]);
            self.last_acked = self.last_applied;
        }
        c.flush(|_| &[]).map_err(|e| io_reason(&e))?;
        r?;
        Ok(c.readable)
    }

    fn apply_buffered<A: App>(&mut self, env: &mut Env<A>) -> Result<(), String> {
        let State::Up(c) = &mut self.state else {
            return Ok(());
        };
        while let Some(f) = c.inbuf.next_frame().map_err(|e| e.to_string())? {
            let h = f.header;
            let sequenced = matches!(h.kind, FrameKind::Data | FrameKind::SyncBegin | FrameKind::SyncEnd);
            if sequenced && h.seq != self.last_applied + 1 {
                return Err(format!("{:?} frame has sequence {}, expected {}", h.kind, h.seq, self.last_applied + 1));
            }
            match h.kind {
                FrameKind::Data => {
                    env.app.decode(c.inbuf.payload(&f));
                    if let Some(n) = &mut self.walked {
                        *n += 1;
                    }
                }
                FrameKind::SyncBegin => {
                    env.app.db_clear();
                    self.walked = Some(0);
                }
                FrameKind::SyncEnd => {
                    let p = c.inbuf.payload(&f);
                    let told = <[u8; 8]>::try_from(&p[..]).map(u64::from_le_bytes).unwrap_or(u64::MAX);
                    let n = self.walked.take().unwrap_or(0);
                    if told != n {
                        env.log(&format!("junos-sync backup: resync ended with {n} entries, master counted {told}"));
                    }
                    env.app.init_sync_done(n as usize);
                }
                FrameKind::Keepalive => {}
                FrameKind::Refuse => {
                    return Err(format!("master closed the session: {}", String::from_utf8_lossy(c.inbuf.payload(&f))))
                }
                k => return Err(format!("unexpected {k:?} frame from the master")),
            }
            if sequenced {
                self.last_applied = h.seq;
            }
            if env.halted() {
                return Ok(());
            }
        }
        Ok(())
    }

    fn timers<A: App>(&mut self, env: &mut Env<A>, reg: &Registry, now: Instant) {
        let Some(c) = self.conn_mut() else { return };
        if c.peer_dead(now) {
            let what = match self.state {
                State::Up(_) => "master silent for too long, declaring it dead",
                _ => "no answer from the master in time",
            };
            self.fail(env, reg, what);
            return;
        }
        if let State::Up(c) = &mut self.state {
            c.keepalive_due(now);
            if let Err(e) = c.flush(|_| &[]) {
                self.fail(env, reg, &io_reason(&e));
            }
        }
    }

    /// Ends the current connection attempt or session and schedules the next.
    fn fail<A: App>(&mut self, env: &mut Env<A>, reg: &Registry, why: &str) {
        let old = std::mem::replace(&mut self.state, State::Idle { at: Instant::now() });
        let was_up = matches!(old, State::Up(_));
        // A master that is down refuses every retry: say so once, not every backoff period.
        let repeat = matches!(old, State::Connecting(_)) && self.backoff > BACKOFF_MIN;
        if let State::Connecting(c) | State::Handshake(c) | State::Up(c) = old {
            c.close(reg);
        }
        if !repeat {
            env.log(&format!("junos-sync backup: connection to master {} lost: {why}", self.cfg.sock_addr()));
        }
        self.retry_later();
        if was_up && !env.halted() {
            env.app.conn_status(false);
        }
    }

    fn retry_later(&mut self) {
        self.state = State::Idle { at: Instant::now() + self.backoff };
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Dormant => None,
            State::Idle { at } => Some(*at),
            State::Connecting(c) | State::Handshake(c) => Some(c.last_rx + c.keepalive),
            State::Up(c) => Some(c.next_deadline()),
        }
    }

    /// Ends the role. `notify`: report DOWN if up.
    pub fn shutdown<A: App>(self, env: &mut Env<A>, reg: &Registry, notify: bool) {
        let was_up = matches!(self.state, State::Up(_));
        if let State::Connecting(c) | State::Handshake(c) | State::Up(c) = self.state {
            c.close(reg);
        }
        if was_up && notify {
            env.app.conn_status(false);
        }
    }
}

/// Whether a non-blocking connect has completed; Err if it failed.
fn connect_done(c: &mut Conn) -> Result<bool, String> {
    if !c.writable && !c.readable {
        return Ok(false);
    }
    if let Ok(Some(e)) | Err(e) = c.stream.take_error() {
        return Err(io_reason(&e));
    }
    match c.stream.peer_addr() {
        Ok(a) => {
            c.peer = Some(a);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotConnected => {
            c.writable = false;
            c.readable = false;
            Ok(false)
        }
        Err(e) => Err(io_reason(&e)),
    }
}
