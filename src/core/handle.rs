//! A context as API callers see it: safe to share between threads, cheap to queue on.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use mio::{Poll, Waker};
use parking_lot::Mutex;

use super::app::{App, Freer, Logger, Tlv};
use super::backup::Backup;
use super::config::{Config, DEFAULT_BACKLOG_LIMIT};
use super::engine::{self, Ctrl, Engine, Role};
use super::env::{held_size, Env};
use super::error::Error;
use super::handoff::Handoff;
use super::master::{self, Master};
use super::shared::Shared;
use super::tokens;
use super::wire::MAX_DATA_LEN;

/// Queue slots allocated up front (24 bytes each); beyond them `junos_sync_queue` spills.
const HANDOFF_RING: usize = 64 * 1024;

/// What a context needs to start its loop, kept until `start`.
struct Kit<A: App> {
    poll: Poll,
    app: A,
    ctrl_rx: Receiver<Ctrl<A>>,
    cfg: Config,
}

enum Phase<A: App> {
    Ready(Kit<A>),
    Running(JoinHandle<()>),
    /// Between `take` and the end of `start` (or a failed `start`).
    Starting,
}

pub struct Context<A: App> {
    shared: Arc<Shared>,
    data: Arc<Handoff<(A::Tlv, bool)>>,
    ctrl_tx: Sender<Ctrl<A>>,
    waker: Arc<Waker>,
    phase: Mutex<Phase<A>>,
    session: u64,
    /// `exit` was called (it may be from a callback inside `start`).
    exit_requested: std::sync::atomic::AtomicBool,
    /// The current application's free, for TLVs dropped on the caller's thread.
    freer: Mutex<Freer<A::Tlv>>,
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

/// The backlog limit from `JUNOS_SYNC_BACKLOG_LIMIT` (bytes), or the default.
fn backlog_limit_from_env() -> usize {
    std::env::var("JUNOS_SYNC_BACKLOG_LIMIT").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(DEFAULT_BACKLOG_LIMIT)
}

impl<A: App> Context<A> {
    pub fn new(cfg: Config, app: A, logger: Logger) -> Result<Self, Error> {
        if let Some(why) = check(&cfg, &app) {
            logger(&format!("junos_sync_init: {why}"));
            return Err(Error::Invalid);
        }
        let poll = Poll::new().map_err(|e| {
            logger(&format!("junos_sync_init: cannot create the event loop: {e}"));
            Error::NoMem
        })?;
        let waker = Waker::new(poll.registry(), tokens::WAKER).map_err(|e| {
            logger(&format!("junos_sync_init: cannot create the loop's waker: {e}"));
            Error::NoMem
        })?;
        let data = Arc::new(Handoff::new(HANDOFF_RING));
        let (ctrl_tx, ctrl_rx) = crossbeam_channel::unbounded();
        let shared = Shared::new(cfg.is_master, cfg.no_resync, logger, backlog_limit_from_env());
        let freer = Mutex::new(app.freer());
        Ok(Context {
            freer,
            shared,
            data,
            ctrl_tx,
            waker: Arc::new(waker),
            phase: Mutex::new(Phase::Ready(Kit { poll, app, ctrl_rx, cfg })),
            exit_requested: std::sync::atomic::AtomicBool::new(false),
            session: new_session_id(),
        })
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Master: binds and listens (calling `bind_done` here, on the caller's thread, before the
    /// loop thread exists). Backup: starts connecting in the background.
    pub fn start(&self) -> Result<(), Error> {
        let prev = std::mem::replace(&mut *self.phase.lock(), Phase::Starting);
        let kit = match prev {
            Phase::Ready(kit) => kit,
            other => {
                *self.phase.lock() = other;
                self.shared.log("junos_sync_start: the context is already started");
                return Err(Error::State);
            }
        };
        match self.launch(kit) {
            Ok(h) => {
                *self.phase.lock() = Phase::Running(h);
                Ok(())
            }
            Err((e, Some(kit))) => {
                *self.phase.lock() = Phase::Ready(kit);
                Err(e)
            }
            // The loop thread could not be made and took the kit down with it: the context
            // stays in Starting, where only exit is useful.
            Err((e, None)) => Err(e),
        }
    }

    fn launch(&self, mut kit: Kit<A>) -> Result<JoinHandle<()>, (Error, Option<Kit<A>>)> {
        let role = if kit.cfg.is_master {
            let listener = match master::bind(&kit.cfg) {
                Ok(l) => l,
                Err(e) => {
                    self.shared.log(&format!("junos_sync_start: cannot bind {}: {e}", kit.cfg.sock_addr()));
                    return Err((Error::Socket, Some(kit)));
                }
            };
            match Master::new(listener, kit.poll.registry(), kit.cfg, self.session) {
                Ok(m) => {
                    kit.app.bind_done(m.port());
                    if self.exit_requested.load(Ordering::Acquire) {
                        // bind_done called junos_sync_exit: no loop, nothing held.
                        self.free_queued(&mut kit.app);
                        return Err((Error::State, None));
                    }
                    Role::Master(m)
                }
                Err(e) => {
                    self.shared.log(&format!("junos_sync_start: cannot register the listener: {e}"));
                    return Err((Error::Socket, Some(kit)));
                }
            }
        } else {
            Role::Backup(Backup::new(kit.cfg, self.session))
        };
        let Kit { poll, app, ctrl_rx, .. } = kit;
        let eng = Engine {
            poll,
            env: Env::new(app, self.shared.clone()),
            data: self.data.clone(),
            spare: VecDeque::new(),
            ctrl_rx,
            role,
            session: self.session,
        };
        engine::spawn(eng).map_err(|e| {
            // The engine (and the application's callbacks) went down with the failed spawn.
            self.shared.log(&format!("junos_sync_start: cannot start the loop thread: {e}"));
            (Error::NoMem, None)
        })
    }

    /// Hands a TLV to the loop. Never blocks and makes no system call unless the loop sleeps.
    pub fn queue(&self, tlv: A::Tlv, ack: bool) -> Result<(), (Error, A::Tlv)> {
        if !self.shared.is_master.load(Ordering::Relaxed) {
            self.shared.log("junos_sync_queue: this context is a backup; only a master queues");
            return Err((Error::State, tlv));
        }
        if tlv.payload().len() > MAX_DATA_LEN as usize {
            self.shared.log("junos_sync_queue: tlv_len is over JUNOS_SYNC_MAX_TLV_LEN");
            return Err((Error::Invalid, tlv));
        }
        let size = held_size(&tlv);
        let before = self.shared.held_bytes.fetch_add(size, Ordering::Relaxed);
        if before > 0 && before + size > self.shared.backlog_limit.load(Ordering::Relaxed) {
            self.shared.release_bytes(size);
            if self.shared.no_resync.load(Ordering::Relaxed) {
                return Err((Error::BacklogFull, tlv));
            }
            // Over the limit with resync: the backlog is dropped and the next backup session
            // is a full resync from the database, which covers this TLV too.
            if !self.shared.overflow.swap(true, Ordering::AcqRel) {
                let _ = self.waker.wake();
            }
            let free = self.freer.lock().clone();
            free(tlv);
            return Ok(());
        }
        self.data.push((tlv, ack));
        fence(Ordering::SeqCst);
        if self.shared.sleeping.load(Ordering::Relaxed) && self.shared.sleeping.swap(false, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
        Ok(())
    }

    /// A one-line description of the loop's state (diagnostics; waits for the loop).
    pub fn describe(&self) -> String {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.ctrl_tx.send(Ctrl::Describe(tx)).is_err() {
            return "stopped".to_string();
        }
        let _ = self.waker.wake();
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap_or_else(|_| "no answer".to_string())
    }

    /// Changes role in place. Master side binds before returning (and calls `bind_done`).
    pub fn switchover(&self, cfg: Config, app: A) -> Result<(), Error> {
        if let Some(why) = check(&cfg, &app) {
            self.shared.log(&format!("junos_sync_switchover: {why}"));
            return Err(Error::Invalid);
        }
        if self.shared.on_loop_thread() {
            self.shared.log("junos_sync_switchover: not allowed from inside a callback");
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
                Phase::Starting => {
                    self.shared.log("junos_sync_switchover: the context is starting");
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
        self.data.drain(&mut VecDeque::new(), |(t, _)| {
            self.shared.release_bytes(held_size(&t));
            app.free(t);
        });
    }

    /// Stops the loop and frees everything it holds. From inside a callback on the loop
    /// thread the loop finishes the job right after that callback returns; from inside
    /// `bind_done` during `start`, `start` does. The caller frees the context itself (the C
    /// layer holds it in an `Arc`, so a call still inside `start` or `switchover` keeps it
    /// alive until it returns).
    pub fn exit(&self) {
        if self.shared.on_loop_thread() {
            self.shared.halt.store(true, Ordering::Release);
            return;
        }
        self.exit_requested.store(true, Ordering::Release);
        let prev = std::mem::replace(&mut *self.phase.lock(), Phase::Starting);
        match prev {
            Phase::Running(h) => {
                let _ = self.ctrl_tx.send(Ctrl::Exit);
                let _ = self.waker.wake();
                let _ = h.join();
            }
            Phase::Ready(mut kit) => {
                self.free_queued(&mut kit.app);
            }
            // Inside `start` (its bind_done callback): `start` sees `exit_requested`.
            Phase::Starting => {}
        }
    }
}
