#!/bin/sh
# abi-selftest.sh HEADER MAP COMPAT_DIR SONAME ABI_DIR STATIC_LIB
#
# Shows that the ABI checks catch what they must and let through what they must, on edited
# COPIES of the header, the map and the compatibility entries (and libraries linked from the
# real staticlib with them):
#   fail: a field added to struct junos_sync_state_s
#   fail: a field inserted inside struct junos_sync_peer_info_s (abi/suppressions lets only
#         fields appended to it through: it is size-versioned)
#   fail: junos_sync_set_backlog_limit taking uint32_t instead of size_t
#   fail: junos_sync_switchover removed (from header, map and library alike)
#   fail: a new function put into the already released node JUNOS_SYNC_1.0
#   fail: a new function declared and defined but not listed in the map
#   fail: struct junos_sync_stats_s grown, junos_sync_get_stats left in JUNOS_SYNC_1.0, no
#         compatibility entry
#   fail: the same with the default junos_sync_get_stats moved to JUNOS_SYNC_1.1 but no
#         compatibility entry (ABI and exports)
#   fail: the compatibility entry of junos_sync_get_stats@JUNOS_SYNC_1.0 with the 1.1 struct,
#         and with 32-bit counters (old prototypes that do not match the recorded 1.0 ABI)
#   fail: that entry in the wrong node, and naming an implementing function nothing defines
#   fail: the implementing function junos_sync_get_stats_1_0 exported by its own name
#   pass: the real header, map and compatibility entries, and a library linked with them
#   pass: a new function declared, defined and listed in a new node (and it has a man page)
# The real files are only read.
set -eu

