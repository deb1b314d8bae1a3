//! A context as API callers see it: the one facade of the engine, safe to share between
//! threads, cheap to queue on.

mod dispatch;
mod exit;
pub mod lifecycle;
mod settings;
mod wait;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use mio::{Poll, Waker};
use parking_lot::Mutex;

use crate::engine::app::appq::AppQueue;
use crate::engine::app::dispatcher::Dispatcher;
use crate::engine::app::path::{AppPath, Runner};
use crate::engine::app::{App, Freer, Logger, Tlv};
use crate::engine::backup::Backup;
use crate::engine::config::Config;
use crate::engine::counters::Stats;
use crate::engine::env_vars::{self, FromEnv};
use crate::engine::error::Error;
use crate::engine::keys::Keys;
use crate::engine::master::lobby;
use crate::engine::master::Master;
use crate::engine::net::addr::{self, Spec};
use crate::engine::net::tokens;
use crate::engine::queue::budget::counted_size;
use crate::engine::queue::ring::Ring;
use crate::engine::runloop::{self, warn_if_exposed, Ctrl, Engine, LastRef, Published, Role};
use crate::engine::shared::Shared;
use crate::engine::status::{LinkState, Snapshot, Status};
use crate::proto::wire::MAX_DATA_LEN;

use dispatch::AppSide;
use lifecycle::State;

/// What a context needs to start its loop, kept until `start` (its lifecycle is `Ready`).
struct Unstarted<A: App> {
    poll: Poll,
    app: A,
    ctrl_rx: Receiver<Ctrl<A>>,
    cfg: Config,
    keys: Keys,
}

type Kit<A> = Box<Unstarted<A>>;

/// `set_address`'s address and port, if it gave one no role took yet.
type NextAddr = Option<(Spec, u16)>;

/// What the lifecycle's state owns: the unstarted kit (Ready), the loop thread (Running and
/// after), or nothing (during `start`, and once exited).
enum Stage<A: App> {
    Unstarted(Kit<A>),
    Loop(JoinHandle<()>),
    None,
}

pub struct Context<A: App> {
    shared: Arc<Shared>,
    /// What `junos_sync_queue` hands the loop.
    ring: Arc<Ring<A::Tlv>>,
    ctrl_tx: Sender<Ctrl<A>>,
    waker: Arc<Waker>,
    /// What the state (in `shared.life`) owns.
    stage: Mutex<Stage<A>>,
    session: u64,
    /// The application's reference after an exit from inside a callback, dropped by the
    /// thread that finishes the teardown (see `exit`).
    last_ref: Arc<LastRef>,
    /// The current application's free, for TLVs dropped on the caller's thread.
    freer: Mutex<Freer<A::Tlv>>,
    /// Dispatch mode: the queue to the application's thread (set before start).
    appq: Mutex<Option<Arc<AppQueue<A>>>>,
    /// Dispatch mode, once started: the application's callbacks and the calls taken for them.
    /// Absent while a dispatch runs them (a nested dispatch or exit sees that).
    app_side: Mutex<Option<Box<AppSide<A>>>>,
    /// Run first thing at exit, on the exiting thread (the C layer deselects its eventlib
    /// handler there).
    exit_hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// `JUNOS_SYNC_STATUS_DIR`, read at init.
    status_dir: Option<std::path::PathBuf>,
    /// `set_address`'s, for the next role the context takes up.
    next_addr: Mutex<NextAddr>,
}

/// A random, non-zero session id.
fn new_session_id() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish() | 1
}

/// Why `app` cannot play the role of `cfg`, if it cannot. (Its addresses are checked when the
/// role starts: `set_address` may replace them.)
fn check<A: App>(cfg: &Config, app: &A) -> Option<&'static str> {
    if cfg.is_master && !cfg.no_resync && !app.can_walk() {
        return Some("a master with resync needs sync_data_get_next_func");
    }
    if !cfg.is_master && !app.can_decode() {
        return Some("a backup needs sync_data_decode_func");
    }
    None
}

