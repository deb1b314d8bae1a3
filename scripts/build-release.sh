#!/bin/sh
# build-release.sh COMMIT VERSION DIR -- an earlier release of this library and its flowd,
# built from this repository's own history, for the mixed-version test
# (tests/sh/mixed_versions.sh, `make mixed-test`).
#
# Exports COMMIT (the release's commit; its Cargo.toml must say VERSION) with `git archive` into
# DIR and runs that tree's own `make lib examples` there, in release mode as it always builds,
# with its cargo target directory DIR/target: the work tree, the index, the refs and our
# target/ are never touched. Leaves DIR/build/lib/libjunos-sync.so.VERSION and
# DIR/build/examples/flowd (linked to that library by its rpath).
#
# Built once: DIR/.built records the commit and the toolchain (cargo and the C compiler); with
# the same record and both files present, the build is reused as it is. An export of another
# commit is removed first; an interrupted build of the same one is resumed.
# Fails, saying why, when COMMIT is not in the history (a shallow clone, say).
set -eu

if [ $# -ne 3 ]; then
    echo "usage: $0 COMMIT VERSION DIR" >&2
    exit 2
fi
commit=$1 version=$2 dir=$3
: "${CARGO:=cargo}" "${CC:=cc}" "${MAKE:=make}"

fail() {
    echo "build-release: $*" >&2
    exit 1
}

git rev-parse --git-dir >/dev/null 2>&1 ||
    fail "not in a git repository: release $version is built from this repository's history" \
        "(commit $commit); run from a clone, not from an exported tree"
if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
    why="the history has no commit $commit (release $version)"
    if [ "$(git rev-parse --is-shallow-repository)" = true ]; then
        fail "$why: this clone is shallow; fetch the whole history (git fetch --unshallow)"
    fi
    fail "$why: was the history rewritten? The commit is named in the Makefile (COMPAT_COMMIT)"
fi
said=$(git show "$commit:Cargo.toml" | sed -n 's/^version = "\(.*\)"/\1/p' | head -n 1)
[ "$said" = "$version" ] ||
    fail "commit $commit is version '$said' by its Cargo.toml, not $version (COMPAT_COMMIT in the Makefile)"

so=$dir/build/lib/libjunos-sync.so.$version
flowd=$dir/build/examples/flowd
record="$commit $("$CARGO" --version) $("$CC" --version | head -n 1)"
if [ -f "$dir/.built" ] && [ "$(cat "$dir/.built")" = "$record" ] && [ -f "$so" ] && [ -x "$flowd" ]; then
    echo "build-release: $version ($commit) already built in $dir"
    exit 0
fi

if [ "$(cat "$dir/.source" 2>/dev/null || true)" != "$commit" ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    git archive --format=tar "$commit" | tar -x -C "$dir"
    echo "$commit" >"$dir/.source"
fi
rm -f "$dir/.built"
abs=$(cd "$dir" && pwd)
echo "build-release: building $version ($commit) in $dir"
# Its own make, not ours: none of our make's flags or jobserver. Its Makefile asks git for a
# date (man pages only): the ceiling keeps git from finding our repository above the export.
(
    cd "$abs"
    unset MAKEFLAGS MFLAGS MAKELEVEL
    GIT_CEILING_DIRECTORIES=$(dirname "$abs") CARGO_TARGET_DIR=$abs/target \
        "$MAKE" --no-print-directory lib examples CARGO="$CARGO --locked" CC="$CC"
)
[ -f "$so" ] && [ -x "$flowd" ] || fail "its make left no $so or $flowd"
echo "$record" >"$dir/.built"
echo "build-release: $version built in $dir"
