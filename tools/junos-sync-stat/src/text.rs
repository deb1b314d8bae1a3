//! The view for people: one block per context, and the frames of --watch. Every string from
//! a socket or a file name is shown escaped (`clean`).

use std::collections::HashMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::clean;
use crate::probe::{me, Answer, Probe, Socket};
use crate::status::{self, Resync, Status, VERSION};

/// Width of a progress bar's inside.
const BAR: usize = 30;
/// Where the values start.
const INDENT: &str = "              ";

/// What --watch remembers of the last frame, per socket: resync counts, for rates.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: Instant,
    pub walked: u64,
    pub acked: u64,
}

pub type Samples = HashMap<PathBuf, Sample>;

/// The last frame's samples, for --watch (rates and bars); `None`: a one-shot view.
#[derive(Clone, Copy)]
pub struct Watch<'a> {
    pub last: &'a Samples,
    pub now: Instant,
}

/// Every context's block, stale and failing sockets included.
pub fn render(out: &mut String, dir: &Path, probes: &[Probe], watch: Option<Watch>) {
    let shown: Vec<_> = probes.iter().filter(|p| !matches!(p.answer, Answer::Gone)).collect();
    if shown.is_empty() {
        let _ = writeln!(out, "no junos-sync status sockets in {}", clean::path(dir));
        return;
    }
    for (i, p) in shown.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        block(out, p, watch);
    }
}

fn block(out: &mut String, p: &Probe, watch: Option<Watch>) {
    let s = &p.socket;
    match &p.answer {
        Answer::Status { value, .. } => context(out, p, Status(value), watch),
        Answer::Stale { pid_alive } => {
            let _ = writeln!(out, "stale   {}", clean::path(&s.path));
            owner(out, s);
            let why = if *pid_alive {
                format!("no one listens, though a pid {} exists (reused by another program?)", s.pid)
            } else {
                format!("no one listens: pid {} is gone and left its socket (safe to delete)", s.pid)
            };
            line(out, "", &why);
        }
        Answer::Failed(why) => {
            let _ = writeln!(
                out,
                "{:<7} pid {}  {}  ({})",
                s.role,
                s.pid,
                port_words(&s.role, s.port),
                clean::path(&s.path)
            );
            owner(out, s);
            line(out, "error", why);
        }
        Answer::Gone => {}
    }
}

/// A socket of someone else than the user this runs as, or root, says so.
fn owner(out: &mut String, s: &Socket) {
    if let Some(uid) = s.untrusted_owner() {
        line(out, "owner", &format!("uid {uid}, neither you (uid {}) nor root: not to be trusted", me()));
    }
}

fn port_words(role: &str, port: impl std::fmt::Display) -> String {
    if role == "backup" {
        format!("master port {port}")
    } else {
        format!("port {port}")
    }
}

fn line(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "  {label:<12}{value}");
}

fn or_unknown<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}

fn context(out: &mut String, p: &Probe, st: Status, watch: Option<Watch>) {
    let master = st.is_master();
    let role = st.role().unwrap_or(std::borrow::Cow::Borrowed(&p.socket.role));
    let _ = writeln!(
        out,
        "{role:<7} pid {}  {}  ({})",
        or_unknown(st.pid()),
        port_words(&role, or_unknown(st.port())),
        clean::path(&p.socket.path)
    );
    owner(out, &p.socket);
    let peer = match (st.peer(), master) {
        (Some(a), true) => format!("{a} (the backup)"),
        (Some(a), false) => format!("{a} (the master)"),
        (None, true) => "none: no backup connected".to_string(),
        (None, false) => "none: not connected to the master".to_string(),
    };
    line(out, "peer", &peer);
    let state = match (st.state(), st.since_ms()) {
        (Some(s), Some(ms)) => format!("{s} for {}", duration(ms)),
        (s, _) => or_unknown(s),
    };
    line(out, "state", &state);
    // Before the lag: each overflow empties the backlog, so a short lag can hide it.
    if let Some(w) = st.warning() {
        line(out, "WARNING", &w);
    }
    line(out, "keyed", st.keyed().map_or("?", |k| if k { "yes" } else { "no" }));
    if master {
        let lag = match (st.lag_ms(), st.unacked_entries()) {
            (Some(0), Some(0)) => "none: everything is acknowledged".to_string(),
            (Some(ms), _) => format!("{} (the oldest unacknowledged entry)", duration(ms)),
            (None, _) => "?".to_string(),
        };
        line(out, "lag", &lag);
        line(out, "unacked", &unacked(st, watch.is_some()));
    }
    resync(out, p, st, watch);
    counters(out, st);
    if let Some(v) = st.version().filter(|&v| v != VERSION) {
        line(out, "note", &format!("status version {v}, this program knows {VERSION}: see --json for every field"));
    }
}

