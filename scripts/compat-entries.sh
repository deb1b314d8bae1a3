#!/bin/sh
# compat-entries.sh COMPAT_DIR: prints "NAME NODE IMPL FILE", one line per compatibility symbol.
#
# COMPAT_DIR (abi/compat) holds one file per compatibility symbol, named NAME@NODE.h for the
# symbol the library exports (not as default) in the released version node NODE. The file is C:
# the types the old prototype needs, as the release of NODE declared them, then the prototype
# itself, on one line, under the name of the function implementing it (IMPL, bound to NAME@NODE
# by .symver in src/ffi/). Every check reads the entries through this script, so it is the one
# parser; it fails on a file it cannot read rather than skip it. A missing COMPAT_DIR has no
# entries (git keeps no empty directory).
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 COMPAT_DIR" >&2
    exit 2
fi
dir=$1
[ -d "$dir" ] || exit 0

for f in "$dir"/*; do
    [ -e "$f" ] || continue
    base=$(basename "$f")
    # NAME@NODE.h: one '@', a C identifier before it, a version node name after it.
    if ! echo "$base" | grep -Eqx '[A-Za-z_][A-Za-z0-9_]*@[A-Za-z0-9_.]*[A-Za-z0-9_]\.h'; then
        echo "compat-entries: $f: an entry is named NAME@NODE.h (the symbol it keeps, the" \
            "released node it stays in)" >&2
        exit 1
    fi
    sym=${base%.h}
    # The prototype: a line at the start of the line, not a typedef, whose first '(' follows
    # the function's name. Types, fields and enumerators are indented or braced, never that.
    protos=$(grep -E '^[A-Za-z_][^(]*[ *][A-Za-z_][A-Za-z0-9_]*\(.*\);[[:space:]]*$' "$f" |
        grep -Ev '^(typedef|struct|enum|union|#)' || true)
    if [ "$(printf '%s\n' "$protos" | grep -c .)" -ne 1 ]; then
        echo "compat-entries: $f must declare exactly one function, on one line (the old" \
            "prototype, under the implementing function's name); found:${protos:+ }${protos:-" none"}" >&2
        exit 1
    fi
    impl=$(printf '%s\n' "$protos" | sed 's/^[^(]*[ *]\([A-Za-z_][A-Za-z0-9_]*\)(.*$/\1/')
    if [ "$impl" = "${sym%@*}" ]; then
        echo "compat-entries: $f: the implementing function needs a name of its own, bound" \
            "to $sym by .symver (junos_sync_x_1_0 for junos_sync_x@JUNOS_SYNC_1.0)" >&2
        exit 1
    fi
    echo "${sym%@*} ${sym#*@} $impl $f"
done
