/*
 * Shared helpers for the junos-sync C tests: declared here, defined once in harness.c, which the
 * Makefile builds once per flavour (plain, sanitizers) and links into every test program.
 *
 *   - a tiny runner: RUN(fn) prints "TEST fn ... ok" / "TEST fn ... FAILED", h_summary() prints
 *     "N passed, N failed" alone on the last line; each test runs in a forked process that is
 *     killed past its deadline (a deadlock or a crash fails that test, not the program);
 *   - CHECK* macros that record failures with file:line (safe from any thread, callbacks included);
 *   - WAIT_UNTIL(expr, ms) / wait_until(fn, arg, ms): poll a condition with a short nanosleep up to
 *     a deadline (deadlines are multiplied by JSYNC_TEST_TIMEOUT_MULT, e.g. under valgrind);
 *   - h_malloc/h_free: counting allocator (atomic counters, a header magic that catches double
 *     and foreign frees) for sync_malloc_func/sync_free_func;
 *   - h_table_t: thread-safe open-addressing table uint32 id -> record, with an order-independent
 *     digest kept up to date on every change (used on both master and backup side);
 *   - TLV builders for a record payload in network byte order;
 *   - log_msg(fmt, ...): the variadic log callback (prints to stderr with a prefix, remembers the
 *     recent lines, counts calls whose format is not "%s").
 *
 *   - dispatch mode (JSYNC_TEST_DISPATCH=1): every context a test starts runs its callbacks on
 *     an application thread of the harness that watches junos_sync_get_fd's descriptor with
 *     poll(2) and calls junos_sync_dispatch, as an application's event loop would (see
 *     "Dispatch mode" below); the tests' code is the same in both modes.
 *
 * Knobs (environment): JSYNC_TEST_SCALE (multiplies record counts, default 1),
 * JSYNC_TEST_TIMEOUT_MULT (multiplies deadlines, default 1), JSYNC_TEST_QUIET=1 (library log
 * lines are recorded but not printed), JSYNC_TEST_NOFORK=1 (run tests in-process, for gdb),
 * JSYNC_TEST_DISPATCH=1 (dispatch mode), JSYNC_TEST_RUNNER (set by run.sh: plain, asan or
 * valgrind; h_runner() reads it).
 * A test program's first argument, if any, runs only the tests whose name contains it.
 */
#ifndef JSYNC_C_TESTS_HARNESS_H
#define JSYNC_C_TESTS_HARNESS_H

#include <jnx/junos_sync.h>

/* System headers the tests rely on (and the declarations below need). */
#include <arpa/inet.h>
#include <endian.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Atomics (GCC/Clang builtins: the tests are built as C99). */
#define H_LOAD(x) __atomic_load_n(&(x), __ATOMIC_SEQ_CST)
#define H_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_SEQ_CST)
#define H_ADD(x, v) __atomic_add_fetch(&(x), (v), __ATOMIC_SEQ_CST)
#define H_INC(x) H_ADD(x, 1)
#define H_DEC(x) __atomic_sub_fetch(&(x), 1, __ATOMIC_SEQ_CST)

/* Time and knobs. h_tmo: a length of time in ms stretched by JSYNC_TEST_TIMEOUT_MULT, which
 * run.sh sets per mode (larger under valgrind and ASan). Every deadline and every time bound a
 * test asserts goes through it: none is a fixed number of ms that a slow run can break.
 * h_scaled_min: n scaled by JSYNC_TEST_SCALE, at least `min`. */
int64_t h_now_us(void);
int64_t h_now_ms(void);
void h_sleep_us(long us);
double h_env_double(const char *name, double def); /* $name if a positive number, else def */
int64_t h_tmo(int64_t ms);
size_t h_scaled_min(size_t n, size_t min);
size_t h_scaled(size_t n);

/* Runner. h_init parses argv and the environment; RUN(fn) runs one test in a forked process of
 * its own (a crash, a sanitizer abort or a deadlock fails that test only, and valgrind/ASan report
 * per test), killed after 60 s or RUN_T's `secs` (scaled by h_tmo); h_summary prints the summary
 * line and returns the process exit status. h_skip(why), from a test before it does anything,
 * ends it as skipped: "TEST fn ... skipped (why)", counted apart and not as a failure. */
