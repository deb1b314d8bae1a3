#!/bin/sh
# check-keygen.sh PROGRAM: junos-sync-keygen writes 32 random bytes, mode 0600 whatever the
# umask, refuses to replace a key without -f (leaving it intact), replaces it with -f, and two
# keys differ.
set -eu

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 path/to/junos-sync-keygen" >&2
    exit 2
fi
keygen=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-keygen.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
check() {
    if eval "$2"; then
        passes=$((passes + 1))
    else
        fails=$((fails + 1))
        echo "check-keygen: FAIL: $1" >&2
    fi
}

(cd "$tmp" && umask 022 && "$keygen")
check "no FILE writes ./junos-sync.key" '[ -f "$tmp/junos-sync.key" ]'
(umask 0 && "$keygen" "$tmp/a")
(umask 0277 && "$keygen" "$tmp/b")
for k in a b junos-sync.key; do
    check "$k is 32 bytes" '[ "$(wc -c <"$tmp/$k")" -eq 32 ]'
    check "$k has mode 0600" '[ "$(stat -c %a "$tmp/$k")" = 600 ]'
done
check "two keys differ" '! cmp -s "$tmp/a" "$tmp/b"'

cp "$tmp/a" "$tmp/a.orig"
check "an existing key is not replaced without -f" '! "$keygen" "$tmp/a" 2>"$tmp/err"'
check "the refusal says why" 'grep -q "exists" "$tmp/err"'
check "the refused key is intact" 'cmp -s "$tmp/a" "$tmp/a.orig"'
chmod 0644 "$tmp/a"
check "-f replaces an existing key" '"$keygen" -f "$tmp/a"'
check "the replacement is a new key" '! cmp -s "$tmp/a" "$tmp/a.orig"'
check "the replacement is 32 bytes, mode 0600" \
    '[ "$(wc -c <"$tmp/a")" -eq 32 ] && [ "$(stat -c %a "$tmp/a")" = 600 ]'
check "no temporary file is left beside it" '[ "$(ls "$tmp" | grep -c "^a\.")" -eq 1 ]'
check "success prints nothing" '[ -z "$("$keygen" "$tmp/c" 2>&1)" ]'
check "a missing directory fails with a message" \
    '! "$keygen" "$tmp/no/such/dir" 2>"$tmp/err" && grep -q "no/such/dir" "$tmp/err"'
check "a usage error exits 2" '"$keygen" x y 2>/dev/null; [ $? -eq 2 ]'

echo "check-keygen: $passes passed, $fails failed"
[ $fails -eq 0 ]
