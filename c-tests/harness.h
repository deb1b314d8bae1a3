/*
 * Shared helpers for the junos-sync C tests (one test program per translation unit).
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
 * Knobs (environment): JSYNC_TEST_SCALE (multiplies record counts, default 1),
 * JSYNC_TEST_TIMEOUT_MULT (multiplies deadlines, default 1), JSYNC_TEST_QUIET=1 (library log
 * lines are recorded but not printed), JSYNC_TEST_NOFORK=1 (run tests in-process, for gdb).
 * A test program's first argument, if any, runs only the tests whose name contains it.
 */
#ifndef JSYNC_C_TESTS_HARNESS_H
#define JSYNC_C_TESTS_HARNESS_H

#include <jnx/junos_sync.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* Atomics (GCC/Clang builtins: the tests are built as C99).                                  */

#define H_LOAD(x) __atomic_load_n(&(x), __ATOMIC_SEQ_CST)
#define H_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_SEQ_CST)
#define H_ADD(x, v) __atomic_add_fetch(&(x), (v), __ATOMIC_SEQ_CST)
#define H_INC(x) H_ADD(x, 1)
#define H_DEC(x) __atomic_sub_fetch(&(x), 1, __ATOMIC_SEQ_CST)

/* ------------------------------------------------------------------------------------------ */
/* Time and knobs.                                                                            */

static inline int64_t h_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t h_now_ms(void)
{
    return h_now_us() / 1000;
}

static inline void h_sleep_us(long us)
{
    struct timespec ts;
    ts.tv_sec = us / 1000000;
    ts.tv_nsec = (us % 1000000) * 1000L;
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static inline double h_env_double(const char *name, double def)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return def;
    char *end;
    double d = strtod(v, &end);
    return (end == v || d <= 0) ? def : d;
}

/* n scaled by JSYNC_TEST_SCALE, at least `min`. */
static inline size_t h_scaled_min(size_t n, size_t min)
{
    size_t s = (size_t)((double)n * h_env_double("JSYNC_TEST_SCALE", 1.0));
    return s < min ? min : s;
}

static inline size_t h_scaled(size_t n)
{
    return h_scaled_min(n, 1);
}

/* A deadline length in ms, stretched by JSYNC_TEST_TIMEOUT_MULT (slow runs: valgrind, ASan). */
static inline int64_t h_tmo(int64_t ms)
{
    return (int64_t)((double)ms * h_env_double("JSYNC_TEST_TIMEOUT_MULT", 1.0));
}

/* ------------------------------------------------------------------------------------------ */
/* Runner and checks.                                                                         */

struct h_runtime {
    int passed, failed;
    long cur_failed;         /* atomic: failures recorded in the running test */
    const char *filter;
    bool nofork;
};

static struct h_runtime h_rt = {0, 0, 0, NULL, false};

static inline void h_vfail(const char *file, int line, const char *fmt, va_list ap)
{
    char msg[768];
    vsnprintf(msg, sizeof msg, fmt, ap);
    flockfile(stdout);
    fprintf(stdout, "  FAIL %s:%d: %s\n", file, line, msg);
    fflush(stdout);
    funlockfile(stdout);
    H_INC(h_rt.cur_failed);
}

static inline void h_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void h_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    h_vfail(file, line, fmt, ap);
    va_end(ap);
}

/* Informational line on stdout (kept with the test output). */
static inline void h_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void h_note(const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    flockfile(stdout);
    fprintf(stdout, "  note: %s\n", msg);
    fflush(stdout);
    funlockfile(stdout);
}

static inline long h_failures(void)
{
    return H_LOAD(h_rt.cur_failed);
}

