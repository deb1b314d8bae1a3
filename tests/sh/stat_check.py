#!/usr/bin/env python3
"""stat_check.py -- checks of junos-sync-stat's output for tests/sh/stat.sh.

  stat_check.py progress SAMPLES_DIR MASTER_PID BACKUP_PID TOTAL
      SAMPLES_DIR holds the outputs of `junos-sync-stat --json` taken one after the other
      (000001.json, ...) while a backup was resynced from the master. Checks the master's
      progression: walked and acked never go back, acked never passes walked, the resync is seen
      under way, ends (running false) with walked = acked = TOTAL and stays ended; the backup's
      walked = acked (entries applied), rising to TOTAL. Prints what it saw, one line.
  stat_check.py dribble SOCKET SECONDS
      Listens on the Unix socket SOCKET (a name a status socket has) and sends whoever connects
      a status line one byte every SECONDS, for ever: a socket planted to hang a reader. Runs
      until killed.
  stat_check.py prometheus FILE
      Every line of FILE is a HELP, a TYPE or a sample of the text exposition format; each
      family's HELP and TYPE come once, before its samples, and its samples are together; the
      metrics an operator needs are there, with labels pid, role and port.

Exit status 1 with the reason on stderr when a check fails, 2 on wrong usage.
"""

import json
import os
import re
import socket
import sys
import threading
import time


def fail(why):
    sys.stderr.write(why + "\n")
    sys.exit(1)


def progress(samples_dir, master_pid, backup_pid, total):
    names = sorted(n for n in os.listdir(samples_dir) if n.endswith(".json"))
    if not names:
        fail("no samples")
    series = []  # (sample, master object or None, backup object or None)
    for n in names:
        with open(os.path.join(samples_dir, n)) as f:
            text = f.read()
        try:
            arr = json.loads(text)
        except ValueError as e:
            fail(f"{n}: not JSON ({e}): {text[:200]!r}")
        if not isinstance(arr, list):
            fail(f"{n}: not an array")
        for o in arr:
            for key in ("socket", "version", "pid", "role", "port", "peer", "state", "since_ms", "keyed",
                        "lag_ms", "unacked_entries", "unacked_bytes", "backlog_limit", "resync", "stats"):
                if key not in o:
                    fail(f"{n}: {key} missing in {o}")
        m = [o for o in arr if o["pid"] == master_pid and o["role"] == "master"]
        b = [o for o in arr if o["pid"] == backup_pid and o["role"] == "backup"]
        series.append((n, m[0] if m else None, b[0] if b else None))

    last = (0, 0)
    under_way = 0  # samples with the resync running and walked > 0
    behind = 0  # of those, acked < walked
    ended_at = None
    walked_mid = []  # walked counts seen while running, for the report
    for n, m, _ in series:
        if m is None:
            fail(f"{n}: no master (pid {master_pid}) in the sample")
        r = m["resync"]
        if r is None:
            if last != (0, 0) or ended_at:
                fail(f"{n}: the master's resync went back to null after {last}")
            continue
        w, a = r["walked"], r["acked"]
        if w < last[0] or a < last[1]:
            fail(f"{n}: progress went back: walked/acked {last} -> {(w, a)}")
        if a > w:
            fail(f"{n}: acked {a} > walked {w}")
        last = (w, a)
        if r["running"]:
            if ended_at:
                fail(f"{n}: running again after it ended in {ended_at}")
            if w > 0:
                under_way += 1
                walked_mid.append(w)
                behind += a < w
            if w > total:
                fail(f"{n}: walked {w} > the walk's total {total}")
        else:
            if (w, a) != (total, total) or r.get("complete") is not True:
                fail(f"{n}: ended with walked {w}, acked {a}, complete {r.get('complete')}, expected {total} both, complete")
            ended_at = ended_at or n
    if not ended_at:
        fail(f"the resync never ended in {len(series)} samples (last walked/acked {last})")
    if under_way == 0:
        fail(f"never saw the resync under way in {len(series)} samples")
    if behind == 0:
        fail("never saw acked behind walked while the resync ran")
    final = series[-1][1]
    if final["stats"]["full_resyncs"] != 1 or final["stats"]["connections"] != 1:
        fail(f"expected one connection and one full resync: {final['stats']}")
    if final["state"] != "up" or not final["peer"]:
        fail(f"the master is not up with a peer at the end: {final}")

    blast = 0
    for n, _, b in series:
        if b is None or b["resync"] is None:
            continue
        r = b["resync"]
        if r["walked"] != r["acked"] or r["walked"] < blast or r["walked"] > total:
            fail(f"{n}: backup resync {r} after {blast} (total {total})")
        blast = r["walked"]
    fb = series[-1][2]
    if fb is None or fb["resync"] != {"running": False, "complete": True, "walked": total, "acked": total}:
        fail(f"the backup's last status does not show the resync complete: {fb}")
    if fb["port"] != final["port"]:
        fail(f"the backup's port {fb['port']} is not the master's {final['port']}")

    print(f"{len(series)} samples, {under_way} during the walk (walked {min(walked_mid)}..{max(walked_mid)}, "
          f"{behind} with acked behind), ended at walked = acked = {total}")


