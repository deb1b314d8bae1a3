#!/usr/bin/env bash
# netns_addresses.sh FLOWD [SEED] -- junos_sync_set_address between real network namespaces.
#
# Two network namespaces (names carry this script's pid) joined by a veth pair whose ends have a
# link-local address (fe80::1 master side, fe80::2 backup side, no other: addrgenmode none), a
# global IPv6 one (2001:db8::1, 2001:db8::2) and an IPv4 one (192.0.2.1, 192.0.2.2), all
# without duplicate address detection. The global ones are kept while the link is down
# (keep_addr_on_down); Linux drops link-local ones then whatever it says, so they are added
# again when the link comes back, as an interface's configuration would. The daemons run under
# `ip netns exec`, which mounts the files of /etc/netns/NS over /etc: the backup's namespace has
# its own hosts, resolv.conf, nsswitch.conf and gai.conf.
#
#   link-local   master on fe80::1%jsm0, backup of fe80::1%jsb0: resync, stream; each shows
#                the other with its scope (fe80::2%jsm0, fe80::1%jsb0); a cut (the link down
#                until both sides report DOWN), then the session resumes (a partial resync)
#                and the tables converge; every record decoded exactly once
#   dual-stack   master on :: (warned about, unless keyed); backup A over IPv4 (192.0.2.1,
#                in the state's server_addr): resync, stream, shown as 192.0.2.2 (not
#                ::ffff:192.0.2.2), a cut and partial resync; A quits; backup B over IPv6
#                (2001:db8::1): a full resync, stream, shown as 2001:db8::2, a cut and
#                partial resync
#   names        jsync-master is 2001:db8::1 (where nothing listens) and 192.0.2.1 (where the
#                master does), in that order (gai.conf): the backup is refused by the first,
#                connects to the second; resync, stream, a cut and partial resync
#   dns-hang     the backup's name server (in the master's namespace) reads queries and never
#                answers: flowd's junos_sync_start fails (status 1) within the library's 5 s
#                bound, saying the name did not resolve in time, where the resolver alone
#                would wait a minute
#
# Needs root, `ip` with netns support, IPv6 in new namespaces, python3 (the silent name server)
# and a flowd with --addr. Otherwise it prints `skipped: <reason>` and
# `0 passed, 0 failed, 1 skipped` and exits 0. The namespaces and /etc/netns/NS go at exit.
# SEED (argument, else $FAULT_SEED, else random) drives the change schedule and is printed.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

fs_init "${1:-}" || exit 2
fs_seed "${2:-}"

NS_M=jsync-am-$$         # master's namespace
NS_B=jsync-ab-$$         # backup's namespace
DEV_M=jsm0
DEV_B=jsb0
WAIT=15
FS_FLOWS=10000
FS_CHURN=2000
FS_WAIT=$WAIT

skip() {
    echo "skipped: $*"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
}

echo "# netns_addresses: flowd $FS_FLOWD"
echo "# seed $SEED (rerun: $0 $1 $SEED)"
KEYED=0
[[ -n ${JUNOS_SYNC_AUTH_KEY_FILE:-} ]] && KEYED=1

# ------------------------------------------------------------------------------------------
# Can this machine do it?
(( EUID == 0 )) || skip "not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
command -v ip >/dev/null 2>&1 || skip "no 'ip' command (iproute2)"
command -v python3 >/dev/null 2>&1 || skip "no python3 (the silent name server of dns-hang)"

# What runs left behind (SIGKILLed: their pid is gone).
for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    if [[ $ns =~ ^jsync-a[mb]-([0-9]+)$ ]] && ! kill -0 "${BASH_REMATCH[1]}" 2>/dev/null; then
        ip netns del "$ns" 2>/dev/null
        rm -rf "/etc/netns/$ns"
    fi
done

FS_EXIT_HOOKS+=("ip netns del $NS_M 2>/dev/null; ip netns del $NS_B 2>/dev/null; rm -rf /etc/netns/$NS_B")
err=$(ip netns add "$NS_M" 2>&1) || skip "ip netns add failed: $err"
err=$(ip netns add "$NS_B" 2>&1) || skip "ip netns add failed: $err"
[[ $(ip netns exec "$NS_M" sysctl -n net.ipv6.conf.all.disable_ipv6 2>/dev/null) == 0 ]] ||
    skip "IPv6 is disabled in new network namespaces"
