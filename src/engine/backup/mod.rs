//! The backup role: connects to the master (retrying with capped backoff), proves it holds the
//! key when it has one, applies what the master sends in sequence order, and acknowledges what
//! it applied in batches.

mod handshake;
mod hold;

use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Registry, Token};

use crate::engine::app::path::AppPath;
use crate::engine::app::App;
use crate::engine::config::{keepalive_ms, Config};
use crate::engine::error::Fault;
use crate::engine::keys::Keys;
use crate::engine::log_limit::{more, LogLimit};
use crate::engine::net::addr;
use crate::engine::net::conn::Conn;
use crate::engine::net::tokens;
use crate::engine::status::{LinkState, Resync, Snapshot};
use crate::proto::handshake::{Hello, Role, FLAG_NO_RESYNC, FLAG_RESUME, HANDSHAKE_VERSION};
use crate::proto::noise::Initiator;
use crate::proto::wire::{self, FrameKind, MAX_BATCH_LEN, REFUSE_AUTH};

const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Read buffer: large enough that a stream of small frames is applied many per read.
const READ_CAP: usize = 256 * 1024;
const MAX_READS_PER_STEP: usize = 64;
/// Longest a turn applies entries before the loop turns again (publishes its status, answers
/// the status socket, runs its timers): a slow decode callback must not darken them.
const TURN: Duration = Duration::from_millis(10);

enum State {
    /// Not a backup in service (placeholder while a context changes role).
    Dormant,
    /// Waiting to try again.
    Idle {
        at: Instant,
    },
    /// TCP connect in progress.
    Connecting(Conn),
    /// KEY_INIT sent, waiting for KEY_REPLY.
    KeyExchange(Conn, Box<Initiator>),
    /// HELLO sent, waiting for WELCOME.
    Handshake(Conn),
    Up(Conn),
}

pub(crate) struct Backup {
    cfg: Config,
    state: State,
    backoff: Duration,
    session: u64,
    master_session: u64,
    /// The last sequence number received and checked (handed to the application); what it
    /// applied is `AppPath::applied`, what we acknowledged `last_acked`.
    parsed: u64,
    /// The sequence number the current connection's WELCOME continued after.
    welcomed_at: u64,
    last_acked: u64,
    /// Entries applied so far by the full resync in progress.
    walked: Option<u64>,
    keys: Keys,
    /// The key tried next: the one that worked last, or the next after one that failed.
    key_at: usize,
    /// The master's address tried next (of `cfg`'s): the one that worked last, or the next
    /// after one that did not.
    host_at: usize,
    /// Connection problems, said once per outage.
    outage: LogLimit,
    /// Full resyncs the master restarted on a connection (its overflows).
    restarts: LogLimit,
    /// The last full resync, for the status.
    resync: Option<LastResync>,
    /// The full resync in progress, held until its end (`hold.rs`).
    hold: Option<hold::Hold>,
}

/// A backup's last full resync. Its entries are the sequence numbers between its SYNC_BEGIN and
/// its SYNC_END, so what the application applied of it follows from `AppPath::applied`, in
/// dispatch mode too.
#[derive(Clone, Copy)]
struct LastResync {
    /// SYNC_BEGIN's sequence number.
    begin: u64,
    /// SYNC_END's, once received.
    end: Option<u64>,
    /// The connection went before SYNC_END: it will never end.
    cut: bool,
}

impl Backup {
    pub(crate) fn new(cfg: Config, session: u64, keys: Keys) -> Self {
        Backup {
            cfg,
            state: State::Idle { at: Instant::now() },
            backoff: BACKOFF_MIN,
            session,
            master_session: 0,
            parsed: 0,
            welcomed_at: 0,
            last_acked: 0,
            walked: None,
            keys,
            key_at: 0,
            host_at: 0,
            outage: LogLimit::default(),
            restarts: LogLimit::default(),
            resync: None,
            hold: None,
        }
    }

