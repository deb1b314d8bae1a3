#!/bin/sh
# build-deb.sh OUTDIR INSTALLED VERSION SONAME MAP COMPAT_DIR PROGRAM...
#
# Builds the Debian binary packages into OUTDIR from INSTALLED, a tree written by
# `make install DESTDIR=INSTALLED PREFIX=/usr libdir=/usr/lib/<multiarch>`:
#   lib<soname>       the shared library (.so.N link and .so.N.M.P file)
#   libjunos-sync-dev header, static library, .so link, pkg-config file, man 3 and 7
#   junos-sync-tools  the PROGRAMs in /usr/bin with their man 1 pages
# Every installed file must land in one of them (the separate debug info is not packaged),
# so a file added to `make install` without a home here fails the build.
# The control text is deb/control.in, the copyright deb/copyright, the lintian overrides (with
# the reasons) deb/lintian-overrides; Depends comes from
# dpkg-shlibdeps, the symbols file from MAP and the compatibility symbols of COMPAT_DIR (a node
# JUNOS_SYNC_X.Y first shipped in X.Y.0), checked against the library by dpkg-gensymbols.
set -eu

if [ $# -lt 6 ]; then
    echo "usage: $0 OUTDIR INSTALLED VERSION SONAME MAP COMPAT_DIR PROGRAM..." >&2
    exit 2
fi
out=$(realpath "$1") inst=$(realpath "$2") version=$3 soname=$4 map=$(realpath "$5") compatdir=$(realpath -m "$6")
shift 6
src=$(cd "$(dirname "$0")/.." && pwd)
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
arch=$(dpkg --print-architecture)
debversion=$version-1
maintainer=${DEB_MAINTAINER:-junos-sync maintainers <maintainers@users.noreply.r-seed-0cf7ca26.example>}
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$src" log -1 --format=%ct 2>/dev/null || date +%s)}"

# libfoo.so.1 -> libfoo1; libfoo2.so.1 -> libfoo2-1 (Debian's library package naming).
base=${soname%.so.*} n=${soname##*.so.}
case $base in *[0-9]) libpkg=$base-$n ;; *) libpkg=$base$n ;; esac
libdir=usr/lib/$ma
sofile=${soname%.so.*}.so.$version

work=$out/work
rm -rf "$work"
mkdir -p "$work/debian"
: >"$work/debian/control" # dpkg-shlibdeps wants one, and reads nothing from it here

# take PKG PATH...: moves installed paths into a package's tree.
take() {
    pkg=$1
    shift
    for p in "$@"; do
        [ -e "$inst/$p" ] || [ -L "$inst/$p" ] || { echo "build-deb: $p was not installed" >&2; exit 1; }
        mkdir -p "$(dirname "$work/debian/$pkg/$p")"
        mv "$inst/$p" "$work/debian/$pkg/$p"
    done
}
take "$libpkg" "$libdir/$sofile" "$libdir/$soname"
take libjunos-sync-dev usr/include "$libdir/libjunos-sync.a" "$libdir/libjunos-sync.so" \
    "$libdir/pkgconfig" usr/share/man/man3 usr/share/man/man7
take junos-sync-tools usr/share/man/man1
for p in "$@"; do take junos-sync-tools "usr/bin/$p"; done
rm -rf "$inst/usr/lib/debug"
left=$(cd "$inst" && find . ! -type d)
if [ -n "$left" ]; then
    echo "build-deb: installed but in no package (add them in scripts/build-deb.sh):" $left >&2
    exit 1
fi