# Created inside NS_M with its peer moved to NS_B at once: nothing appears in the caller's
# namespace, so concurrent runs cannot collide.
err=$( { ip -n "$NS_M" link add "$DEV_M" type veth peer name "$DEV_B" netns "$NS_B" &&
         ip -n "$NS_M" link set "$DEV_M" addrgenmode none &&
         ip -n "$NS_B" link set "$DEV_B" addrgenmode none &&
         ip netns exec "$NS_M" sysctl -qw "net.ipv6.conf.$DEV_M.keep_addr_on_down=1" &&
         ip netns exec "$NS_B" sysctl -qw "net.ipv6.conf.$DEV_B.keep_addr_on_down=1" &&
         ip -n "$NS_M" addr add fe80::1/64 dev "$DEV_M" nodad &&
         ip -n "$NS_B" addr add fe80::2/64 dev "$DEV_B" nodad &&
         ip -n "$NS_M" addr add 2001:db8::1/64 dev "$DEV_M" nodad &&
         ip -n "$NS_B" addr add 2001:db8::2/64 dev "$DEV_B" nodad &&
         ip -n "$NS_M" addr add 192.0.2.1/24 dev "$DEV_M" &&
         ip -n "$NS_B" addr add 192.0.2.2/24 dev "$DEV_B" &&
         ip -n "$NS_M" link set lo up && ip -n "$NS_B" link set lo up &&
         ip -n "$NS_M" link set "$DEV_M" up && ip -n "$NS_B" link set "$DEV_B" up; } 2>&1) ||
    skip "cannot set up the veth pair: $err"

# The backup's view of names: its own hosts (jsync-master: the IPv6 address first, where
# nothing listens), a name server that never answers, files then DNS, and a gai.conf that puts
# IPv6 before IPv4 (RFC 6724 alone would put 2001:db8::/32, Teredo's 2001::/32, after IPv4).
mkdir -p "/etc/netns/$NS_B"
printf '127.0.0.1 localhost\n2001:db8::1 jsync-master\n192.0.2.1 jsync-master\n' >"/etc/netns/$NS_B/hosts"
printf 'nameserver 192.0.2.1\noptions timeout:30 attempts:2\n' >"/etc/netns/$NS_B/resolv.conf"
printf 'hosts: files dns\n' >"/etc/netns/$NS_B/nsswitch.conf"
printf 'precedence ::1/128 50\nprecedence ::/0 40\nprecedence ::ffff:0:0/96 10\n' >"/etc/netns/$NS_B/gai.conf"
err=$(ip netns exec "$NS_B" getent ahosts jsync-master 2>&1 | awk 'NR == 1 {print $1}')
[[ $err == 2001:db8::1 ]] || skip "the backup's namespace does not get its own hosts and gai.conf (jsync-master first resolves to '$err')"

if ! echo quit | timeout 10 ip netns exec "$NS_M" "$FS_FLOWD" master 0 --addr fe80::1%$DEV_M >/dev/null 2>&1; then
    skip "flowd cannot listen on fe80::1%$DEV_M (no --addr for IPv6: flowd master PORT --addr fe80::1%$DEV_M)"
fi
echo "# namespaces $NS_M ($DEV_M fe80::1 2001:db8::1 192.0.2.1, master) and $NS_B ($DEV_B fe80::2 2001:db8::2 192.0.2.2, backup)"

link() {
    ip -n "$1" link set "$2" "$3" || fs_fail "ip -n $1 link set $2 $3 failed"
}

# peer_is KEY STATE ADDRESS: flowd's `peer` (junos_sync_get_peer_info) says so.
peer_is() {
    fs_ask "$1" peer
    [[ $ANSWER == "peer $2 $3 "* ]] || fs_fail "$1 reports '$ANSWER', expected 'peer $2 $3 <port>'"
}

# cut M B: the master's end of the veth goes down, while the master churns, until both sides
# report DOWN; once it is up again the backup reconnects, the session resumes (a partial
# resync: the master held everything) and the tables converge.
cut() {
    local -A s0=() s1=()
    local mark_m mark_b
    fs_stats "$1" s0
    fs_mark "$1" mark_m
    fs_mark "$2" mark_b
    fs_churn "$1"
    link "$NS_M" "$DEV_M" down
    fs_churn "$1" 300
    fs_wait_log "$1" "$mark_m" 'connection to backup DOWN' "$WAIT"
    fs_wait_log "$2" "$mark_b" 'connection to master DOWN' "$WAIT"
    fs_churn "$1" 300
    link "$NS_M" "$DEV_M" up
    ip -n "$NS_M" addr replace fe80::1/64 dev "$DEV_M" nodad &&
        ip -n "$NS_B" addr replace fe80::2/64 dev "$DEV_B" nodad || fs_fail "cannot add the link-local addresses again"
    fs_ask "$1" "wait-conn up $WAIT" $((WAIT + 5))
    fs_ask "$2" "wait-conn up $WAIT" $((WAIT + 5))
    fs_churn "$1"
    fs_barrier "$1"
    fs_wait_match "$1" "$2" "$WAIT"
    fs_wait_stat "$1" backlog_bytes == 0 5
    fs_stats "$1" s1
    fs_resync_kind "$1" "$mark_m" s0 s1
    [[ $KIND == partial ]] ||
        fs_fail "expected a partial resync after the cut, got '$KIND' ($RESUMES partial, $FULLS full)"
    ! fs_log_has "$2" "$mark_b" 'resync starting' || fs_fail "the backup cleared its table although the session resumed"
    fs_note "cut: both sides DOWN, resumed, tables equal: $DIGEST"
}

