#!/usr/bin/env bash
# process_faults.sh FLOWD [SEED] -- process-level faults against real flowd daemons on loopback.
#
#   kill-backup-restart      SIGKILL the backup, start a new one: full resync, tables equal
#   kill-master-switchover   SIGKILL the master, promote the backup (junos_sync_switchover),
#                            attach a new backup: it resyncs from the promoted table
#   stop-backup              SIGSTOP the backup longer than keepalive_time while the master keeps
#                            changing: the master reports DOWN within 1.5 x keepalive; after
#                            SIGCONT the backup resumes (partial resync expected) and converges
#   stop-master              SIGSTOP the master longer than keepalive_time: the backup reports
#                            DOWN within 1.5 x keepalive; after SIGCONT it reconnects, converges
#
# After every fault the tables must converge (order-independent digests equal, with a deadline).
# Where the backup had exactly one full resync in its life, its decode count must equal the
# master's walked + queued records: nothing lost, nothing decoded twice across resumes.
# The change schedule (fill/churn seeds, sizes, stop durations) comes from SEED (argument, else
# $FAULT_SEED, else random), printed first; rerun with it to replay a failure.
# Prints `ok - NAME` / `not ok - NAME: WHY` per case, then `N passed, N failed`; exit 1 on failure.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

fs_init "${1:-}" || exit 2
fs_seed "${2:-}"

FS_FLOWS=20000  # flows the master holds before the first backup attaches (+ 0..4999)
FS_CHURN=3000   # changes per round
WAIT=15         # seconds any single wait may take
FS_WAIT=$WAIT

echo "# process_faults: flowd $FS_FLOWD"
echo "# seed $SEED (rerun: $0 $1 $SEED)"

# ------------------------------------------------------------------------------------------
# (a) SIGKILL the backup, restart it: the master notices at once (the kernel closes the socket),
# keeps changing with no backup, and the new backup process gets a full resync.
case_kill_backup() {
    local -A s0=() s1=() mb=() bb=()
    local mark
    fs_srand $((SEED + 1))
    fs_pair_up M B1
    fs_churn M                                # some of it still in flight when B1 dies
    fs_stats M s0
    fs_mark M mark
    fs_kill9 B1
    fs_ask M "wait-conn down $WAIT" $((WAIT + 5))
    fs_churn M                                # changes while no backup exists
    fs_start B2 B2 backup "$PORT"
    fs_churn M                                # changes during the resync walk
    fs_ask B2 "wait-synced $WAIT" $((WAIT + 5))
    fs_churn M
    fs_barrier M
    fs_wait_match M B2 "$WAIT"
    fs_note "tables equal: $DIGEST"
    fs_wait_stat M backlog_bytes == 0 5
    fs_stats M s1
    fs_resync_kind M "$mark" s0 s1
    [[ $KIND == full && $FULLS == 1 ]] ||
        fs_fail "restarted backup got '$KIND' ($RESUMES partial, $FULLS full), expected exactly one full resync"
    (( s1[connections] == s0[connections] + 1 )) ||
        fs_fail "master counted $(( s1[connections] - s0[connections] )) new connections, expected 1"
    fs_log_has B2 0 'resync starting' || fs_fail "new backup never cleared its table (no sync_db_clear_func)"
    fs_note "restarted backup: one full resync (master stats full_resyncs ${s0[full_resyncs]} -> ${s1[full_resyncs]}), backlog back to 0"
    fs_final_checks M B2 0                    # B2 missed what B1 had applied: no exact count
}

# ------------------------------------------------------------------------------------------
# (b) SIGKILL the master; the backup holds the master's last acknowledged table, is promoted in
# place with junos_sync_switchover, and a new backup resyncs from it while it changes.
case_kill_master() {
    local -A s=() mb=() cb=()
    fs_srand $((SEED + 2))
    fs_pair_up M A
    fs_churn M
    fs_barrier M
    fs_wait_match M A "$WAIT"
    fs_switchover M A
    fs_churn A                                # the new master changes before any backup
    fs_start C C backup "$PORT"
    fs_churn A                                # and during C's resync
    fs_ask C "wait-synced $WAIT" $((WAIT + 5))
    fs_churn A
    fs_barrier A
    fs_wait_match A C "$WAIT"
    fs_note "tables equal after switchover: $DIGEST"
    fs_wait_stat A backlog_bytes == 0 5
    fs_stats A s
    (( s[full_resyncs] >= 1 )) || fs_fail "promoted master reports no full resync (stats: ${ANSWER#stats })"
    fs_final_checks A C 1
}