    /// What the status reports, as of now (`applied`: the last sequence number applied).
    pub(crate) fn snapshot(&self, applied: u64) -> Snapshot {
        let (state, conn) = match &self.state {
            State::Dormant | State::Idle { .. } => (LinkState::Down, None),
            State::Connecting(c) => (LinkState::Connecting, Some(c)),
            State::KeyExchange(c, _) | State::Handshake(c) => (LinkState::Handshake, Some(c)),
            State::Up(c) => (LinkState::Up, Some(c)),
        };
        Snapshot {
            is_master: false,
            port: self.cfg.port,
            peer: conn.and_then(Conn::peer),
            state,
            since: None,
            keyed: !self.keys.is_empty(),
            oldest: None,
            unacked_entries: 0,
            resync: self.resync.map(|r| {
                let last = r.end.map_or(applied, |e| applied.min(e - 1));
                let n = last.saturating_sub(r.begin);
                let complete = r.end.is_some_and(|e| applied >= e);
                Resync { walked: n, acked: n, running: !complete && !r.cut, complete }
            }),
        }
    }

    /// A backup that never connects: stands in while a context changes role.
    pub(crate) fn dormant() -> Self {
        let mut b = Backup::new(Config::new(false, true, 0, 0, 0), 0, Keys::default());
        b.state = State::Dormant;
        b
    }

    /// Gives up the role's keys (a switchover keeps them for the next role).
    pub(crate) fn take_keys(&mut self) -> Keys {
        std::mem::take(&mut self.keys)
    }

    fn conn_mut(&mut self) -> Option<&mut Conn> {
        match &mut self.state {
            State::Idle { .. } | State::Dormant => None,
            State::Connecting(c) | State::KeyExchange(c, _) | State::Handshake(c) | State::Up(c) => Some(c),
        }
    }

    pub(crate) fn on_event(&mut self, token: Token, readable: bool, writable: bool) {
        if token != tokens::CONN {
            return;
        }
        if let Some(c) = self.conn_mut() {
            c.readable |= readable;
            c.writable |= writable;
        }
    }

    /// Does all the work that is ready. Returns true if more is ready right away.
    pub(crate) fn step<A: App>(&mut self, app: &mut AppPath<A>, reg: &Registry, now: Instant) -> bool {
        let r = match &mut self.state {
            State::Dormant => Ok(false),
            State::Idle { at } => {
                if now >= *at && app.applying() {
                    // Entries of the last session are still on their way to the application
                    // (dispatch mode): the resume point is not known yet.
                    *at = now + Duration::from_millis(20);
                } else if now >= *at {
                    self.connect(app, reg, now);
                }
                Ok(false)
            }
            State::Connecting(c) => match c.connected() {
                Ok(true) => self.introduce(app).map(|()| true),
                other => other,
            },
            State::KeyExchange(..) => self.key_exchange(app.applied()),
            State::Handshake(_) => self.handshake(app),
            State::Up(_) => self.receive(app),
        };
        match r {
            Ok(busy) => {
                if app.halted() {
                    return false;
                }
                self.timers(app, reg, now);
                // A liveness check in `timers` may have read bytes that no event will announce.
                busy || matches!(&self.state, State::Up(c) if c.readable)
            }
            Err(f) => {
                let f = self.last_words(app, f);
                self.fail(app, reg, f, now);
                false
            }
        }
    }

    /// A live connection failed on a write or read: what the master sent before it closed may
    /// still be in the socket, a REFUSE with its reason among it (a write of our ACK can fail
    /// with EPIPE before we read it). Applies what is there, in order as ever, and returns the
    /// master's reason if it gave one, else `f`.
    fn last_words<A: App>(&mut self, app: &mut AppPath<A>, f: Fault) -> Fault {
        if !matches!(f, Fault::Io(_)) {
            return f;
        }
        let end = Instant::now() + TURN;
        for _ in 0..MAX_READS_PER_STEP {
            match self.apply_buffered(app, end) {
                Err(refused @ Fault::PeerRefused(_)) => return refused,
                Ok(true) if !app.halted() => {}
                _ => return f,
            }
            let State::Up(c) = &mut self.state else { return f };
            c.readable = true;
            if !matches!(c.read_some(), Ok(true)) {
                break;
            }
        }
        match self.apply_buffered(app, end) {
            Err(refused @ Fault::PeerRefused(_)) => refused,
            _ => f,
        }
    }

    /// Applies every complete frame and reads more, acknowledging once per read buffer; then
    /// acknowledges what was applied even if the stream turned bad.
    fn receive<A: App>(&mut self, app: &mut AppPath<A>) -> Result<bool, Fault> {
        let r = self.read_and_apply(app);
        if app.halted() {
            return Ok(false);
        }
        let acked = self.acknowledge(app);
        r?;
        acked?;
        // Dispatch mode, with the application behind: wait for it (its replies wake the loop),
        // do not spin on the readable socket. Frames left by a turn cut short: right away.
        Ok(matches!(&self.state, State::Up(c) if (c.readable || c.frame_buffered()) && app.can_take()))
    }

