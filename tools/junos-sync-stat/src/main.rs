//! junos-sync-stat: the replication status of the junos-sync contexts on this machine, read from
//! the status sockets their processes serve in JUNOS_SYNC_STATUS_DIR (junos-sync-stat(1)).

mod clean;
mod probe;
mod prom;
mod status;
mod text;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use probe::{Answer, Probe};

/// The directory when neither an argument nor the environment names one.
const DEFAULT_DIR: &str = "/run/junos-sync";
const DIR_VAR: &str = "JUNOS_SYNC_STATUS_DIR";

const USAGE: &str =
    "usage: junos-sync-stat [--json | --prometheus | --watch [SECONDS] [--count N]] [--timeout SECONDS] [DIR]
  DIR            where the status sockets are (default: $JUNOS_SYNC_STATUS_DIR, else /run/junos-sync)
  --json         a JSON array: each context's status object, plus \"socket\"
  --prometheus   the Prometheus text exposition format
  --watch [S]    redraw every S seconds (default 1) until interrupted
  --count N      with --watch: stop after N frames
  --timeout S    give up on a socket S seconds after connecting to it, and on the whole
                 run (every socket, or one frame of --watch) after twice that (default 2)";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Plain,
    Json,
    Prometheus,
    Watch(Duration),
}

#[derive(Debug, PartialEq)]
struct Options {
    mode: Mode,
    dir: PathBuf,
    timeout: Duration,
    /// --watch: frames to draw (`None`: until interrupted).
    count: Option<u64>,
}

/// A number of seconds from 0.05 to a day.
fn seconds(what: &str, s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.05..=86_400.0).contains(&v) => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("{what}: '{s}' is not a number of seconds from 0.05 to 86400")),
    }
}

/// The options, or `None` for --help.
fn parse(args: &[String], env_dir: Option<&str>) -> Result<Option<Options>, String> {
    let mut mode = None;
    let mut dir = None;
    let mut timeout = Duration::from_secs(2);
    let mut count = None;
    let frames = |s: &str| match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(format!("--count: '{s}' is not a number of frames (1 or more)")),
    };
    let mut set = |m: Mode| match mode.replace(m) {
        Some(_) => Err("choose one of --json, --prometheus and --watch".to_string()),
        None => Ok(()),
    };
    let mut i = 0;
    let mut options_end = false;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            _ if options_end || !a.starts_with('-') || a == "-" => {
                if dir.replace(PathBuf::from(a)).is_some() {
                    return Err("more than one directory".into());
                }
            }
            "--" => options_end = true,
            "-h" | "--help" => return Ok(None),
            "--json" => set(Mode::Json)?,
            "--prometheus" => set(Mode::Prometheus)?,
            "--watch" => {
                // An interval follows if the next word is a number (a directory named like a
                // number is given as ./5, or after --watch=1).
                let every = match args.get(i + 1).filter(|n| n.parse::<f64>().is_ok()) {
                    Some(n) => {
                        i += 1;
                        seconds("--watch", n)?
                    }
                    None => Duration::from_secs(1),
                };
                set(Mode::Watch(every))?;
            }
            "--timeout" => {
                let v = args.get(i + 1).ok_or("--timeout needs a number of seconds")?;
                timeout = seconds("--timeout", v)?;
                i += 1;
            }
            "--count" => {
                count = frames(args.get(i + 1).ok_or("--count needs a number of frames")?)?;
                i += 1;
            }
            _ => {
                if let Some(v) = a.strip_prefix("--watch=") {
                    set(Mode::Watch(seconds("--watch", v)?))?;
                } else if let Some(v) = a.strip_prefix("--timeout=") {
                    timeout = seconds("--timeout", v)?;
                } else if let Some(v) = a.strip_prefix("--count=") {
                    count = frames(v)?;
                } else {
                    return Err(format!("unknown option {a}"));
                }
            }
        }
        i += 1;
    }
    let mode = mode.unwrap_or(Mode::Plain);
    if count.is_some() && !matches!(mode, Mode::Watch(_)) {
        return Err("--count goes with --watch".into());
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(env_dir.filter(|d| !d.is_empty()).unwrap_or(DEFAULT_DIR)));
    Ok(Some(Options { mode, dir, timeout, count }))
}