# The families every exposition has, and those each context has, with their types.
ALWAYS = {"junos_sync_stat_contexts": "gauge", "junos_sync_stat_stale_sockets": "gauge",
          "junos_sync_stat_failed_sockets": "gauge", "junos_sync_stat_untrusted_sockets": "gauge"}
PER_CONTEXT = {
    "junos_sync_up": "gauge", "junos_sync_state": "gauge", "junos_sync_state_seconds": "gauge",
    "junos_sync_keyed": "gauge", "junos_sync_lag_seconds": "gauge", "junos_sync_unacked_entries": "gauge",
    "junos_sync_unacked_bytes": "gauge", "junos_sync_backlog_limit_bytes": "gauge",
    "junos_sync_resync_running": "gauge", "junos_sync_resync_complete": "gauge",
    "junos_sync_resync_walked": "gauge", "junos_sync_resync_acked": "gauge",
    "junos_sync_full_resyncs_total": "counter", "junos_sync_partial_resyncs_total": "counter",
    "junos_sync_connections_total": "counter", "junos_sync_frames_rejected_total": "counter",
    "junos_sync_overflows_total": "counter", "junos_sync_auth_failures_total": "counter",
    "junos_sync_handshakes_refused_total": "counter",
}
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"({NAME})(?:\{{({LABEL}(?:,{LABEL})*)?\}})? (\S+)")
VALUE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|Inf|NaN)")


def prometheus(path):
    with open(path) as f:
        text = f.read()
    if not text.endswith("\n"):
        fail("the exposition does not end with a newline")
    helped, typed, done, current = set(), {}, set(), None
    samples = {}  # family -> [(labels dict, value)]
    for i, line in enumerate(text.splitlines(), 1):
        where = f"line {i} {line!r}"
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            if not re.fullmatch(NAME, name) or name in helped:
                fail(f"{where}: bad or repeated HELP")
            helped.add(name)
            if current and current != name:
                done.add(current)
            current = name
        elif line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or parts[2] != current or parts[3] not in ("gauge", "counter", "untyped"):
                fail(f"{where}: a TYPE must follow its family's HELP")
            if parts[2] in typed:
                fail(f"{where}: TYPE repeated")
            typed[parts[2]] = parts[3]
        elif line.startswith("#") or not line:
            fail(f"{where}: neither HELP, TYPE nor a sample")
        else:
            m = SAMPLE.fullmatch(line)
            if not m or not VALUE.fullmatch(m.group(3)):
                fail(f"{where}: not a sample")
            name = m.group(1)
            if name != current or name not in typed:
                fail(f"{where}: a sample outside its family (HELP and TYPE first, samples together)")
            labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            samples.setdefault(name, []).append((labels, float(m.group(3))))
    for name, kind in ALWAYS.items():
        if typed.get(name) != kind or len(samples.get(name, [])) != 1:
            fail(f"{name} missing, or not one {kind}")
    contexts = int(samples["junos_sync_stat_contexts"][0][1])
    for name, kind in PER_CONTEXT.items():
        if typed.get(name) != kind:
            fail(f"{name} missing, or not a {kind}")
        for labels, _ in samples[name]:
            if not {"pid", "role", "port"} <= labels.keys():
                fail(f"{name}: a sample without pid, role and port: {labels}")
        got = len({(l["pid"], l["role"], l["port"]) for l, _ in samples[name]})
        if got != contexts and name not in ("junos_sync_resync_walked", "junos_sync_resync_acked"):
            fail(f"{name}: samples for {got} contexts, {contexts} answered")
    print(f"{len(typed)} families, {sum(len(s) for s in samples.values())} samples, {contexts} contexts")


def dribble(path, every):
    line = b'{"version":1,"pid":1,"role":"master","port":1,"state":"up"}\n'
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(64)

    def serve(c):
        with c:
            for i in range(1 << 62):
                try:
                    c.sendall(line[i % len(line):i % len(line) + 1])
                except OSError:
                    return
                time.sleep(every)

    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def main():
    a = sys.argv[1:]
    if len(a) == 5 and a[0] == "progress":
        progress(a[1], int(a[2]), int(a[3]), int(a[4]))
    elif len(a) == 3 and a[0] == "dribble":
        dribble(a[1], float(a[2]))
    elif len(a) == 2 and a[0] == "prometheus":
        prometheus(a[1])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
