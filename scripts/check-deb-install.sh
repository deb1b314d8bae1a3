#!/bin/sh
# check-deb-install.sh DEBDIR: installs DEBDIR/*.deb as a user would (apt-get install), builds
# examples/flowd.c against the installed packages with pkg-config alone (nothing from the
# build tree), runs the failover demo with it, runs junos-sync-keygen's checks on
# /usr/bin/junos-sync-keygen, has /usr/bin/junos-sync-stat read that flowd's status socket,
# finds the manual pages with man -w, and purges the packages
# again, also when a step fails. Skips (exit 0) without root or without apt-get and dpkg.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 DEBDIR" >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    echo "check-deb-install: SKIPPED: installing packages needs root, apt-get and dpkg"
    exit 0
fi
src=$(cd "$(dirname "$0")/.." && pwd)
debs=$(realpath "$1"/*.deb)
pkgs=$(for d in $debs; do dpkg-deb -f "$d" Package; done)
export DEBIAN_FRONTEND=noninteractive

for p in $pkgs; do
    if dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q ' installed$'; then
        echo "check-deb-install: $p is already installed; this test would replace it and" \
            "then remove it. Remove it first: apt-get remove --purge $p" >&2
        exit 1
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-deb-install.XXXXXX")
installed=
cleanup() {
    rc=$?
    if [ -n "$installed" ]; then
        # shellcheck disable=SC2086 # a list of package names
        apt-get -o DPkg::Lock::Timeout=300 remove -y -qq --purge $pkgs >"$tmp/remove.log" 2>&1 || {
            cat "$tmp/remove.log" >&2
            rc=1
        }
        for p in $pkgs; do
            if dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'installed'; then
                echo "check-deb-install: $p is still installed" >&2
                rc=1
            fi
        done
        [ ! -e /usr/include/jnx/junos_sync.h ] || { echo "check-deb-install: header left behind" >&2; rc=1; }
    fi
    rm -rf "$tmp"
    [ $rc -eq 0 ] && echo "check-deb-install: packages purged again" || echo "check-deb-install: FAILED" >&2
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "check-deb-install: apt-get install" $debs
installed=yes
# shellcheck disable=SC2086 # a list of files
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $debs >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log" >&2
    exit 1
}

# A daemon built the way the SDK builds one: only what pkg-config says, from /usr, plus the
# platform's ISC eventlib for flowd --loop=eventlib (on Junos the SDK's libisc; here the tests'
# c-tests/eventlib.c, exported with -rdynamic as a shared libisc's symbols would be).
unset PKG_CONFIG_PATH C_INCLUDE_PATH LIBRARY_PATH LD_LIBRARY_PATH
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
[ "$(pkg-config --variable=libdir junos-sync)" = "/usr/lib/$ma" ] || {
    echo "check-deb-install: pkg-config does not find junos-sync in /usr/lib/$ma" >&2
    exit 1
}
cp "$src/examples/flowd.c" "$src/examples/flowd.h" "$src/c-tests/eventlib.c" "$tmp/"
mkdir "$tmp/isc" && cp "$src/c-tests/isc/eventlib.h" "$tmp/isc/"
# shellcheck disable=SC2046 # pkg-config prints a list of options
${CC:-cc} -std=c99 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -I"$tmp" "$tmp/flowd.c" "$tmp/eventlib.c" \
    -o "$tmp/flowd" -rdynamic $(pkg-config --cflags --libs junos-sync) -lpthread
# (/lib is /usr/lib on a merged-/usr system.)
ldd "$tmp/flowd" | grep -Eq "libjunos-sync.so.1 => (/usr)?/lib/$ma/libjunos-sync.so.1 " || {
    echo "check-deb-install: flowd does not load /usr/lib/$ma/libjunos-sync.so.1:" >&2
    ldd "$tmp/flowd" >&2
    exit 1
}
"$src/examples/demo.sh" "$tmp/flowd" >"$tmp/demo.log" 2>&1 || {
    cat "$tmp/demo.log" >&2
    exit 1
}
tail -n 1 "$tmp/demo.log"

"$src/scripts/check-keygen.sh" /usr/bin/junos-sync-keygen

# The packaged junos-sync-stat reads the status socket of the packaged library in that flowd.
# flowd reads commands on a FIFO held open here (fd 3), so it runs until told to quit.
mkdir -m 0700 "$tmp/status"
mkfifo "$tmp/flowd.in"
exec 3<>"$tmp/flowd.in"
JUNOS_SYNC_STATUS_DIR=$tmp/status "$tmp/flowd" master 0 <"$tmp/flowd.in" >"$tmp/flowd.out" 2>"$tmp/flowd.err" &
fpid=$!
tries=0
until /usr/bin/junos-sync-stat --json "$tmp/status" 2>/dev/null | grep -q "\"pid\":$fpid,\"role\":\"master\""; do
    tries=$((tries + 1))
    if [ $tries -ge 200 ]; then             # 10 s
        echo "check-deb-install: junos-sync-stat does not show flowd's status:" >&2
        /usr/bin/junos-sync-stat "$tmp/status" >&2 || true
        exit 1
    fi
    sleep 0.05
done
/usr/bin/junos-sync-stat "$tmp/status" | head -n 1 | sed 's/^/check-deb-install: junos-sync-stat: /'
echo quit >&3
wait "$fpid"
exec 3>&-
[ -z "$(ls -A "$tmp/status")" ] || { echo "check-deb-install: flowd left its status socket" >&2; exit 1; }

# A container may be set to leave manual pages out (dpkg path-exclude); then there are none.
if grep -qs '^path-exclude=/usr/share/man' /etc/dpkg/dpkg.cfg /etc/dpkg/dpkg.cfg.d/*; then
    echo "check-deb-install: dpkg is set to leave out /usr/share/man here; not looking for pages"
else
    for page in junos_sync_queue junos_sync_ack_notify_func_t junos-sync-keygen junos-sync-stat "7 junos-sync"; do
        # shellcheck disable=SC2086 # "7 junos-sync" is a section and a name
        found=$(man -w $page) || { echo "check-deb-install: man -w $page finds nothing" >&2; exit 1; }
        case $found in
            /usr/share/man/*) ;;
            *) echo "check-deb-install: man -w $page finds $found, not the installed page" >&2; exit 1 ;;
        esac
    done
    echo "check-deb-install: man -w junos_sync_queue: $(man -w junos_sync_queue)"
fi