/// The array --json prints: each status line as the library sent it, with "socket" added first
/// (and "untrusted_owner" for a socket of another user than this program's or root), and the
/// characters a terminal acts on escaped as JSON allows (`clean::json`).
fn json(probes: &[Probe]) -> String {
    let objects: Vec<String> = probes
        .iter()
        .filter_map(|p| {
            let Answer::Status { line, .. } = &p.answer else { return None };
            // The line is an object (checked when read): `{` and its first member, or `}`.
            let rest = line.trim_start().strip_prefix('{')?.trim_start();
            let socket = serde_json::Value::from(p.socket.path.to_string_lossy()).to_string();
            let owner =
                p.socket.untrusted_owner().map_or_else(String::new, |uid| format!(",\"untrusted_owner\":{uid}"));
            let sep = if rest.starts_with('}') { "" } else { "," };
            Some(clean::json(&format!("{{\"socket\":{socket}{owner}{sep}{rest}")).into_owned())
        })
        .collect();
    if objects.is_empty() {
        "[]\n".to_string()
    } else {
        format!("[\n{}\n]\n", objects.join(",\n"))
    }
}

/// For the modes whose output is for programs: what is not a context goes to stderr.
fn warn_about(probes: &[Probe]) {
    for p in probes {
        let path = clean::path(&p.socket.path);
        if let Some(uid) = p.socket.untrusted_owner() {
            eprintln!(
                "junos-sync-stat: {path}: owned by uid {uid}, neither you (uid {}) nor root: not to be trusted",
                probe::me()
            );
        }
        match &p.answer {
            Answer::Stale { pid_alive: false } => {
                eprintln!("junos-sync-stat: {path}: stale: pid {} is gone and left its socket", p.socket.pid)
            }
            Answer::Stale { pid_alive: true } => eprintln!("junos-sync-stat: {path}: stale: no one listens on it"),
            Answer::Failed(why) => eprintln!("junos-sync-stat: {path}: {why}"),
            Answer::Status { .. } | Answer::Gone => {}
        }
    }
}

/// 1 when a socket could not be read (a stale one is not an error).
fn status_of(probes: &[Probe]) -> u8 {
    u8::from(probes.iter().any(|p| matches!(p.answer, Answer::Failed(_))))
}

/// A write to a closed pipe (`| head`) ends the program quietly.
fn emit(s: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(s.as_bytes())?;
    out.flush()
}

/// Why the sockets in `dir` may be anyone's, if they may: a directory that others can write
/// and that is not sticky (the library refuses to put its sockets in one).
fn dir_warning(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata(dir).ok()?.mode();
    (mode & 0o022 != 0 && mode & 0o1000 == 0).then(|| {
        format!(
            "warning: {} is writable by group or others (mode {:o}) and not sticky: anyone could have made these sockets",
            clean::path(dir),
            mode & 0o7777
        )
    })
}

fn dir_error(dir: &Path, e: &io::Error, env_dir: Option<&str>) -> String {
    let hint = if env_dir.is_none() && e.kind() == io::ErrorKind::NotFound {
        format!(" (give the directory the daemons have in {DIR_VAR})")
    } else {
        String::new()
    };
    format!("cannot read {}: {e}{hint}", clean::path(dir))
}

/// The local time of day, `14:03:07`.
fn clock() -> String {
    // SAFETY: time(NULL) and localtime_r into a zeroed struct tm of our own.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return String::new();
        }
        format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
    }
}

fn watch(o: &Options, every: Duration, env_dir: Option<&str>) -> io::Result<()> {
    let mut last = text::Samples::new();
    let mut first = true;
    let mut drawn = 0;
    loop {
        let start = Instant::now();
        let mut body = String::new();
        let probes = match probe::all(&o.dir, o.timeout) {
            Ok(p) => p,
            Err(e) => {
                body = format!("{}\n", dir_error(&o.dir, &e, env_dir));
                Vec::new()
            }
        };
        let now = Instant::now();
        if body.is_empty() {
            if let Some(w) = dir_warning(&o.dir) {
                body = format!("{w}\n\n");
            }
            text::render(&mut body, &o.dir, &probes, Some(text::Watch { last: &last, now }));
        }
        last = text::samples(&probes, now);
        // Home, the frame with every line cleared to its end, then the rest of the screen
        // cleared: redrawn in place, without the flicker of clearing first.
        let mut frame = String::from(if first { "\x1b[H\x1b[2J" } else { "\x1b[H" });
        frame.push_str(&format!(
            "junos-sync-stat  {}  every {}  {}  (Ctrl-C to quit)\x1b[K\n\x1b[K\n",
            clean::path(&o.dir),
            probe::seconds(every),
            clock()
        ));
        for l in body.lines() {
            frame.push_str(l);
            frame.push_str("\x1b[K\n");
        }
        frame.push_str("\x1b[J");
        emit(&frame)?;
        first = false;
        drawn += 1;
        if o.count.is_some_and(|n| drawn >= n) {
            return Ok(());
        }
        if let Some(left) = every.checked_sub(start.elapsed()) {
            std::thread::sleep(left);
        }
    }
}