impl<A: App> Context<A> {
    /// A context for `cfg`, with what the `JUNOS_SYNC_*` environment variables ask (`env_vars`).
    pub fn new(cfg: Config, app: A, logger: Logger) -> Result<Self, Error> {
        // The state's own address is checked here too, as libjunos-sync did (a daemon relies
        // on init refusing a backup with no master to go to); `set_address` may replace it later.
        if let Some(why) = cfg.problem().or_else(|| check(&cfg, &app)) {
            logger(&format!("junos_sync_init: {why}"));
            return Err(Error::Invalid);
        }
        let FromEnv { keys, backlog_limit, status_dir, resync_buffer } = env_vars::read().map_err(|why| {
            logger(&format!("junos_sync_init: {why}"));
            Error::Invalid
        })?;
        let poll = Poll::new().map_err(|e| {
            logger(&format!("junos_sync_init: cannot create the event loop: {e}"));
            Error::NoMem
        })?;
        let waker = Waker::new(poll.registry(), tokens::WAKER).map_err(|e| {
            logger(&format!("junos_sync_init: cannot create the loop's waker: {e}"));
            Error::NoMem
        })?;
        let (ctrl_tx, ctrl_rx) = crossbeam_channel::unbounded();
        crate::sys::barriers_ready();
        let shared = Shared::new(cfg.is_master, cfg.no_resync, logger, backlog_limit);
        shared.resync_buffer.store(resync_buffer, Ordering::Relaxed);
        *shared.status.lock() =
            Snapshot { is_master: cfg.is_master, port: cfg.port, keyed: !keys.is_empty(), ..Snapshot::default() };
        Ok(Context {
            freer: Mutex::new(app.freer()),
            shared,
            ring: Arc::new(Ring::new()),
            ctrl_tx,
            waker: Arc::new(waker),
            stage: Mutex::new(Stage::Unstarted(Box::new(Unstarted { poll, app, ctrl_rx, cfg, keys }))),
            last_ref: Arc::default(),
            session: new_session_id(),
            appq: Mutex::new(None),
            app_side: Mutex::new(None),
            exit_hook: Mutex::new(None),
            status_dir,
            next_addr: Mutex::new(None),
        })
    }

    /// Logs through the application's logger.
    pub fn log(&self, msg: &str) {
        self.shared.log(msg);
    }

    /// Replaces the logger (a switchover brings new callbacks).
    pub fn set_logger(&self, l: Logger) {
        self.shared.set_logger(l);
    }

    /// The context's counters.
    pub fn stats(&self) -> Result<Stats, Error> {
        self.usable("junos_sync_get_stats")?;
        Ok(self.shared.stats())
    }

    /// The replication status (published by the loop thread every turn; its ages are as of
    /// now).
    pub fn status(&self) -> Result<Status, Error> {
        self.usable("junos_sync_get_peer_info")?;
        Ok(self.shared.status.lock().at(Instant::now()))
    }

    /// Fails every call after the loop thread died, saying so.
    fn usable(&self, call: &str) -> Result<(), Error> {
        if self.shared.life.failed() {
            self.log(&format!("{call}: the context failed (its loop thread died); only junos_sync_exit is useful now"));
            return Err(Error::Internal);
        }
        Ok(())
    }

    /// Master: binds and listens (calling `bind_done` here, on the caller's thread, before the
    /// loop thread exists). Backup: starts connecting in the background.
    pub fn start(&self) -> Result<(), Error> {
        self.usable("junos_sync_start")?;
        if !self.shared.life.advance(State::Ready, State::Starting) {
            self.log("junos_sync_start: the context is already started");
            return Err(Error::State);
        }
        let Stage::Unstarted(kit) = std::mem::replace(&mut *self.stage.lock(), Stage::None) else {
            unreachable!("a Ready context holds its kit")
        };
        match self.launch(kit) {
            Ok(h) => {
                *self.stage.lock() = Stage::Loop(h);
                Ok(())
            }
            Err((e, Some(kit))) => {
                *self.stage.lock() = Stage::Unstarted(kit);
                self.shared.life.advance(State::Starting, State::Ready);
                Err(e)
            }
            Err((e, None)) => {
                // bind_done exited (Stopping), or the loop thread could not be made (Running).
                self.free_stray();
                self.shared.life.advance_any(State::Exited);
                Err(e)
            }
        }
    }

    fn launch(&self, mut kit: Kit<A>) -> Result<JoinHandle<()>, (Error, Option<Kit<A>>)> {
        let (cfg, taken) = match self.addressed(kit.cfg, "junos_sync_start") {
            Ok(c) => c,
            Err(e) => return Err((e, Some(kit))),
        };
        let role = if cfg.is_master {
            let (listener, bound) = match lobby::bind(&cfg) {
                Ok(l) => l,
                Err(why) => {
                    self.log(&format!("junos_sync_start: cannot bind {why}"));
                    return Err((Error::Socket, Some(kit)));
                }
            };
            let keys = std::mem::take(&mut kit.keys);
            let keyed = !keys.is_empty();
            match Master::new(listener, kit.poll.registry(), cfg, self.session, keys) {
                Ok(m) => {
                    warn_if_exposed(&self.shared, bound, keyed);
                    kit.app.bind_done(m.port());
                    if self.shared.life.state() == State::Stopping {
                        // bind_done called junos_sync_exit: no loop, nothing held but what
                        // was queued, which goes back through the callbacks of this start.
                        self.free_queued(&mut kit.app);
                        return Err((Error::State, None));
                    }
                    Role::Master(m)
                }
                Err(e) => {
                    self.log(&format!("junos_sync_start: cannot register the listener: {e}"));
                    return Err((Error::Socket, Some(kit)));
                }
            }
        } else {
            Role::Backup(Backup::new(cfg, self.session, std::mem::take(&mut kit.keys)))
        };
        self.address_taken(taken);
        let Unstarted { poll, app, ctrl_rx, .. } = *kit;
        let d = Dispatcher::new(app, self.shared.clone());
        let port = match self.appq.lock().clone() {
            Some(q) => {
                *self.app_side.lock() = Some(Box::new(AppSide::new(d)));
                Runner::AppThread(q)
            }
            None => Runner::Inline(Box::new(d)),
        };
        let eng = Engine {
            poll,
            app: AppPath::new(self.shared.clone(), port),
            ring: self.ring.clone(),
            ctrl_rx,
            role,
            session: self.session,
            status_dir: self.status_dir.clone(),
            status: None,
            published: Published { state: LinkState::Down, peer: None, since: Instant::now() },
        };
        // Running from now on: the loop's callbacks may exit the context.
        self.shared.life.advance(State::Starting, State::Running);
        runloop::spawn(eng, self.last_ref.clone()).map_err(|e| {
            // The engine (and the application's callbacks) went down with the failed spawn.
            self.log(&format!("junos_sync_start: cannot start the loop thread: {e}"));
            (Error::NoMem, None)
        })
    }