    fn read_and_apply<A: App>(&mut self, app: &mut AppPath<A>) -> Result<(), Fault> {
        let end = Instant::now() + TURN;
        for _ in 0..MAX_READS_PER_STEP {
            if !self.apply_buffered(app, end)? || app.halted() {
                return Ok(());
            }
            // One cumulative ACK per read buffer applied: the master frees steadily.
            self.acknowledge(app)?;
            let State::Up(c) = &mut self.state else { return Ok(()) };
            if !app.can_take() || !c.read_some()? {
                break;
            }
        }
        Ok(())
    }

    /// Acknowledges everything the application applied and we did not acknowledge yet: an
    /// ACK means applied, in either mode.
    fn acknowledge<A: App>(&mut self, app: &mut AppPath<A>) -> Result<(), Fault> {
        app.deliver();
        let State::Up(c) = &mut self.state else { return Ok(()) };
        let applied = app.applied().max(hold::held_upto(&self.hold));
        if applied > self.last_acked {
            c.out.control(FrameKind::Ack, applied, &[]);
            self.last_acked = applied;
        }
        c.flush(|_| None).map(|_| ())
    }

    /// Applies the frames buffered; false if the turn's time ran out first (frames remain).
    fn apply_buffered<A: App>(&mut self, app: &mut AppPath<A>, end: Instant) -> Result<bool, Fault> {
        let State::Up(c) = &mut self.state else { return Ok(true) };
        // Entries applied since the clock was last read (a batch counts its records).
        let mut n = 0u32;
        while app.can_take() {
            if n >= 64 {
                n = 0;
                if Instant::now() >= end {
                    return Ok(false);
                }
            }
            let Some(f) = c.next_frame()? else { break };
            n += 1;
            let h = f.header;
            if h.kind.is_sequenced() && Some(h.seq) != self.parsed.checked_add(1) {
                return Err(Fault::Violation(format!(
                    "{:?} frame has sequence {}, expected the one after {}",
                    h.kind, h.seq, self.parsed
                )));
            }
            let batches = c.version() >= 2;
            match h.kind {
                FrameKind::Data if !batches => {
                    hold::entry(&mut self.hold, app, c.payload(&f), h.seq);
                    if let Some(n) = &mut self.walked {
                        *n += 1;
                    }
                }
                FrameKind::Batch if batches => {
                    // Every record checked before any is applied.
                    let p = c.payload(&f);
                    wire::check_batch(p, h.aux).map_err(|e| Fault::Malformed(e.to_string()))?;
                    if h.seq.checked_add(u64::from(h.aux)).is_none() {
                        return Err(Fault::Violation("a batch runs past the last sequence number".into()));
                    }
                    n += h.aux;
                    let mut at = 0;
                    for k in 0..u64::from(h.aux) {
                        let (_, r, next) = wire::record_at(p, at);
                        at = next;
                        hold::entry(&mut self.hold, app, &mut p[r], h.seq + k);
                        self.parsed = h.seq + k;
                        if let Some(n) = &mut self.walked {
                            *n += 1;
                        }
                        if app.halted() {
                            return Ok(true);
                        }
                    }
                    continue;
                }
                FrameKind::SyncBegin => {
                    if self.resync.is_some_and(|r| r.end.is_none() && !r.cut) {
                        // A master's overflow restarted the walk before its end: it will never
                        // complete (a new one follows on this connection).
                        app.shared.counters.resync_aborted();
                    }
                    if h.seq > self.welcomed_at + 1 {
                        // Only an overflow starts a walk after the first frame of a session.
                        let now = Instant::now();
                        if let Some(n) = self.restarts.note("restart", now) {
                            app.log(&format!(
                                "junos-sync backup: the master dropped its backlog (this backup applies more slowly than the master queues) and starts a new full resync on this connection{}",
                                more(n)
                            ));
                        }
                    }
                    hold::begin(&mut self.hold, app, h.seq);
                    app.shared.counters.resync_started();
                    self.walked = Some(0);
                    self.resync = Some(LastResync { begin: h.seq, end: None, cut: false });
                }
                FrameKind::SyncEnd => {
                    let told = <[u8; 8]>::try_from(&c.payload(&f)[..]).ok().map(u64::from_le_bytes);
                    let n = self.walked.take().unwrap_or(0);
                    if let Some(r) = self.resync.as_mut() {
                        r.end = Some(h.seq);
                    }
                    if told != Some(n) {
                        app.log(&format!("junos-sync backup: resync ended with {n} entries, master counted {told:?}"));
                    }
                    hold::release(&mut self.hold, app);
                    app.shared.counters.resync_completed();
                    app.backup_sync_done(n, h.seq);
                }
                FrameKind::Keepalive => {}
                FrameKind::Refuse => {
                    return Err(Fault::PeerRefused(String::from_utf8_lossy(c.payload(&f)).into_owned()));
                }
                k => return Err(Fault::Violation(format!("unexpected {k:?} frame from the master"))),
            }
            if h.kind.is_sequenced() {
                self.parsed = h.seq;
            }
            if app.halted() {
                return Ok(true);
            }
        }
        Ok(true)
    }