# The crates linked into the library and into junos-sync-stat (a crate of its own), for the
# copyright file: normal dependencies without proc-macros (they run in the compiler and leave no
# code in the program), each once (cargo marks a repeated one "(*)"). Every license they name
# needs its own License paragraph in deb/copyright first; the paragraphs there are the licenses
# accepted.
# crates MANIFEST SELF: "name vX|license" lines of MANIFEST's crate, SELF left out.
crates() {
    (cd "$src" && cargo tree --manifest-path "$1" -e normal,no-proc-macro --prefix none --format '{p}|{l}' \
        --offline 2>/dev/null) | sed 's/ (\*)$//' | grep -v "^$2 " | sort -u
}
bundled=$(crates Cargo.toml junos-sync)
bundled_stat=$(crates tools/junos-sync-stat/Cargo.toml junos-sync-stat)
accepted=$(sed -n 's/^License: \([^ ]*\)$/\1/p' "$src/deb/copyright")
# shellcheck disable=SC2046 # one -e option per accepted license (names without spaces)
bad=$(printf '%s\n%s\n' "$bundled" "$bundled_stat" | cut -d'|' -f2 |
    sed 's/ OR /\n/g; s/ AND /\n/g; s|/|\n|g; s/[()]//g' | sort -u | grep -v -x -e '' \
    $(for l in $accepted; do echo "-e $l"; done) || true)
if [ -z "$bundled" ] || [ -z "$bundled_stat" ] || [ -n "$bad" ]; then
    echo "build-deb: crates not listed, or licensed under '$bad': update deb/copyright" >&2
    exit 1
fi
listed() {
    echo "$1" | sed 's/^\([^ ]*\) v\([^|]*\)|\(.*\)$/ \1 \2 (\3)/; s/ OR / or /g'
}
bundled=$(listed "$bundled")
listed "$bundled_stat" >"$work/bundled-stat"

changelog() {
    cat <<LOG
junos-sync ($debversion) unstable; urgency=medium

  * Release $version, built from the junos-sync source tree
    ($(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo 'no git')).

 -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")
LOG
}