void h_init(int argc, char **argv);
void h_run(const char *name, void (*fn)(void), int timeout_s);
int h_summary(void);
void h_skip(const char *why);
#define RUN(fn) h_run(#fn, fn, 60)
#define RUN_T(fn, secs) h_run(#fn, fn, secs)
/* How run.sh runs this program: "plain", "asan", "valgrind" (JSYNC_TEST_RUNNER; "plain" when
 * unset). */
const char *h_runner(void);

/* Checks. h_fail records a failure of the running test; h_note prints an informational line on
 * stdout (kept with the test output); h_failures counts the running test's failures so far. */
void h_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void h_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
long h_failures(void);
typedef enum { H_CMP_EQ, H_CMP_NE, H_CMP_LE } h_cmp_t;
void h_check_cmp(const char *file, int line, h_cmp_t op, const char *a_src, const char *b_src,
                 long long a, long long b);

#define CHECK(c) do { if (!(c)) h_fail(__FILE__, __LINE__, "CHECK(%s)", #c); } while (0)
#define CHECK_MSG(c, ...) do { if (!(c)) h_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define H_CHECK_CMP_(op, as, bs, a, b) \
    h_check_cmp(__FILE__, __LINE__, op, as, bs, (long long)(a), (long long)(b))
/* (stringified here, not in H_CHECK_CMP_, so that the message shows `a` as written) */
#define CHECK_EQ(a, b) H_CHECK_CMP_(H_CMP_EQ, #a, #b, a, b)
#define CHECK_NE(a, b) H_CHECK_CMP_(H_CMP_NE, #a, #b, a, b)
#define CHECK_LE(a, b) H_CHECK_CMP_(H_CMP_LE, #a, #b, a, b)

