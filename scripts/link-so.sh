#!/bin/sh
# link-so.sh OUT SONAME MAP ARCHIVE [OBJECT...]
#
# Links the shared library from the Rust staticlib (and any extra objects), exporting exactly
# the functions MAP lists, each in its version node (MAP as ld-version-script.sh gives it).
# rustc's own cdylib link cannot do this: it passes a version script of its own, and the
# symbols end up unversioned.
#
# -u pulls in just the listed functions and what they reach (smaller than --whole-archive by
# the unreachable objects' debug info, the same code); --no-undefined-version fails the link
# when MAP lists a function nothing defines; -z defs when anything is left unresolved.
# Writes OUT.tmp and renames it: overwriting a mapped library in place kills its users.
set -eu

if [ $# -lt 4 ]; then
    echo "usage: $0 OUT SONAME MAP ARCHIVE [OBJECT...]" >&2
    exit 2
fi
out=$1 soname=$2 map=$3
shift 3

here=$(dirname "$0")
script=$out.map
"$here/ld-version-script.sh" "$map" >"$script"
undef=
for s in $(sed 's/#.*//' "$script" | sed -n 's/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\);.*/\1/p'); do
    undef="$undef -u $s"
done

# ld would say only "undefined version" for a listed function nothing defines.
defined=$(LC_ALL=C readelf --syms --wide "$@" 2>/dev/null |
    awk '$5 == "GLOBAL" && $7 != "UND" && $4 == "FUNC" { print $8 }' | sort -u)
missing=
for s in ${undef}; do
    [ "$s" = -u ] || echo "$defined" | grep -qx "$s" || missing="$missing $s"
done
if [ -n "$missing" ]; then
    echo "link-so: $map lists$missing, which nothing in $* defines: define it in src/" \
        "(#[no_mangle] pub extern \"C\") or remove its line from the map." >&2
    exit 1
fi

# What the Rust staticlib needs (rustc --print native-static-libs).
# shellcheck disable=SC2086 # $undef is a list of options
${CC:-cc} -shared -o "$out.tmp" $undef "$@" \
    -Wl,--version-script="$script" -Wl,--no-undefined-version -Wl,-z,defs -Wl,-z,relro -Wl,-z,now \
    -Wl,--gc-sections -Wl,--as-needed -Wl,-soname,"$soname" \
    -lgcc_s -lutil -lrt -lpthread -lm -ldl
rm -f "$script"
mv -f "$out.tmp" "$out"
