//! The master role: listens, takes one backup at a time through the handshake, walks the
//! database for a full resync, streams the backlog, and frees TLVs as acknowledgements arrive.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};

use super::app::{App, Tlv};
use super::backlog::{Backlog, Entry};
use super::config::{keepalive_ms, Config};
use super::conn::{io_reason, Conn};
use super::env::{held_size, Env};
use super::handshake::{Hello, Role, FLAG_NO_RESYNC, FLAG_RESUME, PROTOCOL_VERSION};
pub use super::lobby::bind;
use super::lobby::Lobby;
use super::tokens;
use super::wire::FrameKind;

/// Stop walking and filling once this much is waiting to be written.
const OUT_HIGH_WATER: usize = 1 << 20;
const MAX_READS_PER_STEP: usize = 16;

struct Walk<C> {
    cursor: Option<C>,
    count: u64,
    /// Sequence number of the last walked entry: its TLV stays alive until the next get_next
    /// call has returned, even if acknowledged meanwhile.
    last_seq: u64,
}

pub struct Master<A: App> {
    lobby: Lobby,
    conn: Option<Conn>,
    backlog: Backlog<A::Tlv>,
    /// Queued while a walk runs: sent after the walk's entries.
    held: VecDeque<(A::Tlv, bool)>,
    walk: Option<Walk<A::Cursor>>,
    /// The acknowledged last walked TLV, kept for the application's cursor.
    pinned: Option<A::Tlv>,
    /// Bytes of walked TLVs not yet acknowledged: the walk's own pace, so that it neither
    /// fills the backlog nor waits on TLVs queued meanwhile (those cannot move until it ends).
    walked_bytes: usize,
    /// Size of the last walked entry: the guess for the next one.
    last_walked_size: usize,
    /// A backlog overflow dropped TLVs that only a walk can replace.
    dropped: bool,
    session: u64,
    backup_session: u64,
    /// A reconnecting backup that has applied at least this sequence number may resume.
    resume_from: Option<u64>,
    cfg: Config,
}

impl<A: App> Master<A> {
    pub fn new(listener: TcpListener, registry: &Registry, cfg: Config, session: u64) -> io::Result<Self> {
        Ok(Master {
            lobby: Lobby::new(listener, registry, cfg.keepalive)?,
            conn: None,
            backlog: Backlog::default(),
            held: VecDeque::new(),
            walk: None,
            pinned: None,
            walked_bytes: 0,
            last_walked_size: 0,
            dropped: false,
            session,
            backup_session: 0,
            resume_from: None,
            cfg,
        })
    }

    pub fn describe(&self) -> String {
        let c = self.conn.as_ref().map(|c| {
            format!("conn(r={} w={} out={} inbuf={})", c.readable, c.writable, c.out.pending(), c.inbuf.buffered())
        });
        format!(
            "master: backlog front {} send {} next {}, walking {}, held {}, pending {}, {c:?}",
            self.backlog.front_seq(),
            self.backlog.send_seq(),
            self.backlog.next_seq(),
            self.walk.is_some(),
            self.held.len(),
            self.lobby.pending()
        )
    }

    pub fn port(&self) -> u16 {
        self.lobby.port()
    }

    /// A TLV from `junos_sync_queue`.
    pub fn enqueue(&mut self, tlv: A::Tlv, ack: bool) {
        if self.walk.is_some() {
            self.held.push_back((tlv, ack));
        } else {
            self.backlog.push(Entry::Queued { tlv, ack });
        }
    }

    pub fn on_event(&mut self, token: Token, readable: bool, writable: bool) {
        if token == tokens::CONN {
            if let Some(c) = self.conn.as_mut() {
                c.readable |= readable;
                c.writable |= writable;
            }
        } else {
            self.lobby.on_event(token, readable, writable);
        }
    }

    /// Does all the work that is ready. Returns true if more is ready right away.
    pub fn step(&mut self, env: &mut Env<A>, reg: &Registry, now: Instant) -> bool {
        for (c, hello) in self.lobby.step(&env.shared, reg, now) {
            self.promote(env, reg, c, hello);
            if env.halted() {
                return false;
            }
        }
        let mut busy = self.lobby.busy();
        if self.conn.is_some() {
            match self.conn_step(env) {
                Ok(more) => busy |= more,
                Err(why) => {
                    let name = self.conn.as_ref().map(Conn::peer_name).unwrap_or_default();
                    env.log(&format!("junos-sync master: dropping backup {name}: {why}"));
                    self.drop_conn(env, reg);
                }
            }
        }
        self.timers(env, reg, now);
        // A liveness check in `timers` may have read bytes that no event will announce.
        busy || self.conn.as_ref().is_some_and(|c| c.readable)
    }