/* Records the failure and leaves the test function (use where going on makes no sense). */
#define REQUIRE(c) \
    do { if (!(c)) { h_fail(__FILE__, __LINE__, "REQUIRE(%s)", #c); return; } } while (0)

/* Polls `expr` every millisecond until it is true or `ms` (scaled by h_tmo) have passed; the
 * value is the last evaluation of `expr` (a GNU statement expression). */
#define WAIT_UNTIL(expr, ms)                                                                  \
    __extension__({                                                                           \
        int64_t h_dl_ = h_now_ms() + h_tmo(ms);                                               \
        bool h_ok_;                                                                           \
        while (!(h_ok_ = (expr)) && h_now_ms() < h_dl_)                                       \
            h_sleep_us(1000);                                                                 \
        h_ok_;                                                                                \
    })

/* Function form: polls cond(arg) until true or deadline_ms (scaled) have passed. */
bool wait_until(bool (*cond)(void *), void *arg, int64_t deadline_ms);

/* Waits for `expr` and records a failure naming it if it never became true. */
#define CHECK_WAIT(expr, ms)                                                                  \
    do {                                                                                      \
        if (!WAIT_UNTIL(expr, ms))                                                            \
            h_fail(__FILE__, __LINE__, "timed out after %lld ms waiting for %s",              \
                   (long long)h_tmo(ms), #expr);                                              \
    } while (0)

/* Counting allocator (counters atomic). h_block_live: whether p is a live h_malloc block (only
 * for blocks not yet handed to libc's free); h_alloc_reset zeroes the counters and the hook. */
extern long h_allocs;     /* blocks handed out by h_malloc */
extern long h_frees;      /* blocks given back through h_free */
extern long h_bad_frees;  /* h_free of a pointer that is not a live h_malloc block */
extern long h_null_frees; /* h_free(NULL) */
/* Called by h_free with the pointer just before the block is released (may be NULL). */
extern void (*h_free_hook)(void *p);
void *h_malloc(size_t n);
void h_free(void *p);
bool h_block_live(const void *p);
long h_alloc_outstanding(void);
void h_alloc_reset(void);

/* Every block freed exactly once: waits (with a deadline) for the counters to balance. */
void h_check_alloc_balanced(const char *file, int line, int64_t ms);
#define CHECK_ALLOC_BALANCED(ms) h_check_alloc_balanced(__FILE__, __LINE__, ms)

/* Log callback; h_log_contains: whether one of the recent lines contains `needle`;
 * h_log_count_matching: how many of the recent lines (the last 128) contain it;
 * h_log_count: lines logged. */
extern long h_log_bad_fmt; /* atomic: calls whose format was not "%s" */
void log_msg(const char *fmt, ...);
bool h_log_contains(const char *needle);
long h_log_count_matching(const char *needle);
long h_log_count(void);

/* Per-context callback bookkeeping (callbacks have no user data: each test keeps one of these
 * per context in a global). Every loop-thread callback of a context starts with h_cb_enter and
 * ends with h_cb_leave; h_cb_conn is the sync_conn_status_change_func bookkeeping. In dispatch
 * mode a callback that does not run on one of the harness's application threads also counts as
 * wrong_thread. */
typedef struct {
    long in_cb;        /* callbacks running now */
    long overlap;      /* a callback started while another ran (must stay 0) */
    long after_exit;   /* callbacks after junos_sync_exit (must stay 0) */
    long wrong_thread; /* a callback not on the context's loop thread */
    long bad_updown;   /* UP while up, or DOWN while down */
    long up, down;
    int is_up;
    int exited;        /* set once junos_sync_exit was called */
    int have_loop;
    pthread_t loop;
} h_cbstat_t;

void h_cb_enter(h_cbstat_t *s);
void h_cb_leave(h_cbstat_t *s);
void h_cb_conn(h_cbstat_t *s, junos_sync_conn_status_t st);

/* The invariants every context must keep; call after its junos_sync_exit. */
void h_check_cbstat(const char *file, int line, const char *s_src, h_cbstat_t *s);
#define CHECK_CBSTAT(s) h_check_cbstat(__FILE__, __LINE__, #s, s)

/* The application's table, uint32 id -> record (see harness.c). The digest (count, sum and xor
 * of a 64-bit hash per live entry) does not depend on order. */
typedef struct { uint32_t id, ver; uint64_t val; } h_rec_t;
typedef struct { uint64_t count, sum, xr; } h_digest_t;

typedef struct {
    pthread_mutex_t mu;
    size_t cap;    /* power of two */
    size_t keys;   /* slots not empty */
    struct h_slot *slots;
    h_digest_t d;
} h_table_t;

void h_table_init(h_table_t *t, size_t max_keys); /* for at most max_keys ids over its life */
void h_table_destroy(h_table_t *t);
void h_table_put(h_table_t *t, const h_rec_t *r);
bool h_table_del(h_table_t *t, uint32_t id);
bool h_table_get(h_table_t *t, uint32_t id, h_rec_t *out); /* out may be NULL */
void h_table_clear(h_table_t *t);
h_digest_t h_table_digest(h_table_t *t);
size_t h_table_count(h_table_t *t);
bool h_digest_eq(h_digest_t a, h_digest_t b);
bool h_tables_equal(h_table_t *a, h_table_t *b); /* same entries (by digest) */
/* Walk in slot order. first: the first live entry; else the first live entry after the slot of
 * `after_id`. Returns false at the end, or (with *bad set) if after_id was never in the table. */
bool h_table_next(h_table_t *t, bool first, uint32_t after_id, h_rec_t *out, bool *bad);

void h_check_tables_equal(const char *file, int line, const char *a_src, const char *b_src,
                          h_table_t *a, h_table_t *b);
#define CHECK_TABLES_EQUAL(a, b) h_check_tables_equal(__FILE__, __LINE__, #a, #b, a, b)

/* Records on the wire: a fixed header in network byte order, then `extra` pattern bytes that the
 * receiver verifies. TLVs come from the counting allocator. */
enum { H_OP_PUT = 1, H_OP_DEL = 2, H_OP_WALK = 3 };

#define H_TLV_TYPE_REC 0x4a530001u

typedef struct {
    uint32_t op;   /* H_OP_* */
    uint32_t id;
    uint32_t ver;
    uint32_t aux;  /* test-defined (thread number, flags) */
    uint64_t val;
    uint64_t seq;  /* test-defined sequence number */
} h_wire_t;

junos_sync_tlv_t *h_tlv_alloc(uint32_t type, size_t len); /* header filled, payload zeroed */
junos_sync_tlv_t *h_tlv_new(uint32_t type, const void *payload, size_t len);
void h_wire_encode(void *p, const h_wire_t *w, size_t extra);
junos_sync_tlv_t *h_tlv_wire(const h_wire_t *w, size_t extra);
junos_sync_tlv_t *h_tlv_rec(uint32_t op, const h_rec_t *r, uint64_t seq, uint32_t aux,
                            size_t extra);
/* false if the payload is too short or its pattern bytes are wrong */
bool h_wire_decode(const void *data, size_t len, h_wire_t *out);
h_rec_t h_wire_rec(const h_wire_t *w);
void h_table_apply(h_table_t *t, const h_wire_t *w); /* the backup side of a change */
/* A master's sync_data_get_next_func body over t; `bad` (may be NULL) counts cursors that name no
 * id of the table. */
void *h_walk_next(h_table_t *t, void *cur, junos_sync_getnext_data_t *gn, size_t extra,
                  long *bad);

/* ------------------------------------------------------------------------------------------ */
/* Dispatch mode (JSYNC_TEST_DISPATCH=1).                                                      */

/*
 * The tests call junos_sync_start and junos_sync_exit as always; the macros below route them
 * through h_start / h_exit_ctx, which in thread mode only call the library. In dispatch mode:
 *   - h_start takes junos_sync_get_fd before the start and, once the context is started, gives
 *     it an application thread: poll(2) on that descriptor, junos_sync_dispatch when it is
 *     readable. Every callback of the context then runs there (bind_done of the start still
 *     runs inside the start, on the caller's thread, as in thread mode).
 *   - junos_sync_exit must then run on that thread. h_exit_ctx from any other thread asks the
 *     application thread to call it and joins it, so that when it returns, as in thread mode,
 *     the context is gone and its callbacks (DOWN, frees) have run; from a callback (already
 *     on that thread) it calls it directly, and the application thread stops dispatching the
 *     freed context once that dispatch returns.
 *   - h_thread_count leaves the application threads out: a test counts the library's threads
 *     (one per context), and an application's event loop is not one of them.
 * A program that runs its own event loops (test_eventlib.c) defines H_NO_DISPATCH_WRAP before
 * including this header and calls h_dispatch_mode_off().
 */
bool h_dispatch_mode(void);
void h_dispatch_mode_off(void);
junos_sync_status_t h_start(junos_sync_context_t *ctx);
void h_exit_ctx(junos_sync_context_t *ctx);
bool h_on_app_thread(void); /* whether this is one of the harness's application threads */
/* Skips the running test in dispatch mode, saying why (a test that asserts thread mode's
 * behaviour where dispatch mode documents another). */
#define H_SKIP_IN_DISPATCH(why)                                                               \
    do {                                                                                      \
        if (h_dispatch_mode()) {                                                              \
            h_skip("dispatch mode: " why);                                                    \
            return;                                                                           \
        }                                                                                     \
    } while (0)

#ifndef H_NO_DISPATCH_WRAP
#define junos_sync_start(ctx) h_start(ctx)
#define junos_sync_exit(ctx) h_exit_ctx(ctx)
#endif

/* Scratch files. h_tmp_dir: a new directory /tmp/jsync-TAG-XXXXXX (mkdtemp: mode 0700), its
 * path into dir (cap: at least 64); h_write_file: `n` bytes of `bytes` into dir/name, then
 * chmod `mode`, its path into path. Each records a failure when it cannot. */
void h_tmp_dir(char *dir, size_t cap, const char *tag);
void h_write_file(char *path, size_t cap, const char *dir, const char *name, const void *bytes, size_t n,
                  mode_t mode);

/* Misc. */
int h_thread_count(void);          /* threads of this process (not the harness's application
                                    * threads of dispatch mode), or -1 */
uint64_t h_rand(uint64_t *state);  /* xorshift64*, one state per user */
junos_sync_state_t h_master_state(bool no_resync, uint32_t keepalive);
junos_sync_state_t h_backup_state(in_port_t port, bool no_resync, uint32_t keepalive);
void h_after_fork_child(void);     /* in a freshly forked child: harness usable, dies with parent */
void *h_shared_alloc(size_t n);    /* zeroed memory shared with forked children */
int h_wait_child(pid_t pid, int64_t ms); /* wait status, or -1 (then it was SIGKILLed) */
bool h_stop_child(pid_t pid, int64_t ms); /* SIGSTOP, then wait until all its threads stopped */

#endif /* JSYNC_C_TESTS_HARNESS_H */
