#!/bin/sh
# ld-version-script.sh MAP: prints MAP as the linker gets it, without its trailing nodes that
# list no function yet. The map keeps the next release's node ready and empty, so that a new
# function is one added line; but a node given to the linker is published even when empty,
# and a program needing a function of that node would then load against a library without it.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 MAP" >&2
    exit 2
fi
awk '
    { line[NR] = $0; s = $0; sub(/#.*/, "", s) }
    !innode && s ~ /^[[:space:]]*[A-Za-z0-9_.]+[[:space:]]*\{/ {
        innode = 1; n++; start[n] = NR; syms[n] = 0; g = 1; sub(/^[^{]*\{/, "", s)
    }
    innode {
        closing = (s ~ /\}/)
        if (closing) sub(/\}.*/, "", s)
        if (s ~ /global:/) { g = 1; sub(/.*global:/, "", s) }
        if (s ~ /local:/) g = 0
        if (g && s ~ /(^|[;[:space:]])[A-Za-z_][A-Za-z0-9_]*[[:space:]]*;/) syms[n]++
        if (closing) innode = 0
    }
    END {
        last = NR
        for (i = n; i >= 1 && syms[i] == 0; i--) last = start[i] - 1
        for (k = 1; k <= last; k++) print line[k]
    }' "$1"
