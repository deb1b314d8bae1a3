#!/usr/bin/env python3
"""Runs the junos-sync benchmark programs (built by bench/run.sh into build/bench/), takes the
median of BENCH_RUNS runs of each, and prints a markdown table; writes build/bench/results.json
with every raw run, the medians, the ratios, the targets and the machine.

Runs are interleaved (run 1 of every case, then run 2 of every case, ...) so that a burst of
other work on the machine spreads over all contenders instead of hitting one.

Environment:
  BENCH_RUNS=N      runs per case (default 5; the issue asks for at least 5)
  BENCH_QUICK=1     every count divided by 10 (a smoke run; its numbers are not the figures)
  BENCH_PIN=0       do not pin (default: sender/master process on CPU BENCH_CPU_A=0, receiver/
                    backup process on CPU BENCH_CPU_B=1, for every contender alike)
  BENCH_ONLY=a,b    only the cases whose id contains one of these words (stream64, stream1k,
                    latency, handshake, resync, memory, contended)
  BENCH_TIMEOUT=S   watchdog per program run (default 180 s)
  BENCH_OUT=dir     where the programs, the library snapshot and results.json go (default
                    build/bench, relative to the repository)
  BENCH_JSYNC_DISPATCH_EVERY=K   dispatch-mode master: a look at the descriptor every K messages
  BENCH_ZMQ_SKIPPED=reason   set by run.sh when the ZeroMQ baseline could not be built
  BENCH_SOFILE=name the library's file name in build/lib (set by run.sh)
  BENCH_REF_LIB=path an earlier build of the library; run.sh built build/bench/jsync_bench_ref
                    against it, and its thread-mode rows run alongside ("ref")

Keyed rows: bench.py writes a fresh 32-byte key to build/bench/auth.key (mode 0600) and runs
those cases with JUNOS_SYNC_AUTH_KEY_FILE naming it (both processes inherit it); every other
case runs with that variable removed from the environment.
"""

import datetime
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, os.environ.get("BENCH_OUT", os.path.join("build", "bench")))


def env_int(name, default):
    v = os.environ.get(name, "").strip()
    try:
        return int(v) if v else default
    except ValueError:
        sys.exit(f"bench: {name}={v!r} is not an integer")


RUNS = env_int("BENCH_RUNS", 5)
QUICK = env_int("BENCH_QUICK", 0) != 0
PIN = env_int("BENCH_PIN", 1) != 0 and (os.cpu_count() or 1) >= 2
TIMEOUT = env_int("BENCH_TIMEOUT", 180)
ONLY = [w for w in os.environ.get("BENCH_ONLY", "").split(",") if w]
ZMQ_SKIPPED = os.environ.get("BENCH_ZMQ_SKIPPED", "")
SOFILE = os.environ.get("BENCH_SOFILE", "")
REF_LIB = os.environ.get("BENCH_REF_LIB", "")
SCALE = 10 if QUICK else 1

N64 = 2_000_000 // SCALE
N1K = 300_000 // SCALE
NLAT = 20_000 // SCALE
WARM = 1_000 // SCALE
NRESYNC = 1_000_000 // SCALE
NMEM = 1_000_000 // SCALE
NHS = 200 // SCALE
WARMHS = 20 // SCALE

J = os.path.join(OUT, "jsync_bench")
JREF = os.path.join(OUT, "jsync_bench_ref")
T = os.path.join(OUT, "tcp_baseline")
Z = os.path.join(OUT, "zmq_baseline")
KEY_FILE = os.path.join(OUT, "auth.key")
KEYED = {"JUNOS_SYNC_AUTH_KEY_FILE": KEY_FILE}
# Not an environment variable: run_one starts this many busy-looping processes for the run.
BUSY = {"_BUSY": "2"}

