#!/bin/sh
# check-abi.sh HEADER MAP SONAME ABI_DIR [OUT.abi]
#
# Compares the library's ABI with every release of the same soname recorded in
# ABI_DIR/SONAME/*.abi, and fails on anything but new functions in a new version node.
#
# libabigail cannot see the ABI in the Rust library's DWARF (it reads the Rust units as
# LANG_UNKNOWN, and release builds carry line tables only), so the ABI is taken from the
# header, which is generated from the Rust source and drift-checked against it: every function
# the header declares is defined with its exact signature in a C probe compiled with -g and
# linked with MAP, and abidw reads that. check-exports.sh proves the real library exports the
# same functions in the same nodes; c-tests/test_layout.c checks the struct layouts against
# the library itself.
#
# abidiff --no-added-syms passes new functions and fails on a removed function, a changed
# signature, or a changed type reachable from any function (a field added to a struct, ...).
# Separately, a version node already released must keep exactly its functions: a function
# added to an old node would let a program that needs it load against a release without it.
# OUT.abi receives the probe's ABI (what `make abi-baseline` records).
set -eu

if [ $# -lt 4 ] || [ $# -gt 5 ]; then
    echo "usage: $0 HEADER MAP SONAME ABI_DIR [OUT.abi]" >&2
    exit 2
fi
header=$1 map=$2 soname=$3 abidir=$4 out=${5:-}
here=$(dirname "$0")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-abi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

for tool in abidw abidiff; do
    command -v $tool >/dev/null || {
        echo "check-abi: $tool not found: apt-get install abigail-tools" >&2
        exit 1
    }
done

mkdir -p "$tmp/include/jnx"
cp "$header" "$tmp/include/jnx/junos_sync.h"
python3 "$here/header_api.py" stub "$header" >"$tmp/probe.c"
"$here/ld-version-script.sh" "$map" >"$tmp/probe.map"
(cd "$tmp" && ${CC:-cc} -std=c99 -g -O0 -fPIC -shared -Wall -Wextra -Wno-unused-parameter -Werror \
    -Iinclude probe.c -o probe.so -Wl,--version-script=probe.map \
    -Wl,--no-undefined-version -Wl,-soname,"$soname")
abidw --no-corpus-path --no-comp-dir-path --no-show-locs --no-elf-needed --no-architecture \
    --drop-undefined-syms "$tmp/probe.so" >"$tmp/current.abi"
[ -z "$out" ] || cp "$tmp/current.abi" "$out"

# "name version" of the functions an ABI file defines.
syms() {
    sed -n "s/.*<elf-symbol name='\([^']*\)' version='\([^']*\)'.*type='func-type'.*/\1 \2/p" "$1" | sort
}
syms "$tmp/current.abi" >"$tmp/current.syms"

baselines=$(ls "$abidir/$soname"/*.abi 2>/dev/null || true)
if [ -z "$baselines" ]; then
    echo "check-abi: no recorded ABI for $soname in $abidir/$soname/." >&2
    echo "check-abi: A new soname starts with 'make abi-baseline' (see abi/README.md)." >&2
    exit 1
fi

supp=
[ ! -f "$abidir/suppressions" ] || supp="--suppressions $abidir/suppressions"
fail=0
for base in $baselines; do
    # shellcheck disable=SC2086 # $supp is an option and its argument, or nothing
    if ! abidiff --no-added-syms $supp "$base" "$tmp/current.abi" >"$tmp/report" 2>&1; then
        fail=1
        echo "check-abi: the ABI of $soname changed incompatibly against $base:" >&2
        sed 's/^/    /' "$tmp/report" >&2
    fi
    syms "$base" >"$tmp/base.syms"
    for node in $(cut -d' ' -f2 "$tmp/base.syms" | sort -u); do
        grep " $node\$" "$tmp/base.syms" >"$tmp/base.node" || true
        grep " $node\$" "$tmp/current.syms" >"$tmp/current.node" || true
        for s in $(comm -13 "$tmp/base.node" "$tmp/current.node" | cut -d' ' -f1); do
            fail=1
            echo "check-abi: $s is in version node $node, which $base released without it:" \
                "put it in a new node of $map." >&2
        done
    done
done

if [ $fail -ne 0 ]; then
    cat >&2 <<MSG
check-abi: FAILED. Programs built against an earlier release of $soname would break.
check-abi: Keep the old ABI, or, if the break is intended, change the soname (SONAME in the
check-abi: Makefile), record its ABI with 'make abi-baseline' and commit it (abi/README.md).
MSG
    exit 1
fi
echo "check-abi: $soname is compatible with $(echo "$baselines" | wc -w) recorded release(s)" \
    "($(wc -l <"$tmp/current.syms") functions; $(echo $baselines | tr ' ' '\n' | xargs -n1 basename | tr '\n' ' ' | sed 's/ $//'))"
