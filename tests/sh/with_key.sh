#!/usr/bin/env bash
# with_key.sh COMMAND [ARGS...] -- runs COMMAND with every junos-sync context keyed, the way an
# unmodified daemon is keyed in production: a fresh random key in a 0600 file named by
# JUNOS_SYNC_AUTH_KEY_FILE (inherited by the daemons COMMAND starts, in namespaces too).
set -euo pipefail
dir=$(mktemp -d "${TMPDIR:-/tmp}/jsync-key.XXXXXX")
trap 'rm -rf "$dir"' EXIT
(umask 077 && head -c 32 /dev/urandom >"$dir/key")
export JUNOS_SYNC_AUTH_KEY_FILE=$dir/key
echo "# keyed: JUNOS_SYNC_AUTH_KEY_FILE=$JUNOS_SYNC_AUTH_KEY_FILE"
"$@"