    /// Hands a TLV to the loop: one compare-and-swap claims its slot and charges its bytes, one
    /// store publishes it. Never blocks; makes no system call unless the loop sleeps (then one
    /// wakes it), is far behind (then, once every 1024 calls, a `sched_yield` lets it run on a
    /// shared CPU: `queue/pace.rs`) or the backlog overflows (then the loop is told).
    pub fn queue(&self, tlv: A::Tlv, ack: bool) -> Result<(), (Error, A::Tlv)> {
        if let Err(e) = self.usable("junos_sync_queue") {
            return Err((e, tlv));
        }
        if !self.shared.is_master.load(Ordering::Relaxed) {
            self.log("junos_sync_queue: this context is a backup; only a master queues");
            return Err((Error::State, tlv));
        }
        if tlv.payload_len() > MAX_DATA_LEN as usize {
            self.log("junos_sync_queue: tlv_len is over JUNOS_SYNC_MAX_TLV_LEN");
            return Err((Error::Invalid, tlv));
        }
        match self.shared.budget.claim(counted_size(&tlv)) {
            Ok(slot) => {
                self.ring.publish(slot, tlv, ack);
                self.shared.sleeper.after_publish(&self.waker);
                if self.shared.pace.should_yield(&self.shared.budget, slot) {
                    std::thread::yield_now();
                }
                Ok(())
            }
            Err(_)
                if self.shared.no_resync.load(Ordering::Relaxed)
                    || self.shared.refuse_overflow.load(Ordering::Relaxed) =>
            {
                Err((Error::BacklogFull, tlv))
            }
            Err(_) => {
                // Over the limit with resync: the backlog is dropped and the next backup session
                // is a full resync from the database, which covers this TLV too (a wait after
                // this call needs that resync: counted before the loop is asked).
                self.shared.waits.asked();
                if !self.shared.overflow_requested.swap(true, Ordering::AcqRel) {
                    let _ = self.waker.wake();
                }
                let free = self.freer.lock().clone();
                free(tlv);
                Ok(())
            }
        }
    }

    /// Changes role in place. Master side binds before returning (and calls `bind_done`).
    pub fn switchover(&self, cfg: Config, app: A) -> Result<(), Error> {
        self.usable("junos_sync_switchover")?;
        if let Some(why) = check(&cfg, &app) {
            self.log(&format!("junos_sync_switchover: {why}"));
            return Err(Error::Invalid);
        }
        if self.shared.in_callback() {
            self.log("junos_sync_switchover: not allowed from inside a callback");
            return Err(Error::State);
        }
        {
            let mut stage = self.stage.lock();
            match (&mut *stage, self.shared.life.state()) {
                (Stage::Unstarted(kit), State::Ready) => {
                    // Not started: the new role takes effect at start.
                    *self.freer.lock() = app.freer();
                    let old = std::mem::replace(&mut kit.app, app);
                    kit.cfg = cfg;
                    self.shared.is_master.store(cfg.is_master, Ordering::SeqCst);
                    self.shared.no_resync.store(cfg.no_resync, Ordering::SeqCst);
                    drop(stage);
                    drop(old);
                    return Ok(());
                }
                (Stage::Loop(_), State::Running) => {}
                _ => {
                    drop(stage);
                    self.log("junos_sync_switchover: the context is starting or has exited");
                    return Err(Error::State);
                }
            }
        }
        let (cfg, taken) = self.addressed(cfg, "junos_sync_switchover")?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let freer = app.freer();
        if self.ctrl_tx.send(Ctrl::Switchover { cfg, app, reply: tx }).is_err() {
            return Err(Error::State);
        }
        let _ = self.waker.wake();
        let r = rx.recv().unwrap_or(Err(Error::Internal));
        if r.is_ok() {
            self.address_taken(taken);
            *self.freer.lock() = freer;
        }
        r
    }

    /// Runs `hook` first thing in `exit`, on the exiting thread.
    pub fn on_exit(&self, hook: Box<dyn FnOnce() + Send>) {
        *self.exit_hook.lock() = Some(hook);
    }

    /// Whether the context is started (or starting, or gone).
    pub fn started(&self) -> bool {
        self.shared.life.state() != State::Ready
    }
}
