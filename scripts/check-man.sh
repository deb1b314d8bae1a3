#!/bin/sh
# check-man.sh HEADER MANDIR PROGRAM...
#
# Every function the header declares has its page in MANDIR/man3, every installed PROGRAM its
# page in man1, the overview junos-sync(7) is there; every page (and every link) renders with
# `groff -man -ww` without a single warning, and man-db's lexgrog reads its NAME line (what
# whatis and apropos show).
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 HEADER MANDIR PROGRAM..." >&2
    exit 2
fi
header=$1 mandir=$2
shift 2
here=$(dirname "$0")
fail=0 pages=0
complain() {
    fail=1
    echo "check-man: $*" >&2
}

for f in $(python3 "$here/header_api.py" functions "$header"); do
    [ -f "$mandir/man3/$f.3" ] || complain "no page for $f: man3/$f.3 (scripts/gen-man3.py writes one per function)"
done
for p in "$@"; do
    [ -f "$mandir/man1/$p.1" ] || complain "no page for the installed program $p: write man/$p.1.scd"
done
[ -f "$mandir/man7/junos-sync.7" ] || complain "no junos-sync(7)"

for page in "$mandir"/man*/*.[0-9]; do
    [ -e "$page" ] || { complain "$page: dangling link"; continue; }
    pages=$((pages + 1))
    warnings=$(groff -man -ww -z "$page" 2>&1 >/dev/null) || complain "$page: groff failed"
    [ -z "$warnings" ] || complain "$page: groff warns:" "$warnings"
    if command -v lexgrog >/dev/null && ! lexgrog "$page" >/dev/null 2>&1; then
        complain "$page: lexgrog cannot read its NAME section"
    fi
done

if [ $fail -ne 0 ]; then
    echo "check-man: FAILED" >&2
    exit 1
fi
echo "check-man: $pages pages render without warnings"