    /// A valid backup: it replaces the current one and its session starts.
    fn promote(&mut self, env: &mut Env<A>, reg: &Registry, mut c: Conn, hello: Hello) {
        if self.conn.is_some() {
            env.log(&format!("junos-sync master: backup {} replaces the current one", c.peer_name()));
            self.drop_conn(env, reg);
            if env.halted() {
                c.close(reg);
                return;
            }
        }
        if let Err(e) = reg.reregister(&mut c.stream, tokens::CONN, Interest::READABLE | Interest::WRITABLE) {
            env.log(&format!("junos-sync master: cannot register backup connection: {e}"));
            c.close(reg);
            return;
        }
        c.token = tokens::CONN;
        c.readable = true;
        c.writable = true;
        c.keepalive = self.cfg.keepalive.min(Duration::from_millis(u64::from(hello.keepalive_ms.max(1000))));
        env.shared.stats.connections.fetch_add(1, Ordering::Relaxed);

        let peer_no_resync = hello.flags & FLAG_NO_RESYNC != 0;
        let resumable = hello.peer_session == self.session
            && hello.session == self.backup_session
            && self.resume_from.is_some_and(|r| hello.seq >= r)
            && hello.seq + 1 >= self.backlog.front_seq()
            && hello.seq < self.backlog.next_seq();
        self.backup_session = hello.session;
        let mut flags = if self.cfg.no_resync { FLAG_NO_RESYNC } else { 0 };
        let after;
        if resumable {
            self.process_ack(env, hello.seq);
            self.backlog.rewind(hello.seq + 1);
            flags |= FLAG_RESUME;
            after = hello.seq;
            env.shared.stats.partial_resyncs.fetch_add(1, Ordering::Relaxed);
            env.log(&format!("junos-sync master: backup {} resumes after sequence {after}", c.peer_name()));
        } else if self.cfg.no_resync || peer_no_resync {
            let queued = self.purge(env);
            for (tlv, ack) in queued {
                self.backlog.push(Entry::Queued { tlv, ack });
            }
            after = self.backlog.front_seq() - 1;
            self.resume_from = Some(after);
            env.log(&format!("junos-sync master: backup {} connected (no resync)", c.peer_name()));
            if self.dropped {
                // Only a walk could carry what the overflow dropped, and this backup takes none.
                env.log(&format!(
                    "junos-sync master: WARNING: backup {} has no_resync; changes dropped by the last backlog overflow are not replicated to it",
                    c.peer_name()
                ));
            }
        } else {
            let mut queued = self.purge(env);
            queued.append(&mut self.held);
            self.held = queued;
            after = self.backlog.push(Entry::SyncBegin) - 1;
            self.walk = Some(Walk { cursor: None, count: 0, last_seq: 0 });
            self.resume_from = None;
            self.dropped = false;
            env.shared.stats.full_resyncs.fetch_add(1, Ordering::Relaxed);
            env.log(&format!("junos-sync master: backup {} connected, full resync", c.peer_name()));
        }
        let welcome = Hello {
            version: PROTOCOL_VERSION,
            role: Role::Master,
            flags,
            keepalive_ms: keepalive_ms(c.keepalive),
            session: self.session,
            peer_session: hello.session,
            seq: after,
        };
        c.out.control(FrameKind::Welcome, 0, &welcome.encode());
        self.conn = Some(c);
        if !env.halted() {
            env.app.conn_status(true);
        }
    }