fn run(o: &Options, env_dir: Option<&str>) -> io::Result<ExitCode> {
    if let Mode::Watch(every) = o.mode {
        watch(o, every, env_dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    let probes = match probe::all(&o.dir, o.timeout) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("junos-sync-stat: {}", dir_error(&o.dir, &e, env_dir));
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(w) = dir_warning(&o.dir) {
        eprintln!("junos-sync-stat: {w}");
    }
    match o.mode {
        Mode::Plain => {
            let mut out = String::new();
            text::render(&mut out, &o.dir, &probes, None);
            emit(&out)?;
        }
        Mode::Json => {
            warn_about(&probes);
            emit(&json(&probes))?;
        }
        Mode::Prometheus => {
            warn_about(&probes);
            emit(&prom::render(&probes))?;
        }
        Mode::Watch(_) => unreachable!("drawn above"),
    }
    Ok(ExitCode::from(status_of(&probes)))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env_dir = std::env::var(DIR_VAR).ok();
    let o = match parse(&args, env_dir.as_deref()) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("junos-sync-stat: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&o, env_dir.as_deref()) {
        Ok(code) => code,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("junos-sync-stat: cannot write: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe::Socket;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn opts(s: &str, env: Option<&str>) -> Options {
        parse(&args(s), env).unwrap().unwrap()
    }

    #[test]
    fn options() {
        let o = opts("", None);
        assert_eq!((o.mode, o.dir, o.timeout), (Mode::Plain, PathBuf::from(DEFAULT_DIR), Duration::from_secs(2)));
        assert_eq!(opts("", Some("/s")).dir, PathBuf::from("/s"));
        assert_eq!(opts("", Some("")).dir, PathBuf::from(DEFAULT_DIR));
        assert_eq!(opts("/x", Some("/s")).dir, PathBuf::from("/x"));
        assert_eq!(opts("--json /x", None).mode, Mode::Json);
        assert_eq!(opts("--prometheus", None).mode, Mode::Prometheus);
        assert_eq!(opts("--watch", None).mode, Mode::Watch(Duration::from_secs(1)));
        let o = opts("--watch 0.5 /x", None);
        assert_eq!((o.mode, o.dir), (Mode::Watch(Duration::from_millis(500)), PathBuf::from("/x")));
        let o = opts("--watch /x", None);
        assert_eq!((o.mode, o.dir), (Mode::Watch(Duration::from_secs(1)), PathBuf::from("/x")));
        assert_eq!(opts("--watch=3", None).mode, Mode::Watch(Duration::from_secs(3)));
        assert_eq!(opts("--timeout 0.2", None).timeout, Duration::from_millis(200));
        assert_eq!(opts("-- --json", None).dir, PathBuf::from("--json"));
        assert_eq!(opts("--watch 0.2 --count 2", None).count, Some(2));
        assert_eq!(opts("--count=3 --watch", None).count, Some(3));
        assert!(parse(&args("--help"), None).unwrap().is_none());
        for bad in [
            "--json --watch",
            "--watch 0",
            "--count 2",
            "--watch --count 0",
            "--timeout",
            "--timeout x",
            "--frob",
            "/a /b",
            "--watch=x",
        ] {
            assert!(parse(&args(bad), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_keeps_the_line_and_adds_the_socket() {
        let line = status::tests::MASTER;
        let p = Probe {
            socket: Socket::from_name(Path::new("/d"), "junos-sync.42.master.4000.sock", 0).unwrap(),
            answer: Answer::Status { line: line.into(), value: serde_json::from_str(line).unwrap() },
        };
        let stale = Probe {
            socket: Socket::from_name(Path::new("/d"), "junos-sync.7.master.1.sock", 0).unwrap(),
            answer: Answer::Stale { pid_alive: false },
        };
        let out = json(&[p, stale]);
        assert_eq!(out, format!("[\n{{\"socket\":\"/d/junos-sync.42.master.4000.sock\",{}\n]\n", &line[1..]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["socket"], "/d/junos-sync.42.master.4000.sock");
        assert_eq!(v[0]["resync"]["walked"], 10);
        assert_eq!(json(&[]), "[]\n");
    }
}
