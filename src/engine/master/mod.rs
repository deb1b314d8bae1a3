//! The master role: listens, takes one backup at a time through the handshake, walks the
//! database for a full resync, streams the backlog, and frees TLVs as acknowledgements arrive.
//!
//! Every value a backup sends is checked against what this side did before anything is freed
//! or reported: an acknowledgement may cover only sequence numbers whose frames are wholly on
//! the wire on that connection, and a resume point only what that backup session was sent.

use std::collections::VecDeque;
use std::io;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Registry, Token};

use crate::engine::app::calls::WalkTag;
use crate::engine::app::env::Env;
use crate::engine::app::{App, Tlv};
use crate::engine::config::{keepalive_ms, Config};
use crate::engine::counters::Counters;
use crate::engine::error::Fault;
use crate::engine::keys::Keys;
use crate::engine::master::backlog::{Backlog, Entry};
use crate::engine::master::lobby::{Arrival, Lobby};
use crate::engine::master::resume::{decide, Facts, Start};
use crate::engine::net::conn::Conn;
use crate::engine::net::tokens;
use crate::engine::queue::budget::Held;
use crate::engine::quiet::{more, Quiet};
use crate::engine::status::{LinkState, Resync, Snapshot, Stamps};
use crate::proto::handshake::{Hello, Role, FLAG_NO_RESYNC, FLAG_RESUME};
use crate::proto::wire::{FrameKind, REFUSE_OTHER};

pub(crate) mod backlog;
pub(crate) mod lobby;
pub(crate) mod resume;
mod walk;
use walk::Walk;