    /// Empties the backlog for a new session: walked entries are freed, queued ones returned
    /// in order to be sent again.
    fn purge(&mut self, env: &mut Env<A>) -> VecDeque<(A::Tlv, bool)> {
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
    pub fn overflow(&mut self, env: &mut Env<A>, reg: &Registry) {
        let limit = env.shared.backlog_limit.load(Ordering::Relaxed);
        env.log(&format!(
            "junos-sync master: backlog over its limit of {limit} bytes; dropping it, the backup gets a full resync"
        ));
        env.shared.stats.overflows.fetch_add(1, Ordering::Relaxed);
        self.drop_conn(env, reg);
        for (tlv, _) in self.purge(env) {
            env.free(tlv);
        }
        self.resume_from = None;
        self.backup_session = 0;
        self.dropped = true;
    }

    fn abort_walk(&mut self, env: &mut Env<A>) {
        if self.walk.take().is_some() {
            while let Some((tlv, ack)) = self.held.pop_front() {
                self.backlog.push(Entry::Queued { tlv, ack });
            }
        }
        if let Some(t) = self.pinned.take() {
            env.app.free(t); // released when it was acknowledged
        }
    }

    fn drop_conn(&mut self, env: &mut Env<A>, reg: &Registry) {
        if let Some(c) = self.conn.take() {
            c.close(reg);
            self.abort_walk(env);
            self.backlog.rewind(self.backlog.front_seq());
            if !env.halted() {
                env.app.conn_status(false);
            }
        }
    }

    fn conn_step(&mut self, env: &mut Env<A>) -> Result<bool, String> {
        // Acknowledgements first: they free memory and may unpin the walk. Frames already
        // buffered (a liveness check may have read them) are taken before reading more.
        let mut reads = 0;
        loop {
            self.take_frames(env)?;
            if env.halted() {
                return Ok(false);
            }
            if reads == MAX_READS_PER_STEP {
                break;
            }
            reads += 1;
            let c = self.conn.as_mut().expect("connected");
            if !c.read_some().map_err(|e| io_reason(&e))? {
                break;
            }
        }
        self.walk_step(env);
        if env.halted() {
            return Ok(false);
        }
        self.fill();
        let Master { conn, backlog, .. } = self;
        let c = conn.as_mut().expect("connected");
        let done = c.flush(|seq| payload_of(backlog, seq)).map_err(|e| io_reason(&e))?;
        // A walk held back by its budget waits for acknowledgements (readable), not for us.
        let more_to_fill =
            self.backlog.send_seq() < self.backlog.next_seq() || (self.walk.is_some() && self.walk_may_go(env));
        let c = self.conn.as_ref().expect("connected");
        Ok(c.readable || (c.writable && (more_to_fill || !done)))
    }

    /// Handles every complete frame the backup has sent.
    fn take_frames(&mut self, env: &mut Env<A>) -> Result<(), String> {
        loop {
            let c = self.conn.as_mut().expect("connected");
            let Some(f) = c.inbuf.next_frame().map_err(|e| e.to_string())? else {
                return Ok(());
            };
            match f.header.kind {
                FrameKind::Ack => {
                    if f.header.seq >= self.backlog.send_seq() {
                        return Err(format!("acknowledges sequence {} that was never sent", f.header.seq));
                    }
                    self.process_ack(env, f.header.seq);
                    if env.halted() {
                        return Ok(());
                    }
                }
                FrameKind::Keepalive => {}
                FrameKind::Refuse => {
                    return Err(format!("backup refused: {}", String::from_utf8_lossy(c.inbuf.payload(&f))));
                }
                k => return Err(format!("unexpected {k:?} frame from a backup")),
            }
        }
    }

    /// Frees (and notifies) everything the backup has applied up to `upto`.
    fn process_ack(&mut self, env: &mut Env<A>, upto: u64) {
        // Stop counting the batch against the backlog before the application sees any of it
        // freed, with one atomic update for the whole batch.
        let bytes: usize = self.backlog.iter_upto(upto).map(entry_size).sum();
        env.shared.release_bytes(bytes);
        while let Some((seq, e)) = self.backlog.pop_acked(upto) {
            // Once halted (exit from a callback), only frees: no other callback runs.
            match e {
                Entry::Queued { tlv, ack } => {
                    if ack && !env.halted() {
                        env.app.ack_notify(&tlv);
                    }
                    env.app.free(tlv);
                }
                Entry::Walked(t) => {
                    self.walked_bytes -= held_size(&t);
                    if self.walk.as_ref().is_some_and(|w| w.last_seq == seq) {
                        // Already released from the count; freed after the next get_next.
                        self.pinned = Some(t);
                    } else {
                        env.app.free(t);
                    }
                }
                Entry::SyncBegin => {}
                Entry::SyncEnd(n) => {
                    if !env.halted() {
                        env.app.init_sync_done(n as usize);
                    }
                }
            }
        }
    }

    /// Walks the database while there is room to send.
    fn walk_step(&mut self, env: &mut Env<A>) {
        while self.walk.is_some() && self.walk_may_go(env) && !env.halted() {
            let cursor = self.walk.as_ref().and_then(|w| w.cursor);
            let next = env.app.get_next(cursor);
            if let Some(t) = self.pinned.take() {
                env.app.free(t); // released when it was acknowledged
            }
            let w = self.walk.as_mut().expect("walking");
            match next {
                None => {
                    let n = w.count;
                    self.walk = None;
                    let end = self.backlog.push(Entry::SyncEnd(n));
                    self.resume_from = Some(end);
                    while let Some((tlv, ack)) = self.held.pop_front() {
                        self.backlog.push(Entry::Queued { tlv, ack });
                    }
                }
                Some((cur, tlv)) => {
                    w.cursor = Some(cur);
                    if let Some(t) = tlv {
                        self.last_walked_size = held_size(&t);
                        self.walked_bytes += held_size(&t);
                        env.shared.held_bytes.fetch_add(held_size(&t), Ordering::Relaxed);
                        w.count += 1;
                        w.last_seq = self.backlog.push(Entry::Walked(t));
                    }
                }
            }
            self.fill();
        }
        if self.walk_deadlocked(env) && !env.shared.overflow.swap(true, Ordering::AcqRel) {
            env.log("junos-sync master: TLVs queued during the resync walk fill the backlog");
        }
    }

    /// Whether the walk may take another entry: there is room to send it, what it has in
    /// flight stays within half the backlog limit (the other half is for the queue), and one
    /// more entry (sized like the last) keeps the whole backlog within the limit.
    fn walk_may_go(&self, env: &Env<A>) -> bool {
        let limit = env.shared.backlog_limit.load(Ordering::Relaxed);
        let held = env.shared.held_bytes.load(Ordering::Relaxed);
        self.conn.as_ref().is_some_and(|c| c.out.pending() < OUT_HIGH_WATER)
            && self.walked_bytes < limit / 2
            && held + self.last_walked_size <= limit
    }

    /// The walk waits for room that only acknowledgements of its own entries can make; with
    /// none in flight, what fills the backlog is TLVs queued during the walk, which cannot
    /// move until it ends. That is an overflow: drop the backlog and walk again.
    fn walk_deadlocked(&self, env: &Env<A>) -> bool {
        self.walk.is_some() && self.walked_bytes == 0 && self.pinned.is_none() && !self.walk_may_go(env) && {
            let limit = env.shared.backlog_limit.load(Ordering::Relaxed);
            env.shared.held_bytes.load(Ordering::Relaxed) + self.last_walked_size > limit
        }
    }

    /// Moves unsent backlog entries into the connection's output, up to the high-water mark.
    fn fill(&mut self) {
        let Some(c) = self.conn.as_mut() else { return };
        while c.out.pending() < OUT_HIGH_WATER {
            let Some((seq, e)) = self.backlog.take_unsent() else {
                break;
            };
            match e {
                Entry::Queued { tlv, .. } | Entry::Walked(tlv) => c.out.data(seq, tlv.tlv_type(), tlv.payload()),
                Entry::SyncBegin => c.out.control(FrameKind::SyncBegin, seq, &[]),
                Entry::SyncEnd(n) => c.out.control(FrameKind::SyncEnd, seq, &n.to_le_bytes()),
            }
        }
    }

    fn timers(&mut self, env: &mut Env<A>, reg: &Registry, now: Instant) {
        let Some(c) = self.conn.as_mut() else { return };
        if c.peer_dead(now) {
            let msg =
                format!("junos-sync master: backup {} silent for {:?}, declaring it dead", c.peer_name(), c.keepalive);
            env.log(&msg);
            self.drop_conn(env, reg);
            return;
        }
        c.keepalive_due(now);
        let Master { conn, backlog, .. } = self;
        let c = conn.as_mut().expect("connected");
        if let Err(e) = c.flush(|seq| payload_of(backlog, seq)) {
            env.log(&format!("junos-sync master: dropping backup {}: {}", c.peer_name(), io_reason(&e)));
            self.drop_conn(env, reg);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.lobby.next_deadline().into_iter().chain(self.conn.as_ref().map(Conn::next_deadline)).min()
    }

    /// Ends the role: closes everything, frees every TLV held. `notify`: report DOWN if up.
    pub fn shutdown(mut self, env: &mut Env<A>, reg: &Registry, notify: bool) {
        if notify {
            self.drop_conn(env, reg);
        } else if let Some(c) = self.conn.take() {
            c.close(reg);
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

/// Bytes an entry counts against the backlog limit.
fn entry_size<T: Tlv>(e: &Entry<T>) -> usize {
    match e {
        Entry::Queued { tlv: t, .. } | Entry::Walked(t) => held_size(t),
        Entry::SyncBegin | Entry::SyncEnd(_) => 0,
    }
}

fn payload_of<T: Tlv>(b: &Backlog<T>, seq: u64) -> &[u8] {
    match b.get(seq) {
        Some(Entry::Queued { tlv, .. } | Entry::Walked(tlv)) => tlv.payload(),
        _ => &[],
    }
}
