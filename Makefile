# junos-sync: build, test, demo, bench, install, package.
#   make            library (build/lib), programs (build/bin) and examples (build/examples)
#   make test       the one gate: header drift, fmt, clippy, ABI, man pages, cargo tests,
#                   install, Debian packages, C tests plain, under valgrind memcheck, and
#                   with ASan+UBSan, junos-sync-stat against flowd, process faults, and
#                   replication with release 1.1.0 in both roles (built from the history)
#   make demo       master/backup daemons replicating a flow table on loopback
#   make bench      benchmarks (not part of test)
#   make install PREFIX=/usr/local   (also bindir, libdir, includedir, mandir, debugdir, DESTDIR)
#   make deb        Debian packages in build/deb
#   make man        manual pages in build/man
# Each target first checks the commands it needs and names the Debian packages of those missing
# (see "Prerequisites" below; `make missing-packages FOR=install` lists them).

PREFIX     ?= /usr/local
bindir     ?= $(PREFIX)/bin
libdir     ?= $(PREFIX)/lib
includedir ?= $(PREFIX)/include
mandir     ?= $(PREFIX)/share/man
# Separate debug info of the installed library, at the library's own path under this
# directory: where gdb looks for it when its debug-file-directory is $(PREFIX)/lib/debug
# (/usr/lib/debug, the default, for PREFIX=/usr).
debugdir   ?= $(PREFIX)/lib/debug
CARGO      ?= cargo
CC         ?= cc
CXX        ?= c++
BUILD      := build
LIBDIR     := $(BUILD)/lib
# One version, Cargo.toml's; the soname changes only with an incompatible ABI (abi/README.md).
VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
SONAME     := libjunos-sync.so.1
SOFILE     := libjunos-sync.so.$(VERSION)
CWARN      := -Wall -Wextra -Werror
CFLAGS_T   := -std=c99 -D_GNU_SOURCE -O1 -g $(CWARN) -Iinclude -Ic-tests
LDFLAGS_T  := -L$(LIBDIR) -Wl,-rpath,$(abspath $(LIBDIR)) -ljunos-sync -lpthread
SAN        := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
RUST_SRC   := $(shell find src -name '*.rs') Cargo.toml build.rs cbindgen.toml

