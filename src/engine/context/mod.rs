//! A context as API callers see it: the one facade of the engine, safe to share between
//! threads, cheap to queue on.

pub(crate) mod handoff;

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::{Poll, Waker};
use parking_lot::Mutex;

use crate::engine::app::appq::AppQueue;
use crate::engine::app::calls::{Call, Reply};
use crate::engine::app::dispatcher::Dispatcher;
use crate::engine::app::env::{Env, Port};
use crate::engine::app::{App, Freer, Logger, Tlv};
use crate::engine::backup::Backup;
use crate::engine::config::Config;
use crate::engine::context::handoff::Handoff;
use crate::engine::env_vars::{self, FromEnv};
use crate::engine::error::Error;
use crate::engine::keys::Keys;
use crate::engine::master::lobby;
use crate::engine::master::Master;
use crate::engine::net::tokens;
use crate::engine::runloop::{self, warn_if_exposed, Ctrl, Deferred, Engine, Queued, Role};
use crate::engine::shared::{Shared, Stats};
use crate::engine::status::{LinkState, Snapshot, Status};
use crate::proto::wire::MAX_DATA_LEN;
use crate::sys::Bell;

/// Queue slots allocated up front (24 bytes each); beyond them `junos_sync_queue` spills.
const HANDOFF_RING: usize = 64 * 1024;
/// How long one dispatch runs the application's callbacks before it returns (and leaves its
/// descriptor readable): a resync walk of a million entries must not freeze its event loop.
const DISPATCH_SLICE: Duration = Duration::from_millis(1);

/// What a context needs to start its loop, kept until `start`.
struct Kit<A: App> {
    poll: Poll,
    app: A,
    ctrl_rx: Receiver<Ctrl<A>>,
    cfg: Config,
    keys: Keys,
}

enum Phase<A: App> {
    /// Made by `new`, not started.
    Ready(Kit<A>),
    /// Inside `start`, between taking the kit and the loop thread running.
    Starting,
    Running(JoinHandle<()>),
    /// `exit` was called, or the loop thread could not be made.
    Exited,
}

pub struct Context<A: App> {
    shared: Arc<Shared>,
    data: Arc<Handoff<Queued<A::Tlv>>>,
    ctrl_tx: Sender<Ctrl<A>>,
    waker: Arc<Waker>,
    phase: Mutex<Phase<A>>,
    session: u64,
    /// `exit` was called (it may be from a callback inside `start`).
    exit_requested: AtomicBool,
    /// `claim_exit` has been answered true once.
    exit_claimed: AtomicBool,
    /// Dropped by the loop thread when it ends (see `exit`).
    deferred: Arc<Deferred>,
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
}

/// What runs on the application's thread in dispatch mode.
struct AppSide<A: App> {
    d: Dispatcher<A>,
    calls: VecDeque<Call<A>>,
    replies: Vec<Reply<A::Tlv>>,
}

/// A random, non-zero session id.
fn new_session_id() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish() | 1
}

