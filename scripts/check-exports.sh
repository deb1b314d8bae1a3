#!/bin/sh
# check-exports.sh HEADER MAP SHARED_LIB [STATIC_LIB]
#
# The exported ABI is one set, written three times: the functions HEADER declares, the symbols
# MAP (the linker version script) lists, and the dynamic symbols SHARED_LIB defines, each with
# the version node MAP gives it. Fails, saying what to edit, unless all three are equal and
# nothing else is exported. STATIC_LIB, when given, must define exactly the header's functions
# with the junos_sync_ prefix (a Rust #[no_mangle] function left out of the header shows there).
set -eu

if [ $# -lt 3 ] || [ $# -gt 4 ]; then
    echo "usage: $0 HEADER MAP SHARED_LIB [STATIC_LIB]" >&2
    exit 2
fi
header=$1 map=$2 so=$3 ar=${4:-}
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
newest=$(sed 's/#.*//' "$map" | sed -n 's/^[[:space:]]*\([A-Za-z0-9_.]*\)[[:space:]]*{.*/\1/p' | tail -n1)

# name@version of every defined dynamic symbol, "name@" when it has no version; the absolute
# symbols that define the version nodes themselves are left out.
LC_ALL=C readelf --dyn-syms --wide "$so" | awk '
    $1 ~ /^[0-9]+:$/ && $7 != "UND" && NF >= 8 && !($7 == "ABS" && $3 == 0 && $4 == "OBJECT") {
        name = $8; ver = ""
        if (index(name, "@@")) { ver = substr(name, index(name, "@@") + 2); name = substr(name, 1, index(name, "@@") - 1) }
        else if (index(name, "@")) { ver = substr(name, index(name, "@") + 1); name = substr(name, 1, index(name, "@") - 1) }
        print name "@" ver
    }' | sort >"$tmp/so"
cut -d@ -f1 "$tmp/so" >"$tmp/so-names"

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
    complain "$f is listed in $map but not declared in $header. A released function" \
        "cannot be removed without a new soname (see abi/README.md); if it was never" \
        "released, delete its line from the map."
done
for f in $(comm -23 "$tmp/map-names" "$tmp/so-names"); do
    complain "$f is listed in $map but $so does not export it. Is it defined" \
        "(#[no_mangle] pub extern \"C\") in src/? Rebuild with 'make lib'."
done
for f in $(comm -13 "$tmp/map-names" "$tmp/so-names"); do
    complain "$so exports $f, which $map does not list. Nothing may be exported beyond" \
        "the map: was the library linked with it ('make lib')?"
done
for s in $(comm -23 "$tmp/map" "$tmp/so"); do
    f=${s%@*}
    v=$(sed -n "s/^$f@//p" "$tmp/so")
    [ -n "$(sed -n "/^$f@/p" "$tmp/so")" ] || continue
    complain "$so exports $f ${v:+in version node $v}${v:-without a version}, but $map puts it in" \
        "${s#*@}: link the library with the map ('make lib'); a released function never changes node."
done

if [ -n "$ar" ]; then
    # readelf, not nm: nm hands the members (which embed LLVM bitcode) to the LTO plugin.
    LC_ALL=C readelf --syms --wide "$ar" | awk '$5 == "GLOBAL" && $7 != "UND" && $8 ~ /^junos_sync_/ { print $8 }' |
        sort -u >"$tmp/ar"
    for f in $(comm -13 "$tmp/header" "$tmp/ar"); do
        complain "$ar exports $f, which $header does not declare: regenerate the header" \
            "('make header'), then list the function in $map."
    done
    for f in $(comm -23 "$tmp/header" "$tmp/ar"); do
        complain "$header declares $f, which $ar does not define: 'make header' after" \
            "changing src/, and rebuild ('make lib')."
    done
fi

if [ $fail -ne 0 ]; then
    echo "check-exports: FAILED: header, map and library do not export the same functions" >&2
    exit 1
fi
echo "check-exports: $(wc -l <"$tmp/header") functions, identical in $header, $map and $so:" \
    "$(cut -d@ -f2 "$tmp/so" | sort | uniq -c | awk '{ printf "%s%s x%s", sep, $2, $1; sep = ", " }')"
