#!/usr/bin/env bash
# stat.sh FLOWD STAT [SEED] -- junos-sync-stat (STAT) against real flowd daemons whose contexts
# serve their status in a directory of the case's own (JUNOS_SYNC_STATUS_DIR).
#
#   resync-progress      a master with 1,000,000 flows; a backup attaches and is walked the table
#                        while the master changes it. `STAT --json`, polled all along, must show
#                        the master's walked and acked counts only rising, to the walk's total
#                        (1,000,000 give or take what the changes added and deleted ahead of the
#                        walk; flowd and the backup count it too), the resync ending, and once
#                        the master is idle, lag under a second with nothing unacknowledged.
#                        The backup is held stopped until a sample sees the walk under way and
#                        for two --watch frames: the resync certainly runs while they are drawn
#                        (progress bar), and the stopped backup is reported, not waited for. Then the plain view, and
#                        --prometheus (every line HELP, TYPE or a sample, the expected families;
#                        `promtool check metrics` too where it is installed).
#   sockets              keyed contexts: each socket is a socket, mode 0600, ours; the view says
#                        keyed; an empty and a missing directory; each socket is gone once its
#                        daemon has quit.
#   stale-and-switchover SIGKILL leaves the master's socket behind: STAT reports it stale (plain,
#                        --json on stderr, --prometheus) and still shows the backup, exit 0; the
#                        backup promoted by junos_sync_switchover serves a master's socket on its
#                        new port (the process's second: N is 2) in place of its backup's.
#   planted              a socket planted next to a real master sends a byte of a status line
#                        every 0.5 s for ever: plain, --json and --watch each finish (STAT's
#                        deadline: 1 s for the socket, 2 s for the run; they used to hang for
#                        hours), say it did not answer within 1 s, and show the master intact.
#
# A status socket is DIR/junos-sync.PID.ROLE.PORT.N.sock, N numbering the process's status
# sockets: a flowd's first is 1.
#
# The change schedule comes from SEED (argument, else $FAULT_SEED, else random), printed first.
# Prints `ok - NAME` / `not ok - NAME: WHY` per case, then `N passed, N failed`; exit 1 on failure.

set -eu -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

