#!/bin/sh
# check-compat-1.0.sh LIBDIR OUTDIR ABI_1_0
#
# Runs a program built as against release 1.0 (c-tests/abi_compat_1_0.c, with 1.0's six-field
# stats struct and a canary after it) on the library in LIBDIR, the way such programs meet it:
#   - linked against 1.0 as first built, without symbol versions (its references carry none;
#     the dynamic linker gives an unversioned reference the oldest version, JUNOS_SYNC_1.0);
#   - linked against 1.0 with the JUNOS_SYNC_1.0 node (references junos_sync_get_stats@JUNOS_SYNC_1.0).
# Both link against stand-ins built in OUTDIR from c-tests/abi_stub_1_0.c (the names of ABI_1_0,
# the recorded 1.0 ABI, soname libjunos-sync.so.1) and must pass: the canary untouched, the six
# counters written. For contrast, the same program linked against LIBDIR itself binds the 1.1
# default and must see its canary overwritten; otherwise the test could not tell.
set -eu

if [ $# -ne 3 ]; then
    echo "usage: $0 LIBDIR OUTDIR ABI_1_0" >&2
    exit 2
fi
libdir=$(cd "$1" && pwd) out=$2 abi=$3
src=$(cd "$(dirname "$0")/.." && pwd)
cc=${CC:-cc}
cflags="-std=c99 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror"
soname=libjunos-sync.so.1
mkdir -p "$out/unversioned" "$out/versioned" "$out/current"

# The stand-ins must have exactly the functions 1.0 exported.
sed -n 's/^void \(junos_sync_[a-z_]*\)(void) { }$/\1/p' "$src/c-tests/abi_stub_1_0.c" | sort >"$out/stub.names"
sed -n "s/.*<elf-symbol name='\([^']*\)' version='JUNOS_SYNC_1.0'.*type='func-type'.*/\1/p" "$abi" |
    sort >"$out/1.0.names"
if ! cmp -s "$out/stub.names" "$out/1.0.names"; then
    echo "check-compat-1.0: c-tests/abi_stub_1_0.c does not define exactly the functions of $abi:" >&2
    diff "$out/1.0.names" "$out/stub.names" >&2 || true
    exit 1
fi
{
    echo "JUNOS_SYNC_1.0 {"
    echo "  global:"
    sed 's/.*/    &;/' "$out/stub.names"
    echo "  local:"
    echo "    *;"
    echo "};"
} >"$out/stub-1.0.map"

# shellcheck disable=SC2086 # $cflags is a list of options
$cc $cflags -fPIC -shared "$src/c-tests/abi_stub_1_0.c" -Wl,-soname,$soname \
    -o "$out/unversioned/$soname"
# shellcheck disable=SC2086
$cc $cflags -fPIC -shared "$src/c-tests/abi_stub_1_0.c" -Wl,-soname,$soname \
    -Wl,--version-script="$out/stub-1.0.map" -o "$out/versioned/$soname"
ln -sf $soname "$out/unversioned/libjunos-sync.so"
ln -sf $soname "$out/versioned/libjunos-sync.so"
ln -sf "$libdir/libjunos-sync.so" "$out/current/libjunos-sync.so"

fail=0
# run KIND WANT REF: links the program against OUTDIR/KIND, checks its reference to
# junos_sync_get_stats is REF, runs it on LIBDIR and wants it to pass or fail.
run() {
    kind=$1 want=$2 ref=$3
    prog=$out/abi_compat_1_0-$kind
    # shellcheck disable=SC2086
    $cc $cflags "$src/c-tests/abi_compat_1_0.c" -o "$prog" -L"$out/$kind" -ljunos-sync
    got_ref=$(LC_ALL=C readelf --dyn-syms --wide "$prog" |
        awk '$7 == "UND" && $8 ~ /^junos_sync_get_stats(@|$)/ { print $8 }')
    if [ "$got_ref" != "$ref" ]; then
        echo "check-compat-1.0: $prog references '$got_ref', expected '$ref'" >&2
        fail=1
        return
    fi
    # No key from the environment: this context is never started.
    if env -u JUNOS_SYNC_AUTH_KEY_FILE LD_LIBRARY_PATH="$libdir" "$prog" >"$prog.out" 2>&1; then
        got=pass
    else
        got=fail
    fi
    if [ "$got" = "$want" ]; then
        echo "check-compat-1.0: ok, $want as it must: linked against $kind ($ref), run on $libdir/$soname:"
    else
        echo "check-compat-1.0: WRONG, $got but must $want: linked against $kind ($ref), run on $libdir/$soname:"
        fail=1
    fi
    sed 's/^/    | /' "$prog.out"
}
run unversioned pass "junos_sync_get_stats"
run versioned pass "junos_sync_get_stats@JUNOS_SYNC_1.0"
# The contrast: what a 1.0 program would suffer from the newest function.
run current fail "junos_sync_get_stats@JUNOS_SYNC_1.2"

if [ $fail -ne 0 ]; then
    echo "check-compat-1.0: FAILED: programs built against 1.0 are not safe with this library" >&2
    exit 1
fi
echo "check-compat-1.0: programs built against 1.0, unversioned or versioned, get the 1.0 junos_sync_get_stats"
