# lib.sh -- shared helpers for the flowd process-level fault tests (sourced by tests/sh/*.sh).
#
# Needs bash >= 5.0 (EPOCHREALTIME, namerefs). Conventions:
#   - Each test case runs in a (background) subshell through fs_case; fs_fail inside it prints
#     nothing, records why, and exits the subshell, whose EXIT trap SIGKILLs every daemon it
#     started. The parent prints `ok - NAME` or `not ok - NAME: WHY` (plus the daemons' log
#     tails as `#` lines) and goes on with the next case.
#   - Daemons are flowd processes driven through FIFOs: fs_ask sends one command line and reads its
#     one-line answer with a deadline, polling so that a dead daemon fails at once, never hangs.
#   - Every daemon pid also goes to a file the top-level EXIT trap reads, so nothing survives the
#     script, whatever kills it (a case subshell killed by a signal runs no trap of its own).
#   - Never call a helper that may fs_fail inside $(...): the failure would only end that
#     substitution. Helpers return values in globals (ANSWER, DIGEST, named arrays).
#   - The helpers work in a script with `set -e` too: a command whose failure is expected is
#     guarded, and the cleanups turn -e off (a process already gone must not end them early).

FS_WORK=""            # per-run work directory (FIFOs, logs), removed at exit
FS_FLOWD=""           # absolute path of the flowd binary
FS_KEEPALIVE=2        # flowd's keepalive_time in seconds (FLOWD_KEEPALIVE in examples/flowd.c)
FS_CASE_DIR=""        # current case's directory (logs, FIFOs, why, notes)
FS_CASE_PID=""        # the running case's subshell
FS_PASSED=0
FS_FAILED=0
FS_SKIPPED=0
FS_EXIT_HOOKS=()      # commands run by the top-level cleanup after the daemons are dead
declare -A FS_PID=() FS_IN=() FS_OUT=() FS_LOG=() FS_BARRIERS=()
ANSWER=""
DIGEST=""

fs_now_ms() {
    local t=${EPOCHREALTIME/[.,]/}
    echo $((t / 1000))
}

# Same as fs_now_ms, without a fork: sets NOW_MS.
fs_now() {
    local t=${EPOCHREALTIME/[.,]/}
    NOW_MS=$((t / 1000))
}

# fs_seed ARG: sets SEED from ARG, else $FAULT_SEED, else a random one; exits 2 if not a number.
fs_seed() {
    SEED=${1:-${FAULT_SEED:-$(( (${EPOCHREALTIME/[.,]/} ^ $$) % 1000000007 ))}}
    [[ $SEED =~ ^[0-9]+$ ]] || { echo "seed must be a number" >&2; exit 2; }
}

