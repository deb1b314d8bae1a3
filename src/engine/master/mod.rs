//! The master role: listens, takes one backup at a time through the handshake, walks the
//! database for a full resync, streams the backlog, and frees TLVs as acknowledgements arrive.
//!
//! Every value a backup sends is checked against what this side did before anything is freed
//! or reported: an acknowledgement may cover only sequence numbers whose frames are wholly on
//! the wire on that connection, and a resume point only what that backup session was sent.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Registry, Token};

use crate::engine::app::path::AppPath;
use crate::engine::app::{App, Tlv};
use crate::engine::config::Config;
use crate::engine::error::Fault;
use crate::engine::keys::Keys;
use crate::engine::log_limit::{more, LogLimit};
use crate::engine::master::backlog::{Backlog, Entry, Peek};
use crate::engine::master::lobby::Lobby;
use crate::engine::net::conn::Conn;
use crate::engine::net::tokens;
use crate::engine::queue::budget::Held;
use crate::engine::status::{LinkState, Resync, Snapshot, Stamps};
use crate::engine::waits::{Progress, Waits};

mod admit;
pub(crate) mod backlog;
pub(crate) mod lobby;
mod overload;
pub(crate) mod resume;
mod stream;
mod walk;
use overload::Overload;
use walk::Walk;

/// Lines of each kind a minute about admitted sessions: more than a real backup's reconnects
/// need (each fault-injection test compares them with the counters), few enough that a peer
/// cycling sessions costs the log about three lines a second at most.
const SESSION_LINES: u32 = 100;
/// How long a connection closed with a REFUSE stays half-open: time for the backup to read
/// the reason before a reset could cost it.
const LINGER: Duration = Duration::from_secs(1);
/// Stop walking and filling once this much is waiting to be written: about what a loopback
/// socket takes per write (~140 KB), so that the buffer stays in cache and the bytes written
/// leave little to move down (1 MiB kept ~1 MiB in it: moved once per MiB written).
const OUT_HIGH_WATER: usize = 256 << 10;
/// A BATCH frame takes records until it holds this many bytes (one larger TLV goes alone).
const BATCH_BYTES: usize = 64 << 10;
const MAX_READS_PER_STEP: usize = 16;

/// The connection to the current backup.
struct Link {
    conn: Conn,
    /// When it passed the handshake.
    since: Instant,
    /// The sequence number before the first one this connection carries.
    base: u64,
    /// The backup's last acknowledgement on this connection.
    acked: u64,
    /// Its session takes full resyncs (neither side runs without): an overflow restarts the
    /// walk on this connection instead of closing it.
    walks: bool,
}

impl Link {
    /// The last sequence number wholly written to this connection (`base` if none yet).
    fn delivered(&mut self) -> u64 {
        self.conn.delivered_seq().map_or(self.base, |d| d.max(self.base))
    }
}

pub(crate) struct Master<A: App> {
    lobby: Lobby,
    link: Option<Link>,
    backlog: Backlog<Held<A::Tlv>>,
    /// Queued while a walk runs: sent after the walk's entries.
    held_back: VecDeque<(Held<A::Tlv>, bool)>,
    walk: Option<Walk>,
    /// Resyncs walked so far: the id of the next.
    walks: u32,
    /// Bytes of walked TLVs not yet acknowledged: the walk's own pace, so that it neither
    /// fills the backlog nor waits on TLVs queued meanwhile (those cannot move until it ends).
    walked_bytes: usize,
    /// Size of the last walked entry: the guess for the next one.
    last_walked_size: usize,
    /// A backlog overflow dropped TLVs that only a walk can replace.
    dropped: bool,
    /// The walk found itself starved by the backlog: the loop is to drop it (see `overflow`).
    walk_starving: bool,
    session: u64,
    backup_session: u64,
    /// A reconnecting backup that has applied at least this sequence number may resume.
    resume_from: Option<u64>,
    /// The last sequence number delivered to the current backup session, over all its
    /// connections: no resume point can be beyond it.
    session_delivered: u64,
    keys: Keys,
    /// Connections ended with a REFUSE, half-closed until their deadline (`LINGER`).
    closing: Vec<(Conn, Instant)>,
    refusals: LogLimit,
    /// The lines every session of an admitted peer causes (connected, resumed, dropped):
    /// `SESSION_LINES` of each kind a minute, then counted (issue 17, finding 3).
    sessions: LogLimit,
    /// When sequence numbers were queued (for the lag), and the last full resync's progress:
    /// what the status reports.
    stamps: Stamps,
    resync: Option<Resync>,
    /// What `junos_sync_wait` waits for, published as acknowledgements come.
    progress: Progress,
    /// Aborted resyncs in a row, their backoff and their log line (`overload.rs`).
    overload: Overload,
    cfg: Config,
}