# ------------------------------------------------------------------------------------------
# stop_case WHO: SIGSTOP the backup (WHO=backup) or the master (WHO=master) for longer than
# keepalive_time, then SIGCONT; the other side must report DOWN within 1.5 x keepalive_time,
# then the pair reconnects and converges.
stop_case() {
    local who=$1 stop_ms limit_ms t0 down_ms mark_m mark_b
    local -A s0=() s1=()
    local n=3
    [[ $who == master ]] && n=4
    fs_srand $((SEED + n))
    fs_pair_up M B
    limit_ms=$(( FS_KEEPALIVE * 1500 ))
    # Longer than 1.5 x keepalive, so DOWN happens during the stop; past 2 x keepalive the
    # backup's reconnection attempts to a stopped master time out too and queue up in the
    # master's accept backlog (stale valid HELLOs it must get past after SIGCONT).
    fs_rand 2000
    stop_ms=$(( limit_ms + 500 + R ))
    fs_stats M s0
    fs_mark M mark_m
    fs_mark B mark_b
    fs_churn M                                # in flight when the process stops

    fs_now
    t0=$NOW_MS
    if [[ $who == backup ]]; then
        fs_signal B STOP
        fs_churn M                            # the master keeps changing
        fs_ask M "wait-conn down $WAIT" $((WAIT + 5))
        fs_now
        down_ms=$((NOW_MS - t0))
        (( down_ms <= limit_ms )) ||
            fs_fail "master reported DOWN ${down_ms} ms after SIGSTOP of the backup (limit ${limit_ms} ms)"
        fs_log_has M "$mark_m" 'no complete frame from the backup.*declaring it dead' ||
            fs_fail "master went DOWN but did not log a keepalive timeout"
        while fs_now; (( NOW_MS + 300 < t0 + stop_ms )); do
            fs_churn M 500
            sleep 0.2
        done
        fs_sleep_until $((t0 + stop_ms))
        fs_signal B CONT
        fs_note "SIGSTOP backup ${stop_ms} ms (keepalive ${FS_KEEPALIVE} s): master reported DOWN after ${down_ms} ms"
        fs_ask M "wait-conn up $WAIT" $((WAIT + 5))
    else
        fs_signal M STOP
        fs_ask B "wait-conn down $WAIT" $((WAIT + 5))
        fs_now
        down_ms=$((NOW_MS - t0))
        (( down_ms <= limit_ms )) ||
            fs_fail "backup reported DOWN ${down_ms} ms after SIGSTOP of the master (limit ${limit_ms} ms)"
        fs_log_has B "$mark_b" 'no complete frame from the master.*declaring it dead' ||
            fs_fail "backup went DOWN but did not log a keepalive timeout"
        fs_sleep_until $((t0 + stop_ms))
        fs_signal M CONT
        fs_note "SIGSTOP master ${stop_ms} ms (keepalive ${FS_KEEPALIVE} s): backup reported DOWN after ${down_ms} ms"
        fs_ask B "wait-conn up $WAIT" $((WAIT + 5))
        fs_churn M                            # the master changes again once it runs
    fi
    fs_churn M
    fs_barrier M
    fs_wait_match M B "$WAIT"
    fs_now
    fs_note "reconnected and converged $((NOW_MS - t0 - stop_ms)) ms after SIGCONT: $DIGEST"
    # Both sides saw the session end.
    fs_wait_log M "$mark_m" 'connection to backup DOWN' 5
    fs_wait_log B "$mark_b" 'connection to master DOWN' 5
    fs_wait_stat M backlog_bytes == 0 5
    fs_stats M s1
    fs_resync_kind M "$mark_m" s0 s1
    fs_note "resync after SIGCONT: $KIND ($RESUMES resumes, $FULLS full resyncs; master connections ${s0[connections]} -> ${s1[connections]})"
    [[ $KIND == partial ]] ||
        fs_fail "expected a partial resync (the master held everything), got '$KIND' ($RESUMES partial, $FULLS full)"
    ! fs_log_has B "$mark_b" 'resync starting' ||
        fs_fail "backup cleared its table although the session resumed"
    fs_final_checks M B 1
}

fs_case kill-backup-restart case_kill_backup
fs_case kill-master-switchover case_kill_master
fs_case stop-backup stop_case backup
fs_case stop-master stop_case master

(( FS_FAILED == 0 )) || echo "# seed $SEED"
fs_summary