if [[ $# -lt 2 || ! -x ${2:-} ]]; then
    echo "usage: $0 path/to/flowd path/to/junos-sync-stat [seed]" >&2
    exit 2
fi
fs_init "$1" || exit 2
STAT=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
CHECK=$HERE/stat_check.py
fs_seed "${3:-}"
WAIT=20        # seconds any single wait may take
FLOWS=1000000  # the table the resync walks
CHURN=20000    # changes made while it walks

echo "# stat: $STAT, flowd $FS_FLOWD"
echo "# seed $SEED (rerun: $0 $1 $2 $SEED)"

# run_stat NAME ARGS...: STAT ARGS, output in the case's NAME.out and NAME.err; sets RC and OUT
# (stdout). Its own statuses are 0, 1 (a socket could not be read) and 2 (usage): anything else
# (a timeout, a signal) is a crash or a hang, and fails the case.
run_stat() {
    local name=$1
    shift
    RC=0
    timeout 30 "$STAT" "$@" >"$FS_CASE_DIR/$name.out" 2>"$FS_CASE_DIR/$name.err" || RC=$?
    (( RC <= 2 )) || fs_fail "junos-sync-stat $* ended with status $RC: $(head -c 300 "$FS_CASE_DIR/$name.err")"
    OUT=$(<"$FS_CASE_DIR/$name.out")
}

# has NAME TEXT: NAME.out has a line that is exactly TEXT.
has() {
    grep -qxF -- "$2" "$FS_CASE_DIR/$1.out" || fs_fail "junos-sync-stat ($1) has no line '$2'; it printed: $(head -c 1500 "$FS_CASE_DIR/$1.out")"
}

# wait_socket PATH: until PATH is a socket (a context opens it on its loop thread).
wait_socket() {
    local t0
    fs_now
    t0=$NOW_MS
    until [[ -S $1 ]]; do
        fs_now
        (( NOW_MS - t0 < WAIT * 1000 )) ||
            fs_fail "no status socket $1 within $WAIT s (there: $(ls -A "$(dirname "$1")" | tr '\n' ' '))"
        sleep 0.02
    done
}

# wait_gone PATH: until PATH is no more.
wait_gone() {
    local t0
    fs_now
    t0=$NOW_MS
    while [[ -e $1 || -L $1 ]]; do
        fs_now
        (( NOW_MS - t0 < WAIT * 1000 )) || fs_fail "$1 still there after $WAIT s"
        sleep 0.02
    done
}

# status_dir: a directory of the case's own for the daemons it starts.
status_dir() {
    DIR=$FS_CASE_DIR/status
    mkdir -m 0700 "$DIR"
    export JUNOS_SYNC_STATUS_DIR=$DIR
}

# master_port: the port in a master's `ready master port P ...` line.
master_port() {
    local -a w
    read -r -a w <<<"$ANSWER"
    PORT=${w[3]:-}
    [[ $PORT =~ ^[1-9][0-9]*$ ]] || fs_fail "no port in '$ANSWER'"
}

# ------------------------------------------------------------------------------------------
case_resync_progress() {
    local n=0 mpid bpid total t0 walked_before_stop watch_frames nudged
    # shellcheck disable=SC2034 # filled by fs_quit (a nameref)
    local -A mb=() bb=()
    status_dir
    fs_srand $((SEED + 1))
    # The master holds the million TLVs of the fill (no backup yet), 48 MB; the walk into the
    # backup held stopped below adds what the kernel's socket buffers take (MBs, this kernel's
    # choice), and the churn 1 MB. At the default 64 MiB the margin would depend on the kernel:
    # over the limit, the backlog overflows (a second full resync, as documented).
    export JUNOS_SYNC_BACKLOG_LIMIT=268435456
    fs_start M "" master 0
    unset JUNOS_SYNC_BACKLOG_LIMIT
    master_port
    mpid=${FS_PID[M]}
    wait_socket "$DIR/junos-sync.$mpid.master.$PORT.1.sock"
    fs_rand 2147483647
    fs_ask M "fill $FLOWS $R" 180             # seconds on a loaded 2-core machine
    mkdir "$FS_CASE_DIR/samples"

    # sample [stopped]: one `STAT --json` into samples/NNNNNN.json; sets RUNNING, WALKED,
    # ACKED, LAG and UNACKED from the master's object (its fields in the library's order;
    # stat_check.py reads the samples as JSON). `stopped`: the backup is stopped, so it is given
    # 0.2 s and its not answering (status 1, the backup left out of the JSON) is expected.
    sample() {
        local f line rc=0 timeout=5 err
        [[ ${1:-} == stopped ]] && timeout=0.2
        n=$((n + 1))
        f=$(printf '%s/samples/%06d.json' "$FS_CASE_DIR" "$n")
        err=$FS_CASE_DIR/sample.err
        "$STAT" --json --timeout "$timeout" "$DIR" >"$f" 2>"$err" || rc=$?
        cat "$err" >>"$FS_CASE_DIR/samples.err"
        if [[ ${1:-} == stopped && $rc == 1 && $(wc -l <"$err") == 1 ]] &&
            grep -qF "no answer within 0.2 s (pid $bpid stopped" "$err"; then
            rc=0
        fi
        (( rc == 0 )) || fs_fail "junos-sync-stat --json: status $rc: $(tail -n 3 "$FS_CASE_DIR/samples.err")"
        line=$(grep -F "\"pid\":$mpid,\"role\":\"master\"" "$f" || true)
        [[ -n $line ]] || fs_fail "sample $n has no master: $(head -c 500 "$f")"
        RUNNING="" WALKED=0 ACKED=0 LAG=-1 UNACKED=-1
        if [[ $line =~ \"resync\":\{\"running\":(true|false),(\"complete\":(true|false),)?\"walked\":([0-9]+),\"acked\":([0-9]+)\} ]]; then
            RUNNING=${BASH_REMATCH[1]} WALKED=${BASH_REMATCH[4]} ACKED=${BASH_REMATCH[5]}
        fi
        [[ $line =~ \"lag_ms\":([0-9]+) ]] && LAG=${BASH_REMATCH[1]}
        [[ $line =~ \"unacked_entries\":([0-9]+) ]] && UNACKED=${BASH_REMATCH[1]}
        return 0
    }

    sample                                    # the master alone: down, no resync
    [[ -z $RUNNING ]] || fs_fail "a resync ($RUNNING) before any backup"
    # The backup is held stopped from its start: the walk cannot end (its end must be
    # acknowledged), so a sample sees it under way however fast this machine walks a million
    # entries. Stopped before its handshake, it is let run 50 ms at a time until the walk has
    # begun (the master fills the stopped backup's socket buffer).
    fs_start B B backup "$PORT"
    bpid=${FS_PID[B]}
    fs_signal B STOP
    fs_now
    t0=$NOW_MS
    nudged=$NOW_MS
    until sample stopped; [[ $RUNNING == true && $WALKED -gt 0 ]]; do
        [[ $RUNNING != false ]] || fs_fail "the resync ended before a sample saw it under way ($WALKED walked)"
        fs_now
        (( NOW_MS - t0 < WAIT * 1000 )) || fs_fail "the resync did not start within $WAIT s"
        if (( NOW_MS - nudged >= 300 )); then
            fs_signal B CONT
            sleep 0.05
            fs_signal B STOP
            fs_now
            nudged=$NOW_MS
        fi
        sleep 0.01
    done
    walked_before_stop=$WALKED

    # Still stopped while --watch draws two frames, each waiting 0.2 s for the backup: ~0.6 s,
    # well under flowd's 2 s keepalive.
    run_stat watch --watch 0.2 --count 2 --timeout 0.2 "$DIR"
    fs_signal B CONT
    fs_rand 2147483647
    fs_ask M "churn $CHURN $R"                # changes during the walk, some ahead of it
    (( RC == 0 )) || fs_fail "--watch ended with status $RC: $(head -c 300 "$FS_CASE_DIR/watch.err")"
    watch_frames=$(grep -o $'\e\[H' "$FS_CASE_DIR/watch.out" | wc -l || true)
    [[ $watch_frames == 2 && $OUT == $'\e[H\e[2J'* ]] || fs_fail "--watch --count 2 drew $watch_frames frames"
    [[ $(grep -cE '^  resync      running for .*  \[#*\.*\] [0-9]+\.[0-9]% of the walked acknowledged' \
        "$FS_CASE_DIR/watch.out") == 2 ]] ||
        fs_fail "--watch did not draw the resync's progress bar in each frame: $(cat -v "$FS_CASE_DIR/watch.out" | head -c 2000)"
    grep -qE '^              walked [0-9]+.*, acknowledged [0-9]+' "$FS_CASE_DIR/watch.out" ||
        fs_fail "--watch did not show the walked and acknowledged counts"
    grep -qF "backup  pid $bpid  master port $PORT" "$FS_CASE_DIR/watch.out" &&
        grep -qF "  error       no answer within 0.2 s (pid $bpid stopped" "$FS_CASE_DIR/watch.out" ||
        fs_fail "--watch did not report the stopped backup as not answering"

    until sample; [[ $RUNNING == false ]]; do
        fs_now
        (( NOW_MS - t0 < 3 * WAIT * 1000 )) || fs_fail "the resync did not end within $((3 * WAIT)) s ($WALKED walked, $ACKED acked)"
        sleep 0.01
    done
    fs_ask B "wait-synced $WAIT" $((WAIT + 5))
    total=$(cut -d' ' -f2 <<<"$ANSWER")       # synced <walked> flows <count>
    # The changes add and delete flows, some ahead of the walk: it met FLOWS give or take CHURN.
    (( total >= FLOWS - CHURN && total <= FLOWS + CHURN )) ||
        fs_fail "the backup says the walk had $total entries, not $FLOWS +- $CHURN"

    # Idle: once everything queued is acknowledged, the lag is (about) nothing.
    fs_barrier M "$WAIT"
    until sample; [[ $UNACKED == 0 && $LAG -lt 1000 ]]; do
        fs_now
        (( NOW_MS - t0 < 4 * WAIT * 1000 )) || fs_fail "not idle: lag ${LAG} ms, $UNACKED unacknowledged"
        sleep 0.05
    done
    fs_note "walked $walked_before_stop of the stopped backup before --watch; idle: lag $LAG ms, $UNACKED unacknowledged"
    python3 "$CHECK" progress "$FS_CASE_DIR/samples" "$mpid" "$bpid" "$total" >"$FS_CASE_DIR/check.out" 2>&1 ||
        fs_fail "progression: $(cat "$FS_CASE_DIR/check.out")"
    fs_note "$(cat "$FS_CASE_DIR/check.out")"

    run_stat plain "$DIR"
    (( RC == 0 )) || fs_fail "plain view: status $RC"
    has plain "master  pid $mpid  port $PORT  ($DIR/junos-sync.$mpid.master.$PORT.1.sock)"
    has plain "  resync      complete: $total entries walked and acknowledged"
    has plain "  lag         none: everything is acknowledged"
    has plain "  unacked     0 entries, 0 B of the 256.0 MiB backlog limit (0.0%)"
    has plain "backup  pid $bpid  master port $PORT  ($DIR/junos-sync.$bpid.backup.$PORT.1.sock)"
    has plain "  peer        127.0.0.1:$PORT (the master)"
    has plain "  resync      complete: $total entries applied"
    grep -qE '^  state       up for [0-9]' "$FS_CASE_DIR/plain.out" || fs_fail "plain view: no 'up for'"

    run_stat prom --prometheus "$DIR"
    (( RC == 0 )) || fs_fail "--prometheus: status $RC"
    python3 "$CHECK" prometheus "$FS_CASE_DIR/prom.out" >"$FS_CASE_DIR/check.out" 2>&1 ||
        fs_fail "--prometheus: $(cat "$FS_CASE_DIR/check.out")"
    local m="pid=\"$mpid\",role=\"master\",port=\"$PORT\""
    has prom "junos_sync_up{$m} 1"
    has prom "junos_sync_resync_walked{$m} $total"
    has prom "junos_sync_resync_running{$m} 0"
    has prom "junos_sync_resync_complete{$m} 1"
    has prom "junos_sync_full_resyncs_total{$m} 1"
    has prom "junos_sync_unacked_entries{$m} 0"
    has prom "junos_sync_stat_contexts 2"
    if command -v promtool >/dev/null; then
        promtool check metrics <"$FS_CASE_DIR/prom.out" >"$FS_CASE_DIR/promtool.out" 2>&1 ||
            fs_fail "promtool check metrics: $(cat "$FS_CASE_DIR/promtool.out")"
        fs_note "--prometheus: $(cat "$FS_CASE_DIR/check.out"); promtool check metrics passes"
    else
        fs_note "--prometheus: $(cat "$FS_CASE_DIR/check.out") (promtool not installed)"
    fi

    fs_quit B bb
    fs_quit M mb
    (( mb[walked] == total )) || fs_fail "flowd walked ${mb[walked]} entries, the backup counted $total"
    [[ -z $(ls -A "$DIR") ]] || fs_fail "left in the status directory: $(ls -A "$DIR")"
}

# ------------------------------------------------------------------------------------------
case_sockets() {
    local ms bs f
    # shellcheck disable=SC2034 # filled by fs_quit (a nameref)
    local -A mb=() bb=()
    status_dir
    # Keyed, the way an unmodified daemon is: the status says so.
    (umask 077 && head -c 32 /dev/urandom >"$FS_CASE_DIR/key")
    export JUNOS_SYNC_AUTH_KEY_FILE=$FS_CASE_DIR/key

    run_stat empty "$DIR"
    (( RC == 0 )) && [[ $OUT == "no junos-sync status sockets in $DIR" ]] || fs_fail "empty directory: status $RC, '$OUT'"
    run_stat env                              # the directory from JUNOS_SYNC_STATUS_DIR
    [[ $OUT == "no junos-sync status sockets in $DIR" ]] || fs_fail "JUNOS_SYNC_STATUS_DIR not used: '$OUT'"
    run_stat emptyjson --json "$DIR"
    (( RC == 0 )) && [[ $OUT == "[]" ]] || fs_fail "empty directory, --json: status $RC, '$OUT'"
    run_stat missing "$DIR/none"
    (( RC == 1 )) && grep -qF "cannot read $DIR/none" "$FS_CASE_DIR/missing.err" ||
        fs_fail "a missing directory: status $RC, '$(cat "$FS_CASE_DIR/missing.err")'"

    fs_start M "" master 0
    master_port
    fs_ask M "fill 1000 1"
    fs_start B B backup "$PORT"
    fs_ask B "wait-synced $WAIT" $((WAIT + 5))
    ms=$DIR/junos-sync.${FS_PID[M]}.master.$PORT.1.sock
    bs=$DIR/junos-sync.${FS_PID[B]}.backup.$PORT.1.sock
    wait_socket "$ms"
    wait_socket "$bs"
    for f in "$ms" "$bs"; do
        [[ $(stat -c %a "$f") == 600 ]] || fs_fail "$f has mode $(stat -c %a "$f"), expected 0600"
        [[ $(stat -c %u "$f") == "$(id -u)" ]] || fs_fail "$f is not owned by the daemon's user"
    done
    [[ $(ls -A "$DIR" | wc -l) == 2 ]] || fs_fail "expected the two sockets only: $(ls -A "$DIR")"
    run_stat keyed "$DIR"
    (( RC == 0 )) || fs_fail "plain view: status $RC"
    [[ $(grep -cxF "  keyed       yes" "$FS_CASE_DIR/keyed.out") == 2 ]] || fs_fail "not both keyed: $OUT"
    run_stat keyedjson --json "$DIR"
    [[ $(grep -cF '"keyed":true' "$FS_CASE_DIR/keyedjson.out") == 2 ]] || fs_fail "--json: not both keyed: $OUT"

    fs_quit B bb
    [[ ! -e $bs ]] || fs_fail "the backup's socket outlived it"
    run_stat after "$DIR"
    has after "  peer        none: no backup connected"
    fs_quit M mb
    [[ ! -e $ms ]] || fs_fail "the master's socket outlived it"
    run_stat gone "$DIR"
    [[ $OUT == "no junos-sync status sockets in $DIR" ]] || fs_fail "after both quit: '$OUT'"
}

# ------------------------------------------------------------------------------------------
case_stale_and_switchover() {
    local ms as mpid apid port2
    # shellcheck disable=SC2034 # filled by fs_quit (a nameref)
    local -A bb=()
    local -a w
    status_dir
    fs_start M "" master 0
    master_port
    fs_ask M "fill 1000 2"
    fs_start A A backup "$PORT"
    fs_ask A "wait-synced $WAIT" $((WAIT + 5))
    mpid=${FS_PID[M]} apid=${FS_PID[A]}
    ms=$DIR/junos-sync.$mpid.master.$PORT.1.sock
    as=$DIR/junos-sync.$apid.backup.$PORT.1.sock
    wait_socket "$ms"
    wait_socket "$as"

    fs_kill9 M                                # no one removes its socket
    [[ -S $ms ]] || fs_fail "the killed master's socket vanished"
    fs_ask A "wait-conn down $WAIT" $((WAIT + 5))
    run_stat plain "$DIR"
    (( RC == 0 )) || fs_fail "a stale socket made the plain view fail (status $RC)"
    has plain "stale   $ms"
    has plain "              no one listens: pid $mpid is gone and left its socket (safe to delete)"
    has plain "backup  pid $apid  master port $PORT  ($as)"
    run_stat json --json "$DIR"
    (( RC == 0 )) || fs_fail "--json: status $RC"
    [[ $(grep -c '"socket":' "$FS_CASE_DIR/json.out") == 1 ]] && grep -qF "\"pid\":$apid,\"role\":\"backup\"" "$FS_CASE_DIR/json.out" ||
        fs_fail "--json should hold the backup only: $OUT"
    grep -qF "$ms: stale: pid $mpid is gone" "$FS_CASE_DIR/json.err" || fs_fail "--json did not mention the stale socket"
    run_stat prom --prometheus "$DIR"
    (( RC == 0 )) || fs_fail "--prometheus: status $RC"
    has prom "junos_sync_stat_stale_sockets 1"
    has prom "junos_sync_stat_contexts 1"

    # Promoted in place: the backup's socket gives way to a master's, on the new port.
    fs_ask A "switchover-master 0"
    read -r -a w <<<"$ANSWER"                 # master port <p> flows <count>
    port2=${w[2]:-}
    [[ $port2 =~ ^[1-9][0-9]*$ ]] || fs_fail "no port in '$ANSWER'"
    wait_gone "$as"
    # The process's second status socket: N is 2.
    wait_socket "$DIR/junos-sync.$apid.master.$port2.2.sock"
    run_stat promoted "$DIR"
    has promoted "master  pid $apid  port $port2  ($DIR/junos-sync.$apid.master.$port2.2.sock)"
    has promoted "stale   $ms"
    fs_quit A bb
    wait_gone "$DIR/junos-sync.$apid.master.$port2.2.sock"
    run_stat last "$DIR"
    (( RC == 0 )) && [[ $(grep -c . "$FS_CASE_DIR/last.out") == 2 ]] || fs_fail "only the stale socket should be left: $OUT"
}

# ------------------------------------------------------------------------------------------
case_planted() {
    local mpid planted
    # shellcheck disable=SC2034 # filled by fs_quit (a nameref)
    local -A mb=()
    status_dir
    fs_start M "" master 0
    master_port
    mpid=${FS_PID[M]}
    wait_socket "$DIR/junos-sync.$mpid.master.$PORT.1.sock"
    planted=$DIR/junos-sync.1.master.1.sock  # named as a 1.1 library names it
    python3 "$CHECK" dribble "$planted" 0.5 2>"$FS_CASE_DIR/dribble.err" &
    FS_PID[P]=$!                              # killed by the case's cleanup whatever happens
    echo "${FS_PID[P]}" >>"$FS_WORK/pids"
    wait_socket "$planted"

    run_stat plain --timeout 1 "$DIR"
    (( RC == 1 )) || fs_fail "plain view: status $RC, expected 1 (a socket did not answer)"
    has plain "master  pid $mpid  port $PORT  ($DIR/junos-sync.$mpid.master.$PORT.1.sock)"
    grep -qE '^  state       down for [0-9]' "$FS_CASE_DIR/plain.out" || fs_fail "plain view: the master's state is not shown: $OUT"
    grep -qxF "  error       no answer within 1 s (pid 1 stopped, or its junos-sync loop busy: a backup applying a resync?)" \
        "$FS_CASE_DIR/plain.out" || fs_fail "plain view: the planted socket is not reported as silent: $OUT"
    run_stat json --json --timeout 1 "$DIR"
    (( RC == 1 )) || fs_fail "--json: status $RC, expected 1"
    [[ $(grep -c '"socket":' "$FS_CASE_DIR/json.out") == 1 ]] && grep -qF "\"pid\":$mpid,\"role\":\"master\"" "$FS_CASE_DIR/json.out" ||
        fs_fail "--json should hold the master only: $OUT"
    grep -qF "$planted: no answer within 1 s" "$FS_CASE_DIR/json.err" || fs_fail "--json did not report the planted socket"
    run_stat watch --watch 0.2 --count 2 --timeout 1 "$DIR"
    (( RC == 0 )) || fs_fail "--watch: status $RC"
    [[ $(grep -cF "master  pid $mpid  port $PORT" "$FS_CASE_DIR/watch.out") == 2 ]] ||
        fs_fail "--watch did not draw the master in both frames: $(cat -v "$FS_CASE_DIR/watch.out" | head -c 2000)"
    fs_kill9 P
    fs_quit M mb
}

fs_case resync-progress case_resync_progress
fs_case sockets case_sockets
fs_case stale-and-switchover case_stale_and_switchover
fs_case planted case_planted
fs_summary