# (case id, contender label, argv[, extra environment])
CASES = [
    ("stream64", "junos-sync", [J, "stream", "64", str(N64)]),
    ("stream64", "junos-sync keyed", [J, "stream", "64", str(N64)], KEYED),
    ("stream64", "junos-sync dispatch", [J, "stream", "64", str(N64), "dispatch"]),
    ("stream64", "junos-sync (bounded)", [J, "stream", "64", str(N64), "bounded"]),
    ("stream64", "raw TCP", [T, "stream", "64", str(N64)]),
    ("stream64", "raw TCP (no malloc)", [T, "stream", "64", str(N64), "nomalloc"]),
    ("stream64", "raw TCP (free after ack)", [T, "stream", "64", str(N64), "hold"]),
    ("stream64", "ZeroMQ", [Z, "stream", "64", str(N64)]),
    ("stream1k", "junos-sync", [J, "stream", "1024", str(N1K)]),
    ("stream1k", "junos-sync keyed", [J, "stream", "1024", str(N1K)], KEYED),
    ("stream1k", "junos-sync dispatch", [J, "stream", "1024", str(N1K), "dispatch"]),
    ("stream1k", "junos-sync (bounded)", [J, "stream", "1024", str(N1K), "bounded"]),
    ("stream1k", "raw TCP", [T, "stream", "1024", str(N1K)]),
    ("stream1k", "raw TCP (no malloc)", [T, "stream", "1024", str(N1K), "nomalloc"]),
    ("stream1k", "raw TCP (free after ack)", [T, "stream", "1024", str(N1K), "hold"]),
    ("stream1k", "ZeroMQ", [Z, "stream", "1024", str(N1K)]),
    ("latency", "junos-sync", [J, "latency", "64", str(NLAT), str(WARM)]),
    ("latency", "junos-sync (chained)", [J, "latency", "64", str(NLAT), str(WARM), "chained"]),
    ("latency", "junos-sync keyed", [J, "latency", "64", str(NLAT), str(WARM)], KEYED),
    ("latency", "junos-sync dispatch", [J, "latency", "64", str(NLAT), str(WARM), "dispatch"]),
    # Issue 15: junos_sync_queue then junos_sync_wait, until the wait returns OK.
    ("latency", "junos-sync (queue then wait)", [J, "latency", "64", str(NLAT), str(WARM), "wait"]),
    ("latency", "raw TCP ping-pong", [T, "pingpong", "64", str(NLAT), str(WARM)]),
    ("handshake", "junos-sync", [J, "handshake", str(NHS), str(WARMHS)]),
    ("handshake", "junos-sync keyed", [J, "handshake", str(NHS), str(WARMHS)], KEYED),
    ("resync", "junos-sync", [J, "resync", str(NRESYNC), "100"]),
    # Issue 13: the 64 B stream while two busy-looping processes compete for the two CPUs.
    ("contended", "junos-sync", [J, "stream", "64", str(N64)], BUSY),
    ("contended", "raw TCP", [T, "stream", "64", str(N64)], BUSY),
    ("memory", "junos-sync (backup stalled)", [J, "memory", str(NMEM), "64", "stall"]),
    ("memory", "junos-sync (no backup)", [J, "memory", str(NMEM), "64", "nobackup"]),
    ("memory", "malloc alone", [J, "memctl", str(NMEM), "64"]),
]
# An earlier build (BENCH_REF_LIB): the thread-mode rows, for "thread mode at least as fast".
if REF_LIB and os.path.exists(JREF):
    CASES += [
        ("stream64", "junos-sync (ref)", [JREF, "stream", "64", str(N64)]),
        ("stream1k", "junos-sync (ref)", [JREF, "stream", "1024", str(N1K)]),
        ("latency", "junos-sync (ref)", [JREF, "latency", "64", str(NLAT), str(WARM)]),
        ("resync", "junos-sync (ref)", [JREF, "resync", str(NRESYNC), "100"]),
    ]


def selected(case_id):
    return not ONLY or any(w in case_id for w in ONLY)


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "mem_total": mem,
        "loadavg_at_start": load,
        "hostname": platform.node(),
    }


def sh(cmd):
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return ""


def sha256_of(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return ""


def library_info():
    so = os.path.join(OUT, "lib", SOFILE or "libjunos-sync.so.1")
    return {
        "snapshot": os.path.relpath(so, ROOT),
        "sha256": sha256_of(so),
        "ref_lib": REF_LIB or None,
        "ref_sha256": sha256_of(REF_LIB) if REF_LIB else None,
        "git_commit": sh(["git", "rev-parse", "HEAD"]),
        "git_dirty_src": bool(sh(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock", "build.rs"])),
    }


def write_key():
    """A fresh 32-byte key for the keyed rows, mode 0600 as the library insists."""
    os.makedirs(OUT, exist_ok=True)
    if os.path.exists(KEY_FILE):
        os.unlink(KEY_FILE)
    fd = os.open(KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(32))


def run_one(case_id, label, argv, extra_env):
    env = dict(os.environ)
    env.pop("JUNOS_SYNC_AUTH_KEY_FILE", None)
    extra_env = dict(extra_env)
    busy = int(extra_env.pop("_BUSY", "0"))
    env.update(extra_env)
    env["BENCH_PIN"] = "1" if PIN else "0"
    env["BENCH_TIMEOUT"] = str(TIMEOUT)
    # Competing work: processes that spin, not pinned (the pair is), for this run only.
    spinners = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(busy)]
    t = time.monotonic()
    load = os.getloadavg()[0]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=TIMEOUT + 30)
    except subprocess.TimeoutExpired as e:
        return None, f"timed out after {TIMEOUT + 30}s\n{e.stderr or ''}"
    finally:
        for sp in spinners:
            sp.kill()
            sp.wait()
    wall = time.monotonic() - t
    res = None
    for line in p.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                res = json.loads(line)
            except json.JSONDecodeError:
                pass
    if p.returncode != 0 or res is None or res.get("verified") is not True:
        return None, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    res["wall_s"] = round(wall, 3)
    res["loadavg_1m_before"] = load
    if p.stderr.strip():
        res["stderr"] = p.stderr.strip()[-2000:]
    return res, None


def median_of(runs):
    """Median of every numeric field over the runs."""
    out = {}
    for k in runs[0]:
        vals = [r[k] for r in runs if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)]
        if len(vals) == len(runs):
            out[k] = statistics.median(vals)
        elif k not in ("stderr",):
            out[k] = runs[0][k]
    return out


