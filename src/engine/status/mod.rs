//! What a context tells an operator about its replication: role, peer, connection state, lag,
//! resync progress and counters. The loop thread publishes it (cheaply, once per turn) for the
//! API, and writes it as JSON to whoever connects to the status socket.

pub(crate) mod socket;

use std::collections::VecDeque;
use std::fmt::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::engine::counters::Stats;
use crate::engine::net::addr;

/// The state of the connection to the peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinkState {
    /// No connection (master: no backup; backup: waiting to retry).
    #[default]
    Down,
    /// Backup: TCP connect in progress.
    Connecting,
    /// Handshake in progress (keyed: key exchange, then HELLO/WELCOME).
    Handshake,
    /// Connected and replicating.
    Up,
}

impl LinkState {
    fn name(self) -> &'static str {
        match self {
            LinkState::Down => "down",
            LinkState::Connecting => "connecting",
            LinkState::Handshake => "handshake",
            LinkState::Up => "up",
        }
    }
}

/// A full resync's progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resync {
    /// Master: entries walked so far; backup: entries applied so far.
    pub walked: u64,
    /// Master: walked entries the backup acknowledged; backup: as `walked`.
    pub acked: u64,
    /// The resync is still going on.
    pub running: bool,
    /// It ended with its last entry acknowledged (master) or applied (backup); `running` and
    /// `complete` both false: it was interrupted (the connection went).
    pub complete: bool,
}

/// A context's replication, as of one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub is_master: bool,
    /// Master: the port it listens on; backup: the master's.
    pub port: u16,
    /// The peer connected (master: the backup; backup: the master, while connected).
    pub peer: Option<SocketAddr>,
    pub state: LinkState,
    /// How long the connection has been in `state`.
    pub since: Duration,
    pub keyed: bool,
    /// Master: the age of the oldest unacknowledged TLV (zero when all are acknowledged).
    pub lag: Duration,
    /// Master: TLVs (and walked entries) held unacknowledged.
    pub unacked_entries: u64,
    pub resync: Option<Resync>,
}

impl Status {
    /// The peer's address as text, without port: `192.0.2.2`, `2001:db8::2`, `fe80::2%eth1`.
    pub fn peer_address(&self) -> Option<String> {
        self.peer.map(addr::show_ip)
    }
}

/// What the loop publishes: a `Status` with instants instead of ages.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub is_master: bool,
    pub port: u16,
    pub peer: Option<SocketAddr>,
    pub state: LinkState,
    pub since: Option<Instant>,
    pub keyed: bool,
    pub oldest: Option<Instant>,
    pub unacked_entries: u64,
    pub resync: Option<Resync>,
}

impl Snapshot {
    pub(crate) fn at(&self, now: Instant) -> Status {
        let age = |t: Option<Instant>| t.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        Status {
            is_master: self.is_master,
            port: self.port,
            peer: self.peer,
            state: self.state,
            since: age(self.since),
            keyed: self.keyed,
            lag: age(self.oldest),
            unacked_entries: self.unacked_entries,
            resync: self.resync,
        }
    }
}

/// Most stamps kept; past it every other one goes (never the oldest), so a backup stalled for
/// hours costs a few dozen KiB and the lag of the oldest TLV stays exact to the millisecond.
const MAX_STAMPS: usize = 4096;

/// When sequence numbers were queued, to the millisecond: the age of the oldest one not
/// acknowledged, at a cost of one entry per millisecond of traffic, not per TLV.
#[derive(Default)]
pub(crate) struct Stamps(VecDeque<(u64, Instant)>, Option<Instant>);

impl Stamps {
    /// Sequence number `seq` was queued at `now` (on the path of every TLV: one comparison).
    #[inline]
    pub(crate) fn queued(&mut self, seq: u64, now: Instant) {
        if self.1.is_none_or(|next| now >= next) {
            self.stamp(seq, now);
        }
    }

    fn stamp(&mut self, seq: u64, now: Instant) {
        if self.0.len() >= MAX_STAMPS {
            self.0 = self.0.iter().step_by(2).copied().collect();
        }
        self.0.push_back((seq, now));
        self.1 = Some(now + Duration::from_millis(1));
    }

    /// Sequence numbers from `seq` on were dropped unsent and will be given again.
    pub(crate) fn forget_from(&mut self, seq: u64) {
        while self.0.back().is_some_and(|&(s, _)| s >= seq) {
            self.0.pop_back();
        }
        self.1 = None;
    }

    /// When the oldest entry still held (sequence number `front`) was queued, or up to a
    /// millisecond (or a thinned-out stretch) earlier; forgets what is older.
    pub(crate) fn oldest(&mut self, front: u64) -> Option<Instant> {
        while self.0.len() > 1 && self.0[1].0 <= front {
            self.0.pop_front();
        }
        self.0.front().map(|&(_, t)| t)
    }
}

