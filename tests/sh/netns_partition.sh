#!/usr/bin/env bash
# netns_partition.sh FLOWD [SEED] -- network partitions between real namespaces.
#
# Two network namespaces (names carry this script's pid) joined by a veth pair on TEST-NET-1
# (192.0.2.1 master side, 192.0.2.2 backup side; nothing is routed out of the namespaces). The
# master runs in one (`flowd master 0 --addr 0.0.0.0`), the backup in the other
# (`flowd backup PORT --addr 192.0.2.1`), both under `ip netns exec`.
#
#   partition-long    one end of the veth goes down (`ip link set DEV down`) for longer than
#                     keepalive_time while the master churns: both sides report DOWN within
#                     1.5 x keepalive; after `ip link set DEV up` the backup reconnects, the
#                     session resumes (partial resync expected) and the tables converge
#   partition-short   the other end goes down for a quarter of keepalive_time while the master
#                     churns: nobody notices (no DOWN, no new connection), tables converge
#
# Needs root, `ip` with netns support, and a flowd with --addr. Otherwise it prints
# `skipped: <reason>` and `0 passed, 0 failed, 1 skipped` and exits 0. The namespaces are always
# removed (the veth pair goes with them).
# SEED (argument, else $FAULT_SEED, else random) drives the change schedule and is printed.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

fs_init "${1:-}" || exit 2
fs_seed "${2:-}"

NS_M=jsync-m-$$          # master's namespace
NS_B=jsync-b-$$          # backup's namespace
DEV_M=jsm0               # veth end in NS_M (names are per namespace, so fixed names are fine)
DEV_B=jsb0               # veth end in NS_B
ADDR_M=192.0.2.1         # TEST-NET-1 (RFC 5737)
ADDR_B=192.0.2.2
WAIT=15
FS_FLOWS=20000
FS_CHURN=3000
FS_WAIT=$WAIT

skip() {
    echo "skipped: $*"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
}

echo "# netns_partition: flowd $FS_FLOWD"
echo "# seed $SEED (rerun: $0 $1 $SEED)"

# ------------------------------------------------------------------------------------------
# Can this machine do it?
(( EUID == 0 )) || skip "not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
command -v ip >/dev/null 2>&1 || skip "no 'ip' command (iproute2)"

# Namespaces left behind by runs that were SIGKILLed (their pid is gone).
for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    if [[ $ns =~ ^jsync-[mb]-([0-9]+)$ ]] && ! kill -0 "${BASH_REMATCH[1]}" 2>/dev/null; then
        ip netns del "$ns" 2>/dev/null
    fi
done

FS_EXIT_HOOKS+=("ip netns del $NS_M 2>/dev/null; ip netns del $NS_B 2>/dev/null")
err=$(ip netns add "$NS_M" 2>&1) || skip "ip netns add failed: $err"
err=$(ip netns add "$NS_B" 2>&1) || skip "ip netns add failed: $err"
# Created inside NS_M with its peer moved to NS_B at once: nothing appears in the caller's
# namespace, so concurrent runs cannot collide.
err=$( { ip -n "$NS_M" link add "$DEV_M" type veth peer name "$DEV_B" netns "$NS_B" &&
         ip -n "$NS_M" addr add "$ADDR_M/24" dev "$DEV_M" &&
         ip -n "$NS_B" addr add "$ADDR_B/24" dev "$DEV_B" &&
         ip -n "$NS_M" link set lo up && ip -n "$NS_B" link set lo up &&
         ip -n "$NS_M" link set "$DEV_M" up && ip -n "$NS_B" link set "$DEV_B" up; } 2>&1) ||
    skip "cannot set up the veth pair: $err"
err=$(ip netns exec "$NS_M" true 2>&1) || skip "ip netns exec failed: $err"

# flowd must be able to bind and connect to other addresses than 127.0.0.1.
if ! echo quit | timeout 10 ip netns exec "$NS_M" "$FS_FLOWD" master 0 --addr 0.0.0.0 >/dev/null 2>&1; then
    skip "flowd has no '--addr ADDR' option (flowd master PORT --addr 0.0.0.0, flowd backup PORT --addr $ADDR_M)"
fi
echo "# namespaces $NS_M ($DEV_M $ADDR_M, master) and $NS_B ($DEV_B $ADDR_B, backup)"

FS_M_PRE=(--netns "$NS_M") FS_M_POST=(--addr 0.0.0.0)
FS_B_PRE=(--netns "$NS_B") FS_B_POST=(--addr "$ADDR_M")

# link NS DEV up|down
link() {
    ip -n "$1" link set "$2" "$3" || fs_fail "ip -n $1 link set $2 $3 failed"
}

