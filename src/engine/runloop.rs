//! The loop thread of one context: owns the sockets and the role, takes work from the API
//! through channels, and sleeps in `poll` only when there is nothing to do.
//!
//! If the loop ever panics (a bug, or a Rust application's callback), what it holds is still
//! reachable: the context is marked failed, the application gets the DOWN it is owed, and every
//! TLV is freed.

use std::any::Any;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Poll};
use parking_lot::Mutex;

use crate::engine::app::env::Env;
use crate::engine::app::App;
use crate::engine::backup::Backup;
use crate::engine::config::Config;
use crate::engine::context::lifecycle::State;
use crate::engine::error::Error;
use crate::engine::keys::Keys;
use crate::engine::master::lobby;
use crate::engine::master::Master;
use crate::engine::net::addr;
use crate::engine::net::tokens;
use crate::engine::queue::ring::Ring;
use crate::engine::shared::Shared;
use crate::engine::status::socket::StatusSocket;
use crate::engine::status::{self, LinkState, Snapshot};

/// Most TLVs taken from the ring in one turn: a burst queued while the loop slept must not
/// keep it from its timers and acknowledgements for long.
const TAKE_PER_TURN: usize = 256 * 1024;

/// Requests from API calls other than `junos_sync_queue` and `junos_sync_exit` (which the
/// loop reads from the lifecycle).
pub(crate) enum Ctrl<A: App> {
    Switchover { cfg: Config, app: A, reply: Sender<Result<(), Error>> },
}

// One per context, replaced only by a switchover: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Role<A: App> {
    Master(Master<A>),
    Backup(Backup),
}

pub(crate) struct Engine<A: App> {
    pub poll: Poll,
    pub env: Env<A>,
    /// What `junos_sync_queue` hands the loop.
    pub ring: Arc<Ring<A::Tlv>>,
    pub ctrl_rx: Receiver<Ctrl<A>>,
    pub role: Role<A>,
    pub session: u64,
    /// `JUNOS_SYNC_STATUS_DIR`, and the socket there.
    pub status_dir: Option<std::path::PathBuf>,
    pub status: Option<StatusSocket>,
    /// The connection state last published, and since when.
    pub published: (LinkState, Option<std::net::SocketAddr>, Instant),
}

