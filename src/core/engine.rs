//! The loop thread of one context: owns the sockets and the role, takes work from the API
//! through channels, and sleeps in `poll` only when there is nothing to do.

use std::collections::VecDeque;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Poll};

use super::app::App;
use super::backup::Backup;
use super::config::Config;
use super::env::Env;
use super::error::Error;
use super::handoff::Handoff;
use super::master::{self, Master};
use super::shared::Shared;
use super::tokens;

/// Requests from API calls other than `junos_sync_queue`.
pub enum Ctrl<A: App> {
    Exit,
    /// A one-line description of the loop's state, for diagnostics.
    Describe(Sender<String>),
    Switchover {
        cfg: Config,
        app: A,
        reply: Sender<Result<(), Error>>,
    },
}

pub enum Role<A: App> {
    Master(Master<A>),
    Backup(Backup),
}

pub struct Engine<A: App> {
    pub poll: Poll,
    pub env: Env<A>,
    pub data: Arc<Handoff<(A::Tlv, bool)>>,
    /// The loop's half of the hand-off's double buffer.
    pub spare: VecDeque<(A::Tlv, bool)>,
    pub ctrl_rx: Receiver<Ctrl<A>>,
    pub role: Role<A>,
    pub session: u64,
}

impl<A: App> Engine<A> {
    pub fn run(mut self) {
        *self.env.shared.loop_thread.lock() = Some(std::thread::current().id());
        let mut events = Events::with_capacity(256);
        loop {
            while let Ok(c) = self.ctrl_rx.try_recv() {
                match c {
                    Ctrl::Exit => return self.teardown(true),
                    Ctrl::Describe(tx) => {
                        let _ = tx.send(match &self.role {
                            Role::Master(m) => m.describe(),
                            Role::Backup(b) => b.describe(),
                        });
                    }
                    Ctrl::Switchover { cfg, app, reply } => {
                        let r = self.switchover(cfg, app);
                        let _ = reply.send(r);
                    }
                }
            }
            if self.env.halted() {
                return self.teardown(false);
            }
            self.drain_data();
            // A plain load first: the flag is almost never set, and a swap would take the cache
            // line from the producers every turn.
            if self.env.shared.overflow.load(Ordering::Relaxed)
                && self.env.shared.overflow.swap(false, Ordering::AcqRel)
            {
                self.overflow();
            }
            let now = Instant::now();
            let reg = self.poll.registry();
            let busy = match &mut self.role {
                Role::Master(m) => m.step(&mut self.env, reg, now),
                Role::Backup(b) => b.step(&mut self.env, reg, now),
            };
            if self.env.halted() {
                return self.teardown(false);
            }
            self.env.settle();
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
                self.env.shared.sleeping.store(true, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                if !self.data.is_empty() || !self.ctrl_rx.is_empty() {
                    timeout = Some(Duration::ZERO);
                }
            }
            let r = self.poll.poll(&mut events, timeout);
            self.env.shared.sleeping.store(false, Ordering::Relaxed);
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

    fn drain_data(&mut self) {
        let Engine { data, spare, role, env, .. } = self;
        match role {
            Role::Master(m) => data.drain(spare, |(t, ack)| m.enqueue(t, ack)),
            // Only a queue call racing a switchover to backup gets here.
            Role::Backup(_) => data.drain(spare, |(t, _)| {
                env.log("junos-sync: TLV queued while switching to backup; freed unsent");
                env.free(t);
            }),
        }
    }

    /// Frees everything still in the hand-off.
    fn free_queued(&mut self) {
        let Engine { data, spare, env, .. } = self;
        data.drain(spare, |(t, _)| env.free(t));
    }

    /// The backlog went over its limit: drop it; the next backup session starts from a walk.
    fn overflow(&mut self) {
        if let Role::Master(m) = &mut self.role {
            m.overflow(&mut self.env, self.poll.registry());
            self.free_queued();
            self.env.settle();
        }
    }

    fn switchover(&mut self, cfg: Config, app: A) -> Result<(), Error> {
        let listener = if cfg.is_master {
            match master::bind(&cfg) {
                Ok(l) => Some(l),
                Err(e) => {
                    self.env.log(&format!("junos-sync: switchover cannot bind {}: {e}", cfg.sock_addr()));
                    return Err(Error::Socket);
                }
            }
        } else {
            None
        };
        self.env.shared.is_master.store(cfg.is_master, Ordering::SeqCst);
        self.env.shared.no_resync.store(cfg.no_resync, Ordering::SeqCst);
        self.drain_data();
        self.end_role(true);
        self.env.app = app;
        let reg = self.poll.registry();
        self.role = match listener {
            Some(l) => match Master::new(l, reg, cfg, self.session) {
                Ok(m) => {
                    self.env.app.bind_done(m.port());
                    Role::Master(m)
                }
                Err(e) => {
                    self.env.log(&format!("junos-sync: switchover cannot register listener: {e}"));
                    return Err(Error::Socket);
                }
            },
            None => Role::Backup(Backup::new(cfg, self.session)),
        };
        let role = match &self.role {
            Role::Master(m) => format!("master listening on {}:{}", cfg.addr, m.port()),
            Role::Backup(_) => format!("backup of {}", cfg.sock_addr()),
        };
        self.env.log(&format!("junos-sync: switched over to {role}"));
        Ok(())
    }

    /// Stops the current role, freeing what it holds; the role is left as an idle backup.
    fn end_role(&mut self, notify: bool) {
        let idle = Role::Backup(Backup::dormant());
        let reg = self.poll.registry();
        match std::mem::replace(&mut self.role, idle) {
            Role::Master(m) => m.shutdown(&mut self.env, reg, notify),
            Role::Backup(b) => b.shutdown(&mut self.env, reg, notify),
        }
    }

    /// Frees everything and ends the thread. `notify`: DOWN is reported (not when exiting
    /// from inside a callback, where the application has already let go of the context).
    fn teardown(mut self, notify: bool) {
        self.end_role(notify && !self.env.halted());
        self.free_queued();
        self.env.settle();
        *self.env.shared.loop_thread.lock() = None;
    }
}

/// Makes the loop thread for a started context.
pub fn spawn<A: App>(engine: Engine<A>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("junos-sync".into()).spawn(move || {
        crate::sys::block_sigpipe_on_this_thread();
        let shared: Arc<Shared> = engine.env.shared.clone();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.run())).is_err() {
            shared.log("junos-sync: internal error: the loop thread panicked; replication stopped");
        }
    })
}