def fmt(v, kind=""):
    if v is None:
        return "n/a"
    if kind == "rate":
        if v >= 1e6:
            return f"{v / 1e6:.2f} M"
        return f"{v / 1e3:.0f} k"
    if kind == "ratio":
        return f"{v:.2f}x"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def main():
    if RUNS < 1:
        sys.exit("bench: BENCH_RUNS must be at least 1")
    cases = [c for c in CASES if selected(c[0])]
    if ZMQ_SKIPPED:
        cases = [c for c in cases if c[1] != "ZeroMQ"]
        print(f"**ZeroMQ baseline SKIPPED**: {ZMQ_SKIPPED}\n", flush=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    mach = machine()
    lib = library_info()
    print(
        f"junos-sync bench: {RUNS} run(s) per case{', QUICK (counts / 10)' if QUICK else ''}, "
        f"{'pinned: sender/master process on CPU ' + os.environ.get('BENCH_CPU_A', '0') + ', receiver/backup process on CPU ' + os.environ.get('BENCH_CPU_B', '1') if PIN else 'not pinned'}; "
        f"{mach['nproc']} x {mach['cpu_model']}, kernel {mach['kernel']}",
        file=sys.stderr,
        flush=True,
    )
    write_key()
    raw = {}     # (case, label) -> [results]
    failed = {}  # (case, label) -> error
    for r in range(RUNS):
        for case_id, label, argv, *extra in cases:
            key = (case_id, label)
            if key in failed:
                continue
            res, err = run_one(case_id, label, argv, extra[0] if extra else {})
            if err:
                failed[key] = err
                print(f"\nbench: FAILED {case_id} / {label} (run {r + 1}): "
                      f"{' '.join(f'{k}={v}' for k, v in (extra[0] if extra else {}).items())} {' '.join(argv)}\n{err}\n",
                      file=sys.stderr, flush=True)
                continue
            raw.setdefault(key, []).append(res)
            print(f"  run {r + 1}/{RUNS} {case_id:9s} {label:28s} ok ({res['wall_s']:.1f}s)", file=sys.stderr, flush=True)

    med = {k: median_of(v) for k, v in raw.items()}

    def m(case_id, label, field):
        return med.get((case_id, label), {}).get(field)

    def ratio(a, b):
        return a / b if a is not None and b not in (None, 0) else None

    # ---- tables -------------------------------------------------------------------------
    lines = []
    P = lines.append
    P(f"### junos-sync benchmark ({started:%Y-%m-%d %H:%M} UTC{', QUICK smoke run: counts / 10' if QUICK else ''})")
    P("")
    P(f"Machine: {mach['nproc']} x {mach['cpu_model']}, {mach['mem_total']}, Linux {mach['kernel']}. "
      f"Median of {RUNS} run(s) per figure, runs interleaved across contenders. "
      + ("Each pair pinned: the sending/master process (all its threads) on CPU "
         f"{os.environ.get('BENCH_CPU_A', '0')}, the receiving/backup process on CPU {os.environ.get('BENCH_CPU_B', '1')}, "
         "the same for every contender."
         if PIN else "Not pinned (BENCH_PIN=0), the same for every contender."))
    loads = [x["loadavg_1m_before"] for v in raw.values() for x in v if "loadavg_1m_before" in x]
    if loads:
        P(f"Other work on the machine: 1-minute load average {min(loads):.2f} to {max(loads):.2f} across the runs "
          f"({mach['nproc']} CPUs; the latency tails are sensitive to it).")
    P(f"Library: `{lib['snapshot']}` sha256 {lib['sha256'][:12]}, commit {lib['git_commit'][:10]}"
      f"{' + uncommitted changes in src/' if lib['git_dirty_src'] else ''}.")
    P("")

    # Streaming.
    # (label, column header); the thread-mode, unkeyed "junos-sync" is "ours" in the ratios.
    cols = [("junos-sync", "junos-sync"), ("junos-sync keyed", "keyed"),
            ("junos-sync dispatch", "dispatch"), ("raw TCP", "raw TCP"),
            ("raw TCP (no malloc)", "raw TCP (no malloc)"),
            ("raw TCP (free after ack)", "raw TCP (free after ack)"), ("ZeroMQ", "ZeroMQ"),
            ("junos-sync (bounded)", "bounded")]
    if REF_LIB:
        cols.append(("junos-sync (ref)", "ref build"))
    # (header, numerator, denominator)
    ratio_cols = [("ours / raw TCP", "junos-sync", "raw TCP"),
                  ("ours / raw TCP (free after ack)", "junos-sync", "raw TCP (free after ack)"),
                  ("ours / ZeroMQ", "junos-sync", "ZeroMQ"),
                  ("keyed / ours", "junos-sync keyed", "junos-sync"),
                  ("dispatch / raw TCP", "junos-sync dispatch", "raw TCP"),
                  ("dispatch / ZeroMQ", "junos-sync dispatch", "ZeroMQ")]
    if REF_LIB:
        ratio_cols.append(("ours / ref", "junos-sync", "junos-sync (ref)"))

    def cell(case_id, label, v, kind=""):
        if (case_id, label) in failed:
            return "FAILED"
        if label == "ZeroMQ" and ZMQ_SKIPPED:
            return "skipped"
        return fmt(v, kind)

    P(f"**Streaming** (64 B: {N64:,} messages; 1 KiB: {N1K:,} messages; MB/s counts payload bytes only; "
      "CPU = user+sys of the whole process per million messages; for CPU rows a ratio above 1x means more CPU)")
    P("")
    P("| | " + " | ".join(h for _, h in cols) + " | " + " | ".join(h for h, _, _ in ratio_cols) + " |")
    P("|---|" + "---:|" * (len(cols) + len(ratio_cols)))
    for case_id, size in (("stream64", "64 B"), ("stream1k", "1 KiB")):
        if not selected(case_id):
            continue
        for field, title, kind in (
            ("msgs_per_s", "msgs/s", "rate"),
            ("mb_per_s", "MB/s", ""),
            ("cpu_master_s_per_M", "CPU s/M msgs, sender", ""),
            ("cpu_backup_s_per_M", "CPU s/M msgs, receiver", ""),
        ):
            cells = [cell(case_id, c, m(case_id, c, field), kind) for c, _ in cols]
            cells += [fmt(ratio(m(case_id, a, field), m(case_id, b, field)), "ratio") for _, a, b in ratio_cols]
            P(f"| {size} {title} | " + " | ".join(cells) + " |")
        hwm = [m(case_id, c, "master_hwm_kb") for c, _ in cols]
        P(f"| {size} sender peak RSS MiB | " + " | ".join(fmt(None if v is None else v / 1024.0) for v in hwm)
          + " |" * (len(ratio_cols) + 1))
    P("")
    P("Sender/receiver: junos-sync master/backup; raw TCP: the app mallocs+fills+frees a TLV per message and "
      "frames it (4-byte length) into 64 KiB writes, the reader parses in place and acks cumulatively per 64 KiB "
      "('no malloc': fills the frame buffer directly; 'free after ack': keeps each TLV until the reader's "
      "cumulative ack covers it and frees it then, on the sending thread, as the library's contract asks of it); ZeroMQ: one zmq_send per message from a reused buffer, "
      "no acks, no frees. Clock stops: junos-sync when the master's sync_free_func has freed the last TLV after "
      "its ack; raw TCP when the sender has read the ack of the last message; ZeroMQ when the receiver has "
      "consumed the last message. junos-sync runs with a backlog limit large enough (1 TiB) that the application "
      "never waits: it queues all messages as fast as it can, hence the sender's peak RSS. 'junos-sync (bounded)' "
      "(not in the ratios): the library's default 64 MiB limit with no_resync; on JUNOS_SYNC_ERR_BACKLOG_FULL the "
      "application sleeps 50 us and retries (with resync, the default limit would overflow and force a full "
      "resync instead). 'keyed': the same program, both contexts keyed through JUNOS_SYNC_AUTH_KEY_FILE (Noise "
      "handshake, every record encrypted and authenticated). 'dispatch': both contexts in dispatch mode "
      "(junos_sync_get_fd), every callback on the process's main thread inside junos_sync_dispatch; the master "
      f"queues and looks at the descriptor every {os.environ.get('BENCH_JSYNC_DISPATCH_EVERY', '1024')} messages "
      "(poll, timeout 0; dispatch if readable), then polls and dispatches until the last free; the backup polls "
      "(blocking) and dispatches."
      + (f" 'ref build': the thread-mode program against an earlier build of the library ({REF_LIB})." if REF_LIB else ""))
    P("")

    lat_rows = ["junos-sync", "junos-sync (chained)", "junos-sync keyed", "junos-sync dispatch",
                "junos-sync (queue then wait)"]
    if REF_LIB:
        lat_rows.append("junos-sync (ref)")
    if selected("latency"):
        P(f"**Latency** ({NLAT:,} sequential round trips of 64 B after {WARM:,} warm-up ones, microseconds)")
        P("")
        P("| | p50 | p99 | p99.9 | max |")
        P("|---|---:|---:|---:|---:|")
        for c in lat_rows + ["raw TCP ping-pong"]:
            if ("latency", c) in failed:
                P(f"| {c} | FAILED | | | |")
                continue
            P(f"| {c} | {fmt(m('latency', c, 'p50_us'))} | {fmt(m('latency', c, 'p99_us'))} | "
              f"{fmt(m('latency', c, 'p999_us'))} | {fmt(m('latency', c, 'max_us'))} |")
        for c in lat_rows:
            P(f"| {c} / raw ping-pong | {fmt(ratio(m('latency', c, 'p50_us'), m('latency', 'raw TCP ping-pong', 'p50_us')), 'ratio')} | "
              f"{fmt(ratio(m('latency', c, 'p99_us'), m('latency', 'raw TCP ping-pong', 'p99_us')), 'ratio')} | "
              f"{fmt(ratio(m('latency', c, 'p999_us'), m('latency', 'raw TCP ping-pong', 'p999_us')), 'ratio')} | |")
        P("")
        P("junos-sync: t0 just before junos_sync_queue(ack_requested=true) on the application thread, t1 on entry "
          "of sync_ack_notify_func on the loop thread; the application thread queues the next one after the "
          "callback posts a semaphore (that hop is not in the figure). 'chained': the next TLV is queued from "
          "inside the ack callback. 'dispatch': the ack callback runs inside junos_sync_dispatch on the main "
          "thread, which waits for it in poll(fd) + dispatch. 'queue then wait': t0 before "
          "junos_sync_queue(ack_requested=false), t1 when junos_sync_wait returns OK on the same thread. Raw TCP: one write of the framed message, the peer "
          "echoes it, blocking read.")
        P("")

    if selected("handshake"):
        P(f"**Handshake** ({NHS:,} backup contexts started one after the other after {WARMHS:,} warm-up ones, "
          "against one running master; microseconds from junos_sync_start (backup) to each side's CONN_UP)")
        P("")
        P("| | backup p50 | backup p99 | master p50 | master p99 | backup max | master CPU per handshake |")
        P("|---|---:|---:|---:|---:|---:|---:|")
        hs = ("junos-sync", "junos-sync keyed")
        for c in hs:
            if ("handshake", c) in failed:
                P(f"| {c} | FAILED | | | | | |")
                continue
            P(f"| {c} | " + " | ".join(fmt(m("handshake", c, f)) for f in (
                "backup_p50_us", "backup_p99_us", "master_p50_us", "master_p99_us", "backup_max_us",
                "cpu_master_us_per_handshake")) + " |")
        P("| keyed / unkeyed | " + " | ".join(fmt(ratio(m("handshake", hs[1], f), m("handshake", hs[0], f)), "ratio") for f in (
            "backup_p50_us", "backup_p99_us", "master_p50_us", "master_p99_us", "backup_max_us",
            "cpu_master_us_per_handshake")) + " |")
        P("")
        P("Each backup context is created (junos_sync_init, not timed), started, and exited once it is up; the "
          "next starts after the master saw the disconnection. Both timestamps are CLOCK_MONOTONIC, one clock "
          "for both processes. Each run ends with a backup holding a key the master does not hold, which must "
          "be refused (authentication failure counted on both sides): the check that the pair was keyed, or "
          "not, as configured.")
        P("")

    if selected("resync"):
        P(f"**Resync** ({NRESYNC:,} entries of 100 B; from just before the backup's junos_sync_init to its "
          "sync_init_sync_done_func; default backlog limit)")
        P("")
        P("| | seconds | entries/s | master CPU s | backup CPU s | master done after s |")
        P("|---|---:|---:|---:|---:|---:|")
        if ("resync", "junos-sync") in failed:
            P("| junos-sync | FAILED | | | | |")
        else:
            for c in ["junos-sync"] + (["junos-sync (ref)"] if REF_LIB else []):
                if ("resync", c) in failed:
                    P(f"| {c} | FAILED | | | | |")
                    continue
                P(f"| {c} | {fmt(m('resync', c, 'secs'))} | {fmt(m('resync', c, 'entries_per_s'), 'rate')} | "
                  f"{fmt(m('resync', c, 'cpu_master_s'))} | {fmt(m('resync', c, 'cpu_backup_s'))} | "
                  f"{fmt(m('resync', c, 'master_done_after_s'))} |")
        P("")

    def contended(label):
        """(median msgs/s, slowest run's msgs/s, median / slowest) of a contender's contended runs."""
        rates = [r["msgs_per_s"] for r in raw.get(("contended", label), []) if "msgs_per_s" in r]
        if not rates:
            return None, None, None
        med_r = statistics.median(rates)
        return med_r, min(rates), med_r / min(rates)

    if selected("contended"):
        P(f"**Under contention** (64 B streaming, {N64:,} messages, while two busy-looping processes compete "
          "for the two CPUs during every run; the pair pinned as above, the spinners not)")
        P("")
        P("| | msgs/s (median) | slowest run, msgs/s | median / slowest |")
        P("|---|---:|---:|---:|")
        for c in ("junos-sync", "raw TCP"):
            if ("contended", c) in failed:
                P(f"| {c} | FAILED | | |")
                continue
            med_r, slow, spread = contended(c)
            P(f"| {c} | {fmt(med_r, 'rate')} | {fmt(slow, 'rate')} | {fmt(spread, 'ratio')} |")
        P("")

    if selected("memory"):
        P(f"**Memory** ({NMEM:,} TLVs of 64 B queued and unacknowledged; master VmRSS/VmHWM in MiB)")
        P("")
        P("| | RSS before | RSS after | peak (VmHWM) | overhead B/msg (issue formula) | overhead B/msg beyond malloc's own TLV footprint |")
        P("|---|---:|---:|---:|---:|---:|")
        ctl = m("memory", "malloc alone", "rss_delta_b_per_tlv")
        for c in ("junos-sync (backup stalled)", "junos-sync (no backup)"):
            if ("memory", c) in failed:
                P(f"| {c} | FAILED | | | | |")
                continue
            adj = None
            if ctl is not None and m("memory", c, "rss_delta_b_per_msg") is not None:
                adj = m("memory", c, "rss_delta_b_per_msg") - ctl
            mib = lambda kb: None if kb is None else kb / 1024.0
            P(f"| {c} | {fmt(mib(m('memory', c, 'rss_kb_before')))} | {fmt(mib(m('memory', c, 'rss_kb_after')))} | "
              f"{fmt(mib(m('memory', c, 'hwm_kb_after')))} | {fmt(m('memory', c, 'overhead_b_per_msg'))} | {fmt(adj)} |")
        P("")
        P("Issue formula: (RSS after - RSS before - sum of malloc_usable_size of the TLVs) / N; "
          f"malloc_usable_size of a 64-B TLV is {fmt(m('memory', 'malloc alone', 'tlv_usable_bytes_each'))} B, "
          f"but a TLV costs {fmt(ctl)} B of RSS with malloc alone (control run), so the issue formula also counts "
          "malloc's 8-B chunk header; the last column subtracts the control instead. 'backup stalled': the backup "
          "connected, then SIGSTOPped (it is SIGCONTed afterwards and must receive all N intact); 'no backup': "
          "none ever connected (junos_sync_exit must free all N). keepalive_time 3600 s, backlog limit 1 TiB.")
        P("")

    # ---- targets ------------------------------------------------------------------------
    targets = []
    OPS = {">=": lambda v, l: v >= l, "<=": lambda v, l: v <= l, "<": lambda v, l: v < l}

    def target(issue, name, value, op, limit, detail="", kind="ratio"):
        targets.append({"issue": issue, "target": name, "value": value, "limit": limit, "kind": kind,
                        "met": None if value is None else bool(OPS[op](value, limit)), "detail": detail})

    def r_of(case_id, a, b, field):
        return ratio(m(case_id, a, field), m(case_id, b, field))

    zmq_note = "skipped: " + ZMQ_SKIPPED if ZMQ_SKIPPED else ""
    target(4, "64 B streaming msgs/s >= 1.2 x ZeroMQ",
           r_of("stream64", "junos-sync", "ZeroMQ", "msgs_per_s"), ">=", 1.2, zmq_note)
    target(4, "64 B streaming msgs/s >= 0.6 x raw TCP",
           r_of("stream64", "junos-sync", "raw TCP", "msgs_per_s"), ">=", 0.6)
    target(4, "1 KiB streaming MB/s >= 0.8 x raw TCP",
           r_of("stream1k", "junos-sync", "raw TCP", "mb_per_s"), ">=", 0.8)
    target(4, "latency p50 <= 2 x raw TCP ping-pong p50",
           r_of("latency", "junos-sync", "raw TCP ping-pong", "p50_us"), "<=", 2.0)
    target(4, "latency p99.9 < 1 ms (us)", m("latency", "junos-sync", "p999_us"), "<", 1000.0, kind="")
    target(4, f"resync of {NRESYNC:,} entries < 1.5 s", m("resync", "junos-sync", "secs"), "<", 1.5,
           "QUICK run: 1/10 of the entries" if QUICK else "", kind="")
    target(4, "<= 32 B library overhead per queued message (issue formula, backup stalled)",
           m("memory", "junos-sync (backup stalled)", "overhead_b_per_msg"), "<=", 32.0, kind="")
    targets.append({"issue": 4, "target": "junos_sync_queue never makes a system call in the common case, never blocks",
                    "value": None, "limit": None, "kind": "", "met": None, "detail": "not measured by make bench"})
    # Issue 7: keyed contexts.
    target(7, "keyed 64 B streaming msgs/s >= 0.8 x unkeyed",
           r_of("stream64", "junos-sync keyed", "junos-sync", "msgs_per_s"), ">=", 0.8)
    target(7, "keyed 1 KiB streaming MB/s >= 0.6 x unkeyed",
           r_of("stream1k", "junos-sync keyed", "junos-sync", "mb_per_s"), ">=", 0.6)
    target(7, "keyed handshake median < 5 ms (backup's start to CONN_UP, us)",
           m("handshake", "junos-sync keyed", "backup_p50_us"), "<", 5000.0, kind="")
    # Issue 8: dispatch mode.
    target(8, "dispatch-mode 64 B msgs/s >= 0.5 x raw TCP",
           r_of("stream64", "junos-sync dispatch", "raw TCP", "msgs_per_s"), ">=", 0.5)
    target(8, "dispatch-mode 64 B msgs/s >= 2 x ZeroMQ",
           r_of("stream64", "junos-sync dispatch", "ZeroMQ", "msgs_per_s"), ">=", 2.0, zmq_note)
    target(8, "dispatch-mode 1 KiB MB/s >= 0.6 x raw TCP",
           r_of("stream1k", "junos-sync dispatch", "raw TCP", "mb_per_s"), ">=", 0.6)
    target(8, "dispatch-mode latency p50 <= 1.5 x raw TCP ping-pong p50",
           r_of("latency", "junos-sync dispatch", "raw TCP ping-pong", "p50_us"), "<=", 1.5)
    no_ref = "" if REF_LIB else "set BENCH_REF_LIB to an earlier build to measure"
    target(8, "thread mode 64 B msgs/s >= ref build",
           r_of("stream64", "junos-sync", "junos-sync (ref)", "msgs_per_s"), ">=", 1.0, no_ref)
    target(8, "thread mode 1 KiB MB/s >= ref build",
           r_of("stream1k", "junos-sync", "junos-sync (ref)", "mb_per_s"), ">=", 1.0, no_ref)
    target(8, "thread mode latency p50 <= ref build",
           r_of("latency", "junos-sync", "junos-sync (ref)", "p50_us"), "<=", 1.0, no_ref)

    # Issue 13: the hot path.
    target(13, "thread mode 64 B msgs/s >= 0.5 x raw TCP (malloc per message)",
           r_of("stream64", "junos-sync", "raw TCP", "msgs_per_s"), ">=", 0.5)
    target(13, "thread mode 64 B msgs/s >= 2 x ZeroMQ",
           r_of("stream64", "junos-sync", "ZeroMQ", "msgs_per_s"), ">=", 2.0, zmq_note)
    target(13, "thread mode 1 KiB MB/s >= 0.6 x raw TCP",
           r_of("stream1k", "junos-sync", "raw TCP", "mb_per_s"), ">=", 0.6)
    target(13, "dispatch mode 64 B msgs/s >= 0.9 x thread mode",
           r_of("stream64", "junos-sync dispatch", "junos-sync", "msgs_per_s"), ">=", 0.9)
    target(13, "keyed 64 B msgs/s >= 0.8 x unkeyed",
           r_of("stream64", "junos-sync keyed", "junos-sync", "msgs_per_s"), ">=", 0.8)
    target(13, "master CPU per 64 B message <= 2 x raw TCP's",
           r_of("stream64", "junos-sync", "raw TCP", "cpu_master_s_per_M"), "<=", 2.0)
    c_ours, c_raw = contended("junos-sync"), contended("raw TCP")
    target(13, "under contention: 64 B msgs/s >= 0.35 x raw TCP under the same load",
           ratio(c_ours[0], c_raw[0]), ">=", 0.35)
    target(13, "under contention: no junos-sync run more than 3 x slower than the median",
           c_ours[2], "<=", 3.0)
    target(13, "latency p50 <= 1.5 x raw TCP ping-pong p50",
           r_of("latency", "junos-sync", "raw TCP ping-pong", "p50_us"), "<=", 1.5)
    target(13, "latency p99.9 < 1 ms (us)", m("latency", "junos-sync", "p999_us"), "<", 1000.0, kind="")
    target(13, f"resync of {NRESYNC:,} entries no slower than the ref build (ratio of seconds)",
           r_of("resync", "junos-sync", "junos-sync (ref)", "secs"), "<=", 1.0, no_ref)

    P("**Targets** (issues 4, 7, 8 and 13; ratios of medians" + (", QUICK smoke run: not the real figures" if QUICK else "") + ")")
    P("")
    P("| issue | target | value | met |")
    P("|---|---|---:|---|")
    for t in targets:
        met = "n/a" if t["met"] is None else ("met" if t["met"] else "NOT met")
        val = fmt(t["value"], t["kind"])
        extra = f" ({t['detail']})" if t["detail"] else ""
        P(f"| {t['issue']} | {t['target']} | {val} | {met}{extra} |")
    P("")
    if failed:
        P("**FAILED cases** (see stderr above): " + ", ".join(f"{c} / {l}" for c, l in failed))
        P("")

    table = "\n".join(lines)

    os.makedirs(OUT, exist_ok=True)
    doc = {
        "date": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_at_end": os.getloadavg(),
        "machine": mach,
        "library": lib,
        "config": {
            "runs": RUNS, "quick": QUICK, "pinned": PIN,
            "cpu_sender": int(os.environ.get("BENCH_CPU_A", "0")) if PIN else None,
            "cpu_receiver": int(os.environ.get("BENCH_CPU_B", "1")) if PIN else None,
            "counts": {"stream64": N64, "stream1k": N1K, "latency": NLAT, "latency_warmup": WARM,
                       "resync_entries": NRESYNC, "resync_entry_len": 100, "memory": NMEM,
                       "handshakes": NHS, "handshake_warmup": WARMHS},
            "dispatch_every": env_int("BENCH_JSYNC_DISPATCH_EVERY", 1024),
            "zmq_skipped": ZMQ_SKIPPED or None,
        },
        "runs": [{"case": c, "contender": l, "results": v} for (c, l), v in raw.items()],
        "medians": [{"case": c, "contender": l, "median": v} for (c, l), v in med.items()],
        "ratios": {
            "stream64_msgs_vs_raw_tcp": ratio(m("stream64", "junos-sync", "msgs_per_s"), m("stream64", "raw TCP", "msgs_per_s")),
            "stream64_msgs_vs_raw_tcp_nomalloc": ratio(m("stream64", "junos-sync", "msgs_per_s"), m("stream64", "raw TCP (no malloc)", "msgs_per_s")),
            "stream64_msgs_vs_raw_tcp_free_after_ack": ratio(m("stream64", "junos-sync", "msgs_per_s"), m("stream64", "raw TCP (free after ack)", "msgs_per_s")),
            "stream64_cpu_vs_raw_tcp_free_after_ack": ratio(m("stream64", "junos-sync", "cpu_master_s_per_M"), m("stream64", "raw TCP (free after ack)", "cpu_master_s_per_M")),
            "stream64_msgs_vs_zmq": ratio(m("stream64", "junos-sync", "msgs_per_s"), m("stream64", "ZeroMQ", "msgs_per_s")),
            "stream1k_mb_vs_raw_tcp": ratio(m("stream1k", "junos-sync", "mb_per_s"), m("stream1k", "raw TCP", "mb_per_s")),
            "stream1k_mb_vs_raw_tcp_nomalloc": ratio(m("stream1k", "junos-sync", "mb_per_s"), m("stream1k", "raw TCP (no malloc)", "mb_per_s")),
            "stream1k_mb_vs_zmq": ratio(m("stream1k", "junos-sync", "mb_per_s"), m("stream1k", "ZeroMQ", "mb_per_s")),
            "latency_p50_vs_raw_pingpong": ratio(m("latency", "junos-sync", "p50_us"), m("latency", "raw TCP ping-pong", "p50_us")),
            "latency_p99_vs_raw_pingpong": ratio(m("latency", "junos-sync", "p99_us"), m("latency", "raw TCP ping-pong", "p99_us")),
            "latency_p999_vs_raw_pingpong": ratio(m("latency", "junos-sync", "p999_us"), m("latency", "raw TCP ping-pong", "p999_us")),
            "stream64_keyed_vs_unkeyed": ratio(m("stream64", "junos-sync keyed", "msgs_per_s"), m("stream64", "junos-sync", "msgs_per_s")),
            "stream1k_keyed_vs_unkeyed": ratio(m("stream1k", "junos-sync keyed", "mb_per_s"), m("stream1k", "junos-sync", "mb_per_s")),
            "stream64_dispatch_vs_raw_tcp": ratio(m("stream64", "junos-sync dispatch", "msgs_per_s"), m("stream64", "raw TCP", "msgs_per_s")),
            "stream64_dispatch_vs_zmq": ratio(m("stream64", "junos-sync dispatch", "msgs_per_s"), m("stream64", "ZeroMQ", "msgs_per_s")),
            "stream1k_dispatch_vs_raw_tcp": ratio(m("stream1k", "junos-sync dispatch", "mb_per_s"), m("stream1k", "raw TCP", "mb_per_s")),
            "latency_dispatch_p50_vs_raw_pingpong": ratio(m("latency", "junos-sync dispatch", "p50_us"), m("latency", "raw TCP ping-pong", "p50_us")),
            "handshake_keyed_vs_unkeyed_p50": ratio(m("handshake", "junos-sync keyed", "backup_p50_us"), m("handshake", "junos-sync", "backup_p50_us")),
            "stream64_vs_ref": ratio(m("stream64", "junos-sync", "msgs_per_s"), m("stream64", "junos-sync (ref)", "msgs_per_s")),
            "stream1k_vs_ref": ratio(m("stream1k", "junos-sync", "mb_per_s"), m("stream1k", "junos-sync (ref)", "mb_per_s")),
        },
        "targets": targets,
        "failed": [{"case": c, "contender": l, "error": e[-4000:]} for (c, l), e in failed.items()],
        "table_markdown": table,
    }
    path = os.path.join(OUT, "results.json")
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(table, flush=True)
    print(f"bench: wrote {os.path.relpath(path, ROOT)}", file=sys.stderr)
    if failed:
        print(f"bench: {len(failed)} case(s) FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
