//! The settings a context takes before (and some after) its start: backlog limit, overflow
//! policy, resync buffer, event loop, keys and address.

use super::*;

impl<A: App> Context<A> {
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

    /// Master: what the backlog limit does, `refuse` (`junos_sync_queue` returns BACKLOG_FULL)
    /// or drop the backlog for a full resync (the default). Any time; a switchover keeps it.
    pub fn set_overflow_policy(&self, refuse: bool) -> Result<(), Error> {
        self.usable("junos_sync_set_overflow_policy")?;
        if !self.shared.is_master.load(Ordering::Relaxed) {
            self.log("junos_sync_set_overflow_policy: this context is a backup; only a master has a backlog");
            return Err(Error::State);
        }
        self.shared.refuse_overflow.store(refuse, Ordering::Relaxed);
        Ok(())
    }

    /// Backup: hold up to `bytes` of a full resync's entries until its end (0: off). Takes
    /// effect at the next resync's start; a switchover keeps it.
    pub fn set_resync_buffer(&self, bytes: usize) -> Result<(), Error> {
        self.usable("junos_sync_set_resync_buffer")?;
        if self.shared.is_master.load(Ordering::Relaxed) {
            self.log("junos_sync_set_resync_buffer: this context is a master; only a backup receives a resync");
            return Err(Error::State);
        }
        self.shared.resync_buffer.store(bytes, Ordering::Relaxed);
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

    pub(super) fn with_keys(&self, call: &str, key: &[u8], f: impl FnOnce(&mut Keys) -> bool) -> Result<(), Error> {
        self.usable(call)?;
        if let Some(why) = Keys::problem(key) {
            self.log(&format!("{call}: {why}"));
            return Err(Error::Invalid);
        }
        let mut stage = self.stage.lock();
        let Stage::Unstarted(kit) = &mut *stage else {
            drop(stage);
            self.log(&format!("{call}: keys are set before junos_sync_start"));
            return Err(Error::State);
        };
        if f(&mut kit.keys) {
            Ok(())
        } else {
            drop(stage);
            self.log(&format!("{call}: a context holds at most {} keys", crate::engine::keys::MAX_KEYS));
            Err(Error::Invalid)
        }
    }

    /// The address and port of the next role the context takes up: the one `start` starts, or,
    /// once started, the one the next `switchover` switches to (the running role keeps its
    /// own). They replace that role's `Config` addresses and port. Checked here (a literal, its
    /// scope, a name's form); a name is looked up when the role starts. Replaces an address set
    /// before that no role took yet.
    pub fn set_address(&self, address: &str, port: u16) -> Result<(), Error> {
        const CALL: &str = "junos_sync_set_address";
        self.usable(CALL)?;
        let spec = addr::parse(address).map_err(|why| {
            self.log(&format!("{CALL}: {why}"));
            Error::Invalid
        })?;
        if !matches!(self.shared.life.state(), State::Ready | State::Starting | State::Running) {
            self.log(&format!("{CALL}: the context is exiting"));
            return Err(Error::State);
        }
        *self.next_addr.lock() = Some((spec, port));
        Ok(())
    }

    /// `cfg` at the address `set_address` gave for the next role, if it gave one (a name looked
    /// up here, on the caller's thread, waiting at most `addr::RESOLVE_LIMIT`), checked; and the
    /// address it took, for `address_taken` once the role started.
    pub(super) fn addressed(&self, cfg: Config, call: &str) -> Result<(Config, NextAddr), Error> {
        let next = self.next_addr.lock().clone();
        let cfg = match &next {
            None => cfg,
            Some((spec, port)) => {
                let hosts = spec.resolve(addr::RESOLVE_LIMIT).map_err(|why| {
                    self.log(&format!("{call}: {why}"));
                    Error::Invalid
                })?;
                let cfg = cfg.at(hosts, *port);
                if let Spec::Name(name) = spec {
                    self.log(&format!("{call}: {name:?} is {}", addr::list(cfg.sock_addrs())));
                }
                cfg
            }
        };
        if let Some(why) = cfg.problem() {
            self.log(&format!("{call}: {why}"));
            return Err(Error::Invalid);
        }
        Ok((cfg, next))
    }

    /// A role started at the address `set_address` gave: it is no longer pending (unless set
    /// again meanwhile).
    pub(super) fn address_taken(&self, taken: NextAddr) {
        let mut next = self.next_addr.lock();
        if taken.is_some() && *next == taken {
            *next = None;
        }
    }
}