/// Stop walking and filling once this much is waiting to be written.
const OUT_HIGH_WATER: usize = 1 << 20;
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
    deferred: VecDeque<(Held<A::Tlv>, bool)>,
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
    refusals: Quiet,
    /// When sequence numbers were queued (for the lag), and the last full resync's progress:
    /// what the status reports.
    stamps: Stamps,
    resync: Option<Resync>,
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
            deferred: VecDeque::new(),
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
            refusals: Quiet::default(),
            stamps: Stamps::default(),
            resync: None,
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
        if self.walk.is_some() {
            self.deferred.push_back((tlv, ack));
        } else {
            self.push_queued(tlv, ack, now);
        }
    }

    /// Into the backlog, stamped for the lag (re-queued TLVs count from when they re-enter).
    fn push_queued(&mut self, tlv: Held<A::Tlv>, ack: bool, now: Instant) {
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
            unacked_entries: next - front + self.deferred.len() as u64,
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
    pub(crate) fn step(&mut self, env: &mut Env<A>, reg: &Registry, now: Instant) -> bool {
        if self.link.is_none() {
            // Walk replies that came back after the backup went: freed.
            for r in env.take_walk() {
                self.on_walked(env, r);
            }
        }
        for a in self.lobby.step(&env.shared, &self.keys, reg, now) {
            self.admit(env, reg, a, now);
            if env.halted() {
                return false;
            }
        }
        let mut busy = self.lobby.busy();
        if self.link.is_some() {
            match self.link_step(env) {
                Ok(more) => busy |= more,
                Err(f) => self.end_link(env, reg, f),
            }
        }
        self.timers(env, reg, now);
        // A liveness check in `timers` may have read bytes that no event will announce.
        busy || self.link.as_ref().is_some_and(|l| l.conn.readable)
    }

    /// A backup that passed the handshake: it becomes the backup, unless a live one is there
    /// and it may not displace it.
    fn admit(&mut self, env: &mut Env<A>, reg: &Registry, a: Arrival, now: Instant) {
        if a.keyed {
            self.lobby.authenticated(&env.shared);
        }
        // What the HELLO claims is judged first: a claim that cannot be true must not cost the
        // live backup its connection.
        let delivered = self.link.as_mut().map_or(0, Link::delivered);
        let facts = Facts {
            master_session: self.session,
            backup_session: self.backup_session,
            resume_from: self.resume_from,
            front_seq: self.backlog.front_seq(),
            session_delivered: self.session_delivered.max(delivered),
            no_resync: self.cfg.no_resync || a.hello.flags & FLAG_NO_RESYNC != 0,
        };
        let start = decide(&a.hello, &facts);
        if let Start::Impossible(why) = start {
            let f = Fault::Violation(why);
            f.count(&env.shared.counters);
            let forget = self.link.is_none();
            let then = if forget { "; that backup session will not resume" } else { "" };
            env.log(&format!("junos-sync master: refused backup {}: {f}{then}", a.conn.peer_name()));
            a.conn.refuse(reg, REFUSE_OTHER, &f.to_string());
            if forget {
                // No live backup holds the session: the claim cannot be trusted to free
                // anything, so its next connection starts over from a full resync (rather
                // than being refused for ever should our count ever lag).
                self.backup_session = 0;
                self.resume_from = None;
            }
            return;
        }
        if let Some(cur) = &self.link {
            if let Err(f) = self.may_displace(cur, &a, now) {
                f.count(&env.shared.counters);
                if let Some(n) = self.refusals.note("busy", now) {
                    env.log(&format!("junos-sync master: refused backup {}: {f}{}", a.conn.peer_name(), more(n)));
                }
                a.conn.refuse(reg, REFUSE_OTHER, &f.to_string());
                return;
            }
            env.log(&format!("junos-sync master: backup {} replaces the current one", a.conn.peer_name()));
            self.drop_link(env, reg);
            if env.halted() {
                a.conn.close(reg);
                return;
            }
        }
        self.promote(env, reg, a, start, now);
    }

    /// Whether an arriving backup may take the place of the current one. One that proved it
    /// holds our key may; without keys, only the current backup session reconnecting (a
    /// half-open connection it gave up on) may, and at most once per keepalive time, so that
    /// a flood of handshakes cannot keep the real backup resyncing.
    fn may_displace(&self, cur: &Link, a: &Arrival, now: Instant) -> Result<(), Fault> {
        if a.keyed {
            return Ok(());
        }
        let same_session = a.hello.session == self.backup_session && a.hello.peer_session == self.session;
        if same_session && now.duration_since(cur.since) >= self.cfg.keepalive {
            return Ok(());
        }
        Err(Fault::Refused(format!(
            "a live backup ({}) is connected; another may take its place only once it is gone",
            cur.conn.peer_name()
        )))
    }

    fn promote(&mut self, env: &mut Env<A>, reg: &Registry, a: Arrival, start: Start, now: Instant) {
        let Arrival { mut conn, hello, keyed } = a;
        if let Err(e) = conn.retoken(reg, tokens::CONN) {
            env.log(&format!("junos-sync master: cannot register backup connection: {e}"));
            conn.close(reg);
            return;
        }
        conn.keepalive = self.cfg.keepalive.min(Duration::from_millis(u64::from(hello.keepalive_ms.max(1000))));
        Counters::bump(&env.shared.counters.connections);
        let mut flags = if self.cfg.no_resync { FLAG_NO_RESYNC } else { 0 };
        let name = conn.peer_name();
        let how = if keyed { ", authenticated" } else { "" };
        let resumed = start == Start::Resume;
        let after = match start {
            Start::Resume => {
                self.acknowledge(env, hello.seq);
                self.backlog.rewind(hello.seq + 1);
                flags |= FLAG_RESUME;
                Counters::bump(&env.shared.counters.partial_resyncs);
                env.log(&format!("junos-sync master: backup {name} resumes after sequence {}{how}", hello.seq));
                hello.seq
            }
            Start::Stream => {
                let queued = self.purge(env);
                for (tlv, ack) in queued {
                    self.push_queued(tlv, ack, Instant::now());
                }
                self.resume_from = Some(self.backlog.front_seq() - 1);
                env.log(&format!("junos-sync master: backup {name} connected (no resync){how}"));
                if self.dropped {
                    // Only a walk could carry what the overflow dropped, and this backup takes none.
                    env.log(&format!(
                        "junos-sync master: WARNING: backup {name} has no_resync; changes dropped by the last backlog overflow are not replicated to it"
                    ));
                }
                self.backlog.front_seq() - 1
            }
            Start::Walk => {
                let mut queued = self.purge(env);
                queued.append(&mut self.deferred);
                self.deferred = queued;
                let begin = self.backlog.push(Entry::SyncBegin);
                self.walks = self.walks.wrapping_add(1);
                self.walk = Some(Walk { id: self.walks, base: begin, requested: false });
                self.resync = Some(Resync { walked: 0, acked: 0, running: true, complete: false });
                self.resume_from = None;
                self.dropped = false;
                Counters::bump(&env.shared.counters.full_resyncs);
                env.log(&format!("junos-sync master: backup {name} connected, full resync{how}"));
                begin - 1
            }
            Start::Impossible(_) => unreachable!("refused in admit"),
        };
        if !resumed {
            self.session_delivered = after;
        }
        self.backup_session = hello.session;
        let version = hello.negotiate();
        let welcome = Hello {
            version,
            role: Role::Master,
            flags,
            keepalive_ms: keepalive_ms(conn.keepalive),
            max_version: 0,
            session: self.session,
            peer_session: hello.session,
            seq: after,
        };
        conn.out.control(FrameKind::Welcome, 0, &welcome.encode());
        conn.set_version(version);
        self.link = Some(Link { conn, since: now, base: after, acked: after });
        env.conn_status(true);
    }

    /// Empties the backlog for a new session: walked entries are freed, queued ones returned
    /// in order to be sent again.
    fn purge(&mut self, env: &mut Env<A>) -> VecDeque<(Held<A::Tlv>, bool)> {
        self.abort_walk(env);
        let mut keep = VecDeque::new();
        self.walked_bytes = 0;
        for e in self.backlog.take_all() {
            match e {
                Entry::Queued { tlv, ack } => keep.push_back((tlv, ack)),
                Entry::Walked(t) => env.free(t),
                Entry::SyncBegin | Entry::SyncEnd(_) => {}
            }
        }
        keep
    }

    /// Frees the whole backlog (no ack notifications), drops the backup, and makes sure the
    /// next session is a full resync.
    pub(crate) fn overflow(&mut self, env: &mut Env<A>, reg: &Registry) {
        let limit = env.shared.budget.limit();
        env.log(&format!(
            "junos-sync master: backlog over its limit of {limit} bytes; dropping it, the backup gets a full resync"
        ));
        Counters::bump(&env.shared.counters.overflows);
        self.drop_link(env, reg);
        for (tlv, _) in self.purge(env) {
            env.free(tlv);
        }
        self.resume_from = None;
        self.backup_session = 0;
        self.dropped = true;
    }

    fn end_link(&mut self, env: &mut Env<A>, reg: &Registry, f: Fault) {
        f.count(&env.shared.counters);
        let name = self.link.as_ref().map(|l| l.conn.peer_name()).unwrap_or_default();
        env.log(&format!("junos-sync master: dropping backup {name}: {f}"));
        self.drop_link(env, reg);
    }

    fn drop_link(&mut self, env: &mut Env<A>, reg: &Registry) {
        if let Some(mut l) = self.link.take() {
            self.session_delivered = self.session_delivered.max(l.delivered());
            l.conn.close(reg);
            self.abort_walk(env);
            self.backlog.rewind(self.backlog.front_seq());
            if let Some(r) = self.resync.as_mut() {
                r.running = false;
            }
            env.conn_status(false);
        }
    }

    fn link_step(&mut self, env: &mut Env<A>) -> Result<bool, Fault> {
        // Acknowledgements first: they free memory and may unpin the walk. Frames already
        // buffered (a liveness check may have read them) are taken before reading more.
        for _ in 0..MAX_READS_PER_STEP {
            self.take_frames(env)?;
            if env.halted() {
                return Ok(false);
            }
            let l = self.link.as_mut().expect("connected");
            if !l.conn.read_some()? {
                break;
            }
        }
        self.walk_step(env);
        if env.halted() {
            return Ok(false);
        }
        self.fill();
        let done = self.flush()?;
        // A walk held back by its budget waits for acknowledgements (readable), not for us.
        let more_to_fill =
            self.backlog.send_seq() < self.backlog.next_seq() || (self.walk.is_some() && self.walk_may_go(env));
        let c = &self.link.as_ref().expect("connected").conn;
        Ok(c.readable || (c.writable && (more_to_fill || !done)))
    }

    /// Writes what the connection has queued; zero-copy payloads come from the backlog.
    fn flush(&mut self) -> Result<bool, Fault> {
        let Master { link, backlog, .. } = self;
        let l = link.as_mut().expect("connected");
        l.conn.flush(|seq| payload_of(backlog, seq))
    }

    /// Handles every complete frame the backup has sent.
    fn take_frames(&mut self, env: &mut Env<A>) -> Result<(), Fault> {
        loop {
            let l = self.link.as_mut().expect("connected");
            let Some(f) = l.conn.next_frame()? else { return Ok(()) };
            match f.header.kind {
                FrameKind::Ack => {
                    self.on_ack(env, f.header.seq)?;
                    if env.halted() {
                        return Ok(());
                    }
                }
                FrameKind::Keepalive => {}
                FrameKind::Refuse => {
                    let why = String::from_utf8_lossy(l.conn.payload(&f)).into_owned();
                    return Err(Fault::PeerRefused(why));
                }
                k => return Err(Fault::Violation(format!("unexpected {k:?} frame from a backup"))),
            }
        }
    }

    /// An acknowledgement: it may cover only what this connection delivered, and never go
    /// back.
    fn on_ack(&mut self, env: &mut Env<A>, seq: u64) -> Result<(), Fault> {
        let l = self.link.as_mut().expect("connected");
        let delivered = l.delivered();
        if seq > delivered {
            return Err(Fault::Violation(format!(
                "acknowledges sequence {seq}, but only up to {delivered} was delivered on this connection"
            )));
        }
        if seq < l.acked {
            return Err(Fault::Violation(format!("acknowledges sequence {seq} after {}", l.acked)));
        }
        l.acked = seq;
        self.session_delivered = self.session_delivered.max(delivered);
        self.acknowledge(env, seq);
        Ok(())
    }

    /// Frees (and notifies) everything the backup has applied up to `upto`.
    fn acknowledge(&mut self, env: &mut Env<A>, upto: u64) {
        while let Some((seq, e)) = self.backlog.pop_acked(upto) {
            match e {
                Entry::Queued { tlv, ack } => env.release(tlv, ack, None),
                Entry::Walked(t) => {
                    // Of the walk going on, the application's cursor may point into it.
                    let tag = self
                        .walk
                        .as_ref()
                        .and_then(|w| Some(WalkTag { id: w.id, no: NonZeroU64::new(seq.checked_sub(w.base)?)? }));
                    self.walked_bytes -= t.size();
                    if let Some(r) = self.resync.as_mut() {
                        r.acked += 1;
                    }
                    env.release(t, false, tag);
                }
                Entry::SyncBegin => {}
                Entry::SyncEnd(n) => {
                    if let Some(r) = self.resync.as_mut() {
                        r.running = false;
                        r.complete = true;
                    }
                    env.sync_done(n);
                }
            }
        }
        env.pump();
    }

    /// Moves unsent backlog entries into the connection's output, up to the high-water mark:
    /// in BATCH frames (version 2: many TLVs per header and CRC) or a DATA frame each.
    fn fill(&mut self) {
        let Some(l) = self.link.as_mut() else { return };
        let c = &mut l.conn;
        let batches = c.version() >= 2;
        let crc = c.batch_crc();
        while c.out.pending() < OUT_HIGH_WATER {
            let Some((seq, e)) = self.backlog.take_unsent() else {
                break;
            };
            match e {
                Entry::Queued { tlv, .. } | Entry::Walked(tlv) if batches => {
                    let mut b = c.out.begin_batch(seq, crc);
                    c.out.record(&mut b, tlv.tlv().tlv_type(), tlv.tlv().payload());
                    while b.len() < BATCH_BYTES {
                        let Some(Entry::Queued { tlv, .. } | Entry::Walked(tlv)) = self.backlog.peek_unsent() else {
                            break;
                        };
                        c.out.record(&mut b, tlv.tlv().tlv_type(), tlv.tlv().payload());
                        self.backlog.skip_unsent();
                    }
                    c.out.end_batch(b);
                }
                Entry::Queued { tlv, .. } | Entry::Walked(tlv) => {
                    c.out.data(seq, tlv.tlv().tlv_type(), tlv.tlv().payload())
                }
                Entry::SyncBegin => c.out.control(FrameKind::SyncBegin, seq, &[]),
                Entry::SyncEnd(n) => c.out.control(FrameKind::SyncEnd, seq, &n.to_le_bytes()),
            }
        }
    }

    fn timers(&mut self, env: &mut Env<A>, reg: &Registry, now: Instant) {
        let Some(l) = self.link.as_mut() else { return };
        if l.conn.peer_dead(now) {
            self.end_link(
                env,
                reg,
                Fault::Silent("no complete frame from the backup for the keepalive time; declaring it dead"),
            );
            return;
        }
        l.conn.keepalive_due(now);
        if let Err(f) = self.flush() {
            self.end_link(env, reg, f);
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.lobby.next_deadline().into_iter().chain(self.link.as_ref().map(|l| l.conn.next_deadline())).min()
    }

    /// Ends the role: closes everything, frees every TLV held. `notify`: report DOWN if up.
    pub(crate) fn shutdown(mut self, env: &mut Env<A>, reg: &Registry, notify: bool) {
        if notify {
            self.drop_link(env, reg);
        } else if let Some(l) = self.link.take() {
            l.conn.close(reg);
        }
        self.abort_walk(env);
        for e in self.backlog.take_all() {
            if let Entry::Queued { tlv: t, .. } | Entry::Walked(t) = e {
                env.free(t);
            }
        }
        self.lobby.shutdown(reg);
    }
}

fn payload_of<T: Tlv>(b: &Backlog<Held<T>>, seq: u64) -> Option<&[u8]> {
    match b.get(seq)? {
        Entry::Queued { tlv, .. } | Entry::Walked(tlv) => Some(tlv.tlv().payload()),
        Entry::SyncBegin | Entry::SyncEnd(_) => None,
    }
}