# Symbols each in its node's release, never above the version being built. A compatibility
# symbol (name@OLD_NODE, not the default) is listed like any other: a binary's reference names
# the node, and dpkg-shlibdeps looks it up as name@node.
minver() {
    v=${1#JUNOS_SYNC_}.0
    if dpkg --compare-versions "$v" gt "$version"; then echo "$version"; else echo "$v"; fi
}
symbols() {
    echo "$soname $libpkg #MINVER#"
    echo "* Build-Depends-Package: libjunos-sync-dev"
    # A node is global until "local:"; a node's own symbol only once it has a function.
    sed 's/#.*//' "$map" | awk '
        /^[[:space:]]*[A-Za-z0-9_.]+[[:space:]]*\{/ { node = $1; sub(/\{.*/, "", node); g = 1; seen = 0; sub(/^[^{]*\{/, "") }
        /\}/ { sub(/\}.*/, "") }
        /global:/ { g = 1; sub(/.*global:/, "") }
        /local:/ { g = 0 }
        g { n = split($0, w, /[;[:space:]]+/)
            for (i = 1; i <= n; i++) if (w[i] ~ /^[A-Za-z_][A-Za-z0-9_]*$/) {
                if (!seen++) print node " " node
                print w[i] " " node } }' |
        while read -r sym node; do echo " $sym@$node $(minver "$node")"; done
    "$src/scripts/compat-entries.sh" "$compatdir" |
        while read -r sym node _; do echo " $sym@$node $(minver "$node")"; done
}

for pkg in "$libpkg" libjunos-sync-dev junos-sync-tools; do
    root=$work/debian/$pkg
    doc=$root/usr/share/doc/$pkg
    mkdir -p "$doc" "$root/DEBIAN"
    sed -e "/^@BUNDLED_STAT@\$/{
r $work/bundled-stat
d
}" -e "/^@BUNDLED@\$/{
r /dev/stdin
d
}" "$src/deb/copyright" <<BUNDLED >"$doc/copyright"
$bundled
BUNDLED
    changelog | gzip -9n >"$doc/changelog.Debian.gz"
    mkdir -p "$root/usr/share/lintian/overrides"
    which=all
    [ "$pkg" != "$libpkg" ] || which='\(all\|lib\)'
    [ "$pkg" != junos-sync-tools ] || which='\(all\|tools\)'
    sed -n "s/^$which: /$pkg: /p" "$src/deb/lintian-overrides" >"$root/usr/share/lintian/overrides/$pkg"

    # Pages compressed; a link to a page becomes a link to the compressed page.
    if [ -d "$root/usr/share/man" ]; then
        find "$root/usr/share/man" -type f -exec gzip -9n {} +
        find "$root/usr/share/man" -type l -exec sh -c \
            'for l; do ln -s "$(readlink "$l").gz" "$l.gz" && rm "$l" || exit 1; done' sh {} +
    fi

    find "$root" -type d -exec chmod 0755 {} +
    find "$root" -type f -exec chmod 0644 {} +
    [ ! -d "$root/usr/bin" ] || chmod 0755 "$root"/usr/bin/*

    shlibs=
    if [ "$pkg" = "$libpkg" ]; then
        symbols >"$root/DEBIAN/symbols"
        # The library must export exactly what the symbols file lists (-c2: no symbol lost, none new).
        if ! (cd "$work" && dpkg-gensymbols -p"$pkg" -P"debian/$pkg" -v"$version" \
            -e"debian/$pkg/$libdir/$sofile" -I"$root/DEBIAN/symbols" -O"$work/symbols.check" -c2) \
            >"$work/symbols.log" 2>&1; then
            cat "$work/symbols.log" >&2
            echo "build-deb: the symbols file (from $map and $compatdir) does not match $sofile" >&2
            exit 1
        fi
        last=$(sed -n 's/^ [^ ]* //p' "$root/DEBIAN/symbols" | sort -V | tail -n1)
        echo "${base#lib} $n $libpkg (>= $last)" | sed 's/^/lib/' >"$root/DEBIAN/shlibs"
        echo "activate-noawait ldconfig" >"$root/DEBIAN/triggers"
        chmod 0644 "$root/DEBIAN"/*
        shlibs=$(cd "$work" && dpkg-shlibdeps -O -e "debian/$pkg/$libdir/$sofile" 2>&1 |
            sed -n 's/^shlibs:Depends=//p')
    elif [ "$pkg" = junos-sync-tools ]; then
        # shellcheck disable=SC2046 # one -e option per program (names without spaces)
        shlibs=$(cd "$work" && dpkg-shlibdeps -O $(for p in "$@"; do echo "-edebian/$pkg/usr/bin/$p"; done) 2>&1 |
            sed -n 's/^shlibs:Depends=//p')
    fi
    if [ "$pkg" != libjunos-sync-dev ] && [ -z "$shlibs" ]; then
        echo "build-deb: dpkg-shlibdeps found no dependencies for $pkg" >&2
        exit 1
    fi

    (cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\n' | LC_ALL=C sort |
        xargs -r -d '\n' md5sum) >"$root/DEBIAN/md5sums"
    size=$(du -s -k --exclude=DEBIAN "$root" | cut -f1)
    awk -v RS= -v ORS='\n\n' -v want="$pkg" -v lib="$libpkg" '{ p = $0; sub(/@LIBPKG@/, lib, p) }
        p ~ "^Package: " want "\n" { print }' "$src/deb/control.in" |
        sed -e "s|@LIBPKG@|$libpkg|g" -e "s|@DEBVERSION@|$debversion|g" -e "s|@ARCH@|$arch|g" \
            -e "s|@MAINTAINER@|$maintainer|g" -e "s|@SIZE@|$size|g" -e "s|@SHLIBS@|$shlibs|g" |
        sed '/^$/d' >"$root/DEBIAN/control"
    grep -q "^Package: $pkg\$" "$root/DEBIAN/control" || {
        echo "build-deb: no paragraph for $pkg in deb/control.in" >&2
        exit 1
    }
    chmod 0644 "$root/DEBIAN"/*
    dpkg-deb --build --root-owner-group "$root" "$out/${pkg}_${debversion}_$arch.deb" >/dev/null
    echo "build-deb: $out/${pkg}_${debversion}_$arch.deb"
done
