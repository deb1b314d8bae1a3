//! A status line's fields, read leniently: a field this version does not find is shown as
//! unknown rather than refused, so an older junos-sync-stat still reads a newer library.
//! Strings come escaped (`clean::text`): whoever made the socket chose them.

use std::borrow::Cow;

use serde_json::Value;

use crate::clean;

/// The version of the status line this program was written for.
pub const VERSION: u64 = 1;

/// The connection states, as the library names them.
pub const STATES: [&str; 4] = ["down", "connecting", "handshake", "up"];

/// The counters of `stats` (all but the gauge `backlog_bytes`, which is `unacked_bytes` again):
/// key, words for people, whether only a master counts it, and what it counts. Expanded from
/// the library's one list of them, `src/engine/counters_list.rs` (the order of
/// `junos_sync_stats_t`).
macro_rules! counters {
    ($( $name:ident, $words:literal, $master:literal, $kind:ident, $help:literal; )*) => {
        const ALL: &[(&str, &str, bool, &str, &str)] =
            &[$( (stringify!($name), $words, $master, stringify!($kind), $help), )*];
    };
}
include!("../../../src/engine/counters_list.rs");

/// The counters (key, words, master only, what it counts), in the list's order.
pub fn counters() -> impl Iterator<Item = (&'static str, &'static str, bool, &'static str)> {
    ALL.iter().filter(|c| c.3 == "counter").map(|&(k, w, m, _, h)| (k, w, m, h))
}

/// Resync progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resync {
    pub running: bool,
    /// Whether it ended complete (`None`: a library that does not say; then a master's walked
    /// and acknowledged counts tell).
    pub complete: Option<bool>,
    pub walked: u64,
    pub acked: u64,
}

/// One context's status line.
#[derive(Clone, Copy)]
pub struct Status<'a>(pub &'a Value);

impl<'a> Status<'a> {
    fn num(&self, key: &str) -> Option<u64> {
        self.0.get(key)?.as_u64()
    }

    pub fn version(&self) -> Option<u64> {
        self.num("version")
    }
    pub fn pid(&self) -> Option<u64> {
        self.num("pid")
    }
    fn string(&self, key: &str) -> Option<Cow<'a, str>> {
        Some(clean::text(self.0.get(key)?.as_str()?))
    }

    pub fn role(&self) -> Option<Cow<'a, str>> {
        self.string("role")
    }
    pub fn is_master(&self) -> bool {
        self.0.get("role").and_then(Value::as_str) == Some("master")
    }
    pub fn port(&self) -> Option<u64> {
        self.num("port")
    }
    /// The peer's address; `None` when not connected.
    pub fn peer(&self) -> Option<Cow<'a, str>> {
        self.string("peer")
    }
    pub fn state(&self) -> Option<Cow<'a, str>> {
        self.string("state")
    }
    pub fn since_ms(&self) -> Option<u64> {
        self.num("since_ms")
    }
    pub fn keyed(&self) -> Option<bool> {
        self.0.get("keyed")?.as_bool()
    }
    pub fn lag_ms(&self) -> Option<u64> {
        self.num("lag_ms")
    }
    pub fn unacked_entries(&self) -> Option<u64> {
        self.num("unacked_entries")
    }
    pub fn unacked_bytes(&self) -> Option<u64> {
        self.num("unacked_bytes")
    }
    pub fn backlog_limit(&self) -> Option<u64> {
        self.num("backlog_limit")
    }
    /// `None` when there has been no resync (or the field is missing).
    pub fn resync(&self) -> Option<Resync> {
        let r = self.0.get("resync")?;
        Some(Resync {
            running: r.get("running")?.as_bool()?,
            complete: r.get("complete").and_then(Value::as_bool),
            walked: r.get("walked")?.as_u64()?,
            acked: r.get("acked")?.as_u64()?,
        })
    }
    /// A state the figures alone would hide ("behind: no complete copy for 62 s, 97 aborted
    /// resyncs"); `None` when all is well (or from a library that does not say).
    pub fn warning(&self) -> Option<Cow<'a, str>> {
        self.string("warning")
    }
    pub fn stat(&self, key: &str) -> Option<u64> {
        self.0.get("stats")?.get(key)?.as_u64()
    }
    /// Numeric `stats` this version does not know (a newer library's), in the line's order.
    pub fn other_stats(&self) -> Vec<(Cow<'a, str>, u64)> {
        let Some(Value::Object(m)) = self.0.get("stats") else { return Vec::new() };
        m.iter()
            .filter(|(k, _)| !ALL.iter().any(|c| c.0 == k.as_str()))
            .filter_map(|(k, v)| Some((clean::text(k), v.as_u64()?)))
            .collect()
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// The example of the library's status line (src/engine/status.rs).
    pub const MASTER: &str = r#"{"version":1,"pid":42,"role":"master","port":4000,"peer":"127.0.0.1:5555","state":"up","since_ms":1500,"keyed":true,"lag_ms":3,"unacked_entries":7,"unacked_bytes":99,"backlog_limit":67108864,"resync":{"running":true,"walked":10,"acked":4},"stats":{"full_resyncs":0,"partial_resyncs":0,"connections":2,"frames_rejected":0,"overflows":0,"backlog_bytes":99,"auth_failures":0,"handshakes_refused":0}}"#;
    pub const BACKUP: &str = r#"{"version":1,"pid":43,"role":"backup","port":4000,"peer":null,"state":"connecting","since_ms":65000,"keyed":false,"lag_ms":0,"unacked_entries":0,"unacked_bytes":0,"backlog_limit":67108864,"resync":null,"stats":{"full_resyncs":0,"partial_resyncs":0,"connections":0,"frames_rejected":1,"overflows":0,"backlog_bytes":0,"auth_failures":0,"handshakes_refused":0}}"#;

    #[test]
    fn fields_are_read() {
        let v: Value = serde_json::from_str(MASTER).unwrap();
        let s = Status(&v);
        assert_eq!(
            (s.pid(), s.role().as_deref(), s.port(), s.peer().as_deref()),
            (Some(42), Some("master"), Some(4000), Some("127.0.0.1:5555"))
        );
        assert_eq!(s.resync(), Some(Resync { running: true, complete: None, walked: 10, acked: 4 }));
        assert_eq!(s.stat("connections"), Some(2));
        assert!(s.other_stats().is_empty());
        assert_eq!(s.warning(), None);
        let v: Value =
            serde_json::from_str(r#"{"warning":"behind: no complete copy for 62 s, 97 aborted resyncs"}"#).unwrap();
        assert_eq!(Status(&v).warning().as_deref(), Some("behind: no complete copy for 62 s, 97 aborted resyncs"));
        let v: Value = serde_json::from_str(BACKUP).unwrap();
        let s = Status(&v);
        assert_eq!((s.peer(), s.resync(), s.is_master()), (None, None, false));
        let v: Value = serde_json::from_str(r#"{"role":"\u001b[2Jmaster","state":"up\n"}"#).unwrap();
        let s = Status(&v);
        assert_eq!(
            (s.role().as_deref(), s.state().as_deref(), s.is_master()),
            (Some(r"\x1b[2Jmaster"), Some(r"up\x0a"), false)
        );
    }

    #[test]
    fn unknown_stats_are_kept() {
        let v: Value = serde_json::from_str(r#"{"stats":{"connections":1,"backlog_bytes":5,"new_thing":3}}"#).unwrap();
        assert_eq!(Status(&v).other_stats(), [(Cow::Borrowed("new_thing"), 3)]);
    }
}