impl<A: App> Engine<A> {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        self.open_status();
        loop {
            if let Some(notify) = self.exit_asked() {
                return self.teardown(notify);
            }
            while let Ok(c) = self.ctrl_rx.try_recv() {
                match c {
                    Ctrl::Switchover { cfg, app, reply } => {
                        let r = self.switchover(cfg, app);
                        let _ = reply.send(r);
                    }
                }
            }
            let now = Instant::now();
            let mut busy = self.drain_data(now);
            self.overflow_if_asked();
            let reg = self.poll.registry();
            busy |= match &mut self.role {
                Role::Master(m) => m.step(&mut self.env, reg, now),
                Role::Backup(b) => b.step(&mut self.env, reg, now),
            };
            if self.env.halted() {
                return self.teardown(false);
            }
            self.env.pump();
            self.publish(now);
            let mut timeout = if busy {
                Some(Duration::ZERO)
            } else {
                let deadline = match &self.role {
                    Role::Master(m) => m.next_deadline(),
                    Role::Backup(b) => b.next_deadline(),
                };
                deadline.map(|d| d.saturating_duration_since(Instant::now()))
            };
            if timeout != Some(Duration::ZERO) {
                // Announce the sleep, then look once more: a producer that queued before it saw
                // the announcement is caught here, one that queued after it wakes us.
                self.env.shared.sleeper.announce();
                // Replies the last pump took in (dispatch mode's walk) are work for the role.
                let replies = self.env.replies_waiting() || self.env.deferred().is_some_and(|q| q.replies_waiting());
                if self.drain_data(Instant::now()) || !self.ctrl_rx.is_empty() || replies {
                    timeout = Some(Duration::ZERO);
                }
            }
            if self.exit_asked().is_some() {
                timeout = Some(Duration::ZERO);
            }
            let r = self.poll.poll(&mut events, timeout);
            self.env.shared.sleeper.awake();
            if let Err(e) = r {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    self.env.log(&format!("junos-sync: poll failed: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            for ev in events.iter() {
                if ev.token() == tokens::WAKER {
                    continue;
                }
                if ev.token() == tokens::STATUS {
                    self.serve_status();
                    continue;
                }
                let (r, w) = (
                    ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    ev.is_writable() || ev.is_write_closed(),
                );
                match &mut self.role {
                    Role::Master(m) => m.on_event(ev.token(), r, w),
                    Role::Backup(b) => b.on_event(ev.token(), r, w),
                }
            }
        }
    }

    /// Whether the context is exiting: Some(whether to tell the DOWN owed), from outside
    /// (Stopping) or from inside a callback (Halting, no DOWN).
    fn exit_asked(&self) -> Option<bool> {
        match self.env.shared.life.state() {
            State::Stopping => Some(true),
            State::Halting => Some(false),
            _ => None,
        }
    }

    /// Takes what `junos_sync_queue` published (at most a turn's worth); whether it took any.
    fn drain_data(&mut self, now: Instant) -> bool {
        let Engine { ring, role, env, .. } = self;
        let shared = env.shared.clone();
        let budget = &shared.budget;
        let n = match role {
            Role::Master(m) => ring.take(budget, TAKE_PER_TURN, |t, ack| m.enqueue(t, ack, now)),
            // Only a queue call racing a switchover to backup gets here.
            Role::Backup(_) => ring.take(budget, TAKE_PER_TURN, |t, _| {
                env.log("junos-sync: TLV queued while switching to backup; freed unsent");
                env.free(t);
            }),
        };
        n > 0
    }

    /// Frees everything still in the ring.
    fn free_queued(&mut self) {
        let Engine { ring, env, .. } = self;
        let shared = env.shared.clone();
        ring.take(&shared.budget, usize::MAX, |t, _| env.free(t));
    }

    /// Producers found the backlog over its limit, or the walk starved: drop the backlog; the
    /// next backup session starts from a walk.
    fn overflow_if_asked(&mut self) {
        let Role::Master(m) = &mut self.role else { return };
        let asked = &self.env.shared.overflow_requested;
        // A plain load first: the flag is almost never set, and a swap would take the cache
        // line from the producers every turn.
        let requested = asked.load(Ordering::Relaxed) && asked.swap(false, Ordering::AcqRel);
        if requested | m.take_starved() {
            m.overflow(&mut self.env, self.poll.registry());
            self.free_queued();
            self.env.pump();
        }
    }

    fn switchover(&mut self, cfg: Config, app: A) -> Result<(), Error> {
        let listener = if cfg.is_master {
            match lobby::bind(&cfg) {
                Ok(l) => Some(l),
                Err(why) => {
                    self.env.log(&format!("junos-sync: switchover cannot bind {why}"));
                    return Err(Error::Socket);
                }
            }
        } else {
            None
        };
        self.env.shared.is_master.store(cfg.is_master, Ordering::SeqCst);
        self.env.shared.no_resync.store(cfg.no_resync, Ordering::SeqCst);
        self.drain_data(Instant::now());
        let keys = self.end_role(true);
        self.env.install(app);
        let reg = self.poll.registry();
        let listener_at = listener.as_ref().map(|(_, at)| *at);
        self.role = match listener {
            Some((l, bound)) => match Master::new(l, reg, cfg, self.session, keys) {
                Ok(m) => {
                    warn_if_exposed(&self.env.shared, bound, m.is_keyed());
                    self.env.bind_done(m.port());
                    Role::Master(m)
                }
                Err(e) => {
                    self.env.log(&format!("junos-sync: switchover cannot register listener: {e}"));
                    return Err(Error::Socket);
                }
            },
            None => Role::Backup(Backup::new(cfg, self.session, keys)),
        };
        let role = match listener_at {
            Some(at) => format!("master listening on {}", addr::show(at)),
            None => format!("backup of {}", addr::list(cfg.sock_addrs())),
        };
        self.env.log(&format!("junos-sync: switched over to {role}"));
        // The caller reads the new role's status (junos_sync_get_peer_info) once this returns.
        self.publish(Instant::now());
        self.open_status();
        // Thread mode: bind_done (and the old role's frees) run before the switchover returns.
        self.env.pump();
        Ok(())
    }

    /// Stops the current role, freeing what it holds; the role is left as an idle backup.
    /// Returns the role's keys.
    fn end_role(&mut self, notify: bool) -> Keys {
        let idle = Role::Backup(Backup::dormant());
        let reg = self.poll.registry();
        match std::mem::replace(&mut self.role, idle) {
            Role::Master(mut m) => {
                let k = m.take_keys();
                m.shutdown(&mut self.env, reg, notify);
                k
            }
            Role::Backup(mut b) => {
                let k = b.take_keys();
                b.shutdown(&mut self.env, reg, notify);
                k
            }
        }
    }

    /// Frees everything and ends the thread. `notify`: DOWN is reported (not when exiting
    /// from inside a callback, where the application has already let go of the context).
    fn teardown(&mut self, notify: bool) {
        self.close_status();
        let _ = self.end_role(notify && !self.env.halted());
        self.free_queued();
        self.env.drop_unread();
    }

    fn snapshot(&mut self) -> Snapshot {
        match &mut self.role {
            Role::Master(m) => m.snapshot(),
            Role::Backup(b) => b.snapshot(self.env.applied()),
        }
    }

    /// Publishes the status for the API (the connection's age counts from its last change).
    fn publish(&mut self, now: Instant) {
        let mut s = self.snapshot();
        if (s.state, s.peer) != (self.published.0, self.published.1) {
            self.published = (s.state, s.peer, now);
        }
        s.since = Some(self.published.2);
        *self.env.shared.status.lock() = s;
    }

    /// Opens the status socket for the current role (closing the last one), if asked for.
    fn open_status(&mut self) {
        self.close_status();
        let Some(dir) = self.status_dir.clone() else { return };
        let s = self.snapshot();
        let role = if s.is_master { "master" } else { "backup" };
        match StatusSocket::open(&dir, role, s.port, self.poll.registry()) {
            Ok(sock) => {
                self.env.log(&format!("junos-sync: status on {}", sock.path().display()));
                self.status = Some(sock);
            }
            Err(e) => self.env.log(&format!(
                "junos-sync: no status socket in {} ({}): {e}",
                dir.display(),
                crate::engine::status::socket::STATUS_DIR_VAR
            )),
        }
    }

    fn close_status(&mut self) {
        if let Some(s) = self.status.take() {
            s.close(self.poll.registry());
        }
    }

    fn serve_status(&mut self) {
        let now = Instant::now();
        self.publish(now);
        let status = self.env.shared.status.lock().at(now);
        let stats = self.env.shared.stats();
        let limit = self.env.shared.budget.limit();
        if let Some(sock) = &self.status {
            sock.serve(|| status::to_json(&status, &stats, std::process::id(), limit));
        }
    }

    /// After a panic: the DOWN the application is owed (if it was told UP), then everything
    /// freed.
    fn fail(&mut self) {
        self.env.conn_status(false);
        self.teardown(false);
    }
}

/// A master reachable from other hosts with no key: anyone there can read its database.
/// `bound`: where it listens (`::1` and 127/8 are loopback, `::` and 0.0.0.0 are not).
pub(crate) fn warn_if_exposed(shared: &Shared, bound: SocketAddr, keyed: bool) {
    if !keyed && !addr::canonical(bound).ip().is_loopback() {
        shared.log(&format!(
            "junos-sync master: WARNING: listening on {} without an authentication key; anyone who reaches this port can read the replicated state and take the backup's place (set JUNOS_SYNC_AUTH_KEY_FILE or call junos_sync_set_auth_key)",
            addr::show(bound)
        ));
    }
}

/// The application's reference to the context after `junos_sync_exit` from inside a callback:
/// dropped by the thread that finishes the teardown, as its last act.
pub(crate) type LastRef = Mutex<Option<Box<dyn Any + Send>>>;

/// Makes the loop thread for a started context.
pub(crate) fn spawn<A: App>(
    mut engine: Engine<A>,
    last_ref: Arc<LastRef>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("junos-sync".into()).spawn(move || {
        crate::sys::block_sigpipe_on_this_thread();
        let shared: Arc<Shared> = engine.env.shared.clone();
        // Thread mode: the callbacks run here (dispatch mode: inside `dispatch`).
        let inline = engine.env.deferred().is_none();
        if inline {
            shared.enter_callbacks();
        }
        if catch_unwind(AssertUnwindSafe(|| engine.run())).is_err() {
            shared.life.advance_any(State::Dying);
            shared.log("junos-sync: internal error: the loop thread panicked; replication stopped and the context failed (only junos_sync_exit is useful now)");
            if catch_unwind(AssertUnwindSafe(|| engine.fail())).is_err() {
                shared.log("junos-sync: internal error: cleaning up after the panic panicked too");
            }
            // Unless an exit was claimed meanwhile (then it finishes the job).
            shared.life.advance(State::Dying, State::Failed);
        }
        if inline {
            shared.leave_callbacks();
        }
        drop(engine);
        if inline {
            // An exit from one of the callbacks that ran here ends here (dispatch mode: it ends
            // on the dispatching thread).
            shared.life.advance(State::Halting, State::Exited);
        }
        let owner = last_ref.lock().take();
        drop(owner);
    })
}
