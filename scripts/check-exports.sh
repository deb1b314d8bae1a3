#!/bin/sh
# check-exports.sh HEADER MAP COMPAT_DIR SHARED_LIB [STATIC_LIB]
#
# The exported ABI is one set, written three times: the functions HEADER declares, the symbols
# MAP (the linker version script) lists, and the dynamic symbols SHARED_LIB defines, each as
# the default version in the node MAP gives it. Besides those, SHARED_LIB exports exactly the
# compatibility symbols COMPAT_DIR lists (scripts/compat-entries.sh): NAME@NODE, not default,
# in a node older than NAME's default one, and never the implementing function by its own name.
# Fails, saying what to edit, on any difference. STATIC_LIB, when given, must define exactly the
# header's functions with the junos_sync_ prefix, plus each compatibility symbol's implementing
# function and its .symver binding (a Rust #[no_mangle] function left out of the header shows
# there).
set -eu

if [ $# -lt 4 ] || [ $# -gt 5 ]; then
    echo "usage: $0 HEADER MAP COMPAT_DIR SHARED_LIB [STATIC_LIB]" >&2
    exit 2
fi
header=$1 map=$2 compatdir=$3 so=$4 ar=${5:-}
here=$(dirname "$0")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-exports.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

python3 "$here/header_api.py" functions "$header" | sort >"$tmp/header"

# name@node for every symbol MAP exports (a node is global until "local:"; '#' comments ignored).
sed 's/#.*//' "$map" | awk '
    /^[[:space:]]*[A-Za-z0-9_.]+[[:space:]]*\{/ { node = $1; sub(/\{.*/, "", node); scope = "global"; sub(/^[^{]*\{/, "") }
    /\}/ { sub(/\}.*/, "") }
    /global:/ { scope = "global"; sub(/.*global:/, "") }
    /local:/ { scope = "local"; next }
    scope == "global" {
        n = split($0, w, /[;[:space:]]+/)
        for (i = 1; i <= n; i++) if (w[i] ~ /^[A-Za-z_][A-Za-z0-9_]*$/) print w[i] "@" node
    }' | sort >"$tmp/map"
cut -d@ -f1 "$tmp/map" >"$tmp/map-names"
# The nodes in the order the map defines them (each inherits the ones before it).
sed 's/#.*//' "$map" | sed -n 's/^[[:space:]]*\([A-Za-z0-9_.]*\)[[:space:]]*{.*/\1/p' >"$tmp/nodes"
newest=$(tail -n1 "$tmp/nodes")
nodeindex() { grep -nxF "$1" "$tmp/nodes" | cut -d: -f1; }

# "NAME NODE IMPL FILE" per compatibility symbol.
"$here/compat-entries.sh" "$compatdir" >"$tmp/compat"

# The dynamic symbols as the dynamic linker sees them: "name@@node" for a default version,
# "name@node" for a compatibility one (hidden from new links), "name@" without a version; the
# absolute symbols that define the version nodes themselves are left out.
LC_ALL=C readelf --dyn-syms --wide "$so" | awk '
    $1 ~ /^[0-9]+:$/ && $7 != "UND" && NF >= 8 && !($7 == "ABS" && $3 == 0 && $4 == "OBJECT") {
        name = $8
        if (!index(name, "@")) name = name "@"
        print name
    }' | sort >"$tmp/so"
sed 's/@.*//' "$tmp/so" | sort -u >"$tmp/so-names"

# What SHARED_LIB must export, exactly.
{
    sed 's/@/@@/' "$tmp/map"
    while read -r name node impl file; do echo "$name@$node"; done <"$tmp/compat"
} | sort >"$tmp/expected"

fail=0
complain() {
    fail=1
    echo "check-exports: $*" >&2
}

for f in $(comm -23 "$tmp/header" "$tmp/map-names"); do
    complain "$f is declared in $header but not listed in $map." \
        "Add the line '    $f;' to the next release's node there, $newest (a released" \
        "node never changes: if $newest is released, add a new node after it), then 'make lib'."
done
for f in $(comm -13 "$tmp/header" "$tmp/map-names"); do
    entry=$(awk -v n="$f" '$3 == n { print $1 "@" $2 }' "$tmp/compat")
    if [ -n "$entry" ]; then
        complain "$f is listed in $map, but it implements the compatibility symbol $entry" \
            "($compatdir): it is exported only under that versioned name; delete its line."
        continue
    fi
    complain "$f is listed in $map but not declared in $header. A released function" \
        "cannot be removed without a new soname (see abi/README.md); if it was never" \
        "released, delete its line from the map."
done

# A compatibility symbol keeps an older version of a function the header still declares, whose
# default version moved to a later node.
while read -r name node impl file; do
    if ! grep -qxF "$name" "$tmp/header"; then
        complain "$file keeps $name@$node, but $header does not declare $name: a" \
            "compatibility symbol is an old version of a function that still exists, with its" \
            "new version in the header and in $map's newest node, $newest."
        continue
    fi
    default=$(sed -n "s/^$name@//p" "$tmp/map")
    if [ -z "$(nodeindex "$node")" ]; then
        complain "$file keeps $name@$node, but $map has no node $node (a compatibility" \
            "symbol stays in the released node its old version was in)."
    elif [ -n "$default" ] && [ "$(nodeindex "$node")" -ge "$(nodeindex "$default")" ]; then
        complain "$file keeps $name@$node, but $map puts the default $name in $default," \
            "which is not after $node: the old version stays in its released node, the new" \
            "one goes into a later node (the newest, $newest)."
    fi
    if grep -qxF "$impl" "$tmp/header"; then
        complain "$file is implemented by $impl, which $header declares: the old" \
            "version's implementation is not API (exclude it in cbindgen.toml)."
    fi
done <"$tmp/compat"

# SHARED_LIB against the expected set, one message per function.
: >"$tmp/told"
for s in $(comm -23 "$tmp/expected" "$tmp/so"); do
    f=${s%%@*}
    echo "$f" >>"$tmp/told"
    has=$(grep "^$f@" "$tmp/so" | tr '\n' ' ' | sed 's/ $//')
    case $s in
    *@@*)
        if [ -z "$has" ]; then
            complain "$f is listed in $map but $so does not export it. Is it defined" \
                "(#[no_mangle] pub extern \"C\") in src/? Rebuild with 'make lib'."
        else
            complain "$so exports $has, but $map puts $f in ${s#*@@} as its default" \
                "version: link the library with the map ('make lib'); a released function" \
                "never changes node, it may only keep an old version (abi/README.md)."
        fi
        ;;
    *)
        impl=$(awk -v n="$f" -v v="${s#*@}" '$1 == n && $2 == v { print $3 }' "$tmp/compat")
        if echo "$has" | grep -qF "$s" && echo "$has" | grep -qF "@@${s#*@}"; then
            complain "$so exports $f@@${s#*@} as the default version, but $compatdir lists" \
                "it as a compatibility symbol: bind it with one '@' (.symver $impl, $s)."
        else
            complain "$so does not export the compatibility symbol $s ($compatdir). Is $impl" \
                "defined in src/ffi/ and bound by global_asm!(\".symver $impl, $s\"), and is" \
                "'local: *' in the newest node of $map (in an older node it hides the" \
                "compatibility symbols)? Rebuild with 'make lib'."
        fi
        ;;
    esac
done
for s in $(comm -13 "$tmp/expected" "$tmp/so"); do
    f=${s%%@*}
    ! grep -qxF "$f" "$tmp/told" || continue
    if awk -v n="$f" '$3 == n { found = 1 } END { exit !found }' "$tmp/compat"; then
        complain "$so exports $f, which implements a compatibility symbol: it must be" \
            "exported only under the versioned name .symver gives it; keep it out of $map."
    elif grep -qxF "$f" "$tmp/map-names"; then
        complain "$so exports $s, which neither $map nor $compatdir lists: a released" \
            "function never changes node; an old version it keeps needs an entry in" \
            "$compatdir (abi/README.md, \"Changing a released function's ABI\")."
    else
        complain "$so exports $f, which $map does not list. Nothing may be exported beyond" \
            "the map and $compatdir: was the library linked with the map ('make lib')?"
    fi
done

if [ -n "$ar" ]; then
    # readelf, not nm: nm hands the members (which embed LLVM bitcode) to the LTO plugin.
    LC_ALL=C readelf --syms --wide "$ar" | awk '$5 == "GLOBAL" && $7 != "UND" && $8 ~ /^junos_sync_/ { print $8 }' |
        sort -u >"$tmp/ar"
    # The header's functions, and per compatibility symbol its implementation and the
    # versioned name .symver gives it (the assembler writes both into the object).
    {
        cat "$tmp/header"
        while read -r name node impl file; do printf '%s\n%s\n' "$impl" "$name@$node"; done <"$tmp/compat"
    } | sort >"$tmp/ar-expected"
    for f in $(comm -13 "$tmp/ar-expected" "$tmp/ar"); do
        case $f in
        *@*)
            complain "$ar binds $f by .symver, but $compatdir has no entry ${f}.h: add" \
                "one with the old prototype (abi/README.md, \"Changing a released function's ABI\")."
            ;;
        *)
            complain "$ar exports $f, which $header does not declare: regenerate the header" \
                "('make header'), then list the function in $map (or, if it implements an old" \
                "version of a function, add its entry to $compatdir)."
            ;;
        esac
    done
    for f in $(comm -23 "$tmp/ar-expected" "$tmp/ar"); do
        if grep -qxF "$f" "$tmp/header"; then
            complain "$header declares $f, which $ar does not define: 'make header' after" \
                "changing src/, and rebuild ('make lib')."
            continue
        fi
        entry=$(awk -v s="$f" '$3 == s || $1 "@" $2 == s { print $4 }' "$tmp/compat")
        case $f in
        *@*)
            impl=$(awk -v s="$f" '$1 "@" $2 == s { print $3 }' "$tmp/compat")
            complain "$ar does not bind $impl to $f ($entry): add" \
                "std::arch::global_asm!(\".symver $impl, $f\") next to it in src/ffi/." ;;
        *)
            complain "$entry is implemented by $f, which $ar does not define: define it" \
                "(#[no_mangle] pub extern \"C\", left out of the header) in src/ffi/." ;;
        esac
    done
fi

if [ $fail -ne 0 ]; then
    echo "check-exports: FAILED: header, map, $compatdir and library do not export the same functions" >&2
    exit 1
fi
compat=$(while read -r name node impl file; do echo "$name@$node ($impl)"; done <"$tmp/compat" |
    tr '\n' ',' | sed 's/,$//; s/,/, /g')
echo "check-exports: $(wc -l <"$tmp/header") functions, identical in $header, $map and $so:" \
    "$(sed -n 's/^[^@]*@@//p' "$tmp/so" | sort | uniq -c | awk '{ printf "%s%s x%s", sep, $2, $1; sep = ", " }');" \
    "compatibility symbols: ${compat:-none}"
