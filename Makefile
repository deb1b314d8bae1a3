# junos-sync: build, test, demo, bench, install.
#   make            library (build/lib) and examples (build/examples)
#   make test       the one gate: header drift, fmt, clippy, cargo tests, C tests plain,
#                   under valgrind memcheck, and with ASan+UBSan
#   make demo       master/backup daemons replicating a flow table on loopback
#   make bench      benchmarks (not part of test)
#   make install PREFIX=/usr/local

PREFIX     ?= /usr/local
CARGO      ?= cargo
CC         ?= cc
CXX        ?= c++
BUILD      := build
LIBDIR     := $(BUILD)/lib
SONAME     := libjunos-sync.so.1
SOFILE     := libjunos-sync.so.1.0.0
VERSION    := 1.0.0
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

.PHONY: all lib examples header header-check test rust-test lint c-tests c-test-plain \
        c-test-valgrind c-test-asan demo bench install clean fuzz fuzz-check install-check fault-test

FUZZ_SECONDS ?= 60
# cargo-fuzz needs unstable compiler flags; the stable toolchain allows them with this.
FUZZ_ENV   := RUSTC_BOOTSTRAP=1

all: lib examples

lib: $(LIBDIR)/$(SOFILE) $(LIBDIR)/libjunos-sync.a

# The shared library is linked from the staticlib with abi/junos-sync.map: symbol versions,
# and nothing exported but the C API (rustc's own cdylib link cannot take a version script).
$(LIBDIR)/$(SOFILE) $(LIBDIR)/libjunos-sync.a: $(RUST_SRC) abi/junos-sync.map
	$(CARGO) build --release --lib
	mkdir -p $(LIBDIR)
	# Write then rename: overwriting a mapped library in place kills the programs using it.
	$(CC) -shared -o $(LIBDIR)/$(SOFILE).tmp -Wl,--whole-archive target/release/libjunos_sync.a \
	    -Wl,--no-whole-archive -Wl,--version-script=abi/junos-sync.map -Wl,--gc-sections \
	    -Wl,-soname,$(SONAME) -Wl,-z,relro,-z,now -lpthread -ldl -lgcc_s -lm -lc
	mv -f $(LIBDIR)/$(SOFILE).tmp $(LIBDIR)/$(SOFILE)
	cp target/release/libjunos_sync.a $(LIBDIR)/libjunos-sync.a.tmp && mv -f $(LIBDIR)/libjunos-sync.a.tmp $(LIBDIR)/libjunos-sync.a
	ln -sf $(SOFILE) $(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(LIBDIR)/libjunos-sync.so

examples: $(EXAMPLES)

$(BUILD)/examples/%: examples/%.c $(wildcard examples/*.h) include/jnx/junos_sync.h lib
	mkdir -p $(BUILD)/examples
	$(CC) -std=c99 -D_GNU_SOURCE -O2 -g $(CWARN) -Iinclude -Iexamples $< -o $@ $(LDFLAGS_T)

header:
	JUNOS_SYNC_BLESS=1 $(CARGO) test --quiet --test header

header-check:
	$(CARGO) test --quiet --test header

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

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

c-test-plain: c-tests
	./c-tests/run.sh plain $(C_TESTS)

# The valgrind command line (memcheck options) is defined in c-tests/run.sh, and only there.
c-test-valgrind: c-tests
	./c-tests/run.sh valgrind $(C_TESTS)

c-test-asan: c-tests
	./c-tests/run.sh asan $(C_TESTS_SAN)

# The fuzz targets must keep compiling; `make fuzz` runs them.
fuzz-check:
	$(FUZZ_ENV) $(CARGO) check --quiet --manifest-path fuzz/Cargo.toml --bins

fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	for t in frames handshake keyed; do \
	  $(FUZZ_ENV) $(CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

# `make install` into a scratch prefix, then build and run a daemon against the installed tree
# with pkg-config, once with the shared and once with the static library.
INST := $(abspath $(BUILD)/install-check)
install-check: lib
	rm -rf $(INST)
	$(MAKE) --no-print-directory install PREFIX=$(INST) >/dev/null
	test -L $(INST)/lib/libjunos-sync.so && test -L $(INST)/lib/$(SONAME)
	readelf -d $(INST)/lib/$(SOFILE) | grep -q 'SONAME.*\[$(SONAME)\]'
	PKG_CONFIG_PATH=$(INST)/lib/pkgconfig sh -c '$(CC) -std=c99 -D_GNU_SOURCE $(CWARN) c-tests/test_layout.c c-tests/harness.c -Ic-tests \
	    $$(pkg-config --cflags --libs junos-sync) -lpthread -o $(INST)/layout-shared'
	LD_LIBRARY_PATH=$(INST)/lib $(INST)/layout-shared >/dev/null
	PKG_CONFIG_PATH=$(INST)/lib/pkgconfig sh -c '$(CC) -std=c99 -D_GNU_SOURCE $(CWARN) c-tests/test_layout.c c-tests/harness.c -Ic-tests \
	    $$(pkg-config --cflags junos-sync) $(INST)/lib/libjunos-sync.a $$(pkg-config --static --libs-only-l junos-sync | sed s/-ljunos-sync//) \
	    -o $(INST)/layout-static'
	$(INST)/layout-static >/dev/null
	@echo "install-check: shared and static builds against the installed tree run"

# Process faults (SIGKILL, SIGSTOP of either side, switchover) and a network-namespace partition,
# on real flowd daemons; the partition reports itself skipped where namespaces are not allowed.
fault-test: examples
	./tests/sh/process_faults.sh $(BUILD)/examples/flowd
	./tests/sh/netns_partition.sh $(BUILD)/examples/flowd

test: header-check lint fuzz-check rust-test install-check c-test-plain c-test-asan c-test-valgrind fault-test

demo: all
	./examples/demo.sh $(BUILD)/examples/flowd

bench: lib
	./bench/run.sh

install: lib
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/jnx $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0755 $(LIBDIR)/$(SOFILE) $(DESTDIR)$(PREFIX)/lib/$(SOFILE)
	ln -sf $(SOFILE) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libjunos-sync.so
	install -m 0644 $(LIBDIR)/libjunos-sync.a $(DESTDIR)$(PREFIX)/lib/libjunos-sync.a
	install -m 0644 include/jnx/junos_sync.h $(DESTDIR)$(PREFIX)/include/jnx/junos_sync.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' junos-sync.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/junos-sync.pc

clean:
	rm -rf $(BUILD)
	$(CARGO) clean
