#!/usr/bin/env bash
# `make bench`: builds the benchmark programs into build/bench/ against a snapshot of
# build/lib/libjunos-sync.so (so a concurrent `make lib` cannot swap the library under a running
# benchmark), installs libzmq3-dev if it is missing (or says clearly that the ZeroMQ baseline is
# skipped), then runs bench/bench.py: markdown table on stdout, build/bench/results.json.
#
# Knobs (environment): BENCH_RUNS (default 5), BENCH_QUICK=1 (counts / 10), BENCH_PIN=0 (no CPU
# pinning), BENCH_CPU_A / BENCH_CPU_B (CPUs of the sending and receiving process, default 0 / 1),
# BENCH_ONLY=stream64,stream1k,latency,handshake,resync,memory,contended, BENCH_TIMEOUT (seconds per
# program run), BENCH_NO_APT=1 (never run apt-get), BENCH_JSYNC_DISPATCH_EVERY (dispatch-mode
# rows), BENCH_REF_LIB=path/to/libjunos-sync.so.X (an earlier build of the library: its thread-mode
# rows run in the same run, interleaved), BENCH_SOFILE (the library's file name in build/lib;
# `make bench` passes the Makefile's, else it is derived from Cargo.toml's version), CC.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${BENCH_OUT:-build/bench}
export BENCH_OUT=$OUT
CC=${CC:-cc}
CFLAGS="-std=c99 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Iinclude -Ibench"

log() { echo "bench: $*" >&2; }

# The library's file name, as the Makefile links it: libjunos-sync.so.$(VERSION), VERSION from
# Cargo.toml (the same sed as the Makefile's).
if [ -z "${BENCH_SOFILE:-}" ]; then
  VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
  [ -n "$VERSION" ] || { log "FAIL: no version in Cargo.toml"; exit 1; }
  BENCH_SOFILE=libjunos-sync.so.$VERSION
fi
export BENCH_SOFILE
SRC_SO=build/lib/$BENCH_SOFILE
if [ ! -f "$SRC_SO" ]; then
  log "FAIL: $SRC_SO is missing; run 'make lib' (or 'make bench', which builds it)"
  exit 1
fi
command -v python3 >/dev/null || { log "FAIL: python3 is needed"; exit 1; }

# ---- snapshot of the library ---------------------------------------------------------------
snapshot() { # src dir: a stable copy of src as dir/<its file name>, with the soname links
  local src dir=$2 name ok=0
  src=$(readlink -f "$1")
  name=$(basename "$src")
  mkdir -p "$dir"
  for _ in 1 2 3 4 5; do
    cp "$src" "$dir/.libjunos-sync.so.new"
    if cmp -s "$src" "$dir/.libjunos-sync.so.new"; then ok=1; break; fi
    sleep 1   # the library was being rewritten while we copied it
  done
  [ $ok = 1 ] || { log "FAIL: $src keeps changing; cannot take a stable copy"; exit 1; }
  mv -f "$dir/.libjunos-sync.so.new" "$dir/$name"
  [ "$name" = libjunos-sync.so.1 ] || ln -sf "$name" "$dir/libjunos-sync.so.1"
  ln -sf libjunos-sync.so.1 "$dir/libjunos-sync.so"
}
snapshot "$SRC_SO" "$OUT/lib"
LIBFLAGS="-L$OUT/lib -Wl,-rpath,$ROOT/$OUT/lib -ljunos-sync -lpthread"

# ---- ZeroMQ --------------------------------------------------------------------------------
zmq_ok() { [ -f /usr/include/zmq.h ] && { pkg-config --exists libzmq 2>/dev/null || ls /usr/lib/*/libzmq.so >/dev/null 2>&1; }; }
zmq_flags() { pkg-config --cflags --libs libzmq 2>/dev/null || echo -lzmq; }
BENCH_ZMQ_SKIPPED=""
if ! zmq_ok; then
  if [ "${BENCH_NO_APT:-0}" != 1 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "libzmq3-dev is missing: installing it with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq libzmq3-dev >/dev/null; }; then
      log "apt-get could not install libzmq3-dev"
    fi
  fi
  if ! zmq_ok; then
    BENCH_ZMQ_SKIPPED="libzmq3-dev is not installed and could not be installed (apt-get, root needed)"
    log "SKIPPING the ZeroMQ baseline: $BENCH_ZMQ_SKIPPED"
  fi
fi

# ---- build ---------------------------------------------------------------------------------
build() { # out src flags...
  local out=$1 src=$2; shift 2
  $CC $CFLAGS "$src" -o "$out" "$@"
}
build "$OUT/jsync_bench" bench/jsync_bench.c $LIBFLAGS
build "$OUT/tcp_baseline" bench/tcp_baseline.c
if [ -z "$BENCH_ZMQ_SKIPPED" ]; then
  # shellcheck disable=SC2046
  if ! build "$OUT/zmq_baseline" bench/zmq_baseline.c $(zmq_flags); then
    BENCH_ZMQ_SKIPPED="bench/zmq_baseline.c did not build against the installed libzmq"
    log "SKIPPING the ZeroMQ baseline: $BENCH_ZMQ_SKIPPED"
  fi
fi
log "built $OUT/jsync_bench $OUT/tcp_baseline${BENCH_ZMQ_SKIPPED:+ (no zmq_baseline)}${BENCH_ZMQ_SKIPPED:- $OUT/zmq_baseline}"

# ---- an earlier build, for the thread-mode rows ------------------------------------------------
# The same jsync_bench.c without the calls an earlier library may lack (dispatch mode, keys
# set through the API), linked against a snapshot of that library.
rm -f "$OUT/jsync_bench_ref"
if [ -n "${BENCH_REF_LIB:-}" ]; then
  [ -f "$BENCH_REF_LIB" ] || { log "FAIL: BENCH_REF_LIB=$BENCH_REF_LIB is not a file"; exit 1; }
  snapshot "$BENCH_REF_LIB" "$OUT/ref/lib"
  build "$OUT/jsync_bench_ref" bench/jsync_bench.c -DBENCH_REF \
    -L"$OUT/ref/lib" -Wl,-rpath,"$ROOT/$OUT/ref/lib" -ljunos-sync -lpthread
  log "built $OUT/jsync_bench_ref against $BENCH_REF_LIB"
fi

export BENCH_ZMQ_SKIPPED
exec python3 bench/bench.py
