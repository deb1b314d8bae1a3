#!/usr/bin/env bash
# demo.sh FLOWD -- junos-sync end to end on loopback, driven through flowd's stdin/stdout.
#
# A master fills a flow table, backup A resyncs while the master keeps changing, live changes
# stream, the master is killed with SIGKILL, A is promoted with junos_sync_switchover onto ::
# (IPv6 and IPv4: junos_sync_set_address), backup B attaches to A over IPv4 and resyncs, then
# backup C over IPv6 (::1), and every table is compared by an order-independent digest.
# The three daemons run the three ways an application can: the master with the library's own
# thread calling back (--loop=thread), A single-threaded on an ISC eventlib loop
# (--loop=eventlib, junos_sync_set_event_context), B single-threaded on epoll (--loop=epoll,
# junos_sync_get_fd + junos_sync_dispatch). Without IPv6 on loopback, A listens on 127.0.0.1
# and the IPv6 step says it is skipped.
# Exits 0 and prints PASS when all tables match, non-zero and FAIL otherwise.
# Works from any directory: `make demo` or `examples/demo.sh build/examples/flowd`.

set -uo pipefail

if [[ $# -ne 1 || ! -x $1 ]]; then
    echo "usage: $0 path/to/flowd" >&2
    exit 2
fi
FLOWD=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")

FLOWS=20000          # flows the master learns before any backup exists
CHURN=4000           # changes per live round
WAIT=15              # seconds any single step may take

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flowd-demo.XXXXXX") || exit 1
declare -A PID=() IN=() OUT=() NAME=()

cleanup() {
    local k
    for k in "${!PID[@]}"; do
        kill -9 "${PID[$k]}" 2>/dev/null
    done
    for k in "${!PID[@]}"; do
        wait "${PID[$k]}" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "FAIL: interrupted"; exit 130' INT TERM

T_START=${EPOCHREALTIME//[!0-9]/}
now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $(( (t - T_START) / 1000 )); }

STEP=0
step() { STEP=$((STEP + 1)); printf '\n[%d/9] %s\n' "$STEP" "$*"; }
say() { printf '      %s\n' "$*"; }
fail() {
    printf '\nFAIL: %s\n' "$*"
    exit 1
}

# start KEY LABEL ARGS... : runs flowd ARGS with FLOWD_NAME=LABEL, stdin/stdout on FIFOs.
# The FIFOs are opened read-write here first, so neither side blocks opening them; every
# answer is read with a timeout, so a dead or stuck daemon is a FAIL, never a hang.
start() {
    local key=$1 label=$2 in out fd
    shift 2
    mkfifo "$WORK/$key.in" "$WORK/$key.out" || fail "mkfifo"
    exec {in}<>"$WORK/$key.in" {out}<>"$WORK/$key.out"
    (
        # The daemon must not inherit the script's ends of any FIFO.
        for fd in "${IN[@]}" "${OUT[@]}" "$in" "$out"; do
            eval "exec $fd>&-"
        done
        export FLOWD_NAME=$label
        exec "$FLOWD" "$@" <"$WORK/$key.in" >"$WORK/$key.out"
    ) &
    PID[$key]=$!
    IN[$key]=$in
    OUT[$key]=$out
    read_answer "$key" "startup" 10
}

# read_answer KEY WHAT TIMEOUT: one answer line into ANSWER; error/timeout answers are FAIL.
read_answer() {
    if ! read -r -t "$3" -u "${OUT[$1]}" ANSWER; then
        kill -0 "${PID[$1]}" 2>/dev/null || fail "${NAME[$1]:-$1} died (during: $2)"
        fail "${NAME[$1]:-$1} did not answer '$2' within $3 s"
    fi
    case $ANSWER in
        error* | timeout*) fail "${NAME[$1]:-$1}: '$2' -> $ANSWER" ;;
    esac
}

# ask KEY COMMAND [TIMEOUT]: send one command, read its one-line answer into ANSWER.
ask() {
    kill -0 "${PID[$1]}" 2>/dev/null || fail "${NAME[$1]} is not running (command: $2)"
    printf '%s\n' "$2" >&"${IN[$1]}" || fail "cannot write to ${NAME[$1]}"
    read_answer "$1" "$2" "${3:-$((WAIT + 5))}"
}

# digest KEY: sets DIGEST ("<flows> <hex>").
digest() {
    ask "$1" digest
    DIGEST=${ANSWER#digest }
}

show() { printf '      %-9s %6s flows   digest %s\n' "$1" "${2% *}" "${2#* }"; }

# wait_match REF OTHER: poll both digests until equal or $WAIT seconds have passed.
wait_match() {
    local t0 d1 d2
    t0=$(now_ms)
    while :; do
        digest "$1"
        d1=$DIGEST
        digest "$2"
        d2=$DIGEST
        [[ $d1 == "$d2" ]] && break
        (( $(now_ms) - t0 < WAIT * 1000 )) ||
            fail "${NAME[$2]} ($d2) does not match ${NAME[$1]} ($d1) after $WAIT s"
        sleep 0.05
    done
    show "${NAME[$1]}" "$d1"
    show "${NAME[$2]}" "$d2"
    say "=> tables match ($(( $(now_ms) - t0 )) ms to converge)"
}

# churn KEY N SEED: N random add/update/delete operations on a master.
churn() {
    local who=${NAME[$1]} t0
    t0=$(now_ms)
    ask "$1" "churn $2 $3"
    set -- $ANSWER
    say "$who: $2 changes ($4 adds, $6 updates, $8 deletes) queued in $(( $(now_ms) - t0 )) ms, now ${10} flows"
}

# barrier KEY: a marker queued with ack_requested; answered once the backup has applied it.
barrier() {
    local t0=$(now_ms)
    ask "$1" "barrier $WAIT"
    say "${NAME[$1]}: backup acknowledged everything queued so far ($(( $(now_ms) - t0 )) ms, sync_ack_notify_func)"
}

# quit KEY: the daemon exits cleanly, with no queue errors, malformed records, or callbacks
# off its loop thread (off_loop: the single-threaded modes).
quit() {
    local rc
    ask "$1" quit
    say "${NAME[$1]} exit: ${ANSWER#bye }"
    wait "${PID[$1]}"
    rc=$?
    unset "PID[$1]"
    (( rc == 0 )) || fail "${NAME[$1]} exited with status $rc"
    set -- "$1" $ANSWER
    [[ $8 == 0 && ${25} == 0 ]] || fail "${NAME[$1]} had queue errors or malformed records: ${ANSWER#bye }"
    [[ ${26} == off_loop && ${27} == 0 ]] || fail "${NAME[$1]} ran callbacks off its loop thread: ${ANSWER#bye }"
}

# Whether this machine has IPv6 on loopback: a master can listen on ::1.
IPV6=0
echo quit | timeout 10 "$FLOWD" master 0 --addr ::1 >/dev/null 2>&1 && IPV6=1

cat <<EOF
junos-sync demo: a flow-monitoring daemon replicated master -> backup on 127.0.0.1
  binary : $FLOWD
  lines  : "    [role] ..." are the daemons' own logs (stderr), the rest is this script
EOF

# ------------------------------------------------------------------------------------------
step "Start the master on 127.0.0.1, port 0 (any free port; sync_bind_done_func reports it)"
NAME[M]="master"
start M "" --loop=thread master 0
set -- $ANSWER
PORT1=$4
say "master is listening on port $PORT1; the library calls it back on its own thread (--loop=$8)"

# ------------------------------------------------------------------------------------------
step "The master learns $FLOWS flows (each add is queued as a TLV; no backup yet)"
ask M "fill $FLOWS 1"
digest M
show master "$DIGEST"

# ------------------------------------------------------------------------------------------
step "Start backup A on an ISC eventlib loop; it resyncs the table while the master keeps changing"
NAME[A]="backup A"
start A A --loop=eventlib backup "$PORT1"
set -- $ANSWER
say "backup A is single-threaded (--loop=$8): junos_sync_set_event_context runs its callbacks in an eventlib handler"
churn M "$CHURN" 11
ask A "wait-synced $WAIT"
set -- $ANSWER
say "backup A: initial resync complete ($2 flows walked by sync_data_get_next_func)"
barrier M
wait_match M A

# ------------------------------------------------------------------------------------------
step "Stream live changes: 3 rounds of $CHURN changes on the master"
for round in 1 2 3; do
    churn M "$CHURN" $((100 + round))
done
barrier M
wait_match M A
LAST_MASTER=$DIGEST

# ------------------------------------------------------------------------------------------
step "Kill the master with SIGKILL"
t0=$(now_ms)
kill -9 "${PID[M]}"
wait "${PID[M]}" 2>/dev/null
unset 'PID[M]'
ask A "wait-conn down $WAIT"
say "backup A saw the connection go DOWN after $(( $(now_ms) - t0 )) ms"
digest A
show "backup A" "$DIGEST"
[[ $DIGEST == "$LAST_MASTER" ]] || fail "backup A ($DIGEST) lost state: master had $LAST_MASTER"
say "=> backup A still holds exactly the master's last table"

# ------------------------------------------------------------------------------------------
if (( IPV6 )); then
    step "Promote backup A to master in place on :: (junos_sync_set_address, then junos_sync_switchover, port 0)"
    ask A "switchover-master 0 ::"
else
    step "Promote backup A to master in place (junos_sync_switchover, port 0)"
    ask A "switchover-master 0"
fi
set -- $ANSWER
PORT2=$3
NAME[A]="master A"
say "A is now master on port $PORT2 with its $5 flows untouched"
(( IPV6 )) && say "it listens on [::]:$PORT2: IPv6 and IPv4 both, one socket (unkeyed there, hence the warning)"


# ------------------------------------------------------------------------------------------
step "Attach backup B, on epoll, to the new master over IPv4 (127.0.0.1); A keeps changing while B resyncs"
NAME[B]="backup B"
start B B --loop=epoll backup "$PORT2"
set -- $ANSWER
say "backup B is single-threaded (--loop=$8): epoll on junos_sync_get_fd, junos_sync_dispatch when readable"
churn A "$CHURN" 21
ask B "wait-synced $WAIT"
set -- $ANSWER
say "backup B: initial resync complete ($2 flows walked from A's table)"
barrier A
wait_match A B

# ------------------------------------------------------------------------------------------
step "Live changes on the new master A stream to backup B"
churn A "$CHURN" 31
churn A "$CHURN" 32
barrier A
wait_match A B
ask A peer
set -- $ANSWER
[[ $2 == up && $3 == 127.0.0.1 ]] || fail "master A reports its IPv4 backup as '$ANSWER'"
say "master A sees backup B at $3 (junos_sync_get_peer_info), an IPv4 address even on ::"

# ------------------------------------------------------------------------------------------
LAST=B
if (( IPV6 )); then
    step "IPv6: backup B leaves; backup C attaches to A over ::1 (junos_sync_set_address) and resyncs"
    quit B
    ask A "wait-conn down $WAIT"
    NAME[C]="backup C"
    start C C --loop=thread backup "$PORT2" --addr ::1
    churn A "$CHURN" 41
    ask C "wait-synced $WAIT"
    set -- $ANSWER
    say "backup C: initial resync complete over IPv6 ($2 flows walked from A's table)"
    churn A "$CHURN" 42
    barrier A
    wait_match A C
    ask A peer
    set -- $ANSWER
    [[ $2 == up && $3 == ::1 ]] || fail "master A reports its IPv6 backup as '$ANSWER'"
    ask C peer
    set -- $ANSWER
    [[ $2 == up && $3 == ::1 && $4 == "$PORT2" ]] || fail "backup C reports its master as '$ANSWER'"
    say "master A sees backup C at ::1, backup C its master at [::1]:$PORT2"
    LAST=C
else
    step "IPv6: skipped (no IPv6 on loopback here: a master cannot listen on ::1)"
fi

# ------------------------------------------------------------------------------------------
printf '\nFinal check\n'
digest A
DA=$DIGEST
digest "$LAST"
DL=$DIGEST
show "master A" "$DA"
show "${NAME[$LAST]}" "$DL"
[[ $DA == "$DL" ]] || fail "master A and ${NAME[$LAST]} differ"

for k in A "$LAST"; do
    quit "$k"
done
say "=> A (eventlib) and B (epoll) ran every callback on their one thread, without a lock"

printf '\nPASS: every table matches (%s flows, digest %s) after failover; %d ms in all\n' \
    "${DA% *}" "${DA#* }" "$(now_ms)"
