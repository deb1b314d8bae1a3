//! A context's role and addressing, validated.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::engine::net::addr::{Host, Hosts};

pub(crate) const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(10);
/// Default bound on what a master holds unacknowledged.
pub(crate) const DEFAULT_BACKLOG_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub is_master: bool,
    pub no_resync: bool,
    /// Master: the addresses to bind, tried in turn until one binds (unspecified = all).
    /// Backup: the master's addresses, tried in turn.
    pub(crate) hosts: Hosts,
    /// Master: port to bind (0 = any). Backup: the master's port.
    pub port: u16,
    pub keepalive: Duration,
    /// Backup: the highest stream version it offers (the protocol's, `PROTOCOL_VERSION`; a
    /// lower one makes it talk as an older release does, which tests use).
    pub max_version: u16,
}

/// A keepalive time as the handshake carries it: milliseconds, saturating at u32::MAX (49 days).
pub fn keepalive_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Config {
    /// `keepalive_secs == 0` means the default.
    pub fn new(is_master: bool, no_resync: bool, addr_host_order: u32, port: u16, keepalive_secs: u32) -> Self {
        let keepalive =
            if keepalive_secs == 0 { DEFAULT_KEEPALIVE } else { Duration::from_secs(u64::from(keepalive_secs)) };
        Config {
            is_master,
            no_resync,
            hosts: Hosts::one(Host::v4(Ipv4Addr::from(addr_host_order))),
            port,
            keepalive,
            max_version: crate::proto::handshake::PROTOCOL_VERSION,
        }
    }

    /// The same, offering stream versions up to `v` only (a backup talking as release 1.1
    /// does with 1).
    pub fn speaking(mut self, v: u16) -> Self {
        self.max_version = v;
        self
    }

    /// The same at other addresses (`junos_sync_set_address`).
    pub(crate) fn at(mut self, hosts: Hosts, port: u16) -> Self {
        self.hosts = hosts;
        self.port = port;
        self
    }

    /// Address `i` of the role, counting round.
    pub(crate) fn sock_addr(&self, i: usize) -> SocketAddr {
        self.hosts.get(i).at(self.port)
    }

    pub(crate) fn sock_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.hosts.iter().map(|h| h.at(self.port))
    }

    /// Why this configuration cannot work, if it cannot.
    pub fn problem(&self) -> Option<&'static str> {
        if !self.is_master && self.port == 0 {
            return Some("a backup needs the master's port (server_port, or junos_sync_set_address's port, is 0)");
        }
        if !self.is_master && self.hosts.iter().any(|h| h.ip().is_unspecified()) {
            return Some(
                "a backup needs the master's address (server_addr is 0, or junos_sync_set_address gave 0.0.0.0 or ::)",
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let c = Config::new(true, false, 0, 0, 0);
        assert_eq!(c.keepalive, DEFAULT_KEEPALIVE);
        assert_eq!(c.problem(), None);
        let b = Config::new(false, false, 0x7f00_0001, 0, 3);
        assert_eq!(b.sock_addr(0), "127.0.0.1:0".parse().unwrap());
        assert_eq!(b.keepalive, Duration::from_secs(3));
        assert!(b.problem().is_some());
        assert_eq!(Config::new(false, false, 0x7f00_0001, 9, 3).problem(), None);
        let any6 = Hosts::of(["[::]:0".parse().unwrap()]).unwrap();
        assert!(b.at(any6, 9).problem().is_some(), ":: is no master to connect to");
        let two = Hosts::of(["[::1]:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap()]).unwrap();
        let b = b.at(two, 9);
        assert_eq!(b.problem(), None);
        assert_eq!(b.sock_addrs().map(|a| a.to_string()).collect::<Vec<_>>(), ["[::1]:9", "127.0.0.1:9"]);
        assert_eq!(b.sock_addr(2), b.sock_addr(0));
    }
}