/// The status as a JSON object (one line): what `junos-sync-stat` reads.
/// The status line; `warning` a state that the figures alone would hide (`Counters::behind`).
pub(crate) fn to_json(s: &Status, stats: &Stats, pid: u32, backlog_limit: usize, warning: Option<&str>) -> String {
    let mut j = String::with_capacity(1024);
    let _ = write!(
        j,
        "{{\"version\":1,\"pid\":{pid},\"role\":\"{}\",\"port\":{},\"peer\":{},\"state\":\"{}\",\"since_ms\":{},\"keyed\":{},\"lag_ms\":{},\"unacked_entries\":{},\"unacked_bytes\":{},\"backlog_limit\":{backlog_limit}",
        if s.is_master { "master" } else { "backup" },
        s.port,
        // `show` writes no quote, backslash or control character (see there).
        s.peer.map_or_else(|| "null".to_string(), |p| format!("\"{}\"", addr::show(p))),
        s.state.name(),
        s.since.as_millis(),
        s.keyed,
        s.lag.as_millis(),
        s.unacked_entries,
        stats.backlog_bytes,
    );
    match s.resync {
        Some(r) => {
            let _ = write!(
                j,
                ",\"resync\":{{\"running\":{},\"complete\":{},\"walked\":{},\"acked\":{}}}",
                r.running, r.complete, r.walked, r.acked
            );
        }
        None => j.push_str(",\"resync\":null"),
    }
    match warning {
        // The library's own words: no quote or backslash to escape.
        Some(w) => {
            let _ = write!(j, ",\"warning\":\"{}\"", w.replace(['"', '\\'], ""));
        }
        None => j.push_str(",\"warning\":null"),
    }
    j.push_str(",\"stats\":{");
    for (k, (name, v)) in Stats::NAMES.iter().zip(stats.values()).enumerate() {
        let _ = write!(j, "{}\"{name}\":{v}", if k == 0 { "" } else { "," });
    }
    j.push_str("}}\n");
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_give_the_oldest_unacknowledged_time() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = Stamps::default();
        s.queued(1, ms(0));
        s.queued(2, ms(0)); // same millisecond: no new stamp
        s.queued(3, ms(5));
        s.queued(10, ms(9));
        assert_eq!(s.oldest(1), Some(ms(0)));
        assert_eq!(s.oldest(2), Some(ms(0)), "seq 2 was queued in the first millisecond");
        assert_eq!(s.oldest(4), Some(ms(5)));
        assert_eq!(s.oldest(10), Some(ms(9)));
        assert_eq!(s.0.len(), 1);
    }

    #[test]
    fn a_long_stall_keeps_few_stamps_and_the_oldest() {
        let t0 = Instant::now();
        let mut s = Stamps::default();
        for i in 0..100_000u64 {
            s.queued(i + 1, t0 + Duration::from_millis(i));
        }
        assert!(s.0.len() <= MAX_STAMPS);
        assert_eq!(s.oldest(1), Some(t0));
    }

    #[test]
    fn json_has_every_field() {
        let s = Status {
            is_master: true,
            port: 4000,
            peer: Some("127.0.0.1:5555".parse().unwrap()),
            state: LinkState::Up,
            since: Duration::from_millis(1500),
            keyed: true,
            lag: Duration::from_millis(3),
            unacked_entries: 7,
            resync: Some(Resync { walked: 10, acked: 4, running: true, complete: false }),
        };
        let stats = Stats { connections: 2, backlog_bytes: 99, ..Stats::default() };
        let j = to_json(&s, &stats, 42, 1 << 20, Some("behind: no complete copy for 62 s, 97 aborted resyncs"));
        for want in [
            "\"pid\":42",
            "\"role\":\"master\"",
            "\"peer\":\"127.0.0.1:5555\"",
            "\"state\":\"up\"",
            "\"since_ms\":1500",
            "\"keyed\":true",
            "\"lag_ms\":3",
            "\"unacked_entries\":7",
            "\"unacked_bytes\":99",
            "\"resync\":{\"running\":true,\"complete\":false,\"walked\":10,\"acked\":4}",
            "\"connections\":2",
            "\"handshakes_refused\":0",
            "\"warning\":\"behind: no complete copy for 62 s, 97 aborted resyncs\"",
        ] {
            assert!(j.contains(want), "{want} missing from {j}");
        }
        assert!(j.ends_with("}}\n"));
    }

    #[test]
    fn json_and_text_show_ipv6_peers() {
        let lo = crate::sys::interface_index("lo").unwrap();
        let ll = std::net::SocketAddrV6::new("fe80::2".parse().unwrap(), 5555, 0, lo);
        for (peer, json, text) in [
            (SocketAddr::from(([192, 0, 2, 2], 5555)), "192.0.2.2:5555", "192.0.2.2"),
            ("[2001:db8::2]:5555".parse().unwrap(), "[2001:db8::2]:5555", "2001:db8::2"),
            ("[::ffff:192.0.2.2]:5555".parse().unwrap(), "192.0.2.2:5555", "192.0.2.2"),
            (SocketAddr::V6(ll), "[fe80::2%lo]:5555", "fe80::2%lo"),
        ] {
            let s = Status { peer: Some(peer), ..Status::default() };
            let j = to_json(&s, &Stats::default(), 1, 1, None);
            assert!(j.contains(&format!("\"peer\":\"{json}\"")), "{peer}: {j}");
            assert_eq!(s.peer_address().as_deref(), Some(text));
        }
        assert_eq!(Status::default().peer_address(), None);
    }
}