/// Why `cfg` and `app` cannot work together, if they cannot.
fn check<A: App>(cfg: &Config, app: &A) -> Option<&'static str> {
    if let Some(p) = cfg.problem() {
        return Some(p);
    }
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
        if let Some(why) = check(&cfg, &app) {
            logger(&format!("junos_sync_init: {why}"));
            return Err(Error::Invalid);
        }
        let FromEnv { keys, backlog_limit, status_dir } = env_vars::read().map_err(|why| {
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
        let shared = Shared::new(cfg.is_master, cfg.no_resync, logger, backlog_limit);
        *shared.status.lock() =
            Snapshot { is_master: cfg.is_master, port: cfg.port, keyed: !keys.is_empty(), ..Snapshot::default() };
        Ok(Context {
            freer: Mutex::new(app.freer()),
            shared,
            data: Arc::new(Handoff::new(HANDOFF_RING)),
            ctrl_tx,
            waker: Arc::new(waker),
            phase: Mutex::new(Phase::Ready(Kit { poll, app, ctrl_rx, cfg, keys })),
            exit_requested: AtomicBool::new(false),
            exit_claimed: AtomicBool::new(false),
            deferred: Arc::default(),
            session: new_session_id(),
            appq: Mutex::new(None),
            app_side: Mutex::new(None),
            exit_hook: Mutex::new(None),
            status_dir,
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

    /// Bounds the TLV bytes a master holds unacknowledged.
    pub fn set_backlog_limit(&self, bytes: usize) -> Result<(), Error> {
        self.usable("junos_sync_set_backlog_limit")?;
        if bytes == 0 {
            self.log("junos_sync_set_backlog_limit: 0 bytes");
            return Err(Error::Invalid);
        }
        self.shared.budget.set_limit(bytes);
        Ok(())
    }

    /// Records the application's evContext (compatibility only).
    pub fn set_event_context(&self, ev: usize) -> Result<(), Error> {
        self.usable("junos_sync_set_event_context")?;
        self.shared.event_context.store(ev, Ordering::Relaxed);
        Ok(())
    }

    /// Authentication keys, before `start`: `set_auth_key` replaces them all with `key`,
    /// `add_auth_key` adds one also accepted (key rotation).
    pub fn set_auth_key(&self, key: &[u8]) -> Result<(), Error> {
        self.with_keys("junos_sync_set_auth_key", key, |k| {
            k.set(key);
            true
        })
    }

    pub fn add_auth_key(&self, key: &[u8]) -> Result<(), Error> {
        self.with_keys("junos_sync_add_auth_key", key, |k| k.add(key))
    }

    fn with_keys(&self, call: &str, key: &[u8], f: impl FnOnce(&mut Keys) -> bool) -> Result<(), Error> {
        self.usable(call)?;
        if let Some(why) = Keys::problem(key) {
            self.log(&format!("{call}: {why}"));
            return Err(Error::Invalid);
        }
        let mut phase = self.phase.lock();
        let Phase::Ready(kit) = &mut *phase else {
            drop(phase);
            self.log(&format!("{call}: keys are set before junos_sync_start"));
            return Err(Error::State);
        };
        if f(&mut kit.keys) {
            Ok(())
        } else {
            drop(phase);
            self.log(&format!("{call}: a context holds at most {} keys", crate::engine::keys::MAX_KEYS));
            Err(Error::Invalid)
        }
    }

    /// Fails every call after the loop thread died, saying so.
    fn usable(&self, call: &str) -> Result<(), Error> {
        if self.shared.failed() {
            self.log(&format!("{call}: the context failed (its loop thread died); only junos_sync_exit is useful now"));
            return Err(Error::Internal);
        }
        Ok(())
    }

    /// Master: binds and listens (calling `bind_done` here, on the caller's thread, before the
    /// loop thread exists). Backup: starts connecting in the background.
    pub fn start(&self) -> Result<(), Error> {
        self.usable("junos_sync_start")?;
        let prev = std::mem::replace(&mut *self.phase.lock(), Phase::Starting);
        let kit = match prev {
            Phase::Ready(kit) => kit,
            other => {
                *self.phase.lock() = other;
                self.log("junos_sync_start: the context is already started");
                return Err(Error::State);
            }
        };
        let r = self.launch(kit);
        let mut phase = self.phase.lock();
        match r {
            Ok(h) => {
                *phase = Phase::Running(h);
                Ok(())
            }
            Err((e, Some(kit))) => {
                *phase = Phase::Ready(kit);
                Err(e)
            }
            Err((e, None)) => {
                *phase = Phase::Exited;
                Err(e)
            }
        }
    }

    fn launch(&self, mut kit: Kit<A>) -> Result<JoinHandle<()>, (Error, Option<Kit<A>>)> {
        let role = if kit.cfg.is_master {
            let listener = match lobby::bind(&kit.cfg) {
                Ok(l) => l,
                Err(e) => {
                    self.log(&format!("junos_sync_start: cannot bind {}: {e}", kit.cfg.sock_addr()));
                    return Err((Error::Socket, Some(kit)));
                }
            };
            let keys = std::mem::take(&mut kit.keys);
            let keyed = !keys.is_empty();
            match Master::new(listener, kit.poll.registry(), kit.cfg, self.session, keys) {
                Ok(m) => {
                    warn_if_exposed(&self.shared, &kit.cfg, keyed);
                    kit.app.bind_done(m.port());
                    if self.exit_requested.load(Ordering::Acquire) {
                        // bind_done called junos_sync_exit: no loop, nothing held.
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
            Role::Backup(Backup::new(kit.cfg, self.session, std::mem::take(&mut kit.keys)))
        };
        let Kit { poll, app, ctrl_rx, .. } = kit;
        let d = Dispatcher::new(app, self.shared.clone());
        let port = match self.appq.lock().clone() {
            Some(q) => {
                *self.app_side.lock() = Some(Box::new(AppSide { d, calls: VecDeque::new(), replies: Vec::new() }));
                Port::Deferred(q)
            }
            None => Port::Inline(Box::new(d)),
        };
        let eng = Engine {
            poll,
            env: Env::new(self.shared.clone(), port),
            data: self.data.clone(),
            spare: VecDeque::new(),
            ctrl_rx,
            role,
            session: self.session,
            status_dir: self.status_dir.clone(),
            status: None,
            published: (LinkState::Down, None, Instant::now()),
        };
        runloop::spawn(eng, self.deferred.clone()).map_err(|e| {
            // The engine (and the application's callbacks) went down with the failed spawn.
            self.log(&format!("junos_sync_start: cannot start the loop thread: {e}"));
            (Error::NoMem, None)
        })
    }

    /// Hands a TLV to the loop. Never blocks and makes no system call unless the loop sleeps.
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
        let held = match self.shared.budget.try_charge(tlv) {
            Ok(h) => h,
            Err(tlv) if self.shared.no_resync.load(Ordering::Relaxed) => return Err((Error::BacklogFull, tlv)),
            Err(tlv) => {
                // Over the limit with resync: the backlog is dropped and the next backup session
                // is a full resync from the database, which covers this TLV too.
                if !self.shared.overflow_requested.swap(true, Ordering::AcqRel) {
                    let _ = self.waker.wake();
                }
                let free = self.freer.lock().clone();
                free(tlv);
                return Ok(());
            }
        };
        self.data.push((held, ack));
        fence(Ordering::SeqCst);
        if self.shared.sleeping.load(Ordering::Relaxed) && self.shared.sleeping.swap(false, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
        Ok(())
    }

    /// Changes role in place. Master side binds before returning (and calls `bind_done`).
    pub fn switchover(&self, cfg: Config, app: A) -> Result<(), Error> {
        self.usable("junos_sync_switchover")?;
        if let Some(why) = check(&cfg, &app) {
            self.log(&format!("junos_sync_switchover: {why}"));
            return Err(Error::Invalid);
        }
        if self.shared.on_loop_thread() {
            self.log("junos_sync_switchover: not allowed from inside a callback");
            return Err(Error::State);
        }
        {
            let mut phase = self.phase.lock();
            match &mut *phase {
                Phase::Ready(kit) => {
                    // Not started: the new role takes effect at start.
                    *self.freer.lock() = app.freer();
                    let old = std::mem::replace(&mut kit.app, app);
                    kit.cfg = cfg;
                    self.shared.is_master.store(cfg.is_master, Ordering::SeqCst);
                    self.shared.no_resync.store(cfg.no_resync, Ordering::SeqCst);
                    drop(phase);
                    drop(old);
                    return Ok(());
                }
                Phase::Starting | Phase::Exited => {
                    drop(phase);
                    self.log("junos_sync_switchover: the context is starting or has exited");
                    return Err(Error::State);
                }
                Phase::Running(_) => {}
            }
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let freer = app.freer();
        if self.ctrl_tx.send(Ctrl::Switchover { cfg, app, reply: tx }).is_err() {
            return Err(Error::State);
        }
        let _ = self.waker.wake();
        let r = rx.recv().unwrap_or(Err(Error::Internal));
        if r.is_ok() {
            *self.freer.lock() = freer;
        }
        r
    }

    /// Frees what was queued but never reached a loop.
    fn free_queued(&self, app: &mut A) {
        self.data.drain(&mut VecDeque::new(), |(t, _)| app.free(self.shared.budget.release_now(t)));
    }

    /// True the first time only: the caller owns the exit. A second `exit` of the same
    /// context from a callback that the first one causes (DOWN, frees) must do nothing.
    pub fn claim_exit(&self) -> bool {
        !self.exit_claimed.swap(true, Ordering::AcqRel)
    }

    /// Stops the loop and frees everything it holds, then drops `owner` (the caller's
    /// reference to this context) once nothing of the context runs any more.
    ///
    /// From another thread that is before this returns. From inside a callback on the loop
    /// thread, the loop finishes the job right after that callback returns and drops `owner`
    /// as its last act, so that a callback the teardown makes can still reach the context.
    /// From inside `bind_done` during `start`, `start` finishes the job.
    pub fn exit<O: Send + 'static>(&self, owner: O) {
        let hook = self.exit_hook.lock().take();
        if let Some(h) = hook {
            h();
        }
        if self.shared.on_loop_thread() {
            *self.deferred.lock() = Some(Box::new(owner));
            self.shared.set_halt();
            let _ = self.waker.wake();
            return;
        }
        if self.appq.lock().is_some() {
            let side = self.app_side.lock().take();
            match side {
                Some(side) => {
                    self.finish_exit(*side, true);
                    drop(owner);
                    return;
                }
                None if matches!(*self.phase.lock(), Phase::Running(_)) => {
                    // Inside a dispatched callback: the dispatch finishes the exit on this
                    // thread as soon as the callback returns.
                    *self.deferred.lock() = Some(Box::new(owner));
                    self.shared.set_halt();
                    let _ = self.waker.wake();
                    return;
                }
                None => {}
            }
        }
        self.stop_loop();
        self.free_stray();
        drop(owner);
    }

    /// Ends the loop thread, if one runs: it frees (or, in dispatch mode, hands over) all it
    /// holds and tells DOWN if a connection was up.
    fn stop_loop(&self) {
        self.exit_requested.store(true, Ordering::Release);
        let prev = std::mem::replace(&mut *self.phase.lock(), Phase::Exited);
        if let Phase::Running(h) = prev {
            let _ = self.ctrl_tx.send(Ctrl::Exit);
            let _ = self.waker.wake();
            let _ = h.join();
        }
    }

    /// Frees what never reached a loop: queued before start, after a failed start, or racing
    /// the loop's end (or its death). (Inside `start`, from its bind_done, `start` ends it.)
    fn free_stray(&self) {
        let free = self.freer.lock().clone();
        self.data.drain(&mut VecDeque::new(), |(t, _)| free(self.shared.budget.release_now(t)));
    }

    /// Dispatch mode: ends the loop, then frees on this (the application's) thread everything
    /// the context holds, telling DOWN if `notify` and UP was told.
    fn finish_exit(&self, mut side: AppSide<A>, notify: bool) {
        self.stop_loop();
        if let Some(q) = self.appq.lock().clone() {
            let unread = q.drain(&mut side.calls);
            side.d.finish(&mut side.calls, unread, notify);
        }
        self.free_stray();
        // The application's reference, if an exit from a callback left it here; the caller of
        // `dispatch` holds its own.
        let owner = self.deferred.lock().take();
        drop(owner);
    }

    /// Dispatch mode: from `start` on, every callback runs inside `dispatch`, on the thread
    /// that calls it. Before `start`; returns the descriptor to watch for readability (the
    /// same one if called again).
    pub fn enable_dispatch(&self) -> Result<RawFd, Error> {
        self.usable("junos_sync_get_fd")?;
        let mut appq = self.appq.lock();
        if let Some(q) = appq.as_ref() {
            return Ok(q.fd());
        }
        if !matches!(*self.phase.lock(), Phase::Ready(_)) {
            self.log("junos_sync_get_fd: the context is started: call it before junos_sync_start");
            return Err(Error::State);
        }
        let bell = Bell::new().map_err(|e| {
            self.log(&format!("junos_sync_get_fd: cannot create an eventfd: {e}"));
            Error::NoMem
        })?;
        let q = Arc::new(AppQueue::new(bell, self.waker.clone()));
        let fd = q.fd();
        *appq = Some(q);
        Ok(fd)
    }

    /// Back to thread mode, before `start` (the application's loop could not take the
    /// descriptor).
    pub fn disable_dispatch(&self) {
        if matches!(*self.phase.lock(), Phase::Ready(_)) {
            *self.appq.lock() = None;
        }
    }

    /// Runs `hook` first thing in `exit`, on the exiting thread.
    pub fn on_exit(&self, hook: Box<dyn FnOnce() + Send>) {
        *self.exit_hook.lock() = Some(hook);
    }

    /// Whether the context is started (or starting).
    pub fn started(&self) -> bool {
        !matches!(*self.phase.lock(), Phase::Ready(_))
    }

    /// Dispatch mode: runs the callbacks that are due, for about a millisecond at most, and
    /// never blocks. The descriptor stays readable while more are due.
    pub fn dispatch(&self) -> Result<(), Error> {
        self.usable("junos_sync_dispatch")?;
        let Some(q) = self.appq.lock().clone() else {
            self.log("junos_sync_dispatch: the context is not in dispatch mode (see junos_sync_get_fd)");
            return Err(Error::State);
        };
        let Some(mut side) = self.app_side.lock().take() else {
            if matches!(*self.phase.lock(), Phase::Ready(_) | Phase::Starting) {
                return Ok(()); // not started: nothing is due
            }
            self.log("junos_sync_dispatch: not allowed from inside a callback");
            return Err(Error::State);
        };
        q.take(&mut side.calls);
        let until = Instant::now() + DISPATCH_SLICE;
        let r = catch_unwind(AssertUnwindSafe(|| side.d.run(&mut side.calls, &mut side.replies, Some(until))));
        q.answer(&mut side.replies);
        if self.shared.halted() {
            // junos_sync_exit from inside a callback: finish it here, on this thread.
            self.finish_exit(*side, false);
            return Ok(());
        }
        let more = r.unwrap_or_else(|_| {
            self.shared.set_dying();
            self.log("junos_sync_dispatch: internal error: a callback panicked; the context failed (only junos_sync_exit is useful now)");
            // The DOWN owed, before any call fails.
            let _ = catch_unwind(AssertUnwindSafe(|| side.d.owed_down()));
            self.shared.set_failed();
            false
        });
        if more || q.calls_waiting() {
            q.ring();
        }
        *self.app_side.lock() = Some(side);
        if self.shared.failed() {
            return Err(Error::Internal);
        }
        Ok(())
    }
}