C_TEST_SRC := $(wildcard c-tests/test_*.c)
C_TESTS    := $(patsubst c-tests/%.c,$(BUILD)/c-tests/%,$(C_TEST_SRC))
C_TESTS_SAN:= $(patsubst c-tests/%.c,$(BUILD)/c-tests-san/%,$(C_TEST_SRC))
C_TEST_DEPS:= $(wildcard c-tests/*.h) c-tests/isc/eventlib.h include/jnx/junos_sync.h
EXAMPLES   := $(BUILD)/examples/flowd
# Installed programs, each built into build/bin/NAME (from tools/NAME.c by the rule below; a
# program built otherwise, say a Rust [[bin]], adds its own build/bin/NAME rule) and documented
# by man/NAME.1.scd. Install, man pages and Debian packages take them from this list.
PROGRAMS   := junos-sync-keygen junos-sync-stat
BINS       := $(addprefix $(BUILD)/bin/,$(PROGRAMS))
# Hardened as Debian builds programs (lintian checks it).
CFLAGS_PROG:= -std=c99 -O2 -g $(CWARN) -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE
LDFLAGS_PROG:= -pie -Wl,-z,relro -Wl,-z,now

# Prerequisites: the commands each target runs besides Rust (cargo, 1.85 or later) and the
# POSIX basics every Debian has (sh, coreutils, sed, awk, gzip), as COMMAND:DEBIAN-PACKAGE. For
# the goals it is given, make looks for every one of them when it reads this file, before it
# builds or copies anything, and stops with the list of those missing and the apt-get line that
# installs them. A target's list includes those of the targets it runs. The README's
# "Prerequisites" says the same; `make missing-packages FOR='TARGET...'` prints the packages a
# target still lacks (.ci/run installs those).
NEED_cc            := $(firstword $(CC)):$(patsubst cc,gcc,$(notdir $(firstword $(CC))))
NEED_lib           := $(NEED_cc) readelf:binutils
NEED_programs      := $(NEED_cc)
NEED_examples      := $(NEED_lib)
NEED_all           := $(NEED_lib)
NEED_man           := python3:python3 scdoc:scdoc
NEED_man-check     := $(NEED_man) groff:groff-base
NEED_install       := $(NEED_lib) $(NEED_man) objcopy:binutils strip:binutils
NEED_install-check := $(NEED_install) pkg-config:pkg-config man:man-db
NEED_deb           := $(NEED_install) dpkg:dpkg dpkg-deb:dpkg dpkg-architecture:dpkg-dev \
                      dpkg-shlibdeps:dpkg-dev dpkg-gensymbols:dpkg-dev
NEED_deb-check     := $(NEED_deb) lintian:lintian pkg-config:pkg-config man:man-db
NEED_abi-check     := $(NEED_lib) python3:python3 groff:groff-base abidw:abigail-tools abidiff:abigail-tools
NEED_abi-baseline  := $(NEED_abi-check)
NEED_keygen-check  := $(NEED_cc)
NEED_c-tests       := $(NEED_lib) $(firstword $(CXX)):$(patsubst c++,g++,$(notdir $(firstword $(CXX))))
NEED_c-test-plain  := $(NEED_c-tests)
NEED_c-test-asan   := $(NEED_c-tests)
NEED_c-test-valgrind := $(NEED_c-tests) valgrind:valgrind
NEED_stat-test     := $(NEED_examples) python3:python3
NEED_fault-test    := $(NEED_examples) python3:python3
NEED_mixed-test    := $(NEED_examples) git:git
NEED_demo          := $(NEED_examples)
NEED_bench         := $(NEED_lib) python3:python3
NEED_bench-check   := $(NEED_bench)
NEED_test          := $(foreach t,abi-check man-check keygen-check install-check deb-check c-test-plain \
                      c-test-asan c-test-valgrind stat-test fault-test mixed-test bench-check,$(NEED_$(t)))

# The COMMAND:PACKAGE pairs of the goals $(1) that are not on PATH.
needs_of    = $(sort $(foreach g,$(1),$(NEED_$(g))))
missing_for = $(if $(call needs_of,$(1)),$(shell for p in $(call needs_of,$(1)); do \
    command -v "$${p%%:*}" >/dev/null 2>&1 || echo "$$p"; done))
pkg_of     = $(word 2,$(subst :, ,$(1)))
empty      :=
GOALS      := $(or $(MAKECMDGOALS),all)
MISSING    := $(call missing_for,$(GOALS))
ifneq ($(MISSING),)
$(info make $(GOALS) needs commands that are not installed:)
$(foreach p,$(MISSING),$(info $(empty)  $(firstword $(subst :, ,$(p))) (Debian package $(call pkg_of,$(p)))))
$(info Install them with:)
$(info $(empty)  sudo apt-get install $(sort $(foreach p,$(MISSING),$(call pkg_of,$(p)))))
$(error missing prerequisites (above); nothing was built)
endif

.PHONY: all lib programs man man-check deb deb-check examples header header-check test rust-test lint c-tests c-test-plain \
        c-test-valgrind c-test-asan demo bench install clean fuzz fuzz-check install-check fault-test \
        abi-check abi-baseline keygen-check stat-test mixed-test bench-check missing-packages

FUZZ_SECONDS ?= 60
# cargo-fuzz needs unstable compiler flags; the stable toolchain allows them with this.
FUZZ_ENV   := RUSTC_BOOTSTRAP=1

all: lib programs examples

lib: $(LIBDIR)/$(SOFILE) $(LIBDIR)/libjunos-sync.a

RUST_A     := target/release/libjunos_sync.a
# The exported functions, each with its version node: abi/junos-sync.map is the one list.
MAP        := abi/junos-sync.map
# The compatibility symbols (name@OLD_NODE, an old version of a function kept for programs
# linked against it), one entry each with the old prototype: abi/README.md.
COMPAT     := abi/compat

$(RUST_A): $(RUST_SRC)
	$(CARGO) build --release --lib

# Linked from the staticlib by scripts/link-so.sh (rustc's cdylib link would leave the
# symbols without their version nodes); it writes a temporary file and renames it.
$(LIBDIR)/$(SOFILE): $(RUST_A) $(MAP) scripts/link-so.sh scripts/ld-version-script.sh
	mkdir -p $(LIBDIR)
	CC='$(CC)' ./scripts/link-so.sh $@ $(SONAME) $(MAP) $(RUST_A)
	ln -sf $(SOFILE) $(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(LIBDIR)/libjunos-sync.so

$(LIBDIR)/libjunos-sync.a: $(RUST_A)
	mkdir -p $(LIBDIR)
	cp $(RUST_A) $@.tmp && mv -f $@.tmp $@

# The ABI (abi/README.md): the header's functions, the map and the library's dynamic symbols
# (with their version nodes) are one set, plus the compatibility symbols of abi/compat; the
# ABI is compatible with every release of this soname recorded in abi/$(SONAME)/; a self-test
# on edited copies shows the checks fail incompatible changes and pass a new function; and a
# program built against 1.0 runs safely on the library. Each failure says what to edit.
abi-check: lib
	./scripts/check-exports.sh include/jnx/junos_sync.h $(MAP) $(COMPAT) $(LIBDIR)/$(SOFILE) $(RUST_A)
	mkdir -p $(BUILD)/abi
	./scripts/check-abi.sh include/jnx/junos_sync.h $(MAP) $(COMPAT) $(SONAME) abi $(BUILD)/abi/current.abi
	./scripts/abi-selftest.sh include/jnx/junos_sync.h $(MAP) $(COMPAT) $(SONAME) abi $(RUST_A)
	CC='$(CC)' ./scripts/check-compat-1.0.sh $(LIBDIR) $(BUILD)/abi-compat abi/$(SONAME)/1.0.0.abi

# Records this release's ABI (once per VERSION; a new soname starts its own directory).
abi-baseline: lib
	@if [ -e abi/$(SONAME)/$(VERSION).abi ]; then echo "abi/$(SONAME)/$(VERSION).abi exists:" \
	    "a released ABI is never rewritten (bump the version in Cargo.toml)"; exit 1; fi
	./scripts/check-exports.sh include/jnx/junos_sync.h $(MAP) $(COMPAT) $(LIBDIR)/$(SOFILE) $(RUST_A)
	mkdir -p $(BUILD)/abi abi/$(SONAME)
	if ls abi/$(SONAME)/*.abi >/dev/null 2>&1; then \
	    ./scripts/check-abi.sh include/jnx/junos_sync.h $(MAP) $(COMPAT) $(SONAME) abi $(BUILD)/abi/current.abi; \
	else \
	    ./scripts/check-abi.sh include/jnx/junos_sync.h $(MAP) $(COMPAT) $(SONAME) abi $(BUILD)/abi/current.abi 2>/dev/null || true; \
	fi
	cp $(BUILD)/abi/current.abi abi/$(SONAME)/$(VERSION).abi
	@echo "recorded abi/$(SONAME)/$(VERSION).abi: commit it"

programs: $(BINS)

$(BUILD)/bin/%: tools/%.c
	mkdir -p $(BUILD)/bin
	$(CC) $(CFLAGS_PROG) $< -o $@ $(LDFLAGS_PROG)

# junos-sync-stat is a crate of its own (tools/junos-sync-stat, its own Cargo.lock, not in the
# library's workspace), built in target/junos-sync-stat. Rust builds it PIE with full RELRO.
STAT       := tools/junos-sync-stat
STAT_CARGO := --manifest-path $(STAT)/Cargo.toml --target-dir target/junos-sync-stat --locked
STAT_SRC   := $(shell find $(STAT)/src -name '*.rs') $(STAT)/Cargo.toml $(STAT)/Cargo.lock src/engine/counters_list.rs
$(BUILD)/bin/junos-sync-stat: $(STAT_SRC)
	$(CARGO) build --release $(STAT_CARGO)
	mkdir -p $(BUILD)/bin
	cp target/junos-sync-stat/release/junos-sync-stat $@.tmp && mv -f $@.tmp $@

# Manual pages in build/man/man{1,3,7}. Section 3 is generated from the header's doc comments
# (one page per function, one per type; scripts/gen-man3.py), which also lists them for the
# overview junos-sync(7); sections 1 and 7 are written in scdoc (man/).
MAN        := $(BUILD)/man
MAN_EPOCH  := $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
MAN_DATE   := $(shell date -u -d @$(MAN_EPOCH) +%F)
MAN1       := $(addprefix $(MAN)/man1/,$(addsuffix .1,$(PROGRAMS)))
MAN7       := $(patsubst man/%.7.scd,$(MAN)/man7/%.7,$(wildcard man/*.7.scd))
man: $(MAN)/man3.stamp $(MAN1) $(MAN7)

$(MAN)/man3.stamp: include/jnx/junos_sync.h scripts/gen-man3.py scripts/header_api.py
	rm -rf $(MAN)/man3 && mkdir -p $(MAN)/man3
	python3 scripts/gen-man3.py --version $(VERSION) --date $(MAN_DATE) \
	    --index $(MAN)/api-index.scd include/jnx/junos_sync.h $(MAN)/man3
	touch $@

$(MAN)/man1/%.1: man/%.1.scd
	mkdir -p $(@D)
	SOURCE_DATE_EPOCH=$(MAN_EPOCH) scdoc <$< >$@.tmp && mv -f $@.tmp $@

$(MAN)/man7/junos-sync.7: man/junos-sync.7.scd $(MAN)/man3.stamp
	mkdir -p $(@D)
	sed -e '/^@API_INDEX@$$/{r $(MAN)/api-index.scd' -e 'd;}' $< | \
	    SOURCE_DATE_EPOCH=$(MAN_EPOCH) scdoc >$@.tmp && mv -f $@.tmp $@

man-check: man
	./scripts/check-man.sh include/jnx/junos_sync.h $(MAN) $(PROGRAMS)

# 32 bytes, mode 0600, no overwrite without -f, a new key each time.
keygen-check: $(BUILD)/bin/junos-sync-keygen
	./scripts/check-keygen.sh $<

# junos-sync-stat: its unit tests, then against flowd daemons with JUNOS_SYNC_STATUS_DIR set (a
# 1,000,000-entry resync followed through --json, the other outputs, the socket's mode, its
# removal at exit and switchover, a stale socket after SIGKILL).
stat-test: $(BUILD)/bin/junos-sync-stat examples
	$(CARGO) test --release --quiet $(STAT_CARGO)
	./tests/sh/stat.sh $(BUILD)/examples/flowd $(BUILD)/bin/junos-sync-stat

examples: $(EXAMPLES)

$(BUILD)/examples/%: examples/%.c $(wildcard examples/*.h) include/jnx/junos_sync.h lib
	mkdir -p $(BUILD)/examples
	$(CC) -std=c99 -D_GNU_SOURCE -O2 -g $(CWARN) -Iinclude -Iexamples $< -o $@ $(LDFLAGS_T)

# flowd --loop=eventlib runs on the tests' ISC eventlib (one source file: c-tests/eventlib.c,
# <isc/eventlib.h> from c-tests/), exported with -rdynamic for the library's dlsym. On Junos
# the SDK's libisc is the eventlib.
$(BUILD)/examples/flowd: examples/flowd.c $(wildcard examples/*.h) c-tests/eventlib.c c-tests/isc/eventlib.h include/jnx/junos_sync.h lib
	mkdir -p $(BUILD)/examples
	$(CC) -std=c99 -D_GNU_SOURCE -O2 -g $(CWARN) -Iinclude -Iexamples -Ic-tests $< c-tests/eventlib.c -o $@ -rdynamic $(LDFLAGS_T)

header:
	JUNOS_SYNC_BLESS=1 $(CARGO) test --quiet --test header

header-check:
	$(CARGO) test --quiet --test header

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) fmt --check --manifest-path $(STAT)/Cargo.toml
	$(CARGO) clippy --all-targets $(STAT_CARGO) -- -D warnings

# Every engine test runs in thread mode and in dispatch mode (NAME::thread, NAME::dispatch:
# tests/common/mode.rs), each TLV checked by identity (tests/common/ledger.rs). Deadlines scale
# with JUNOS_SYNC_TEST_TIME_SCALE (default 1).
rust-test:
	$(CARGO) test --release

# Every test program is linked with the harness (c-tests/harness.c), built once per flavour.
HARNESS_DEPS := c-tests/harness.c c-tests/harness.h include/jnx/junos_sync.h c-tests/isc/eventlib.h

$(BUILD)/c-tests/harness.o: $(HARNESS_DEPS)
	mkdir -p $(BUILD)/c-tests
	$(CC) $(CFLAGS_T) -c $< -o $@

$(BUILD)/c-tests-san/harness.o: $(HARNESS_DEPS)
	mkdir -p $(BUILD)/c-tests-san
	$(CC) $(CFLAGS_T) $(SAN) -c $< -o $@

$(BUILD)/c-tests/%: c-tests/%.c $(BUILD)/c-tests/harness.o $(C_TEST_DEPS) lib
	$(CC) $(CFLAGS_T) $< $(BUILD)/c-tests/harness.o -o $@ $(LDFLAGS_T)

$(BUILD)/c-tests-san/%: c-tests/%.c $(BUILD)/c-tests-san/harness.o $(C_TEST_DEPS) lib
	$(CC) $(CFLAGS_T) $(SAN) $< $(BUILD)/c-tests-san/harness.o -o $@ $(LDFLAGS_T)

# test_eventlib runs its daemons on the ISC eventlib stand-in (c-tests/eventlib.c, also
# flowd's), exported with -rdynamic so that the library finds evSelectFD/evDeselectFD with
# dlsym. The other test programs do not have them: a process without eventlib.
EVENTLIB_SRC := c-tests/eventlib.c
$(BUILD)/c-tests/test_eventlib: c-tests/test_eventlib.c $(EVENTLIB_SRC) $(BUILD)/c-tests/harness.o $(C_TEST_DEPS) lib
	$(CC) $(CFLAGS_T) $< $(EVENTLIB_SRC) $(BUILD)/c-tests/harness.o -o $@ -rdynamic $(LDFLAGS_T)

$(BUILD)/c-tests-san/test_eventlib: c-tests/test_eventlib.c $(EVENTLIB_SRC) $(BUILD)/c-tests-san/harness.o $(C_TEST_DEPS) lib
	$(CC) $(CFLAGS_T) $(SAN) $< $(EVENTLIB_SRC) $(BUILD)/c-tests-san/harness.o -o $@ -rdynamic $(LDFLAGS_T)

# The header must compile as C99 (the tests), C11 and C++17 with ISC eventlib's header included
# before it (header_compile.c), after it (header_order_after.c) or not at all
# (header_order_none.c, built without -Ic-tests so no <isc/eventlib.h> is on the path).
HEADER_CHECKS := $(foreach o,compile order_after order_none,$(foreach l,c11 cxx17,$(BUILD)/c-tests/header_$(o)_$(l)))

c-tests: $(C_TESTS) $(C_TESTS_SAN) $(HEADER_CHECKS)

$(BUILD)/c-tests/header_%_c11: c-tests/header_%.c $(C_TEST_DEPS)
	mkdir -p $(BUILD)/c-tests
	$(CC) -std=c11 $(CWARN) -Iinclude $(if $(findstring none,$*),,-Ic-tests) -c $< -o $@.o && touch $@
$(BUILD)/c-tests/header_%_cxx17: c-tests/header_%.c $(C_TEST_DEPS)
	mkdir -p $(BUILD)/c-tests
	$(CXX) -std=c++17 -x c++ $(CWARN) -Iinclude $(if $(findstring none,$*),,-Ic-tests) -c $< -o $@.o && touch $@

# The suite runs in thread mode unkeyed and keyed (JSYNC_TEST_KEYED=1), and in dispatch mode
# (JSYNC_TEST_DISPATCH=1: every context's callbacks on an application thread that polls
# junos_sync_get_fd's descriptor and calls junos_sync_dispatch, c-tests/harness.h) unkeyed
# under every runner and keyed plainly (keys and dispatch are independent; the keyed dispatch
# run under the slow runners would add minutes for little). test_eventlib runs its own
# eventlib loops whatever the mode, so the dispatch runs leave it out.
C_TESTS_DISPATCH     := $(filter-out %/test_eventlib,$(C_TESTS))
C_TESTS_SAN_DISPATCH := $(filter-out %/test_eventlib,$(C_TESTS_SAN))

c-test-plain: c-tests
	./c-tests/run.sh plain $(C_TESTS)
	JSYNC_TEST_KEYED=1 ./c-tests/run.sh plain $(C_TESTS)
	JSYNC_TEST_DISPATCH=1 ./c-tests/run.sh plain $(C_TESTS_DISPATCH)
	JSYNC_TEST_DISPATCH=1 JSYNC_TEST_KEYED=1 ./c-tests/run.sh plain $(C_TESTS_DISPATCH)

# The valgrind command line (memcheck options) is defined in c-tests/run.sh, and only there.
c-test-valgrind: c-tests
	./c-tests/run.sh valgrind $(C_TESTS)
	JSYNC_TEST_KEYED=1 ./c-tests/run.sh valgrind $(C_TESTS)
	JSYNC_TEST_DISPATCH=1 ./c-tests/run.sh valgrind $(C_TESTS_DISPATCH)

c-test-asan: c-tests
	./c-tests/run.sh asan $(C_TESTS_SAN)
	JSYNC_TEST_KEYED=1 ./c-tests/run.sh asan $(C_TESTS_SAN)
	JSYNC_TEST_DISPATCH=1 ./c-tests/run.sh asan $(C_TESTS_SAN_DISPATCH)

# The fuzz targets must keep compiling; `make fuzz` runs them.
fuzz-check:
	$(FUZZ_ENV) $(CARGO) check --quiet --manifest-path fuzz/Cargo.toml --bins

fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	for t in frames handshake keyed; do \
	  $(FUZZ_ENV) $(CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

# `make install` into a scratch prefix, then build and run a daemon against the installed tree
# with pkg-config, once with the shared and once with the static library; first, that a missing
# prerequisite stops it before anything happens.
INST := $(abspath $(BUILD)/install-check)
install-check: lib programs
	rm -rf $(INST)
	# A missing command stops make install before it builds or copies anything, saying what to
	# install (here a command that exists nowhere, in place of the pages' tools).
	! $(MAKE) --no-print-directory install PREFIX=$(INST) NEED_man=jsync-no-such-command:jsync-no-such-package \
	    >$(BUILD)/need.out 2>&1
	grep -q '^  sudo apt-get install jsync-no-such-package$$' $(BUILD)/need.out && test ! -e $(INST)
	$(MAKE) --no-print-directory install PREFIX=$(INST) >/dev/null
	test -L $(INST)/lib/libjunos-sync.so && test -L $(INST)/lib/$(SONAME)
	readelf -d $(INST)/lib/$(SOFILE) | grep -q 'SONAME.*\[$(SONAME)\]'
	for p in $(PROGRAMS); do test -x $(INST)/bin/$$p || { echo "$$p not installed"; exit 1; }; done
	MANPATH=$(INST)/share/man man -w junos_sync_queue >/dev/null
	MANPATH=$(INST)/share/man man -w junos_sync_ack_notify_func_t >/dev/null
	# Stripped, with its debug info where the debuglink says.
	! readelf -S $(INST)/lib/$(SOFILE) | grep -q '\.debug_' || { echo "installed library not stripped"; exit 1; }
	readelf --string-dump=.gnu_debuglink $(INST)/lib/$(SOFILE) | grep -q '$(SOFILE)\.debug'
	readelf -S $(INST)/lib/debug$(INST)/lib/$(SOFILE).debug | grep -q '\.debug_line'
	PKG_CONFIG_PATH=$(INST)/lib/pkgconfig sh -c '$(CC) -std=c99 -D_GNU_SOURCE $(CWARN) c-tests/test_layout.c c-tests/harness.c -Ic-tests \
	    $$(pkg-config --cflags --libs junos-sync) -lpthread -o $(INST)/layout-shared'
	LD_LIBRARY_PATH=$(INST)/lib $(INST)/layout-shared >/dev/null
	PKG_CONFIG_PATH=$(INST)/lib/pkgconfig sh -c '$(CC) -std=c99 -D_GNU_SOURCE $(CWARN) c-tests/test_layout.c c-tests/harness.c -Ic-tests \
	    $$(pkg-config --cflags junos-sync) $(INST)/lib/libjunos-sync.a $$(pkg-config --static --libs-only-l junos-sync | sed s/-ljunos-sync//) \
	    -o $(INST)/layout-static'
	$(INST)/layout-static >/dev/null
	@echo "install-check: shared and static builds against the installed tree run"

# Debian packages in build/deb (scripts/build-deb.sh, deb/): the library, -dev, -tools.
deb: lib programs man
	rm -rf $(BUILD)/deb && mkdir -p $(BUILD)/deb
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(BUILD)/deb/install) PREFIX=/usr \
	    libdir=/usr/lib/$$(dpkg-architecture -qDEB_HOST_MULTIARCH) >/dev/null
	./scripts/build-deb.sh $(BUILD)/deb $(BUILD)/deb/install $(VERSION) $(SONAME) $(MAP) $(COMPAT) $(PROGRAMS)

# lintian (no errors; warnings shown), then install the packages, build and run flowd against
# them with pkg-config, find the man pages, purge them (skipped without root or apt-get).
deb-check: deb
	lintian --fail-on error --info $(BUILD)/deb/*.deb
	@echo "deb-check: lintian reports no errors"
	./scripts/check-deb-install.sh $(BUILD)/deb

# Process faults (SIGKILL, SIGSTOP of either side, switchover), a network-namespace partition,
# and addresses between namespaces (link-local, dual stack, host names, a resolver that hangs),
# on real flowd daemons; the namespace tests report themselves skipped where namespaces are not
# allowed. All run twice: unkeyed, and keyed through JUNOS_SYNC_AUTH_KEY_FILE
# (tests/sh/with_key.sh).
fault-test: examples
	./tests/sh/process_faults.sh $(BUILD)/examples/flowd
	./tests/sh/netns_partition.sh $(BUILD)/examples/flowd
	./tests/sh/netns_addresses.sh $(BUILD)/examples/flowd
	./tests/sh/with_key.sh ./tests/sh/process_faults.sh $(BUILD)/examples/flowd
	./tests/sh/with_key.sh ./tests/sh/netns_partition.sh $(BUILD)/examples/flowd
	./tests/sh/with_key.sh ./tests/sh/netns_addresses.sh $(BUILD)/examples/flowd

# This library and release 1.1.0 replicate with each other in both roles, unkeyed and keyed
# (tests/sh/mixed_versions.sh: resync, stream, partial resync after a cut, the upgrade by
# switchover). 1.1.0 is built from this repository's history, its release commit below (the
# full hash, so that neither a tag nor a message search is needed; a clone without it fails
# saying so), with its own Makefile into $(COMPAT_DIR), once: scripts/build-release.sh reuses
# a build of the same commit and toolchain.
COMPAT_VERSION := 1.1.0
COMPAT_COMMIT  := ecababba70f5f67edc7e5523a330adbdefeecc0e
COMPAT_DIR     := $(BUILD)/compat/$(COMPAT_VERSION)
mixed-test: examples
	CARGO='$(CARGO)' CC='$(CC)' ./scripts/build-release.sh $(COMPAT_COMMIT) $(COMPAT_VERSION) $(COMPAT_DIR)
	./tests/sh/mixed_versions.sh $(BUILD)/examples/flowd $(COMPAT_DIR)/build/examples/flowd
	./tests/sh/with_key.sh ./tests/sh/mixed_versions.sh $(BUILD)/examples/flowd $(COMPAT_DIR)/build/examples/flowd
	@# A program built against 1.1.0's header and library keeps its eight-field stats on this one.
	$(CC) -std=c99 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -I$(COMPAT_DIR)/include c-tests/abi_compat_1_1.c \
	    -o $(BUILD)/abi_compat_1_1 -L$(COMPAT_DIR)/build/lib -ljunos-sync
	readelf --dyn-syms --wide $(BUILD)/abi_compat_1_1 | grep -q 'junos_sync_get_stats@JUNOS_SYNC_1.1' || \
	    { echo "abi_compat_1_1 does not reference junos_sync_get_stats@JUNOS_SYNC_1.1" >&2; exit 1; }
	LD_LIBRARY_PATH=$(LIBDIR) $(BUILD)/abi_compat_1_1

test: header-check lint fuzz-check abi-check man-check keygen-check rust-test install-check deb-check c-test-plain c-test-asan c-test-valgrind stat-test fault-test mixed-test bench-check

demo: all
	./examples/demo.sh $(BUILD)/examples/flowd

# The library's file name comes from here (bench/run.sh derives the same when run alone).
bench: lib
	BENCH_SOFILE=$(SOFILE) ./bench/run.sh

# Every bench program and case once, at a tenth of its counts, into a directory of its own:
# each run verifies what it measured (counts, order, checksums, exactly-once frees, the
# backlog's charge), so a program that no longer matches the library fails here, not in the
# next make bench. No figure is judged (that is make bench's job); no ZeroMQ install.
bench-check: lib
	BENCH_SOFILE=$(SOFILE) BENCH_OUT=$(BUILD)/bench-check BENCH_RUNS=1 BENCH_QUICK=1 BENCH_NO_APT=1 \
	    ./bench/run.sh > $(BUILD)/bench-check.log || { tail -n 30 $(BUILD)/bench-check.log; exit 1; }

# The shared library goes in stripped, its debug info (compressed) under $(debugdir), linked
# by .gnu_debuglink; the static library without debug info (as Debian ships them). Every
# library is written to a temporary name and renamed: a running program's mapped library is
# never overwritten in place.
DBG := $(DESTDIR)$(debugdir)$(libdir)
install: lib programs man
	install -d $(DESTDIR)$(libdir)/pkgconfig $(DESTDIR)$(includedir)/jnx $(DESTDIR)$(bindir) $(DBG) \
	    $(DESTDIR)$(mandir)/man1 $(DESTDIR)$(mandir)/man3 $(DESTDIR)$(mandir)/man7
	objcopy --only-keep-debug --compress-debug-sections $(LIBDIR)/$(SOFILE) $(DBG)/$(SOFILE).debug
	chmod 0644 $(DBG)/$(SOFILE).debug
	strip --strip-unneeded --remove-section=.comment --remove-section=.note \
	    -o $(DESTDIR)$(libdir)/$(SOFILE).tmp $(LIBDIR)/$(SOFILE)
	objcopy --add-gnu-debuglink=$(DBG)/$(SOFILE).debug $(DESTDIR)$(libdir)/$(SOFILE).tmp
	chmod 0644 $(DESTDIR)$(libdir)/$(SOFILE).tmp
	mv -f $(DESTDIR)$(libdir)/$(SOFILE).tmp $(DESTDIR)$(libdir)/$(SOFILE)
	ln -sf $(SOFILE) $(DESTDIR)$(libdir)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(libdir)/libjunos-sync.so
	strip --strip-debug --enable-deterministic-archives --remove-section=.comment \
	    -o $(DESTDIR)$(libdir)/libjunos-sync.a.tmp $(LIBDIR)/libjunos-sync.a
	chmod 0644 $(DESTDIR)$(libdir)/libjunos-sync.a.tmp
	mv -f $(DESTDIR)$(libdir)/libjunos-sync.a.tmp $(DESTDIR)$(libdir)/libjunos-sync.a
	install -m 0644 include/jnx/junos_sync.h $(DESTDIR)$(includedir)/jnx/junos_sync.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(libdir)|g' -e 's|@INCLUDEDIR@|$(includedir)|g' \
	    -e 's|@VERSION@|$(VERSION)|g' junos-sync.pc.in > $(DESTDIR)$(libdir)/pkgconfig/junos-sync.pc
	chmod 0644 $(DESTDIR)$(libdir)/pkgconfig/junos-sync.pc
	for p in $(PROGRAMS); do \
	    strip --strip-unneeded --remove-section=.comment --remove-section=.note \
	        -o $(DESTDIR)$(bindir)/$$p.tmp $(BUILD)/bin/$$p && chmod 0755 $(DESTDIR)$(bindir)/$$p.tmp && \
	    mv -f $(DESTDIR)$(bindir)/$$p.tmp $(DESTDIR)$(bindir)/$$p || exit 1; done
	# Pages and the links between them (cp -P keeps a link a link).
	for s in 1 3 7; do \
	    for f in $(MAN)/man$$s/*.$$s; do [ -L "$$f" ] || install -m 0644 "$$f" $(DESTDIR)$(mandir)/man$$s/; done; \
	    for f in $(MAN)/man$$s/*.$$s; do [ ! -L "$$f" ] || cp -P "$$f" $(DESTDIR)$(mandir)/man$$s/; done; \
	done

clean:
	rm -rf $(BUILD)
	$(CARGO) clean

# The Debian packages of the commands the targets in FOR need and this machine lacks (see
# "Prerequisites" above), on one line; .ci/run installs them.
FOR ?= test
missing-packages:
	@echo $(sort $(foreach p,$(call missing_for,$(FOR)),$(call pkg_of,$(p))))