fn unacked(st: Status, bar_too: bool) -> String {
    let (Some(n), Some(b)) = (st.unacked_entries(), st.unacked_bytes()) else { return "?".to_string() };
    let mut s = format!("{n} entries, {}", bytes(b));
    match st.backlog_limit() {
        Some(l) if l > 0 => {
            let frac = b as f64 / l as f64;
            if bar_too {
                let _ = write!(s, " {} {} of the {} backlog limit", bar(frac), percent(frac), bytes(l));
            } else {
                let _ = write!(s, " of the {} backlog limit ({})", bytes(l), percent(frac));
            }
        }
        _ => s.push_str(" (no backlog limit)"),
    }
    s
}

fn resync(out: &mut String, p: &Probe, st: Status, watch: Option<Watch>) {
    let master = st.is_master();
    let Some(r) = st.resync() else {
        line(out, "resync", if master { "none since the start" } else { "none yet" });
        return;
    };
    let Resync { running, complete, walked, acked } = r;
    if !running {
        let complete = complete.unwrap_or(!master || acked == walked);
        let done = match (master, complete) {
            (true, true) => format!("complete: {walked} entries walked and acknowledged"),
            (true, false) => {
                format!("interrupted: {walked} entries walked, {acked} acknowledged when the backup went away")
            }
            (false, true) => format!("complete: {walked} entries applied"),
            (false, false) => format!("interrupted: {walked} entries applied when the master went away"),
        };
        line(out, "resync", &done);
        return;
    }
    let running_for = st.since_ms().map_or_else(String::new, |ms| format!(" for {}", duration(ms)));
    // Rates: since the last frame when watching, else the average since the connection came up
    // (when the walk began).
    let last = watch.and_then(|w| Some((w.last.get(&p.socket.path)?, w.now)));
    let rates = match last {
        Some((l, now)) if now > l.at && walked >= l.walked && acked >= l.acked => {
            let secs = now.duration_since(l.at).as_secs_f64();
            Some(((walked - l.walked) as f64 / secs, (acked - l.acked) as f64 / secs))
        }
        _ => None,
    };
    let frac = if walked == 0 { 0.0 } else { acked as f64 / walked as f64 };
    if !master {
        let mut s = format!("running{running_for}: {walked} entries applied");
        if let Some((w, _)) = rates {
            let _ = write!(s, " ({})", rate(w));
        }
        line(out, "resync", &s);
    } else if watch.is_some() {
        line(
            out,
            "resync",
            &format!("running{running_for}  {} {} of the walked acknowledged", bar(frac), percent(frac)),
        );
        let (rw, ra) = match rates {
            Some((w, a)) => (format!(" ({})", rate(w)), format!(" ({})", rate(a))),
            None => (String::new(), String::new()),
        };
        let _ = writeln!(out, "{INDENT}walked {walked}{rw}, acknowledged {acked}{ra}");
    } else {
        let mut s = format!("running{running_for}: {walked} walked, {acked} acknowledged ({})", percent(frac));
        if let Some(ms) = st.since_ms().filter(|&ms| ms > 0) {
            let _ = write!(s, ", {} walked on average", rate(walked as f64 * 1000.0 / ms as f64));
        }
        line(out, "resync", &s);
    }
}

fn counters(out: &mut String, st: Status) {
    let master = st.is_master();
    let mut items: Vec<String> = status::counters()
        .filter_map(|(key, words, master_only, _)| {
            let v = st.stat(key)?;
            // A backup does not count these; zero would only mislead (a switched-over master
            // keeps what it counted).
            (master || !master_only || v != 0).then(|| format!("{words} {v}"))
        })
        .collect();
    items.extend(st.other_stats().into_iter().map(|(k, v)| format!("{} {v}", k.replace('_', " "))));
    // Wrapped to fit 80 columns.
    let mut lines: Vec<String> = vec![String::new()];
    for it in items {
        let cur = lines.last_mut().expect("one line");
        if !cur.is_empty() && INDENT.len() + cur.len() + 2 + it.len() > 80 {
            cur.push(',');
            lines.push(it);
        } else {
            if !cur.is_empty() {
                cur.push_str(", ");
            }
            cur.push_str(&it);
        }
    }
    for (i, l) in lines.iter().enumerate() {
        if i == 0 {
            line(out, "counters", l);
        } else {
            let _ = writeln!(out, "{INDENT}{l}");
        }
    }
}