# ------------------------------------------------------------------------------------------
# Longer than keepalive_time: both sides must declare the other dead, then resume.
case_long() {
    local -A s0=() s1=()
    local t0 part_ms limit_ms mark_m mark_b down_m="" down_b="" heal
    fs_srand $((SEED + 1))
    link "$NS_M" "$DEV_M" up
    link "$NS_B" "$DEV_B" up
    fs_pair_up M B
    limit_ms=$(( FS_KEEPALIVE * 1500 ))
    fs_rand 500
    part_ms=$(( limit_ms + 500 + R ))
    fs_stats M s0
    fs_mark M mark_m
    fs_mark B mark_b
    fs_churn M                                # in flight when the link goes down
    fs_now
    t0=$NOW_MS
    link "$NS_M" "$DEV_M" down
    # The master keeps changing while both sides (should) time out; their logs say when.
    while fs_now; (( NOW_MS < t0 + part_ms - 200 )); do
        [[ -z $down_m ]] && fs_log_has M "$mark_m" 'connection to backup DOWN' && down_m=$((NOW_MS - t0))
        [[ -z $down_b ]] && fs_log_has B "$mark_b" 'connection to master DOWN' && down_b=$((NOW_MS - t0))
        fs_churn M 300
        sleep 0.1
    done
    fs_sleep_until $((t0 + part_ms))
    fs_now
    heal=$NOW_MS
    link "$NS_M" "$DEV_M" up
    fs_note "link $DEV_M down ${part_ms} ms (keepalive ${FS_KEEPALIVE} s): master DOWN after ${down_m:-?} ms, backup DOWN after ${down_b:-?} ms"
    [[ -n $down_m ]] || fs_fail "master did not report DOWN during a ${part_ms} ms partition"
    [[ -n $down_b ]] || fs_fail "backup did not report DOWN during a ${part_ms} ms partition"
    (( down_m <= limit_ms )) || fs_fail "master reported DOWN after ${down_m} ms (limit ${limit_ms} ms)"
    (( down_b <= limit_ms )) || fs_fail "backup reported DOWN after ${down_b} ms (limit ${limit_ms} ms)"
    fs_log_has M "$mark_m" 'from the backup for the keepalive time; declaring it dead' ||
        fs_fail "master went DOWN but did not log a keepalive timeout"
    fs_log_has B "$mark_b" 'from the master for the keepalive time; declaring it dead' ||
        fs_fail "backup went DOWN but did not log a keepalive timeout"
    fs_ask M "wait-conn up $WAIT" $((WAIT + 5))
    fs_ask B "wait-conn up $WAIT" $((WAIT + 5))
    fs_now
    fs_note "reconnected $((NOW_MS - heal)) ms after the link came back"
    fs_churn M
    fs_barrier M
    fs_wait_match M B "$WAIT"
    fs_note "tables equal: $DIGEST"
    fs_wait_stat M backlog_bytes == 0 5
    fs_stats M s1
    fs_resync_kind M "$mark_m" s0 s1
    fs_note "resync after the partition: $KIND ($RESUMES resumes, $FULLS full resyncs)"
    [[ $KIND == partial ]] ||
        fs_fail "expected a partial resync (the master held everything), got '$KIND' ($RESUMES partial, $FULLS full)"
    ! fs_log_has B "$mark_b" 'resync starting' ||
        fs_fail "backup cleared its table although the session resumed"
    fs_final_checks M B 1
}

# ------------------------------------------------------------------------------------------
# Shorter than keepalive_time: TCP retransmits across it and nobody may notice.
case_short() {
    local -A s0=() s1=()
    local t0 part_ms mark_m mark_b
    fs_srand $((SEED + 2))
    link "$NS_M" "$DEV_M" up
    link "$NS_B" "$DEV_B" up
    fs_pair_up M B
    part_ms=$(( FS_KEEPALIVE * 250 ))
    fs_stats M s0
    fs_mark M mark_m
    fs_mark B mark_b
    fs_churn M
    fs_now
    t0=$NOW_MS
    link "$NS_B" "$DEV_B" down
    while fs_now; (( NOW_MS < t0 + part_ms - 150 )); do
        fs_churn M 300
        sleep 0.05
    done
    fs_sleep_until $((t0 + part_ms))
    link "$NS_B" "$DEV_B" up
    fs_churn M
    fs_barrier M
    fs_wait_match M B "$WAIT"
    fs_now
    fs_note "link $DEV_B down ${part_ms} ms (keepalive ${FS_KEEPALIVE} s); tables equal $((NOW_MS - t0 - part_ms)) ms after it came back: $DIGEST"
    fs_stats M s1
    ! fs_log_has M "$mark_m" 'DOWN|silent|dropping|replaces' ||
        fs_fail "master noticed a ${part_ms} ms partition: $(tail -c +$((mark_m + 1)) "${FS_LOG[M]}" | grep -E 'DOWN|silent|dropping|replaces' | head -n 1)"
    ! fs_log_has B "$mark_b" 'DOWN|silent|lost' ||
        fs_fail "backup noticed a ${part_ms} ms partition: $(tail -c +$((mark_b + 1)) "${FS_LOG[B]}" | grep -E 'DOWN|silent|lost' | head -n 1)"
    (( s1[connections] == s0[connections] )) ||
        fs_fail "master counted $(( s1[connections] - s0[connections] )) new connections across a short partition"
    fs_wait_stat M backlog_bytes == 0 5
    fs_final_checks M B 1
}

fs_case partition-long case_long
fs_case partition-short case_short

(( FS_FAILED == 0 )) || echo "# seed $SEED"
fs_summary