# fs_init FLOWD: resolves the binary, creates the work directory, installs the traps.
fs_init() {
    if [[ $# -lt 1 || ! -x $1 || -d $1 ]]; then
        echo "usage: $0 path/to/flowd [seed]" >&2
        return 2
    fi
    FS_FLOWD=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
    FS_WORK=$(mktemp -d "${TMPDIR:-/tmp}/flowd-faults.XXXXXX") || return 1
    : >"$FS_WORK/pids"
    trap fs_cleanup EXIT
    trap 'echo "# interrupted"; exit 130' INT TERM HUP
}

# Top-level cleanup: SIGKILL every daemon ever started (SIGKILL also ends stopped ones), run
# the exit hooks (namespace removal...), remove the work directory.
fs_cleanup() {
    local p h
    set +e
    if [[ -n ${FS_CASE_PID:-} ]]; then
        kill -TERM "$FS_CASE_PID" 2>/dev/null   # its EXIT trap kills its daemons
        wait "$FS_CASE_PID" 2>/dev/null
    fi
    if [[ -n $FS_WORK && -f $FS_WORK/pids ]]; then
        while read -r p; do
            [[ -n $p ]] && kill -KILL "$p" 2>/dev/null
        done <"$FS_WORK/pids"
        while read -r p; do
            [[ -n $p ]] && wait "$p" 2>/dev/null
        done <"$FS_WORK/pids"
    fi
    for h in "${FS_EXIT_HOOKS[@]}"; do
        eval "$h"
    done
    [[ -n $FS_WORK && -z ${FS_KEEP_WORK:-} ]] && rm -rf "$FS_WORK"
}

# Deterministic 64-bit generator for seedable schedules (bash arithmetic wraps at 2^64).
FS_RNG=0
fs_srand() { FS_RNG=$(( $1 * 6364136223846793005 + 1442695040888963407 )); fs_rand; fs_rand; }
# fs_rand [MOD]: sets R to the next value, in [0, MOD) when MOD is given.
fs_rand() {
    FS_RNG=$(( FS_RNG * 6364136223846793005 + 1442695040888963407 ))
    R=$(( (FS_RNG >> 17) & 0x3fffffffffff ))
    [[ $# -gt 0 ]] && R=$(( R % $1 ))
    return 0
}

# fs_fail WHY: ends the current case (subshell) as failed.
fs_fail() {
    [[ -n $FS_CASE_DIR ]] && printf '%s\n' "$*" >"$FS_CASE_DIR/why"
    exit 1
}

# fs_note TEXT: a detail printed as `# NAME: TEXT` before the case's result line.
fs_note() {
    printf '%s\n' "$*" >>"$FS_CASE_DIR/notes"
}

# fs_case NAME FUNCTION [ARGS...]: runs one case in a subshell and reports it.
fs_case() {
    local name=$1 rc why l f
    shift
    if [[ -n ${FS_ONLY:-} && ! $name =~ $FS_ONLY ]]; then
        return 0
    fi
    FS_CASE_DIR=$FS_WORK/$name
    mkdir -p "$FS_CASE_DIR"
    # In the background, so that a signal to the script interrupts `wait` at once (bash runs
    # traps only between commands); the top-level cleanup then ends the case first.
    (
        FS_PID=() FS_IN=() FS_OUT=() FS_LOG=() FS_BARRIERS=()
        trap fs_case_cleanup EXIT
        trap 'exit 130' INT TERM HUP
        "$@"
    ) &
    FS_CASE_PID=$!
    rc=0
    wait "$FS_CASE_PID" || rc=$?
    FS_CASE_PID=""
    if [[ -f $FS_CASE_DIR/notes ]]; then
        while IFS= read -r l; do printf '# %s: %s\n' "$name" "$l"; done <"$FS_CASE_DIR/notes"
    fi
    if (( rc == 0 )); then
        echo "ok - $name"
        FS_PASSED=$((FS_PASSED + 1))
    else
        why="exited with status $rc"
        [[ -s $FS_CASE_DIR/why ]] && why=$(<"$FS_CASE_DIR/why")
        echo "not ok - $name: $why"
        FS_FAILED=$((FS_FAILED + 1))
        for f in "$FS_CASE_DIR"/*.log; do
            [[ -f $f ]] || continue
            printf '#   --- last lines of %s\n' "$(basename "$f" .log)"
            tail -n "${FS_LOG_TAIL:-12}" "$f" | sed 's/^/#   /'
        done
    fi
    FS_CASE_DIR=""
    return 0
}

# Case cleanup (subshell EXIT trap): SIGKILL and reap the daemons this case started.
fs_case_cleanup() {
    local k
    set +e
    for k in "${!FS_PID[@]}"; do
        kill -KILL "${FS_PID[$k]}" 2>/dev/null
    done
    for k in "${!FS_PID[@]}"; do
        wait "${FS_PID[$k]}" 2>/dev/null
    done
}

# fs_summary: the final line; returns non-zero when a case failed.
fs_summary() {
    if (( FS_SKIPPED > 0 )); then
        echo "$FS_PASSED passed, $FS_FAILED failed, $FS_SKIPPED skipped"
    else
        echo "$FS_PASSED passed, $FS_FAILED failed"
    fi
    (( FS_FAILED == 0 ))
}

# fs_state KEY: sets PSTATE to the daemon's process state (R, S, T, Z...) or "gone".
fs_state() {
    local s pid=${FS_PID[$1]:-}
    PSTATE=gone
    [[ -n $pid ]] || return 0
    { read -r s </proc/"$pid"/stat; } 2>/dev/null || return 0
    s=${s##*) }
    PSTATE=${s%% *}
}

# fs_start KEY LABEL [--flowd PATH] [--netns NS] FLOWD-ARGS...: starts flowd (PATH, else
# FS_FLOWD) with FLOWD_NAME=LABEL, stdin and stdout on FIFOs, stderr appended to the case's
# KEY.log; reads its `ready ...` line into ANSWER. The FIFOs are opened read-write here first, so
# that neither side blocks opening them.
fs_start() {
    local key=$1 label=$2 ns="" flowd=$FS_FLOWD in out fd dir=$FS_CASE_DIR
    shift 2
    if [[ ${1:-} == --flowd ]]; then
        flowd=$2
        shift 2
    fi
    if [[ ${1:-} == --netns ]]; then
        ns=$2
        shift 2
    fi
    [[ -z ${FS_PID[$key]:-} ]] || fs_fail "internal: daemon $key already started"
    rm -f "$dir/$key.in" "$dir/$key.out"
    mkfifo "$dir/$key.in" "$dir/$key.out" || fs_fail "mkfifo failed"
    exec {in}<>"$dir/$key.in" {out}<>"$dir/$key.out"
    FS_LOG[$key]=$dir/$key.log
    (
        # The daemon must not inherit the script's ends of any FIFO.
        for fd in "${FS_IN[@]}" "${FS_OUT[@]}" "$in" "$out"; do
            eval "exec $fd>&-"
        done
        export FLOWD_NAME=$label
        if [[ -n $ns ]]; then
            # `ip netns exec` execs the command: the pid stays the daemon's.
            exec ip netns exec "$ns" "$flowd" "$@" <"$dir/$key.in" >"$dir/$key.out" 2>>"${FS_LOG[$key]}"
        fi
        exec "$flowd" "$@" <"$dir/$key.in" >"$dir/$key.out" 2>>"${FS_LOG[$key]}"
    ) &
    FS_PID[$key]=$!
    FS_IN[$key]=$in
    FS_OUT[$key]=$out
    FS_BARRIERS[$key]=0
    echo "${FS_PID[$key]}" >>"$FS_WORK/pids"
    fs_read "$key" "startup" 10
    [[ $ANSWER == ready* ]] || fs_fail "$key: unexpected startup line '$ANSWER'"
}

# fs_read KEY WHAT TIMEOUT_S: one answer line into ANSWER. Fails the case on a timeout, a dead
# daemon, or an `error`/`timeout` answer.
fs_read() {
    local key=$1 what=$2 secs=$3 line part="" rc deadline
    fs_now
    deadline=$((NOW_MS + secs * 1000))
    while :; do
        rc=0
        IFS= read -r -t 0.2 -u "${FS_OUT[$key]}" line || rc=$?
        if (( rc == 0 )); then
            ANSWER=$part$line
            break
        fi
        (( rc > 128 )) || fs_fail "$key: cannot read its answer to '$what' (read status $rc)"
        part+=$line
        fs_state "$key"
        [[ $PSTATE == gone || $PSTATE == Z || $PSTATE == X ]] && fs_died "$key" "$what"
        fs_now
        (( NOW_MS < deadline )) || fs_fail "$key did not answer '$what' within $secs s (state $PSTATE)"
    done
    case $ANSWER in
        error* | timeout*) fs_fail "$key: '$what' -> $ANSWER" ;;
    esac
    return 0
}

# fs_died KEY WHAT: the daemon is gone; reap it and fail the case saying how it ended.
fs_died() {
    local st=0
    wait "${FS_PID[$1]}" 2>/dev/null || st=$?
    unset "FS_PID[$1]"
    if (( st > 128 && st < 128 + 65 )); then
        fs_fail "$1 was killed by SIG$(kill -l $((st - 128))) (during '$2')"
    fi
    fs_fail "$1 exited with status $st (during '$2')"
}

# fs_send KEY COMMAND: sends one command line without reading the answer.
fs_send() {
    fs_state "$1"
    [[ $PSTATE != gone && $PSTATE != Z && $PSTATE != X ]] || fs_died "$1" "$2"
    printf '%s\n' "$2" >&"${FS_IN[$1]}" || fs_fail "cannot write to $1"
}

# fs_ask KEY COMMAND [TIMEOUT_S]: sends one command, reads its answer into ANSWER.
fs_ask() {
    fs_send "$1" "$2"
    fs_read "$1" "$2" "${3:-20}"
}

# fs_digest KEY: sets DIGEST to "<flows> <hex>".
fs_digest() {
    fs_ask "$1" digest
    DIGEST=${ANSWER#digest }
}

# fs_wait_match REF OTHER [TIMEOUT_S]: polls both digests until equal; sets MATCH_MS (time it
# took) and DIGEST (the common digest).
fs_wait_match() {
    local ref=$1 other=$2 secs=${3:-15} d1 d2 t0
    fs_now
    t0=$NOW_MS
    while :; do
        fs_digest "$ref"
        d1=$DIGEST
        fs_digest "$other"
        d2=$DIGEST
        [[ $d1 == "$d2" ]] && break
        fs_now
        (( NOW_MS - t0 < secs * 1000 )) ||
            fs_fail "$other ($d2) does not match $ref ($d1) after $secs s"
        sleep 0.05
    done
    fs_now
    MATCH_MS=$((NOW_MS - t0))
    DIGEST=$d1
}

# fs_barrier MASTER [TIMEOUT_S]: a marker queued with ack_requested; returns once the backup has
# applied everything queued before it. Counted, since barriers are queued but never decoded.
fs_barrier() {
    fs_ask "$1" "barrier ${2:-15}" $(( ${2:-15} + 5 ))
    FS_BARRIERS[$1]=$(( FS_BARRIERS[$1] + 1 ))
}

# fs_stats KEY ARRAY: the library counters (junos_sync_get_stats) into associative ARRAY.
fs_stats() {
    local -n _st=$2
    local -a w
    local i
    fs_ask "$1" stats
    read -r -a w <<<"${ANSWER#stats }"
    _st=()
    for ((i = 0; i + 1 < ${#w[@]}; i += 2)); do
        _st[${w[i]}]=${w[i + 1]}
    done
    [[ -n ${_st[connections]:-} ]] || fs_fail "$1: cannot parse stats '$ANSWER'"
}

# fs_wait_stat KEY FIELD OP VALUE [TIMEOUT_S]: polls stats until (( FIELD OP VALUE )).
fs_wait_stat() {
    local key=$1 field=$2 op=$3 val=$4 secs=${5:-10} t0
    local -A _ws=()
    fs_now
    t0=$NOW_MS
    while :; do
        fs_stats "$key" _ws
        (( ${_ws[$field]:-0} $op val )) && return 0
        fs_now
        (( NOW_MS - t0 < secs * 1000 )) ||
            fs_fail "$key: stats $field is ${_ws[$field]:-?}, expected $op $val within $secs s"
        sleep 0.05
    done
}

# fs_quit KEY ARRAY: `quit`, then the daemon's final counters into associative ARRAY
# (flows queued queue_errors walked resyncs add update delete update_unknown delete_unknown bad);
# the daemon must exit with status 0.
fs_quit() {
    local key=$1 rc i
    local -n _bye=$2
    local -a w
    fs_ask "$key" quit
    [[ $ANSWER == bye* ]] || fs_fail "$key: unexpected answer to quit '$ANSWER'"
    local line=${ANSWER#bye }
    read -r -a w <<<"${line/ applied / }"
    _bye=()
    for ((i = 0; i + 1 < ${#w[@]}; i += 2)); do
        _bye[${w[i]}]=${w[i + 1]}
    done
    # It answered after junos_sync_exit returned; it must now exit promptly.
    local t0
    fs_now
    t0=$NOW_MS
    while fs_state "$key"; [[ $PSTATE != gone && $PSTATE != Z && $PSTATE != X ]]; do
        fs_now
        (( NOW_MS - t0 < 10000 )) || fs_fail "$key did not exit within 10 s of 'quit' (state $PSTATE)"
        sleep 0.02
    done
    rc=0
    wait "${FS_PID[$key]}" || rc=$?
    unset "FS_PID[$key]"
    (( rc == 0 )) || fs_fail "$key exited with status $rc after quit"
}

# fs_kill9 KEY: SIGKILL the daemon and reap it.
fs_kill9() {
    local pid=${FS_PID[$1]}
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "FS_PID[$1]"
}

# fs_signal KEY SIGNAL: e.g. fs_signal B STOP.
fs_signal() {
    kill -"$2" "${FS_PID[$1]}" || fs_fail "cannot send SIG$2 to $1"
}

# fs_mark KEY VAR: remembers the current end of KEY's log in VAR (for fs_log_has).
fs_mark() {
    local -n _m=$2
    _m=$(stat -c %s "${FS_LOG[$1]}" 2>/dev/null || echo 0)
}

# fs_log_has KEY MARK PATTERN: true when KEY's log has a line matching the extended regex
# PATTERN after MARK.
fs_log_has() {
    tail -c +$(( $2 + 1 )) "${FS_LOG[$1]}" 2>/dev/null | grep -Eq -- "$3"
}

# fs_log_count KEY MARK PATTERN: sets COUNT to the number of matching lines after MARK.
fs_log_count() {
    COUNT=$(tail -c +$(( $2 + 1 )) "${FS_LOG[$1]}" 2>/dev/null | grep -Ec -- "$3" || true)
}

# fs_wait_log KEY MARK PATTERN TIMEOUT_S: polls KEY's log for PATTERN after MARK; sets
# WAITED_MS (time from the call).
fs_wait_log() {
    local t0
    fs_now
    t0=$NOW_MS
    until fs_log_has "$1" "$2" "$3"; do
        fs_now
        (( NOW_MS - t0 < $4 * 1000 )) || fs_fail "$1 did not log /$3/ within $4 s"
        sleep 0.05
    done
    fs_now
    WAITED_MS=$((NOW_MS - t0))
}

# fs_sleep_until T_MS: the deliberate part of a fault (how long a process stays stopped, a link
# stays down): sleeps until the fs_now_ms clock reaches T_MS.
fs_sleep_until() {
    local left
    fs_now
    left=$(( $1 - NOW_MS ))
    (( left > 0 )) && sleep "$((left / 1000)).$(printf '%03d' $((left % 1000)))"
    return 0
}

# fs_keepalive_from_ready: flowd's ready line may say `keepalive N` (seconds); use it if so.
fs_keepalive_from_ready() {
    local -a w
    local i
    read -r -a w <<<"$ANSWER"
    for ((i = 0; i + 1 < ${#w[@]}; i++)); do
        [[ ${w[i]} == keepalive && ${w[i + 1]} =~ ^[0-9]+$ ]] && FS_KEEPALIVE=${w[i + 1]}
    done
    return 0
}

# fs_check_exactly_once MASTER_BYE BACKUP_BYE BARRIERS: with exactly one full resync in the
# backup's life (and only resumes after it), the backup decoded every walked entry and every
# queued record exactly once: applied == walked + queued - barriers (barriers are not decoded).
fs_check_exactly_once() {
    local -n _mb=$1 _bb=$2
    local applied=$(( _bb[add] + _bb[update] + _bb[delete] ))
    local expect=$(( _mb[walked] + _mb[queued] - $3 ))
    (( applied == expect )) ||
        fs_fail "backup decoded $applied records, expected walked ${_mb[walked]} + queued ${_mb[queued]} - barriers $3 = $expect (a record lost or decoded twice)"
}

# ------------------------------------------------------------------------------------------
# Master/backup pairs. Sizes and the per-step deadline may be set by the script before use.

FS_FLOWS=${FS_FLOWS:-20000}  # flows the master holds before the first backup attaches (+ 0..4999)
FS_CHURN=${FS_CHURN:-3000}   # changes per churn round
FS_WAIT=${FS_WAIT:-15}       # seconds any single wait may take
# Extra words around flowd's arguments for fs_pair_up: before them (e.g. --flowd PATH, --netns
# NS) and after them (e.g. --addr A).
FS_M_PRE=() FS_M_POST=() FS_B_PRE=() FS_B_POST=()

# fs_churn KEY [N]: N (default FS_CHURN) seeded random add/update/delete operations on a master.
fs_churn() {
    fs_rand 2147483647                        # flowd seeds are at most 2^31 - 1
    fs_ask "$1" "churn ${2:-$FS_CHURN} $R"
}

# fs_pair_up M B: master M on a free port, filled from the schedule; backup B attaches and
# resyncs while M churns; returns with the tables equal. Sets PORT.
fs_pair_up() {
    local -a w
    local nfill
    fs_start "$1" "" "${FS_M_PRE[@]}" master 0 "${FS_M_POST[@]}"
    fs_keepalive_from_ready
    read -r -a w <<<"$ANSWER"
    PORT=${w[3]:-}
    [[ $PORT =~ ^[0-9]+$ && $PORT != 0 ]] || fs_fail "master: no port in '$ANSWER'"
    fs_rand 5000
    nfill=$((FS_FLOWS + R))
    fs_rand 2147483647
    fs_ask "$1" "fill $nfill $R"
    fs_start "$2" "$2" "${FS_B_PRE[@]}" backup "$PORT" "${FS_B_POST[@]}"
    fs_churn "$1"
    fs_ask "$2" "wait-synced $FS_WAIT" $((FS_WAIT + 5))
    fs_barrier "$1"
    fs_wait_match "$1" "$2" "$FS_WAIT"
}

# fs_switchover MASTER BACKUP: SIGKILL the master, then promote the backup in place
# (switchover-master on a free port) once it has seen the master go; the backup must hold
# DIGEST (the tables' common digest from fs_wait_match) before and after. Sets PORT to the
# promoted master's.
fs_switchover() {
    local last=$DIGEST
    local -a w
    fs_kill9 "$1"
    fs_ask "$2" "wait-conn down $FS_WAIT" $((FS_WAIT + 5))
    fs_digest "$2"
    [[ $DIGEST == "$last" ]] || fs_fail "backup $2 ($DIGEST) lost state: the master had $last"
    fs_ask "$2" "switchover-master 0"
    read -r -a w <<<"$ANSWER"
    PORT=${w[2]:-}
    [[ $PORT =~ ^[0-9]+$ && $PORT != 0 ]] || fs_fail "switchover: no port in '$ANSWER'"
    fs_digest "$2"
    [[ $DIGEST == "$last" ]] || fs_fail "switchover changed $2's table ($DIGEST, was $last)"
}

# fs_resync_kind MASTER MARK S0 S1: which resyncs the master did since MARK, from its log and
# its stats (arrays S0 before, S1 after), which must agree. Sets KIND ("partial", "full",
# "partial+full", "none"), RESUMES and FULLS.
fs_resync_kind() {
    local -n _s0=$3 _s1=$4
    local logp logf
    RESUMES=$(( _s1[partial_resyncs] - _s0[partial_resyncs] ))
    FULLS=$(( _s1[full_resyncs] - _s0[full_resyncs] ))
    fs_log_count "$1" "$2" 'resumes after sequence'
    logp=$COUNT
    fs_log_count "$1" "$2" 'connected, full resync'
    logf=$COUNT
    (( logp == RESUMES && logf == FULLS )) ||
        fs_fail "master's log ($logp resumes, $logf full) disagrees with its stats ($RESUMES partial, $FULLS full)"
    KIND=none
    (( RESUMES > 0 && FULLS == 0 )) && KIND=partial
    (( RESUMES == 0 && FULLS > 0 )) && KIND=full
    (( RESUMES > 0 && FULLS > 0 )) && KIND=partial+full
    return 0
}

# fs_final_checks M B EXACT: both quit cleanly (status 0) with no queue errors or malformed
# records; EXACT=1 also checks the exactly-once decode count (fs_check_exactly_once), valid when
# the backup had one full resync in its life and only resumes after it.
fs_final_checks() {
    local -A mb=() bb=()
    local nb=${FS_BARRIERS[$1]}
    fs_quit "$1" mb
    fs_quit "$2" bb
    (( mb[queue_errors] == 0 )) || fs_fail "master had ${mb[queue_errors]} junos_sync_queue errors"
    (( bb[bad] == 0 )) || fs_fail "backup saw ${bb[bad]} malformed records"
    if [[ $3 == 1 ]]; then
        (( bb[resyncs] == 1 )) || fs_fail "backup completed ${bb[resyncs]} full resyncs, expected 1"
        fs_check_exactly_once mb bb "$nb"
        fs_note "exactly once: backup decoded $(( bb[add] + bb[update] + bb[delete] )) = walked ${mb[walked]} + queued ${mb[queued]} - $nb barriers"
    fi
}
