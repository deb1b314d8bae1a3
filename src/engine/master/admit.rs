//! The master's admission of a backup that passed the handshake: whether its claims can be
//! true, whether it may take the live backup's place, and how its session starts (resume,
//! stream, or a full resync), with the WELCOME that says so.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use mio::Registry;

use crate::engine::app::path::AppPath;
use crate::engine::app::App;
use crate::engine::config::keepalive_ms;
use crate::engine::counters::Counters;
use crate::engine::error::Fault;
use crate::engine::log_limit::more;
use crate::engine::master::backlog::Entry;
use crate::engine::master::lobby::Arrival;
use crate::engine::master::resume::{decide, Facts, Start};
use crate::engine::master::walk::Walk;
use crate::engine::net::tokens;
use crate::engine::queue::budget::Held;
use crate::engine::status::Resync;
use crate::proto::handshake::{Hello, Role, FLAG_NO_RESYNC, FLAG_RESUME};
use crate::proto::wire::{FrameKind, REFUSE_OTHER};

use super::{Link, Master};

impl<A: App> Master<A> {
    /// A backup that passed the handshake: it becomes the backup, unless a live one is there
    /// and it may not displace it.
    pub(super) fn admit(&mut self, app: &mut AppPath<A>, reg: &Registry, a: Arrival, now: Instant) {
        if a.keyed {
            self.lobby.authenticated(&app.shared);
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
            f.count(&app.shared.counters);
            let forget = self.link.is_none();
            let then = if forget { "; that backup session will not resume" } else { "" };
            if let Some(n) = self.refusals.note("impossible", now) {
                app.log(&format!("junos-sync master: refused backup {}: {f}{then}{}", a.conn.peer_name(), more(n)));
            }
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
                f.count(&app.shared.counters);
                if let Some(n) = self.refusals.note("busy", now) {
                    app.log(&format!("junos-sync master: refused backup {}: {f}{}", a.conn.peer_name(), more(n)));
                }
                a.conn.refuse(reg, REFUSE_OTHER, &f.to_string());
                return;
            }
            self.session_line(
                app,
                "replaced",
                format!("junos-sync master: backup {} replaces the current one", a.conn.peer_name()),
            );
            self.drop_link(app, reg);
            if app.halted() {
                a.conn.close(reg);
                return;
            }
        }
        self.promote(app, reg, a, start, now);
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

    fn promote(&mut self, app: &mut AppPath<A>, reg: &Registry, a: Arrival, start: Start, now: Instant) {
        let Arrival { mut conn, hello, keyed } = a;
        // Its sealed HELLO opened: the key is proven, the record buffers may grow.
        conn.proven();
        if let Err(e) = conn.retoken(reg, tokens::CONN) {
            app.log(&format!("junos-sync master: cannot register backup connection: {e}"));
            conn.close(reg);
            return;
        }
        conn.keepalive = self.cfg.keepalive.min(Duration::from_millis(u64::from(hello.keepalive_ms.max(1000))));
        Counters::bump(&app.shared.counters.connections);
        let mut flags = if self.cfg.no_resync { FLAG_NO_RESYNC } else { 0 };
        let name = conn.peer_name();
        let version = hello.negotiate();
        let how = format!(" (protocol version {version}){}", if keyed { ", authenticated" } else { "" });
        let resumed = start == Start::Resume;
        let walks = !matches!(start, Start::Stream);
        let after = match start {
            Start::Resume => {
                self.acknowledge(app, hello.seq);
                self.backlog.rewind(hello.seq + 1);
                flags |= FLAG_RESUME;
                Counters::bump(&app.shared.counters.partial_resyncs);
                self.session_line(
                    app,
                    "resumed",
                    format!("junos-sync master: backup {name} resumes after sequence {}{how}", hello.seq),
                );
                hello.seq
            }
            Start::Stream => {
                let queued = self.purge(app);
                for (tlv, ack) in queued {
                    self.push_queued(tlv, ack, Instant::now());
                }
                self.resume_from = Some(self.backlog.front_seq() - 1);
                self.session_line(
                    app,
                    "connected",
                    format!("junos-sync master: backup {name} connected (no resync){how}"),
                );
                if self.dropped {
                    // Only a walk could carry what the overflow dropped, and this backup takes none.
                    app.log(&format!(
                        "junos-sync master: WARNING: backup {name} has no_resync; changes dropped by the last backlog overflow are not replicated to it"
                    ));
                }
                self.backlog.front_seq() - 1
            }
            Start::Walk => {
                let mut queued = self.purge(app);
                queued.append(&mut self.held_back);
                self.held_back = queued;
                let begin = self.start_walk(app);
                self.session_line(
                    app,
                    "connected",
                    format!("junos-sync master: backup {name} connected, full resync{how}"),
                );
                begin - 1
            }
            Start::Impossible(_) => unreachable!("refused in admit"),
        };
        if !resumed {
            self.session_delivered = after;
        }
        self.backup_session = hello.session;
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
        self.link = Some(Link { conn, since: now, base: after, acked: after, walks });
        app.conn_status(true);
    }

    /// A full resync begins: its SYNC_BEGIN is the next entry of the backlog (returned).
    pub(super) fn start_walk(&mut self, app: &mut AppPath<A>) -> u64 {
        let begin = self.backlog.push(Entry::SyncBegin);
        self.walks = self.walks.wrapping_add(1);
        self.walk = Some(Walk { id: self.walks, base: begin, requested: false, asked: false });
        self.resync = Some(Resync { walked: 0, acked: 0, running: true, complete: false });
        self.resume_from = None;
        self.dropped = false;
        Counters::bump(&app.shared.counters.full_resyncs);
        app.shared.counters.resync_started();
        begin
    }

    /// Empties the backlog for a new session: walked entries are freed, queued ones returned
    /// in order to be sent again.
    pub(super) fn purge(&mut self, app: &mut AppPath<A>) -> VecDeque<(Held<A::Tlv>, bool)> {
        self.abort_walk(app);
        let mut keep = VecDeque::new();
        self.walked_bytes = 0;
        for e in self.backlog.take_all() {
            match e {
                Entry::Queued { tlv, ack } => keep.push_back((tlv, ack)),
                Entry::Walked(t) => app.free(t),
                Entry::SyncBegin | Entry::SyncEnd(_) => {}
            }
        }
        keep
    }
}