    fn timers<A: App>(&mut self, app: &mut AppPath<A>, reg: &Registry, now: Instant) {
        let up = matches!(self.state, State::Up(_));
        let Some(c) = self.conn_mut() else { return };
        if c.peer_dead(now) {
            let why = if up {
                "no complete frame from the master for the keepalive time; declaring it dead"
            } else {
                "no answer from the master in time"
            };
            self.fail(app, reg, Fault::Silent(why), now);
            return;
        }
        if let State::Up(c) = &mut self.state {
            c.keepalive_due(now);
            if let Err(f) = c.flush(|_| None) {
                self.fail(app, reg, f, now);
            }
        }
    }

    /// Ends the current connection attempt or session and schedules the next.
    fn fail<A: App>(&mut self, app: &mut AppPath<A>, reg: &Registry, f: Fault, now: Instant) {
        let old = std::mem::replace(&mut self.state, State::Idle { at: now });
        let was_up = matches!(old, State::Up(_));
        let keying = matches!(old, State::KeyExchange(..));
        if let Some(r) = self.resync.as_mut().filter(|r| r.end.is_none() && !r.cut) {
            // The walk went with the connection before its end: it will never complete.
            r.cut = true;
            app.shared.counters.resync_aborted();
        }
        hold::cut(&mut self.hold, app);
        if let State::Connecting(c) | State::KeyExchange(c, _) | State::Handshake(c) | State::Up(c) = old {
            c.close(reg);
        }
        // A master that closes on our key handshake (an old version, a keyless one that could
        // not say so) did not take our key either.
        let f = match f {
            Fault::Io(e) if keying => {
                Fault::Auth(format!("the master closed the connection during the key handshake ({e})"))
            }
            f => f,
        };
        f.count(&app.shared.counters);
        if f.is_auth() && self.keys.psks().len() > 1 {
            self.key_at = (self.key_at + 1) % self.keys.psks().len();
        }
        let kind = match &f {
            Fault::Auth(_) => "auth",
            Fault::Io(_) if !was_up => "connect",
            _ if was_up => "lost",
            _ => "handshake",
        };
        if was_up {
            let _ = self.outage.clear();
        }
        if let Some(n) = self.outage.note(kind, now) {
            let master = addr::show(self.cfg.sock_addr(self.host_at));
            app.log(&format!("junos-sync backup: connection to master {master} lost: {f}{}", more(n)));
        }
        if !was_up && !f.is_auth() {
            self.host_at = (self.host_at + 1) % self.cfg.hosts.len();
        }
        self.retry_later();
        if was_up {
            app.conn_status(false);
        }
    }

    fn retry_later(&mut self) {
        self.state = State::Idle { at: Instant::now() + self.backoff };
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Dormant => None,
            State::Idle { at } => Some(*at),
            State::Connecting(c) | State::KeyExchange(c, _) | State::Handshake(c) | State::Up(c) => {
                Some(c.next_deadline())
            }
        }
    }

    /// Ends the role. `notify`: report DOWN if up.
    pub(crate) fn shutdown<A: App>(self, app: &mut AppPath<A>, reg: &Registry, notify: bool) {
        let was_up = matches!(self.state, State::Up(_));
        if let State::Connecting(c) | State::KeyExchange(c, _) | State::Handshake(c) | State::Up(c) = self.state {
            c.close(reg);
        }
        if was_up && notify {
            app.conn_status(false);
        }
    }
}