/// What the next --watch frame needs of this one.
pub fn samples(probes: &[Probe], now: Instant) -> Samples {
    probes
        .iter()
        .filter_map(|p| {
            let Answer::Status { value, .. } = &p.answer else { return None };
            let r = Status(value).resync()?;
            Some((p.socket.path.clone(), Sample { at: now, walked: r.walked, acked: r.acked }))
        })
        .collect()
}

/// `850 ms`, `12.3 s`, `4m 05s`, `3h 04m`, `2d 03h`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{}.{} s", ms / 1000, ms / 100 % 10),
        60_000..3_600_000 => format!("{}m {:02}s", ms / 60_000, ms / 1000 % 60),
        3_600_000..86_400_000 => format!("{}h {:02}m", ms / 3_600_000, ms / 60_000 % 60),
        _ => format!("{}d {:02}h", ms / 86_400_000, ms / 3_600_000 % 24),
    }
}

/// `99 B`, `1.5 KiB`, `64.0 MiB`.
pub fn bytes(n: u64) -> String {
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    for _ in 0..3 {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", ["KiB", "MiB", "GiB", "TiB"][unit])
}

/// Entries per second: `950/s`, `312.5k/s`, `1.25M/s`.
pub fn rate(per_s: f64) -> String {
    if per_s < 1000.0 {
        format!("{per_s:.0}/s")
    } else if per_s < 1e6 {
        format!("{:.1}k/s", per_s / 1e3)
    } else {
        format!("{:.2}M/s", per_s / 1e6)
    }
}

/// `45.2%` (never `100.0%` before it is complete).
pub fn percent(frac: f64) -> String {
    let p = (frac * 1000.0).floor() / 10.0;
    format!("{p:.1}%")
}

/// `[#############.................]`
pub fn bar(frac: f64) -> String {
    let n = ((frac.clamp(0.0, 1.0) * BAR as f64).floor() as usize).min(BAR);
    format!("[{}{}]", "#".repeat(n), ".".repeat(BAR - n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Socket;
    use crate::status::tests::{BACKUP, MASTER};
    use std::time::Duration;

    fn probe(line: &str) -> Probe {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let s = Status(&value);
        let name = format!("junos-sync.{}.{}.{}.sock", s.pid().unwrap(), s.role().unwrap(), s.port().unwrap());
        Probe {
            socket: Socket::from_name(Path::new("/run/junos-sync"), &name, 0).unwrap(),
            answer: Answer::Status { line: line.to_string(), value },
        }
    }

    #[test]
    fn units() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_345), "12.3 s");
        assert_eq!(duration(245_000), "4m 05s");
        assert_eq!(duration(3 * 3_600_000 + 4 * 60_000), "3h 04m");
        assert_eq!(duration(2 * 86_400_000 + 3 * 3_600_000), "2d 03h");
        assert_eq!(bytes(99), "99 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(rate(950.0), "950/s");
        assert_eq!(rate(312_500.0), "312.5k/s");
        assert_eq!(percent(0.9999), "99.9%");
        assert_eq!(bar(0.5), format!("[{}{}]", "#".repeat(15), ".".repeat(15)));
        assert_eq!(bar(2.0), format!("[{}]", "#".repeat(30)));
    }

    #[test]
    fn a_master_and_a_backup() {
        let mut out = String::new();
        render(&mut out, Path::new("/run/junos-sync"), &[probe(MASTER), probe(BACKUP)], None);
        assert!(!out.contains("WARNING"), "no warning in the line, none shown:\n{out}");
        for want in [
            "master  pid 42  port 4000  (/run/junos-sync/junos-sync.42.master.4000.sock)",
            "  peer        127.0.0.1:5555 (the backup)",
            "  state       up for 1.5 s",
            "  keyed       yes",
            "  lag         3 ms (the oldest unacknowledged entry)",
            "  unacked     7 entries, 99 B of the 64.0 MiB backlog limit (0.0%)",
            "  resync      running for 1.5 s: 10 walked, 4 acknowledged (40.0%), 7/s walked on average",
            "  counters    full resyncs 0, partial resyncs 0, connections 2,",
            "              frames rejected 0, overflows 0, auth failures 0,",
            "              handshakes refused 0",
            "backup  pid 43  master port 4000  (/run/junos-sync/junos-sync.43.backup.4000.sock)",
            "  peer        none: not connected to the master",
            "  state       connecting for 1m 05s",
            "  resync      none yet",
            "  counters    frames rejected 1, auth failures 0, handshakes refused 0",
        ] {
            assert!(out.lines().any(|l| l == want), "no line {want:?} in\n{out}");
        }
        assert!(!out.contains("backup  pid 43") || !out.split("backup  pid 43").nth(1).unwrap().contains("lag"));
    }

    #[test]
    fn a_backup_behind_is_said_before_the_lag() {
        let json = MASTER
            .replace(r#""stats":"#, r#""warning":"behind: no complete copy for 62 s, 97 aborted resyncs","stats":"#);
        let mut out = String::new();
        render(&mut out, Path::new("/run/junos-sync"), &[probe(&json)], None);
        let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("no {s:?} in\n{out}"));
        assert!(out.contains("  WARNING     behind: no complete copy for 62 s, 97 aborted resyncs\n"), "{out}");
        assert!(at("WARNING") < at("  lag "), "{out}");
    }

    #[test]
    fn ipv6_peers_as_the_library_writes_them() {
        for (peer, line) in [
            ("[2001:db8::2]:5555", "  peer        [2001:db8::2]:5555 (the backup)"),
            ("[fe80::2%eth1]:5555", "  peer        [fe80::2%eth1]:5555 (the backup)"),
        ] {
            let json = MASTER.replace("127.0.0.1:5555", peer);
            let mut out = String::new();
            render(&mut out, Path::new("/run/junos-sync"), &[probe(&json)], None);
            assert!(out.lines().any(|l| l == line), "no line {line:?} in\n{out}");
        }
    }

    #[test]
    fn watch_shows_a_bar_and_rates() {
        let p = probe(MASTER);
        let t0 = Instant::now();
        let mut last = Samples::new();
        last.insert(p.socket.path.clone(), Sample { at: t0, walked: 0, acked: 0 });
        let mut out = String::new();
        render(&mut out, Path::new("/d"), &[p], Some(Watch { last: &last, now: t0 + Duration::from_secs(2) }));
        let bar = format!("[{}{}]", "#".repeat(12), ".".repeat(18));
        assert!(
            out.contains(&format!("  resync      running for 1.5 s  {bar} 40.0% of the walked acknowledged\n")),
            "{out}"
        );
        assert!(out.contains("              walked 10 (5/s), acknowledged 4 (2/s)\n"), "{out}");
        assert!(out.contains("  unacked     7 entries, 99 B [") && out.contains("0.0% of the 64.0 MiB backlog limit"));
    }

    #[test]
    fn stale_failed_and_none() {
        let s = |name: &str| Socket::from_name(Path::new("/d"), name, 0).unwrap();
        let probes = [
            Probe { socket: s("junos-sync.7.master.1.sock"), answer: Answer::Stale { pid_alive: false } },
            Probe { socket: s("junos-sync.8.backup.1.sock"), answer: Answer::Failed("no answer within 2 s".into()) },
            Probe { socket: s("junos-sync.9.backup.1.sock"), answer: Answer::Gone },
        ];
        let mut out = String::new();
        render(&mut out, Path::new("/d"), &probes, None);
        assert_eq!(
            out,
            format!(
                "stale   /d/junos-sync.7.master.1.sock\n\
             {INDENT}no one listens: pid 7 is gone and left its socket (safe to delete)\n\n\
             backup  pid 8  master port 1  (/d/junos-sync.8.backup.1.sock)\n  error       no answer within 2 s\n"
            )
        );
        let mut out = String::new();
        render(&mut out, Path::new("/d"), &probes[2..], None);
        assert_eq!(out, "no junos-sync status sockets in /d\n");
    }
}
