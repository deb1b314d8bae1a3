//! The Prometheus text exposition format (version 0.0.4): a family's HELP and TYPE lines, then
//! its samples, one family after the other; every context's samples labelled pid, role, port.
//! Label values from a socket come escaped (`clean`); the answer of a socket of another user
//! than this program's or root is left out (it is counted).

use std::fmt::Write;

use crate::probe::{Answer, Probe};
use crate::status::{counters, Status, STATES};

struct Family {
    name: String,
    kind: &'static str,
    help: String,
    samples: Vec<(String, String)>,
}

#[derive(Default)]
struct Families(Vec<Family>);

impl Families {
    /// A sample of family `name` (created, with its HELP and TYPE, on its first sample).
    fn add(&mut self, name: &str, kind: &'static str, help: &str, labels: String, value: impl ToString) {
        let i = match self.0.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.0.push(Family { name: name.into(), kind, help: help.into(), samples: Vec::new() });
                self.0.len() - 1
            }
        };
        self.0[i].samples.push((labels, value.to_string()));
    }

    fn gauge(&mut self, name: &str, help: &str, labels: &str, value: Option<impl ToString>) {
        if let Some(v) = value {
            self.add(name, "gauge", help, labels.to_string(), v);
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// Seconds from milliseconds, exactly (`0.003`, `12`).
fn secs(ms: u64) -> String {
    if ms % 1000 == 0 {
        (ms / 1000).to_string()
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000).trim_end_matches('0').to_string()
    }
}

/// The exposition of every context that answered, and of what was found in the directory.
pub fn render(probes: &[Probe]) -> String {
    let mut f = Families::default();
    let (mut live, mut stale, mut failed, mut untrusted) = (0, 0, 0, 0);
    for p in probes {
        if p.socket.untrusted_owner().is_some() {
            untrusted += 1;
            continue;
        }
        let value = match &p.answer {
            Answer::Status { value, .. } => value,
            Answer::Stale { .. } => {
                stale += 1;
                continue;
            }
            Answer::Failed(_) => {
                failed += 1;
                continue;
            }
            Answer::Gone => continue,
        };
        live += 1;
        let st = Status(value);
        // The socket's name says the same as the line, and is there when a field is not.
        let l = format!(
            "pid=\"{}\",role=\"{}\",port=\"{}\"",
            st.pid().map_or(p.socket.pid.into(), |v| v),
            label(&st.role().unwrap_or(std::borrow::Cow::Borrowed(&p.socket.role))),
            st.port().map_or(p.socket.port.into(), |v| v)
        );
        let b = |v: bool| u8::from(v);
        let state = st.state();
        f.gauge(
            "junos_sync_up",
            "1 when the connection to the peer is up (replicating), else 0.",
            &l,
            state.as_deref().map(|s| b(s == "up")),
        );
        if let Some(s) = state.as_deref() {
            for name in STATES.iter().copied().chain((!STATES.contains(&s)).then_some(s)) {
                f.add(
                    "junos_sync_state",
                    "gauge",
                    "The connection's state: 1 for the current one (down, connecting, handshake, up).",
                    format!("{l},state=\"{}\"", label(name)),
                    b(name == s),
                );
            }
        }
        f.gauge(
            "junos_sync_state_seconds",
            "Seconds the connection has been in its current state.",
            &l,
            st.since_ms().map(secs),
        );
        if let Some(peer) = st.peer() {
            f.add(
                "junos_sync_peer_info",
                "gauge",
                "The connected peer's address (master: the backup; backup: the master), as a label.",
                format!("{l},peer=\"{}\"", label(&peer)),
                1,
            );
        }
        f.gauge("junos_sync_keyed", "1 when the context authenticates and encrypts with a key.", &l, st.keyed().map(b));
        f.gauge(
            "junos_sync_lag_seconds",
            "Master: age of the oldest entry the backup has not acknowledged (0 when none).",
            &l,
            st.lag_ms().map(secs),
        );
        f.gauge(
            "junos_sync_unacked_entries",
            "Master: entries held unacknowledged (queued and walked).",
            &l,
            st.unacked_entries(),
        );
        f.gauge(
            "junos_sync_unacked_bytes",
            "Master: TLV bytes held unacknowledged (stats backlog_bytes).",
            &l,
            st.unacked_bytes(),
        );
        f.gauge(
            "junos_sync_backlog_limit_bytes",
            "The most TLV bytes a master holds unacknowledged before it drops them for a full resync.",
            &l,
            st.backlog_limit(),
        );
        let r = st.resync();
        f.gauge("junos_sync_resync_running", "1 while a full resync runs.", &l, Some(b(r.is_some_and(|r| r.running))));
        f.gauge(
            "junos_sync_resync_complete",
            "1 when the last full resync completed (0 with resync_running 0: interrupted, or none).",
            &l,
            Some(b(r.is_some_and(|r| r.complete == Some(true)))),
        );
        f.gauge(
            "junos_sync_resync_walked",
            "The last full resync's entries: master, walked; backup, applied.",
            &l,
            r.map(|r| r.walked),
        );
        f.gauge(
            "junos_sync_resync_acked",
            "The last full resync's entries acknowledged by the backup (backup: applied).",
            &l,
            r.map(|r| r.acked),
        );
        for (key, _, _, help) in counters() {
            if let Some(v) = st.stat(key) {
                f.add(&format!("junos_sync_{key}_total"), "counter", help, l.clone(), v);
            }
        }
    }
    let tool = "junos-sync-stat";
    f.add(
        "junos_sync_stat_contexts",
        "gauge",
        &format!("Contexts whose status socket answered {tool}."),
        String::new(),
        live,
    );
    f.add(
        "junos_sync_stat_stale_sockets",
        "gauge",
        "Status sockets no one listens on (their process died without removing them).",
        String::new(),
        stale,
    );
    f.add(
        "junos_sync_stat_failed_sockets",
        "gauge",
        "Status sockets that did not answer (stopped process, permissions, not a status socket).",
        String::new(),
        failed,
    );
    f.add(
        "junos_sync_stat_untrusted_sockets",
        "gauge",
        "Status sockets owned by another user than the one running junos-sync-stat, or root: left out.",
        String::new(),
        untrusted,
    );

    let mut out = String::new();
    for fam in &f.0 {
        let help = fam.help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = writeln!(out, "# HELP {} {help}", fam.name);
        let _ = writeln!(out, "# TYPE {} {}", fam.name, fam.kind);
        for (labels, v) in &fam.samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{} {v}", fam.name);
            } else {
                let _ = writeln!(out, "{}{{{labels}}} {v}", fam.name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Socket;
    use crate::status::tests::{BACKUP, MASTER};
    use std::path::Path;

    fn probe(line: &str, name: &str) -> Probe {
        Probe {
            socket: Socket::from_name(Path::new("/d"), name, 0).unwrap(),
            answer: Answer::Status { line: line.into(), value: serde_json::from_str(line).unwrap() },
        }
    }

    #[test]
    fn an_ipv6_peer_is_one_label() {
        let json = MASTER.replace("127.0.0.1:5555", "[fe80::2%eth1]:5555");
        let out = render(&[probe(&json, "junos-sync.42.master.4000.sock")]);
        let want = r#"junos_sync_peer_info{pid="42",role="master",port="4000",peer="[fe80::2%eth1]:5555"} 1"#;
        assert!(out.lines().any(|l| l == want), "no line {want:?} in\n{out}");
    }

    #[test]
    fn exposition() {
        let probes = [
            probe(MASTER, "junos-sync.42.master.4000.sock"),
            probe(BACKUP, "junos-sync.43.backup.4000.sock"),
            Probe {
                socket: Socket::from_name(Path::new("/d"), "junos-sync.7.master.1.sock", 0).unwrap(),
                answer: Answer::Stale { pid_alive: false },
            },
        ];
        let out = render(&probes);
        let m = r#"{pid="42",role="master",port="4000"}"#;
        let bk = r#"{pid="43",role="backup",port="4000"}"#;
        for want in [
            "# TYPE junos_sync_up gauge".to_string(),
            format!("junos_sync_up{m} 1"),
            format!("junos_sync_up{bk} 0"),
            r#"junos_sync_state{pid="43",role="backup",port="4000",state="connecting"} 1"#.into(),
            r#"junos_sync_state{pid="43",role="backup",port="4000",state="down"} 0"#.into(),
            r#"junos_sync_peer_info{pid="42",role="master",port="4000",peer="127.0.0.1:5555"} 1"#.into(),
            format!("junos_sync_lag_seconds{m} 0.003"),
            format!("junos_sync_state_seconds{m} 1.5"),
            format!("junos_sync_state_seconds{bk} 65"),
            format!("junos_sync_unacked_entries{m} 7"),
            format!("junos_sync_resync_walked{m} 10"),
            format!("junos_sync_resync_running{bk} 0"),
            "# TYPE junos_sync_full_resyncs_total counter".into(),
            format!("junos_sync_connections_total{m} 2"),
            format!("junos_sync_frames_rejected_total{bk} 1"),
            "junos_sync_stat_contexts 2".into(),
            "junos_sync_stat_stale_sockets 1".into(),
        ] {
            assert!(out.lines().any(|l| l == want), "no line {want:?} in\n{out}");
        }
        assert!(!out.contains(&format!("junos_sync_resync_walked{bk}")), "a backup with no resync has no walked count");
        // Each family once, its HELP and TYPE first, its samples together.
        let mut seen = Vec::new();
        let mut current = String::new();
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(!seen.contains(&name), "{name} twice");
                seen.push(name.clone());
                current = name;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert!(rest.starts_with(&format!("{current} ")), "{line}");
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "sample {line} outside its family");
            }
        }
    }

    #[test]
    fn escapes_and_seconds() {
        assert_eq!(label("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
        assert_eq!(secs(3), "0.003");
        assert_eq!(secs(1500), "1.5");
        assert_eq!(secs(12_000), "12");
        assert_eq!(secs(0), "0");
    }
}