if [ $# -ne 6 ]; then
    echo "usage: $0 HEADER MAP COMPAT_DIR SONAME ABI_DIR STATIC_LIB" >&2
    exit 2
fi
header=$1 map=$2 compatdir=$3 soname=$4 abidir=$5 ar=$6
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/abi-selftest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
new=junos_sync_selftest_added
failed=0 nfail=0 npass=0

# edit IN OUT PYTHON-EXPR: OUT = the expression applied to IN's text (s); the edit must change it.
edit() {
    python3 - "$1" "$2" "$3" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
t = eval(sys.argv[3], {"re": re, "s": s})
if t == s:
    sys.exit(f"abi-selftest: the edit '{sys.argv[3]}' does not apply to {sys.argv[1]} any more")
open(sys.argv[2], "w").write(t)
PY
}

# expect pass|fail WHAT CMD...: runs CMD, shows the first lines it printed.
expect() {
    want=$1 what=$2
    shift 2
    if "$@" >"$tmp/out" 2>&1; then got=pass; else got=fail; fi
    if [ "$got" = "$want" ]; then
        echo "abi-selftest: ok, $want as it must: $what"
    else
        echo "abi-selftest: WRONG, $got but must $want: $what"
        failed=1
    fi
    if [ "$want" = fail ]; then nfail=$((nfail + 1)); else npass=$((npass + 1)); fi
    sed -n '1,14s/^/    | /p' "$tmp/out"
}

abi() { "$here/check-abi.sh" "$1" "$2" "$3" "$soname" "$abidir"; }
exports() { "$here/check-exports.sh" "$1" "$2" "$3" "$4"; }
# With the staticlib: the compatibility entries' implementing functions are checked there.
exports_ar() { "$here/check-exports.sh" "$1" "$2" "$3" "$4" "$ar"; }
link() { CC=${CC:-cc} "$here/link-so.sh" "$1" "$soname" "$2" "$ar" $3; }

# A new function: its declaration (before the extern "C" block closes), and its definition.
new_decl="/**\n * Selftest: a function added after the first release.\n */\njunos_sync_status_t $new(junos_sync_context_t *ctx, uint64_t *out);\n\n"
edit "$header" "$tmp/added.h" "re.sub(r'\n(#ifdef __cplusplus\n\\}  // extern)', '\n$new_decl\\\\1', s)"
mkdir -p "$tmp/include/jnx"
cp "$tmp/added.h" "$tmp/include/jnx/junos_sync.h"
cat >"$tmp/added.c" <<C
#include <jnx/junos_sync.h>
junos_sync_status_t $new(junos_sync_context_t *ctx, uint64_t *out)
{
    (void)ctx;
    *out = 0;
    return JUNOS_SYNC_OK;
}
C
${CC:-cc} -std=c99 -Wall -Wextra -Werror -fPIC -I"$tmp/include" -c "$tmp/added.c" -o "$tmp/added.o"
last=$(sed 's/#.*//' "$map" | sed -n 's/^[[:space:]]*\([A-Za-z0-9_.]*\)[[:space:]]*{.*/\1/p' | tail -n1)
cp "$map" "$tmp/added.map"
printf '\nJUNOS_SYNC_SELFTEST {\n  global:\n    %s;\n} %s;\n' "$new" "$last" >>"$tmp/added.map"

# The library as `make lib` links it, from the real files.
link "$tmp/real.so" "$map" ""

# Copies of the compatibility entries: none, and the get_stats one edited.
stats=junos_sync_get_stats@JUNOS_SYNC_1.0
[ -f "$compatdir/$stats.h" ] || {
    echo "abi-selftest: $compatdir/$stats.h, which the compatibility cases edit, is gone: update them" >&2
    exit 1
}
mkdir -p "$tmp/compat-none" "$tmp/compat-wide" "$tmp/compat-u32" "$tmp/compat-node" "$tmp/compat-impl"
edit "$compatdir/$stats.h" "$tmp/compat-wide/$stats.h" \
    "s.replace('    uint64_t backlog_bytes;\n', '    uint64_t backlog_bytes;\n    uint64_t auth_failures;\n    uint64_t handshakes_refused;\n', 1)"
edit "$compatdir/$stats.h" "$tmp/compat-u32/$stats.h" \
    "re.sub(r'(?m)^    uint64_t (\w+);$', r'    uint32_t \\1;', s)"
cp "$compatdir/$stats.h" "$tmp/compat-node/junos_sync_get_stats@JUNOS_SYNC_1.1.h"
edit "$compatdir/$stats.h" "$tmp/compat-impl/$stats.h" "s.replace('junos_sync_get_stats_1_0(', 'junos_sync_get_stats_v1(')"

echo "abi-selftest: incompatible changes must fail"
edit "$header" "$tmp/field.h" "s.replace('    bool no_resync;\n', '    bool no_resync;\n    uint32_t added_field;\n', 1)"
expect fail "a field added to struct junos_sync_state_s" abi "$tmp/field.h" "$map" "$compatdir"

edit "$header" "$tmp/peer.h" "s.replace('    uint16_t peer_port;\n', '    uint16_t peer_port;\n    uint32_t inserted_field;\n', 1)"
expect fail "a field inserted inside struct junos_sync_peer_info_s" abi "$tmp/peer.h" "$map" "$compatdir"

edit "$header" "$tmp/sig.h" "s.replace('junos_sync_set_backlog_limit(junos_sync_context_t *ctx, size_t bytes)', 'junos_sync_set_backlog_limit(junos_sync_context_t *ctx, uint32_t bytes)')"
expect fail "junos_sync_set_backlog_limit(ctx, uint32_t) instead of size_t" abi "$tmp/sig.h" "$map" "$compatdir"

edit "$header" "$tmp/removed.h" "re.sub(r'\njunos_sync_status_t junos_sync_switchover\([^;]*;\n', '\n', s)"
edit "$map" "$tmp/removed.map" "s.replace('    junos_sync_switchover;\n', '')"
link "$tmp/removed.so" "$tmp/removed.map" ""
expect pass "(without switchover, header, map and library still agree)" exports "$tmp/removed.h" "$tmp/removed.map" "$compatdir" "$tmp/removed.so"
expect fail "junos_sync_switchover removed" abi "$tmp/removed.h" "$tmp/removed.map" "$compatdir"

edit "$map" "$tmp/oldnode.map" "s.replace('  global:\n', '  global:\n    $new;\n', 1)"
expect fail "a new function in the released node JUNOS_SYNC_1.0" abi "$tmp/added.h" "$tmp/oldnode.map" "$compatdir"

link "$tmp/unlisted.so" "$map" "$tmp/added.o"
expect fail "a new function declared and defined, not listed in the map" exports "$tmp/added.h" "$map" "$compatdir" "$tmp/unlisted.so"

echo "abi-selftest: a struct a released function takes must not grow without a compatibility symbol"
edit "$map" "$tmp/grown.map" "s.replace('    junos_sync_get_stats;\n', '', 1).replace('  global:\n', '  global:\n    junos_sync_get_stats;\n', 1)"
expect fail "struct junos_sync_stats_s grown, get_stats kept in JUNOS_SYNC_1.0, no compatibility entry" \
    abi "$header" "$tmp/grown.map" "$tmp/compat-none"
expect fail "struct junos_sync_stats_s grown, get_stats moved to JUNOS_SYNC_1.1, no compatibility entry: ABI" \
    abi "$header" "$map" "$tmp/compat-none"
expect fail "struct junos_sync_stats_s grown, get_stats moved to JUNOS_SYNC_1.1, no compatibility entry: exports" \
    exports_ar "$header" "$map" "$tmp/compat-none" "$tmp/real.so"

echo "abi-selftest: a compatibility entry must match the release it keeps"
expect fail "$stats declared with the 1.1 struct (8 fields)" abi "$header" "$map" "$tmp/compat-wide"
expect fail "$stats declared with 32-bit counters" abi "$header" "$map" "$tmp/compat-u32"
expect fail "the entry in the wrong node (junos_sync_get_stats@JUNOS_SYNC_1.1)" \
    exports_ar "$header" "$map" "$tmp/compat-node" "$tmp/real.so"
expect fail "the entry naming an implementing function nothing defines (junos_sync_get_stats_v1)" \
    exports_ar "$header" "$map" "$tmp/compat-impl" "$tmp/real.so"

edit "$map" "$tmp/implname.map" "s.replace('    junos_sync_get_stats;\n', '    junos_sync_get_stats;\n    junos_sync_get_stats_1_0;\n', 1)"
link "$tmp/implname.so" "$tmp/implname.map" ""
expect fail "the implementing function junos_sync_get_stats_1_0 exported by its own name" \
    exports "$header" "$tmp/implname.map" "$compatdir" "$tmp/implname.so"

echo "abi-selftest: compatible states must pass"
expect pass "the real header, map and compatibility entries: exports" exports_ar "$header" "$map" "$compatdir" "$tmp/real.so"
expect pass "the real header, map and compatibility entries: ABI" abi "$header" "$map" "$compatdir"
link "$tmp/added.so" "$tmp/added.map" "$tmp/added.o"
expect pass "a new function in a new node: exports" exports "$tmp/added.h" "$tmp/added.map" "$compatdir" "$tmp/added.so"
expect pass "a new function in a new node: ABI" abi "$tmp/added.h" "$tmp/added.map" "$compatdir"
manpage() {
    python3 "$here/gen-man3.py" "$1" "$tmp/man/man3" &&
        groff -man -ww -z "$tmp/man/man3/$new.3" 2>&1 | { ! grep .; } &&
        grep -q "^$new .- selftest: a function added" "$tmp/man/man3/$new.3" && echo "man3/$new.3 renders"
}
expect pass "a new function in a new node: its man page" manpage "$tmp/added.h"

if [ $failed -ne 0 ]; then
    echo "abi-selftest: FAILED: the ABI checks do not tell compatible from incompatible changes" >&2
    exit 1
fi
echo "abi-selftest: the ABI checks fail all $nfail incompatible cases and pass all $npass compatible ones"