#define CHECK(c)                                                                              \
    do {                                                                                      \
        if (!(c))                                                                             \
            h_fail(__FILE__, __LINE__, "CHECK(%s)", #c);                                      \
    } while (0)

#define CHECK_MSG(c, ...)                                                                     \
    do {                                                                                      \
        if (!(c))                                                                             \
            h_fail(__FILE__, __LINE__, __VA_ARGS__);                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                        \
    do {                                                                                      \
        long long h_a_ = (long long)(a), h_b_ = (long long)(b);                               \
        if (h_a_ != h_b_)                                                                     \
            h_fail(__FILE__, __LINE__, "%s == %s (%lld vs %lld)", #a, #b, h_a_, h_b_);        \
    } while (0)

#define CHECK_NE(a, b)                                                                        \
    do {                                                                                      \
        long long h_a_ = (long long)(a), h_b_ = (long long)(b);                               \
        if (h_a_ == h_b_)                                                                     \
            h_fail(__FILE__, __LINE__, "%s != %s (both %lld)", #a, #b, h_a_);                 \
    } while (0)

#define CHECK_LE(a, b)                                                                        \
    do {                                                                                      \
        long long h_a_ = (long long)(a), h_b_ = (long long)(b);                               \
        if (!(h_a_ <= h_b_))                                                                  \
            h_fail(__FILE__, __LINE__, "%s <= %s (%lld vs %lld)", #a, #b, h_a_, h_b_);        \
    } while (0)

/* Records the failure and leaves the test function (use where going on makes no sense). */
#define REQUIRE(c)                                                                            \
    do {                                                                                      \
        if (!(c)) {                                                                           \
            h_fail(__FILE__, __LINE__, "REQUIRE(%s)", #c);                                    \
            return;                                                                           \
        }                                                                                     \
    } while (0)

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
static inline bool wait_until(bool (*cond)(void *), void *arg, int64_t deadline_ms)
{
    int64_t dl = h_now_ms() + h_tmo(deadline_ms);
    for (;;) {
        if (cond(arg))
            return true;
        if (h_now_ms() >= dl)
            return cond(arg);
        h_sleep_us(1000);
    }
}

/* Waits for `expr` and records a failure naming it if it never became true. */
#define CHECK_WAIT(expr, ms)                                                                  \
    do {                                                                                      \
        if (!WAIT_UNTIL(expr, ms))                                                            \
            h_fail(__FILE__, __LINE__, "timed out after %lld ms waiting for %s",              \
                   (long long)h_tmo(ms), #expr);                                              \
    } while (0)

/* Runs one test. Each test runs in a forked process of its own (a crash, a sanitizer abort or a
 * deadlock fails that test only, and valgrind/ASan report per test); the parent kills it after
 * `timeout_s` seconds (scaled by h_tmo). JSYNC_TEST_NOFORK=1 runs tests in-process (debuggers). */
static inline void h_run(const char *name, void (*fn)(void), int timeout_s)
{
    if (h_rt.filter != NULL && strstr(name, h_rt.filter) == NULL)
        return;
    fflush(stdout);
    fflush(stderr);
    int64_t t0 = h_now_ms();
    bool ok;
    char why[160] = "";
    if (h_rt.nofork) {
        H_STORE(h_rt.cur_failed, 0);
        fn();
        ok = H_LOAD(h_rt.cur_failed) == 0;
    } else {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            exit(2);
        }
        if (pid == 0) {
            setpgid(0, 0);
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            H_STORE(h_rt.cur_failed, 0);
            fn();
            fflush(stdout);
            fflush(stderr);
            /* exit(), not _exit(): leak checkers run at exit. 10 = failed checks (valgrind's
             * --error-exitcode is 1, sanitizers abort). */
            exit(H_LOAD(h_rt.cur_failed) == 0 ? 0 : 10);
        }
        setpgid(pid, pid);
        int64_t dl = t0 + h_tmo((int64_t)timeout_s * 1000);
        int st = 0;
        for (;;) {
            pid_t r = waitpid(pid, &st, WNOHANG);
            if (r == pid)
                break;
            if (r < 0 && errno != EINTR) {
                st = -1;
                break;
            }
            if (h_now_ms() >= dl) {
                kill(-pid, SIGKILL);
                kill(pid, SIGKILL);
                waitpid(pid, &st, 0);
                snprintf(why, sizeof why, " (still running after %lld s: killed; deadlock?)",
                         (long long)(h_tmo((int64_t)timeout_s * 1000) / 1000));
                st = -1;
                break;
            }
            h_sleep_us(2000);
        }
        ok = st == 0;
        if (st != -1 && WIFSIGNALED(st))
            snprintf(why, sizeof why, " (died of signal %d: %s)", WTERMSIG(st),
                     strsignal(WTERMSIG(st)));
        else if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 10)
            snprintf(why, sizeof why, " (exit status %d: a valgrind or sanitizer error?)",
                     WEXITSTATUS(st));
    }
    if (ok)
        h_rt.passed++;
    else
        h_rt.failed++;
    fprintf(stderr, "  (%s: %lld ms)\n", name, (long long)(h_now_ms() - t0));
    printf("TEST %s ... %s%s\n", name, ok ? "ok" : "FAILED", why);
    fflush(stdout);
}

#define RUN(fn) h_run(#fn, fn, 60)
#define RUN_T(fn, secs) h_run(#fn, fn, secs)

static inline void h_init(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1)
        h_rt.filter = argv[1];
    const char *nf = getenv("JSYNC_TEST_NOFORK");
    h_rt.nofork = nf != NULL && *nf == '1';
}

/* Prints the summary line and returns the process exit status. */
static inline int h_summary(void)
{
    printf("%d passed, %d failed\n", h_rt.passed, h_rt.failed);
    fflush(stdout);
    return h_rt.failed == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Counting allocator.                                                                        */

/* A block header: the magic says whether the block is live; 16 bytes keep payload alignment. */
typedef struct {
    uint64_t magic;
    uint64_t size;
} h_blk_t;

#define H_MAGIC_LIVE 0x4a53594e434c4956ULL
#define H_MAGIC_DEAD 0x4a53594e43444541ULL

static long h_allocs;      /* blocks handed out by h_malloc */
static long h_frees;       /* blocks given back through h_free */
static long h_bad_frees;   /* h_free of a pointer that is not a live h_malloc block */
static long h_null_frees;  /* h_free(NULL) */
/* Called by h_free with the pointer just before the block is released (may be NULL). */
static void (*h_free_hook)(void *p);

static inline void *h_malloc(size_t n)
{
    h_blk_t *b = (h_blk_t *)malloc(sizeof *b + n);
    if (b == NULL)
        return NULL;
    b->magic = H_MAGIC_LIVE;
    b->size = n;
    H_INC(h_allocs);
    return b + 1;
}

static inline void h_free(void *p)
{
    if (p == NULL) {
        H_INC(h_null_frees);
        return;
    }
    h_blk_t *b = (h_blk_t *)p - 1;
    uint64_t m = __atomic_exchange_n(&b->magic, H_MAGIC_DEAD, __ATOMIC_SEQ_CST);
    if (m != H_MAGIC_LIVE) {
        H_INC(h_bad_frees);
        h_fail(__FILE__, __LINE__, "sync_free_func(%p): not a live block (%s)", p,
               m == H_MAGIC_DEAD ? "double free" : "foreign pointer");
        return; /* leaked on purpose: freeing it again would corrupt the heap */
    }
    void (*hook)(void *) = __atomic_load_n(&h_free_hook, __ATOMIC_SEQ_CST);
    if (hook != NULL)
        hook(p);
    H_INC(h_frees);
    free(b);
}

/* Whether p is a live h_malloc block. Only for blocks not yet handed to libc's free. */
static inline bool h_block_live(const void *p)
{
    const h_blk_t *b = (const h_blk_t *)p - 1;
    return __atomic_load_n(&b->magic, __ATOMIC_SEQ_CST) == H_MAGIC_LIVE;
}

static inline long h_alloc_outstanding(void)
{
    return H_LOAD(h_allocs) - H_LOAD(h_frees);
}

static inline void h_alloc_reset(void)
{
    H_STORE(h_allocs, 0);
    H_STORE(h_frees, 0);
    H_STORE(h_bad_frees, 0);
    H_STORE(h_null_frees, 0);
    __atomic_store_n(&h_free_hook, (void (*)(void *))NULL, __ATOMIC_SEQ_CST);
}

/* Every block freed exactly once: waits (with a deadline) for the counters to balance. */
#define CHECK_ALLOC_BALANCED(ms)                                                              \
    do {                                                                                      \
        CHECK_WAIT(h_alloc_outstanding() == 0, ms);                                           \
        CHECK_EQ(H_LOAD(h_bad_frees), 0);                                                     \
        CHECK_EQ(H_LOAD(h_null_frees), 0);                                                    \
        CHECK_EQ(H_LOAD(h_allocs), H_LOAD(h_frees));                                          \
    } while (0)

/* ------------------------------------------------------------------------------------------ */
/* Log callback.                                                                              */

#define H_LOG_RING 128
#define H_LOG_LINE 256

static pthread_mutex_t h_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char h_log_ring[H_LOG_RING][H_LOG_LINE];
static unsigned long h_log_next;  /* under h_log_mu */
static long h_log_lines;          /* atomic: lines logged */
static long h_log_bad_fmt;        /* atomic: calls whose format was not "%s" */

static void log_msg(const char *fmt, ...) __attribute__((unused));
static void log_msg(const char *fmt, ...)
{
    char buf[1024];
    if (fmt == NULL) {
        H_INC(h_log_bad_fmt);
        return;
    }
    if (strcmp(fmt, "%s") != 0)
        H_INC(h_log_bad_fmt);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    static int quiet = -1;
    if (quiet < 0) {
        const char *q = getenv("JSYNC_TEST_QUIET");
        quiet = q != NULL && *q == '1';
    }
    if (!quiet)
        fprintf(stderr, "[junos-sync %d] %s\n", (int)getpid(), buf);
    pthread_mutex_lock(&h_log_mu);
    char *slot = h_log_ring[h_log_next % H_LOG_RING];
    size_t n = strnlen(buf, H_LOG_LINE - 1);
    memcpy(slot, buf, n);
    slot[n] = '\0';
    h_log_next++;
    pthread_mutex_unlock(&h_log_mu);
    H_INC(h_log_lines);
}

/* Whether one of the recent log lines contains `needle`. */
static inline bool h_log_contains(const char *needle)
{
    bool found = false;
    pthread_mutex_lock(&h_log_mu);
    unsigned long n = h_log_next < H_LOG_RING ? h_log_next : H_LOG_RING;
    for (unsigned long i = 0; i < n && !found; i++)
        found = strstr(h_log_ring[(h_log_next - 1 - i) % H_LOG_RING], needle) != NULL;
    pthread_mutex_unlock(&h_log_mu);
    return found;
}

static inline long h_log_count(void)
{
    return H_LOAD(h_log_lines);
}

/* ------------------------------------------------------------------------------------------ */
/* Per-context callback bookkeeping (callbacks have no user data: each test keeps one of these  */
/* per context in a global).                                                                   */

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

/* Call at the start of every loop-thread callback of a context. */
static inline void h_cb_enter(h_cbstat_t *s)
{
    if (H_INC(s->in_cb) != 1)
        H_INC(s->overlap);
    if (H_LOAD(s->exited))
        H_INC(s->after_exit);
    if (!H_LOAD(s->have_loop)) {
        s->loop = pthread_self();
        H_STORE(s->have_loop, 1);
    } else if (!pthread_equal(s->loop, pthread_self())) {
        H_INC(s->wrong_thread);
    }
}

static inline void h_cb_leave(h_cbstat_t *s)
{
    H_DEC(s->in_cb);
}

/* For sync_conn_status_change_func. */
static inline void h_cb_conn(h_cbstat_t *s, junos_sync_conn_status_t st)
{
    if (st == JUNOS_SYNC_CONN_UP) {
        if (H_LOAD(s->is_up))
            H_INC(s->bad_updown);
        H_STORE(s->is_up, 1);
        H_INC(s->up);
    } else if (st == JUNOS_SYNC_CONN_DOWN) {
        if (!H_LOAD(s->is_up))
            H_INC(s->bad_updown);
        H_STORE(s->is_up, 0);
        H_INC(s->down);
    } else {
        H_INC(s->bad_updown);
    }
}

/* The invariants every context must keep; call after its junos_sync_exit. */
#define CHECK_CBSTAT(s)                                                                       \
    do {                                                                                      \
        CHECK_EQ(H_LOAD((s)->overlap), 0);                                                    \
        CHECK_EQ(H_LOAD((s)->after_exit), 0);                                                 \
        CHECK_EQ(H_LOAD((s)->wrong_thread), 0);                                               \
        CHECK_EQ(H_LOAD((s)->bad_updown), 0);                                                 \
    } while (0)

/* ------------------------------------------------------------------------------------------ */
/* The application's table: open addressing, uint32 id -> record. A key keeps its slot for the  */
/* table's life (deleted entries leave a tombstone with the key), so a walk can resume from the */
/* id it last saw. The digest (count, sum and xor of a 64-bit hash per live entry) does not     */
/* depend on order and is kept up to date on every change.                                      */

typedef struct {
    uint32_t id;
    uint32_t ver;
    uint64_t val;
} h_rec_t;

typedef struct {
    uint64_t count, sum, xr;
} h_digest_t;

enum { H_SLOT_EMPTY = 0, H_SLOT_LIVE = 1, H_SLOT_DEAD = 2 };

typedef struct {
    uint32_t state;
    uint32_t pad;
    h_rec_t rec;
} h_slot_t;

typedef struct {
    pthread_mutex_t mu;
    size_t cap;    /* power of two */
    size_t keys;   /* slots not empty */
    h_slot_t *slots;
    h_digest_t d;
} h_table_t;

static inline uint64_t h_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static inline uint64_t h_rec_hash(const h_rec_t *r)
{
    return h_mix64(((uint64_t)r->id << 32 | r->ver) ^ h_mix64(r->val + 0x9e3779b97f4a7c15ULL));
}

/* A table for at most `max_keys` distinct ids over its life. */
static inline void h_table_init(h_table_t *t, size_t max_keys)
{
    size_t cap = 16;
    while (cap < 2 * max_keys)
        cap <<= 1;
    pthread_mutex_init(&t->mu, NULL);
    t->cap = cap;
    t->keys = 0;
    t->slots = (h_slot_t *)calloc(cap, sizeof(h_slot_t));
    if (t->slots == NULL) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    memset(&t->d, 0, sizeof t->d);
}

static inline void h_table_destroy(h_table_t *t)
{
    free(t->slots);
    t->slots = NULL;
    pthread_mutex_destroy(&t->mu);
}

/* Slot holding `id` (live or dead), or the empty slot where it would go. Lock held. */
static inline size_t h_table_probe(const h_table_t *t, uint32_t id)
{
    size_t mask = t->cap - 1;
    size_t i = (size_t)h_mix64(id) & mask;
    for (size_t n = 0; n < t->cap; n++, i = (i + 1) & mask) {
        const h_slot_t *s = &t->slots[i];
        if (s->state == H_SLOT_EMPTY || s->rec.id == id)
            return i;
    }
    fprintf(stderr, "harness: table full (more distinct ids than it was made for)\n");
    abort();
}

static inline void h_digest_add(h_digest_t *d, const h_rec_t *r)
{
    uint64_t h = h_rec_hash(r);
    d->count++;
    d->sum += h;
    d->xr ^= h;
}

static inline void h_digest_sub(h_digest_t *d, const h_rec_t *r)
{
    uint64_t h = h_rec_hash(r);
    d->count--;
    d->sum -= h;
    d->xr ^= h;
}

static inline void h_table_put(h_table_t *t, const h_rec_t *r)
{
    pthread_mutex_lock(&t->mu);
    size_t i = h_table_probe(t, r->id);
    h_slot_t *s = &t->slots[i];
    if (s->state == H_SLOT_LIVE)
        h_digest_sub(&t->d, &s->rec);
    if (s->state == H_SLOT_EMPTY) {
        if (2 * (t->keys + 1) > t->cap) {
            fprintf(stderr, "harness: table over half full\n");
            abort();
        }
        t->keys++;
    }
    s->state = H_SLOT_LIVE;
    s->rec = *r;
    h_digest_add(&t->d, r);
    pthread_mutex_unlock(&t->mu);
}

static inline bool h_table_del(h_table_t *t, uint32_t id)
{
    bool had = false;
    pthread_mutex_lock(&t->mu);
    h_slot_t *s = &t->slots[h_table_probe(t, id)];
    if (s->state == H_SLOT_LIVE) {
        h_digest_sub(&t->d, &s->rec);
        s->state = H_SLOT_DEAD;
        had = true;
    }
    pthread_mutex_unlock(&t->mu);
    return had;
}

static inline bool h_table_get(h_table_t *t, uint32_t id, h_rec_t *out)
{
    bool had = false;
    pthread_mutex_lock(&t->mu);
    const h_slot_t *s = &t->slots[h_table_probe(t, id)];
    if (s->state == H_SLOT_LIVE) {
        if (out != NULL)
            *out = s->rec;
        had = true;
    }
    pthread_mutex_unlock(&t->mu);
    return had;
}

static inline void h_table_clear(h_table_t *t)
{
    pthread_mutex_lock(&t->mu);
    memset(t->slots, 0, t->cap * sizeof(h_slot_t));
    t->keys = 0;
    memset(&t->d, 0, sizeof t->d);
    pthread_mutex_unlock(&t->mu);
}

static inline h_digest_t h_table_digest(h_table_t *t)
{
    pthread_mutex_lock(&t->mu);
    h_digest_t d = t->d;
    pthread_mutex_unlock(&t->mu);
    return d;
}

static inline size_t h_table_count(h_table_t *t)
{
    return (size_t)h_table_digest(t).count;
}

static inline bool h_digest_eq(h_digest_t a, h_digest_t b)
{
    return a.count == b.count && a.sum == b.sum && a.xr == b.xr;
}

/* Whether two tables hold the same entries (by digest). */
static inline bool h_tables_equal(h_table_t *a, h_table_t *b)
{
    return h_digest_eq(h_table_digest(a), h_table_digest(b));
}

#define CHECK_TABLES_EQUAL(a, b)                                                              \
    do {                                                                                      \
        h_digest_t h_da_ = h_table_digest(a), h_db_ = h_table_digest(b);                      \
        if (!h_digest_eq(h_da_, h_db_))                                                       \
            h_fail(__FILE__, __LINE__,                                                        \
                   "tables differ: %s has %llu entries (sum %016llx), %s has %llu (sum %016llx)", \
                   #a, (unsigned long long)h_da_.count, (unsigned long long)h_da_.sum, #b,    \
                   (unsigned long long)h_db_.count, (unsigned long long)h_db_.sum);           \
    } while (0)

/* Walk in slot order. first: the first live entry; else the first live entry after the slot of
 * `after_id`. Returns false at the end, or (with *bad set) if after_id was never in the table. */
static inline bool h_table_next(h_table_t *t, bool first, uint32_t after_id, h_rec_t *out,
                                bool *bad)
{
    bool found = false;
    pthread_mutex_lock(&t->mu);
    size_t i = 0;
    if (!first) {
        i = h_table_probe(t, after_id);
        if (t->slots[i].state == H_SLOT_EMPTY) {
            if (bad != NULL)
                *bad = true;
            pthread_mutex_unlock(&t->mu);
            return false;
        }
        i++;
    }
    for (; i < t->cap; i++) {
        if (t->slots[i].state == H_SLOT_LIVE) {
            *out = t->slots[i].rec;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return found;
}

/* ------------------------------------------------------------------------------------------ */
/* Records on the wire: a fixed header in network byte order, then `extra` pattern bytes that  */
/* the receiver verifies.                                                                        */

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

static inline uint8_t h_pattern_byte(const h_wire_t *w, size_t i)
{
    return (uint8_t)(w->seq * 31u + w->id * 17u + i * 7u + 1u);
}

/* A TLV of `len` payload bytes from the counting allocator, header filled, payload zeroed. */
static inline junos_sync_tlv_t *h_tlv_alloc(uint32_t type, size_t len)
{
    junos_sync_tlv_t *t = (junos_sync_tlv_t *)h_malloc(sizeof(junos_sync_tlv_t) + len);
    if (t == NULL) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    t->tlv_type = type;
    t->tlv_len = (uint32_t)len;
    memset(t->tlv_value, 0, len);
    return t;
}

static inline junos_sync_tlv_t *h_tlv_new(uint32_t type, const void *payload, size_t len)
{
    junos_sync_tlv_t *t = h_tlv_alloc(type, len);
    if (len > 0)
        memcpy(t->tlv_value, payload, len);
    return t;
}

/* Encodes *w (host order) into a payload at p (network order) plus `extra` pattern bytes. */
static inline void h_wire_encode(void *p, const h_wire_t *w, size_t extra)
{
    h_wire_t n;
    n.op = htonl(w->op);
    n.id = htonl(w->id);
    n.ver = htonl(w->ver);
    n.aux = htonl(w->aux);
    n.val = htobe64(w->val);
    n.seq = htobe64(w->seq);
    memcpy(p, &n, sizeof n);
    uint8_t *x = (uint8_t *)p + sizeof n;
    for (size_t i = 0; i < extra; i++)
        x[i] = h_pattern_byte(w, i);
}

static inline junos_sync_tlv_t *h_tlv_wire(const h_wire_t *w, size_t extra)
{
    junos_sync_tlv_t *t = h_tlv_alloc(H_TLV_TYPE_REC, sizeof(h_wire_t) + extra);
    h_wire_encode(t->tlv_value, w, extra);
    return t;
}

static inline junos_sync_tlv_t *h_tlv_rec(uint32_t op, const h_rec_t *r, uint64_t seq,
                                          uint32_t aux, size_t extra)
{
    h_wire_t w;
    w.op = op;
    w.id = r->id;
    w.ver = r->ver;
    w.aux = aux;
    w.val = r->val;
    w.seq = seq;
    return h_tlv_wire(&w, extra);
}

/* Decodes a payload; false if it is too short or its pattern bytes are wrong. */
static inline bool h_wire_decode(const void *data, size_t len, h_wire_t *out)
{
    if (data == NULL || len < sizeof(h_wire_t))
        return false;
    h_wire_t n;
    memcpy(&n, data, sizeof n);
    out->op = ntohl(n.op);
    out->id = ntohl(n.id);
    out->ver = ntohl(n.ver);
    out->aux = ntohl(n.aux);
    out->val = be64toh(n.val);
    out->seq = be64toh(n.seq);
    const uint8_t *x = (const uint8_t *)data + sizeof n;
    for (size_t i = 0; i < len - sizeof n; i++)
        if (x[i] != h_pattern_byte(out, i))
            return false;
    return out->op >= H_OP_PUT && out->op <= H_OP_WALK;
}

static inline h_rec_t h_wire_rec(const h_wire_t *w)
{
    h_rec_t r;
    r.id = w->id;
    r.ver = w->ver;
    r.val = w->val;
    return r;
}

/* Applies a decoded record to a table (the backup side of a replicated change). */
static inline void h_table_apply(h_table_t *t, const h_wire_t *w)
{
    if (w->op == H_OP_DEL) {
        h_table_del(t, w->id);
    } else {
        h_rec_t r = h_wire_rec(w);
        h_table_put(t, &r);
    }
}

/* A master's sync_data_get_next_func body over table t, the way a daemon writes it: the cursor
 * it returns points into the payload of the TLV it just handed over (the library keeps that
 * TLV alive until the next call has returned), and the next call reads the id back through it.
 * `bad` (may be NULL) counts cursors that name no id of the table. */
static inline void *h_walk_next(h_table_t *t, void *cur, junos_sync_getnext_data_t *gn,
                                size_t extra, long *bad)
{
    h_rec_t r;
    bool was_bad = false;
    bool found;
    if (cur == NULL) {
        found = h_table_next(t, true, 0, &r, &was_bad);
    } else {
        h_wire_t prev;
        if (!h_wire_decode(cur, sizeof(h_wire_t), &prev)) {
            if (bad != NULL)
                H_INC(*bad);
            return NULL;
        }
        found = h_table_next(t, false, prev.id, &r, &was_bad);
    }
    if (was_bad && bad != NULL)
        H_INC(*bad);
    if (!found) {
        gn->data = NULL;
        return NULL;
    }
    junos_sync_tlv_t *tlv = h_tlv_rec(H_OP_WALK, &r, 0, 0, extra);
    gn->data = tlv;
    return tlv->tlv_value;
}

/* ------------------------------------------------------------------------------------------ */
/* Misc.                                                                                      */

/* Threads of this process (/proc/self/task), or -1. */
static inline int h_thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* A small deterministic PRNG (xorshift64*), one state per user. */
static inline uint64_t h_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dULL;
}

static inline junos_sync_state_t h_master_state(bool no_resync, uint32_t keepalive)
{
    junos_sync_state_t st;
    memset(&st, 0, sizeof st);
    st.is_master = true;
    st.no_resync = no_resync;
    st.server_addr = 0;
    st.server_port = 0;
    st.keepalive_time = keepalive;
    return st;
}

static inline junos_sync_state_t h_backup_state(in_port_t port, bool no_resync, uint32_t keepalive)
{
    junos_sync_state_t st;
    memset(&st, 0, sizeof st);
    st.is_master = false;
    st.no_resync = no_resync;
    st.server_addr = INADDR_LOOPBACK; /* host byte order, as the API wants */
    st.server_port = port;
    st.keepalive_time = keepalive;
    return st;
}

/* In a freshly forked child: make the harness usable (locks another thread may have held at
 * fork time), and die with the parent. */
static inline void h_after_fork_child(void)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    h_log_mu = m;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    H_STORE(h_rt.cur_failed, 0);
}

/* Shared memory visible to forked children (MAP_SHARED|MAP_ANONYMOUS), zeroed. */
static inline void *h_shared_alloc(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        abort();
    }
    memset(p, 0, n);
    return p;
}

/* Waits for a child with a deadline; returns its wait status, or -1 (then it was SIGKILLed). */
static inline int h_wait_child(pid_t pid, int64_t ms)
{
    int64_t dl = h_now_ms() + h_tmo(ms);
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0)
            return -1;
        if (h_now_ms() >= dl) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        h_sleep_us(2000);
    }
}

#endif /* JSYNC_C_TESTS_HARNESS_H */