# ------------------------------------------------------------------------------------------
case_link_local() {
    fs_srand $((SEED + 1))
    FS_M_PRE=(--netns "$NS_M") FS_M_POST=(--addr "fe80::1%$DEV_M")
    FS_B_PRE=(--netns "$NS_B") FS_B_POST=(--addr "fe80::1%$DEV_B")
    fs_pair_up M B
    fs_churn M
    fs_barrier M
    fs_wait_match M B "$WAIT"
    peer_is M up "fe80::2%$DEV_M"
    peer_is B up "fe80::1%$DEV_B"
    fs_log_has B 0 "connected to master \[fe80::1%$DEV_B\]:$PORT" || fs_fail "the backup's log does not name [fe80::1%$DEV_B]:$PORT"
    cut M B
    peer_is M up "fe80::2%$DEV_M"
    fs_final_checks M B 1
}

case_dual_stack() {
    local -A s=()
    fs_srand $((SEED + 2))
    FS_M_PRE=(--netns "$NS_M") FS_M_POST=(--addr ::)
    FS_B_PRE=(--netns "$NS_B") FS_B_POST=(--addr 192.0.2.1)
    fs_pair_up M A
    if (( KEYED )); then
        ! fs_log_has M 0 'WARNING: listening on' || fs_fail "a keyed master on :: warned about its key"
    else
        fs_log_has M 0 "WARNING: listening on \[::\]:$PORT without an authentication key" ||
            fs_fail "an unkeyed master on :: did not warn"
    fi
    peer_is M up 192.0.2.2
    peer_is A up 192.0.2.1
    cut M A
    peer_is M up 192.0.2.2
    fs_quit A s
    (( s[bad] == 0 )) || fs_fail "backup A saw ${s[bad]} malformed records"
    fs_ask M "wait-conn down $WAIT" $((WAIT + 5))

    # Over IPv6, to the same listener: a backup new to the master, so a full resync.
    fs_start B B --netns "$NS_B" backup "$PORT" --addr 2001:db8::1
    fs_churn M
    fs_ask B "wait-synced $WAIT" $((WAIT + 5))
    fs_barrier M
    fs_wait_match M B "$WAIT"
    peer_is M up 2001:db8::2
    peer_is B up 2001:db8::1
    cut M B
    # Two backups, two walks: the exactly-once count does not apply to B alone.
    fs_final_checks M B 0
}

case_names() {
    fs_srand $((SEED + 3))
    FS_M_PRE=(--netns "$NS_M") FS_M_POST=(--addr 192.0.2.1)
    FS_B_PRE=(--netns "$NS_B") FS_B_POST=(--addr jsync-master)
    fs_pair_up M B
    fs_log_has B 0 "junos_sync_start: \"jsync-master\" is \[2001:db8::1\]:$PORT, 192\.0\.2\.1:$PORT" ||
        fs_fail "the backup did not log jsync-master's two addresses in the resolver's order"
    fs_log_has B 0 "master \[2001:db8::1\]:$PORT lost: .*refused" ||
        fs_fail "the backup did not try [2001:db8::1]:$PORT, the first address, first"
    fs_log_has B 0 "connected to master 192\.0\.2\.1:$PORT" || fs_fail "the backup did not connect to the second address"
    peer_is B up 192.0.2.1
    cut M B
    fs_final_checks M B 1
}

case_dns_hang() {
    local ns_pid t0 rc=0 log=$FS_CASE_DIR/hang.log
    # The name server: reads every query, answers none.
    ip netns exec "$NS_M" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.1", 53))
print("listening", flush=True)
while True:
    s.recv(4096)
' >"$FS_CASE_DIR/dns.out" 2>&1 &
    ns_pid=$!
    echo "$ns_pid" >>"$FS_WORK/pids"
    FS_PID[dns]=$ns_pid
    fs_now
    t0=$NOW_MS
    until grep -q listening "$FS_CASE_DIR/dns.out" 2>/dev/null; do
        fs_now
        (( NOW_MS - t0 < 10000 )) || fs_fail "the silent name server did not start: $(cat "$FS_CASE_DIR/dns.out")"
        sleep 0.05
    done
    fs_now
    t0=$NOW_MS
    timeout 60 ip netns exec "$NS_B" "$FS_FLOWD" backup 7000 --addr jsync-hang.example </dev/null >/dev/null 2>"$log" || rc=$?
    fs_now
    fs_note "junos_sync_start returned after $((NOW_MS - t0)) ms (flowd status $rc)"
    (( rc == 1 )) || fs_fail "flowd exited with status $rc, expected 1 (junos_sync_start failed): $(tail -n 3 "$log")"
    grep -q 'junos_sync_start: "jsync-hang.example" did not resolve within 5 s' "$log" ||
        fs_fail "no log line saying the name did not resolve in time: $(tail -n 3 "$log")"
    grep -q 'junos_sync_start failed (status 1)' "$log" || fs_fail "junos_sync_start did not return JUNOS_SYNC_ERR_INVALID"
    (( NOW_MS - t0 <= 15000 )) || fs_fail "junos_sync_start took $((NOW_MS - t0)) ms: more than its 5 s bound and 10 s to start flowd"
}

fs_case link-local case_link_local
fs_case dual-stack case_dual_stack
fs_case names case_names
fs_case dns-hang case_dns_hang

(( FS_FAILED == 0 )) || echo "# seed $SEED"
fs_summary
