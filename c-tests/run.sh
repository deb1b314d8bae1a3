#!/bin/sh
# Runs the C test programs: run.sh MODE binary...
#   MODE plain     run each binary as is
#   MODE valgrind  under valgrind memcheck (the VALGRIND command line below)
#   MODE asan      binaries built with -fsanitize=address,undefined; leak detection on
# Exports JSYNC_TEST_RUNNER=MODE for the programs (h_runner()), and the one time scale of the
# mode, JSYNC_TEST_TIMEOUT_MULT (1 plain, 3 asan, 5 valgrind, unless already set): every
# deadline and time bound of the tests goes through it (h_tmo in harness.c), and so does the
# limit of each binary here.
# With JSYNC_TEST_KEYED=1 every context is keyed: a fresh random key file (mode 0600) is named
# by JUNOS_SYNC_AUTH_KEY_FILE, the way an unmodified daemon is keyed in production.
# Prints each binary's output, a result line per binary, and finally exactly
# "N passed, N failed" counting binaries. Exits non-zero if any binary failed.
set -u

if [ $# -lt 1 ]; then
    echo "usage: $0 plain|valgrind|asan binary..." >&2
    exit 2
fi
mode=$1
shift

# The valgrind command line: defined here only (make c-test-valgrind runs this script).
VALGRIND="valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --suppressions=$(dirname "$0")/valgrind.supp"
# A binary that runs longer than this many seconds, times JSYNC_TEST_TIMEOUT_MULT, is killed and
# counted as failed (each test program also has its own per-test watchdog).
limit_s=300

case "$mode" in
plain)
    wrap=""
    : "${JSYNC_TEST_SCALE:=1}"
    : "${JSYNC_TEST_TIMEOUT_MULT:=1}"
    ;;
valgrind)
    if ! command -v valgrind >/dev/null 2>&1; then
        echo "run.sh: valgrind is not installed" >&2
        exit 2
    fi
    wrap=$VALGRIND
    : "${JSYNC_TEST_SCALE:=1}"
    : "${JSYNC_TEST_TIMEOUT_MULT:=5}"
    ;;
asan)
    wrap=""
    : "${JSYNC_TEST_SCALE:=1}"
    : "${JSYNC_TEST_TIMEOUT_MULT:=3}"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    export ASAN_OPTIONS UBSAN_OPTIONS
    ;;
*)
    echo "run.sh: unknown mode '$mode' (plain, valgrind or asan)" >&2
    exit 2
    ;;
esac
JSYNC_TEST_RUNNER=$mode
export JSYNC_TEST_SCALE JSYNC_TEST_TIMEOUT_MULT JSYNC_TEST_RUNNER
# Read as h_tmo reads it (its leading number; 1 if that is not positive), rounded up.
limit=$(awk -v m="$JSYNC_TEST_TIMEOUT_MULT" -v s="$limit_s" \
    'BEGIN { m += 0; if (m <= 0) m = 1; printf "%d", s * m + 0.999 }')
: "${JSYNC_TEST_QUIET:=0}"
export JSYNC_TEST_QUIET

# With JSYNC_TEST_DISPATCH=1 every context runs in dispatch mode (see c-tests/harness.h).
dispatch=""
[ "${JSYNC_TEST_DISPATCH:-0}" = 1 ] && dispatch=", dispatch mode"

keyed=""
if [ "${JSYNC_TEST_KEYED:-0}" = 1 ]; then
    keydir=$(mktemp -d "${TMPDIR:-/tmp}/jsync-key.XXXXXX") || exit 2
    (umask 077 && head -c 32 /dev/urandom >"$keydir/key") || exit 2
    JUNOS_SYNC_AUTH_KEY_FILE=$keydir/key
    export JUNOS_SYNC_AUTH_KEY_FILE
    keyed=", keyed"
fi

passed=0
failed=0
failed_list=""
out=$(mktemp "${TMPDIR:-/tmp}/jsync-c-tests.XXXXXX") || exit 2
trap 'rm -f "$out"; [ -n "$keyed" ] && rm -rf "$keydir"' EXIT INT TERM

for bin in "$@"; do
    if [ ! -x "$bin" ]; then
        echo "=== $bin: not found or not executable"
        failed=$((failed + 1))
        failed_list="$failed_list $bin"
        continue
    fi
    echo "=== $bin ($mode, scale $JSYNC_TEST_SCALE, time x$JSYNC_TEST_TIMEOUT_MULT$keyed$dispatch)"
    start=$(date +%s)
    # shellcheck disable=SC2086
    timeout -s KILL "$limit" $wrap "$bin" >"$out" 2>&1
    rc=$?
    cat "$out"
    secs=$(( $(date +%s) - start ))
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
    nfail=$(printf '%s\n' "$summary" | sed -n 's/^[0-9]* passed, \([0-9]*\) failed$/\1/p')
    if [ "$rc" -eq 0 ] && [ -n "$summary" ] && [ "$nfail" = "0" ]; then
        echo "=== PASS $bin ($summary, ${secs}s)"
        passed=$((passed + 1))
    else
        why="exit status $rc"
        [ "$rc" -eq 137 ] && why="killed after ${limit}s"
        [ -z "$summary" ] && why="$why, no summary line"
        echo "=== FAIL $bin (${summary:-no summary}; $why, ${secs}s)"
        failed=$((failed + 1))
        failed_list="$failed_list $bin"
    fi
done

[ -n "$failed_list" ] && echo "failed:$failed_list"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
