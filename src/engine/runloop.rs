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

use crate::engine::app::path::AppPath;
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

/// The connection's state and peer as last published, and since when (the status's age).
pub(crate) struct Published {
    pub state: LinkState,
    pub peer: Option<std::net::SocketAddr>,
    pub since: Instant,
}

pub(crate) struct Engine<A: App> {
    pub poll: Poll,
    pub app: AppPath<A>,
    /// What `junos_sync_queue` hands the loop.
    pub ring: Arc<Ring<A::Tlv>>,
    pub ctrl_rx: Receiver<Ctrl<A>>,
    pub role: Role<A>,
    pub session: u64,
    /// `JUNOS_SYNC_STATUS_DIR`, and the socket there.
    pub status_dir: Option<std::path::PathBuf>,
    pub status: Option<StatusSocket>,
    /// The connection state last published, and since when.
    pub published: Published,
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
                Role::Master(m) => m.step(&mut self.app, reg, now),
                Role::Backup(b) => b.step(&mut self.app, reg, now),
            };
            if self.app.halted() {
                return self.teardown(false);
            }
            self.app.deliver();
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
                self.app.shared.sleeper.announce();
                // Replies the last delivery took in (dispatch mode's walk) are work for the role.
                let replies = self.app.replies_waiting() || self.app.app_thread().is_some_and(|q| q.replies_waiting());
                if self.drain_data(Instant::now()) || !self.ctrl_rx.is_empty() || replies {
                    timeout = Some(Duration::ZERO);
                }
            }
            if self.exit_asked().is_some() {
                timeout = Some(Duration::ZERO);
            }
            let r = self.poll.poll(&mut events, timeout);
            self.app.shared.sleeper.awake();
            if let Err(e) = r {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    self.app.log(&format!("junos-sync: poll failed: {e}"));
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
    /// Also when a callback panicked inside `dispatch` (dispatch mode: the loop itself is
    /// sound, but the context failed): the peer must see the connection go, and the DOWN owed
    /// was told on the dispatching thread.
    fn exit_asked(&self) -> Option<bool> {
        match self.app.shared.life.state() {
            State::Stopping => Some(true),
            State::Halting => Some(false),
            State::Dying | State::Failed if self.app.app_thread().is_some() => Some(false),
            _ => None,
        }
    }

    /// Takes what `junos_sync_queue` published (at most a turn's worth); whether it took any.
    fn drain_data(&mut self, now: Instant) -> bool {
        let Engine { ring, role, app, .. } = self;
        let shared = app.shared.clone();
        let budget = &shared.budget;
        let n = match role {
            Role::Master(m) => ring.take(budget, TAKE_PER_TURN, |t, ack| m.enqueue(t, ack, now)),
            // Only a queue call racing a switchover to backup gets here.
            Role::Backup(_) => ring.take(budget, TAKE_PER_TURN, |t, _| {
                app.log("junos-sync: TLV queued while switching to backup; freed unsent");
                app.free(t);
            }),
        };
        n > 0
    }

    /// Frees everything still in the ring.
    fn free_queued(&mut self) {
        let Engine { ring, app, .. } = self;
        let shared = app.shared.clone();
        ring.take(&shared.budget, usize::MAX, |t, _| app.free(t));
    }

    /// Producers found the backlog over its limit, or the walk starved: drop the backlog; the
    /// next backup session starts from a walk.
    fn overflow_if_asked(&mut self) {
        let Role::Master(m) = &mut self.role else { return };
        let asked = &self.app.shared.overflow_requested;
        // A plain load first: the flag is almost never set, and a swap would take the cache
        // line from the producers every turn.
        let requested = asked.load(Ordering::Relaxed) && asked.swap(false, Ordering::AcqRel);
        if requested | m.take_starved() {
            m.overflow(&mut self.app, self.poll.registry());
            self.free_queued();
            // Everything taken from the ring so far is gone: the waits for it need the resync.
            if let Role::Master(m) = &mut self.role {
                m.overflowed_waits(self.ring.taken(), &self.app.shared.waits);
            }
            self.app.deliver();
        }
    }

    fn switchover(&mut self, cfg: Config, app: A) -> Result<(), Error> {
        let listener = if cfg.is_master {
            match lobby::bind(&cfg) {
                Ok(l) => Some(l),
                Err(why) => {
                    self.app.log(&format!("junos-sync: switchover cannot bind {why}"));
                    return Err(Error::Socket);
                }
            }
        } else {
            None
        };
        self.app.shared.is_master.store(cfg.is_master, Ordering::SeqCst);
        self.app.shared.no_resync.store(cfg.no_resync, Ordering::SeqCst);
        self.drain_data(Instant::now());
        let keys = self.end_role(true);
        self.app.install(app);
        let reg = self.poll.registry();
        let listener_at = listener.as_ref().map(|(_, at)| *at);
        self.role = match listener {
            Some((l, bound)) => match Master::new(l, reg, cfg, self.session, keys) {
                Ok(mut m) => {
                    m.take_over_waits(self.ring.taken(), &self.app.shared.waits);
                    warn_if_exposed(&self.app.shared, bound, m.is_keyed());
                    self.app.bind_done(m.port());
                    Role::Master(m)
                }
                Err(e) => {
                    self.app.log(&format!("junos-sync: switchover cannot register listener: {e}"));
                    self.app.shared.waits.role_changed();
                    return Err(Error::Socket);
                }
            },
            None => Role::Backup(Backup::new(cfg, self.session, keys)),
        };
        // The waits of the last role end; those called from now on wait on this one.
        self.app.shared.waits.role_changed();
        let role = match listener_at {
            Some(at) => format!("master listening on {}", addr::show(at)),
            None => format!("backup of {}", addr::list(cfg.sock_addrs())),
        };
        self.app.log(&format!("junos-sync: switched over to {role}"));
        // The caller reads the new role's status (junos_sync_get_peer_info) once this returns.
        self.publish(Instant::now());
        self.open_status();
        // Thread mode: bind_done (and the old role's frees) run before the switchover returns.
        self.app.deliver();
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
                m.shutdown(&mut self.app, reg, notify);
                k
            }
            Role::Backup(mut b) => {
                let k = b.take_keys();
                b.shutdown(&mut self.app, reg, notify);
                k
            }
        }
    }

    /// Frees everything and ends the thread. `notify`: DOWN is reported (not when exiting
    /// from inside a callback, where the application has already let go of the context).
    fn teardown(&mut self, notify: bool) {
        self.close_status();
        let _ = self.end_role(notify && !self.app.halted());
        self.free_queued();
        self.app.drop_unread();
    }

    fn snapshot(&mut self) -> Snapshot {
        match &mut self.role {
            Role::Master(m) => m.snapshot(),
            Role::Backup(b) => b.snapshot(self.app.applied()),
        }
    }

    /// Publishes the status for the API (the connection's age counts from its last change).
    fn publish(&mut self, now: Instant) {
        let mut s = self.snapshot();
        if (s.state, s.peer) != (self.published.state, self.published.peer) {
            self.published = Published { state: s.state, peer: s.peer, since: now };
        }
        s.since = Some(self.published.since);
        *self.app.shared.status.lock() = s;
    }

    /// Opens the status socket for the current role (closing the last one), if asked for.
    fn open_status(&mut self) {
        self.close_status();
        let Some(dir) = self.status_dir.clone() else { return };
        let s = self.snapshot();
        let role = if s.is_master { "master" } else { "backup" };
        match StatusSocket::open(&dir, role, s.port, self.poll.registry()) {
            Ok(sock) => {
                self.app.log(&format!("junos-sync: status on {}", sock.path().display()));
                self.status = Some(sock);
            }
            Err(e) => self.app.log(&format!(
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
        let status = self.app.shared.status.lock().at(now);
        let stats = self.app.shared.stats();
        let limit = self.app.shared.budget.limit();
        let warning = self.app.shared.counters.behind();
        if let Some(sock) = &self.status {
            sock.serve(|| status::to_json(&status, &stats, std::process::id(), limit, warning.as_deref()));
        }
    }

    /// After a panic: the DOWN the application is owed (if it was told UP), then everything
    /// freed.
    fn fail(&mut self) {
        self.app.conn_status(false);
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
        let shared: Arc<Shared> = engine.app.shared.clone();
        // Thread mode: the callbacks run here (dispatch mode: inside `dispatch`).
        let inline = engine.app.app_thread().is_none();
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
        // Waits end with the loop (an exit, or the context failed).
        shared.waits.wake_all();
        let owner = last_ref.lock().take();
        drop(owner);
    })
}