impl<A: App> Master<A> {
    pub(crate) fn new(
        listener: TcpListener,
        registry: &Registry,
        cfg: Config,
        session: u64,
        keys: Keys,
    ) -> io::Result<Self> {
        Ok(Master {
            lobby: Lobby::new(listener, registry, cfg.keepalive)?,
            link: None,
            backlog: Backlog::default(),
            held_back: VecDeque::new(),
            walk: None,
            walks: 0,
            walked_bytes: 0,
            last_walked_size: 0,
            dropped: false,
            walk_starving: false,
            session,
            backup_session: 0,
            resume_from: None,
            session_delivered: 0,
            keys,
            closing: Vec::new(),
            refusals: LogLimit::default(),
            sessions: LogLimit::default(),
            stamps: Stamps::default(),
            resync: None,
            progress: Progress::new(0, 0),
            overload: Overload::default(),
            cfg,
        })
    }

    pub(crate) fn port(&self) -> u16 {
        self.lobby.port()
    }

    pub(crate) fn is_keyed(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Gives up the role's keys (a switchover keeps them for the next role).
    pub(crate) fn take_keys(&mut self) -> Keys {
        std::mem::take(&mut self.keys)
    }

    /// A TLV from `junos_sync_queue`, taken at `now`.
    pub(crate) fn enqueue(&mut self, tlv: Held<A::Tlv>, ack: bool, now: Instant) {
        self.overload.queued += 1;
        if self.walk.is_some() {
            self.held_back.push_back((tlv, ack));
        } else {
            self.push_queued(tlv, ack, now);
        }
    }

    /// Into the backlog, stamped for the lag (re-queued TLVs count from when they re-enter).
    pub(super) fn push_queued(&mut self, tlv: Held<A::Tlv>, ack: bool, now: Instant) {
        let seq = self.backlog.push(Entry::Queued { tlv, ack });
        self.stamps.queued(seq, now);
    }

    /// What the status reports, as of now.
    pub(crate) fn snapshot(&mut self) -> Snapshot {
        let (front, next) = (self.backlog.front_seq(), self.backlog.next_seq());
        Snapshot {
            is_master: true,
            port: self.port(),
            peer: self.link.as_ref().and_then(|l| l.conn.peer()),
            state: if self.link.is_some() { LinkState::Up } else { LinkState::Down },
            since: None,
            keyed: self.is_keyed(),
            oldest: if front < next { self.stamps.oldest(front) } else { None },
            unacked_entries: next - front + self.held_back.len() as u64,
            resync: self.resync,
        }
    }

    pub(crate) fn on_event(&mut self, token: Token, readable: bool, writable: bool) {
        if token == tokens::CONN {
            if let Some(l) = self.link.as_mut() {
                l.conn.readable |= readable;
                l.conn.writable |= writable;
            }
        } else {
            self.lobby.on_event(token, readable, writable);
        }
    }

    /// Whether the walk asked for the backlog to be dropped (cleared by asking).
    pub(crate) fn take_starved(&mut self) -> bool {
        std::mem::take(&mut self.walk_starving)
    }

    /// Does all the work that is ready. Returns true if more is ready right away.
    pub(crate) fn step(&mut self, app: &mut AppPath<A>, reg: &Registry, now: Instant) -> bool {
        if self.link.is_none() {
            // Walk replies that came back after the backup went: freed.
            for r in app.take_walk() {
                self.on_walked(app, r);
            }
        }
        for a in self.lobby.step(&app.shared, &self.keys, reg, now) {
            self.admit(app, reg, a, now);
            if app.halted() {
                return false;
            }
        }
        let mut busy = self.lobby.busy();
        if self.link.is_some() {
            match self.link_step(app) {
                Ok(more) => busy |= more,
                Err(f) => self.end_link(app, reg, f),
            }
        }
        self.timers(app, reg, now);
        if self.closing.first().is_some_and(|c| now >= c.1) {
            let (due, keep) = std::mem::take(&mut self.closing).into_iter().partition(|c| now >= c.1);
            self.closing = keep;
            for (c, _) in due {
                Conn::close(c, reg);
            }
        }
        for (kind, n) in self.sessions.due(now) {
            app.log(&format!("junos-sync master: {n} more backup sessions {kind} in the last minute, not logged"));
        }
        app.shared.pace.set_unframed(self.unframed_writable());
        // A liveness check in `timers` may have read bytes that no event will announce.
        busy || self.link.as_ref().is_some_and(|l| l.conn.readable)
    }

    /// Backlog entries not yet framed that the connection could take now: work waiting for
    /// this thread's CPU, not for the network.
    fn unframed_writable(&self) -> u64 {
        match &self.link {
            Some(l) if l.conn.writable && !self.walk_waits() => self.backlog.next_seq() - self.backlog.send_seq(),
            _ => 0,
        }
    }

    /// A role made by a switchover: its first queued TLV has claim index `first` (waits count
    /// from there; a new context's first role starts at 0).
    pub(crate) fn take_over_waits(&mut self, first: u64, w: &Waits) {
        self.progress = Progress::take_over(first, w);
    }

    /// After an overflow dropped everything up to claim index `taken`: the waits for it need
    /// the next full resync.
    pub(crate) fn overflowed_waits(&mut self, taken: u64, w: &Waits) {
        self.progress.overflowed(taken, w);
        self.progress.publish(w);
    }

    pub(super) fn end_link(&mut self, app: &mut AppPath<A>, reg: &Registry, f: Fault) {
        f.count(&app.shared.counters);
        let name = self.link.as_ref().map(|l| l.conn.peer_name()).unwrap_or_default();
        self.session_line(app, "dropped", format!("junos-sync master: dropping backup {name}: {f}"));
        self.drop_link(app, reg);
    }

    /// Logs a line of a session of an admitted peer, unless too many of its `kind` came this
    /// minute: an unkeyed peer cycling sessions must not flood the daemon's log either.
    pub(super) fn session_line(&mut self, app: &mut AppPath<A>, kind: &'static str, line: String) {
        if let Some(n) = self.sessions.note_up_to(kind, Instant::now(), SESSION_LINES) {
            app.log(&format!("{line}{}", more(n)));
        }
    }

    pub(super) fn drop_link(&mut self, app: &mut AppPath<A>, reg: &Registry) {
        self.end_session(app, reg, false);
    }

    /// Drops the backup's connection (`linger`: half-closed and kept a moment, see
    /// `LINGER`) and ends its session.
    pub(super) fn end_session(&mut self, app: &mut AppPath<A>, reg: &Registry, linger: bool) {
        if let Some(mut l) = self.link.take() {
            self.session_delivered = self.session_delivered.max(l.delivered());
            if linger {
                l.conn.half_close(reg);
                self.closing.push((l.conn, Instant::now() + LINGER));
            } else {
                l.conn.close(reg);
            }
            // What was on its way went with the connection.
            self.overload.drain_to = None;
            self.abort_walk(app);
            self.backlog.rewind(self.backlog.front_seq());
            self.abort_resync(app);
            app.conn_status(false);
        }
    }

    /// The full resync running, if any, will never complete: counted as aborted. Whether one
    /// was running.
    pub(super) fn abort_resync(&mut self, app: &mut AppPath<A>) -> bool {
        let Some(r) = self.resync.as_mut().filter(|r| r.running) else { return false };
        r.running = false;
        app.shared.counters.resync_aborted();
        true
    }

    fn timers(&mut self, app: &mut AppPath<A>, reg: &Registry, now: Instant) {
        let Some(l) = self.link.as_mut() else { return };
        if l.conn.peer_dead(now) {
            self.end_link(
                app,
                reg,
                Fault::Silent("no complete frame from the backup for the keepalive time; declaring it dead"),
            );
            return;
        }
        l.conn.keepalive_due(now);
        if let Err(f) = self.flush() {
            self.end_link(app, reg, f);
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        // A walk waiting out its backoff starts then.
        let walk = self.walk.as_ref().and(self.overload.walk_after).filter(|_| self.link.is_some());
        self.lobby
            .next_deadline()
            .into_iter()
            .chain(self.link.as_ref().map(|l| l.conn.next_deadline()))
            .chain(walk)
            .chain(self.sessions.next_due())
            .chain(self.closing.first().map(|c| c.1))
            .min()
    }

    /// A full resync's walk waits out the backoff: nothing of its session is sent yet (not
    /// even its SYNC_BEGIN, so that the backup keeps what it has meanwhile).
    fn walk_waits(&self) -> bool {
        self.walk.is_some() && self.overload.waits(Instant::now())
    }

    /// Ends the role: closes everything, frees every TLV held. `notify`: report DOWN if up.
    pub(crate) fn shutdown(mut self, app: &mut AppPath<A>, reg: &Registry, notify: bool) {
        if notify {
            self.drop_link(app, reg);
        } else if let Some(l) = self.link.take() {
            l.conn.close(reg);
        }
        for (c, _) in std::mem::take(&mut self.closing) {
            c.close(reg);
        }
        self.abort_walk(app);
        for e in self.backlog.take_all() {
            if let Entry::Queued { tlv: t, .. } | Entry::Walked(t) = e {
                app.free(t);
            }
        }
        self.lobby.shutdown(reg);
    }
}

fn payload_of<T: Tlv>(b: &Backlog<Held<T>>, seq: u64) -> Option<&[u8]> {
    match b.get(seq)? {
        Peek::Tlv(tlv) => Some(tlv.tlv().payload()),
        Peek::SyncBegin | Peek::SyncEnd(_) => None,
    }
}
