/*
 * The junos-sync C test harness: definitions of what harness.h declares (see there), built once
 * per flavour and linked into every test program.
 */
/* The harness calls the library's own junos_sync_start / junos_sync_exit (the tests' calls go
 * through h_start / h_exit_ctx below). */
#define H_NO_DISPATCH_WRAP 1
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>

static void h_apps_reap(bool all);
static void h_apps_after_fork(void);

/* ------------------------------------------------------------------------------------------ */
/* Time and knobs.                                                                            */

int64_t h_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t h_now_ms(void)
{
    return h_now_us() / 1000;
}

void h_sleep_us(long us)
{
    struct timespec ts;
    ts.tv_sec = us / 1000000;
    ts.tv_nsec = (us % 1000000) * 1000L;
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

double h_env_double(const char *name, double def)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return def;
    char *end;
    double d = strtod(v, &end);
    return (end == v || d <= 0) ? def : d;
}

size_t h_scaled_min(size_t n, size_t min)
{
    size_t s = (size_t)((double)n * h_env_double("JSYNC_TEST_SCALE", 1.0));
    return s < min ? min : s;
}

size_t h_scaled(size_t n)
{
    return h_scaled_min(n, 1);
}

int64_t h_tmo(int64_t ms)
{
    return (int64_t)((double)ms * h_env_double("JSYNC_TEST_TIMEOUT_MULT", 1.0));
}

/* ------------------------------------------------------------------------------------------ */
/* Runner and checks.                                                                         */

struct h_runtime {
    int passed, failed, skipped;
    long cur_failed;         /* atomic: failures recorded in the running test */
    int cur_skipped;         /* h_skip was called in the running test */
    const char *filter;
    bool nofork;
    int dispatch;            /* JSYNC_TEST_DISPATCH=1, unless h_dispatch_mode_off */
};

static struct h_runtime h_rt = {0, 0, 0, 0, 0, NULL, false, 0};

/* Exit status of a test's process that skipped itself (10 is failed checks). */
#define H_EXIT_SKIPPED 11

void h_skip(const char *why)
{
    h_note("skipped: %s", why);
    h_rt.cur_skipped = 1;
}

const char *h_runner(void)
{
    const char *r = getenv("JSYNC_TEST_RUNNER");
    return r != NULL && *r != '\0' ? r : "plain";
}

static void h_vfail(const char *file, int line, const char *fmt, va_list ap)
{
    char msg[768];
    vsnprintf(msg, sizeof msg, fmt, ap);
    flockfile(stdout);
    fprintf(stdout, "  FAIL %s:%d: %s\n", file, line, msg);
    fflush(stdout);
    funlockfile(stdout);
    H_INC(h_rt.cur_failed);
}

void h_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    h_vfail(file, line, fmt, ap);
    va_end(ap);
}

void h_note(const char *fmt, ...)
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

long h_failures(void)
{
    return H_LOAD(h_rt.cur_failed);
}

void h_check_cmp(const char *file, int line, h_cmp_t op, const char *a_src, const char *b_src,
                 long long a, long long b)
{
    switch (op) {
    case H_CMP_EQ:
        if (a != b)
            h_fail(file, line, "%s == %s (%lld vs %lld)", a_src, b_src, a, b);
        break;
    case H_CMP_NE:
        if (a == b)
            h_fail(file, line, "%s != %s (both %lld)", a_src, b_src, a);
        break;
    case H_CMP_LE:
        if (!(a <= b))
            h_fail(file, line, "%s <= %s (%lld vs %lld)", a_src, b_src, a, b);
        break;
    }
}

bool wait_until(bool (*cond)(void *), void *arg, int64_t deadline_ms)
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

/* Runs one test in a forked process of its own; the parent kills it after `timeout_s` seconds
 * (scaled by h_tmo). JSYNC_TEST_NOFORK=1 runs tests in-process (debuggers). */
void h_run(const char *name, void (*fn)(void), int timeout_s)
{
    if (h_rt.filter != NULL && strstr(name, h_rt.filter) == NULL)
        return;
    fflush(stdout);
    fflush(stderr);
    int64_t t0 = h_now_ms();
    bool ok, skipped = false;
    char why[160] = "";
    if (h_rt.nofork) {
        H_STORE(h_rt.cur_failed, 0);
        h_rt.cur_skipped = 0;
        fn();
        h_apps_reap(true);
        ok = H_LOAD(h_rt.cur_failed) == 0;
        skipped = ok && h_rt.cur_skipped;
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
            /* Application threads whose context exited from a callback end by themselves;
             * joined here, so that nothing of the test outlives it. */
            h_apps_reap(true);
            fflush(stdout);
            fflush(stderr);
            /* exit(), not _exit(): leak checkers run at exit. 10 = failed checks (valgrind's
             * --error-exitcode is 1, sanitizers abort), H_EXIT_SKIPPED = skipped. */
            exit(H_LOAD(h_rt.cur_failed) != 0 ? 10 : h_rt.cur_skipped ? H_EXIT_SKIPPED : 0);
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
        skipped = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == H_EXIT_SKIPPED;
        ok = st == 0 || skipped;
        if (st != -1 && WIFSIGNALED(st))
            snprintf(why, sizeof why, " (died of signal %d: %s)", WTERMSIG(st),
                     strsignal(WTERMSIG(st)));
        else if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 10 &&
                 !skipped)
            snprintf(why, sizeof why, " (exit status %d: a valgrind or sanitizer error?)",
                     WEXITSTATUS(st));
    }
    if (skipped)
        h_rt.skipped++;
    else if (ok)
        h_rt.passed++;
    else
        h_rt.failed++;
    fprintf(stderr, "  (%s: %lld ms)\n", name, (long long)(h_now_ms() - t0));
    printf("TEST %s ... %s%s\n", name, skipped ? "skipped" : ok ? "ok" : "FAILED", why);
    fflush(stdout);
}

void h_init(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1)
        h_rt.filter = argv[1];
    const char *nf = getenv("JSYNC_TEST_NOFORK");
    h_rt.nofork = nf != NULL && *nf == '1';
    const char *dm = getenv("JSYNC_TEST_DISPATCH");
    h_rt.dispatch = dm != NULL && *dm == '1';
    if (h_rt.dispatch)
        printf("dispatch mode: callbacks run on application threads (junos_sync_get_fd +"
               " junos_sync_dispatch)\n");
}

int h_summary(void)
{
    /* run.sh reads the last line, which must stay exactly "N passed, N failed". */
    if (h_rt.skipped > 0)
        printf("%d skipped\n", h_rt.skipped);
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

long h_allocs;
long h_frees;
long h_bad_frees;
long h_null_frees;
void (*h_free_hook)(void *p);

void *h_malloc(size_t n)
{
    h_blk_t *b = (h_blk_t *)malloc(sizeof *b + n);
    if (b == NULL)
        return NULL;
    b->magic = H_MAGIC_LIVE;
    b->size = n;
    H_INC(h_allocs);
    return b + 1;
}

void h_free(void *p)
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

bool h_block_live(const void *p)
{
    const h_blk_t *b = (const h_blk_t *)p - 1;
    return __atomic_load_n(&b->magic, __ATOMIC_SEQ_CST) == H_MAGIC_LIVE;
}

long h_alloc_outstanding(void)
{
    return H_LOAD(h_allocs) - H_LOAD(h_frees);
}

void h_alloc_reset(void)
{
    H_STORE(h_allocs, 0);
    H_STORE(h_frees, 0);
    H_STORE(h_bad_frees, 0);
    H_STORE(h_null_frees, 0);
    __atomic_store_n(&h_free_hook, (void (*)(void *))NULL, __ATOMIC_SEQ_CST);
}

/* The messages are those the checks would give written out in the test (CHECK_WAIT, CHECK_EQ). */
void h_check_alloc_balanced(const char *file, int line, int64_t ms)
{
    if (!WAIT_UNTIL(h_alloc_outstanding() == 0, ms))
        h_fail(file, line, "timed out after %lld ms waiting for %s", (long long)h_tmo(ms),
               "h_alloc_outstanding() == 0");
    h_check_cmp(file, line, H_CMP_EQ, "H_LOAD(h_bad_frees)", "0", H_LOAD(h_bad_frees), 0);
    h_check_cmp(file, line, H_CMP_EQ, "H_LOAD(h_null_frees)", "0", H_LOAD(h_null_frees), 0);
    h_check_cmp(file, line, H_CMP_EQ, "H_LOAD(h_allocs)", "H_LOAD(h_frees)", H_LOAD(h_allocs),
                H_LOAD(h_frees));
}

/* ------------------------------------------------------------------------------------------ */
/* Log callback.                                                                              */

#define H_LOG_RING 128
#define H_LOG_LINE 256

static pthread_mutex_t h_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char h_log_ring[H_LOG_RING][H_LOG_LINE];
static unsigned long h_log_next;  /* under h_log_mu */
static long h_log_lines;          /* atomic: lines logged */
long h_log_bad_fmt;

void log_msg(const char *fmt, ...)
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

long h_log_count_matching(const char *needle)
{
    long n_found = 0;
    pthread_mutex_lock(&h_log_mu);
    unsigned long n = h_log_next < H_LOG_RING ? h_log_next : H_LOG_RING;
    for (unsigned long i = 0; i < n; i++)
        if (strstr(h_log_ring[(h_log_next - 1 - i) % H_LOG_RING], needle) != NULL)
            n_found++;
    pthread_mutex_unlock(&h_log_mu);
    return n_found;
}

bool h_log_contains(const char *needle)
{
    bool found = false;
    pthread_mutex_lock(&h_log_mu);
    unsigned long n = h_log_next < H_LOG_RING ? h_log_next : H_LOG_RING;
    for (unsigned long i = 0; i < n && !found; i++)
        found = strstr(h_log_ring[(h_log_next - 1 - i) % H_LOG_RING], needle) != NULL;
    pthread_mutex_unlock(&h_log_mu);
    return found;
}

long h_log_count(void)
{
    return H_LOAD(h_log_lines);
}

/* ------------------------------------------------------------------------------------------ */
/* Per-context callback bookkeeping.                                                          */

void h_cb_enter(h_cbstat_t *s)
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
    /* Dispatch mode: the first thread seen must also be the application's. */
    if (h_dispatch_mode() && !h_on_app_thread())
        H_INC(s->wrong_thread);
}

void h_cb_leave(h_cbstat_t *s)
{
    H_DEC(s->in_cb);
}

void h_cb_conn(h_cbstat_t *s, junos_sync_conn_status_t st)
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

static void h_check_zero(const char *file, int line, const char *s_src, const char *field, long v)
{
    char src[256];
    snprintf(src, sizeof src, "H_LOAD((%s)->%s)", s_src, field);
    h_check_cmp(file, line, H_CMP_EQ, src, "0", v, 0);
}

/* The messages are those CHECK_EQ(H_LOAD((s)->field), 0) would give written out in the test. */
void h_check_cbstat(const char *file, int line, const char *s_src, h_cbstat_t *s)
{
    h_check_zero(file, line, s_src, "overlap", H_LOAD(s->overlap));
    h_check_zero(file, line, s_src, "after_exit", H_LOAD(s->after_exit));
    h_check_zero(file, line, s_src, "wrong_thread", H_LOAD(s->wrong_thread));
    h_check_zero(file, line, s_src, "bad_updown", H_LOAD(s->bad_updown));
}

/* ------------------------------------------------------------------------------------------ */
/* The application's table: open addressing, uint32 id -> record. A key keeps its slot for the  */
/* table's life (deleted entries leave a tombstone with the key), so a walk can resume from the */
/* id it last saw. The digest (count, sum and xor of a 64-bit hash per live entry) does not     */
/* depend on order and is kept up to date on every change.                                      */

enum { H_SLOT_EMPTY = 0, H_SLOT_LIVE = 1, H_SLOT_DEAD = 2 };

typedef struct h_slot {
    uint32_t state;
    uint32_t pad;
    h_rec_t rec;
} h_slot_t;

static uint64_t h_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t h_rec_hash(const h_rec_t *r)
{
    return h_mix64(((uint64_t)r->id << 32 | r->ver) ^ h_mix64(r->val + 0x9e3779b97f4a7c15ULL));
}

void h_table_init(h_table_t *t, size_t max_keys)
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

void h_table_destroy(h_table_t *t)
{
    free(t->slots);
    t->slots = NULL;
    pthread_mutex_destroy(&t->mu);
}

/* Slot holding `id` (live or dead), or the empty slot where it would go. Lock held. */
static size_t h_table_probe(const h_table_t *t, uint32_t id)
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

static void h_digest_add(h_digest_t *d, const h_rec_t *r)
{
    uint64_t h = h_rec_hash(r);
    d->count++;
    d->sum += h;
    d->xr ^= h;
}

static void h_digest_sub(h_digest_t *d, const h_rec_t *r)
{
    uint64_t h = h_rec_hash(r);
    d->count--;
    d->sum -= h;
    d->xr ^= h;
}

void h_table_put(h_table_t *t, const h_rec_t *r)
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

bool h_table_del(h_table_t *t, uint32_t id)
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

bool h_table_get(h_table_t *t, uint32_t id, h_rec_t *out)
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

void h_table_clear(h_table_t *t)
{
    pthread_mutex_lock(&t->mu);
    /* A table that never had a key is clear already: a resync's db_clear of an empty table
     * then costs nothing, where a memset of a table made for a million keys takes tens of ms
     * (and would show as a long dispatch in test_eventlib's measurements). */
    if (t->keys > 0)
        memset(t->slots, 0, t->cap * sizeof(h_slot_t));
    t->keys = 0;
    memset(&t->d, 0, sizeof t->d);
    pthread_mutex_unlock(&t->mu);
}

h_digest_t h_table_digest(h_table_t *t)
{
    pthread_mutex_lock(&t->mu);
    h_digest_t d = t->d;
    pthread_mutex_unlock(&t->mu);
    return d;
}

size_t h_table_count(h_table_t *t)
{
    return (size_t)h_table_digest(t).count;
}

bool h_digest_eq(h_digest_t a, h_digest_t b)
{
    return a.count == b.count && a.sum == b.sum && a.xr == b.xr;
}

bool h_tables_equal(h_table_t *a, h_table_t *b)
{
    return h_digest_eq(h_table_digest(a), h_table_digest(b));
}

void h_check_tables_equal(const char *file, int line, const char *a_src, const char *b_src,
                          h_table_t *a, h_table_t *b)
{
    h_digest_t da = h_table_digest(a), db = h_table_digest(b);
    if (!h_digest_eq(da, db))
        h_fail(file, line,
               "tables differ: %s has %llu entries (sum %016llx), %s has %llu (sum %016llx)",
               a_src, (unsigned long long)da.count, (unsigned long long)da.sum, b_src,
               (unsigned long long)db.count, (unsigned long long)db.sum);
}

bool h_table_next(h_table_t *t, bool first, uint32_t after_id, h_rec_t *out, bool *bad)
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
/* Records on the wire.                                                                       */

static uint8_t h_pattern_byte(const h_wire_t *w, size_t i)
{
    return (uint8_t)(w->seq * 31u + w->id * 17u + i * 7u + 1u);
}

junos_sync_tlv_t *h_tlv_alloc(uint32_t type, size_t len)
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

junos_sync_tlv_t *h_tlv_new(uint32_t type, const void *payload, size_t len)
{
    junos_sync_tlv_t *t = h_tlv_alloc(type, len);
    if (len > 0)
        memcpy(t->tlv_value, payload, len);
    return t;
}

/* Encodes *w (host order) into a payload at p (network order) plus `extra` pattern bytes. */
void h_wire_encode(void *p, const h_wire_t *w, size_t extra)
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

junos_sync_tlv_t *h_tlv_wire(const h_wire_t *w, size_t extra)
{
    junos_sync_tlv_t *t = h_tlv_alloc(H_TLV_TYPE_REC, sizeof(h_wire_t) + extra);
    h_wire_encode(t->tlv_value, w, extra);
    return t;
}

junos_sync_tlv_t *h_tlv_rec(uint32_t op, const h_rec_t *r, uint64_t seq, uint32_t aux,
                            size_t extra)
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

bool h_wire_decode(const void *data, size_t len, h_wire_t *out)
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

h_rec_t h_wire_rec(const h_wire_t *w)
{
    h_rec_t r;
    r.id = w->id;
    r.ver = w->ver;
    r.val = w->val;
    return r;
}

void h_table_apply(h_table_t *t, const h_wire_t *w)
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
void *h_walk_next(h_table_t *t, void *cur, junos_sync_getnext_data_t *gn, size_t extra,
                  long *bad)
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
/* Scratch files.                                                                             */

void h_tmp_dir(char *dir, size_t cap, const char *tag)
{
    snprintf(dir, cap, "/tmp/jsync-%s-XXXXXX", tag);
    if (mkdtemp(dir) == NULL)
        h_fail(__FILE__, __LINE__, "mkdtemp %s: %s", dir, strerror(errno));
}

void h_write_file(char *path, size_t cap, const char *dir, const char *name, const void *bytes, size_t n,
                  mode_t mode)
{
    snprintf(path, cap, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || (n > 0 && write(fd, bytes, n) != (ssize_t)n) || close(fd) != 0 || chmod(path, mode) != 0)
        h_fail(__FILE__, __LINE__, "cannot write %s: %s", path, strerror(errno));
}

/* ------------------------------------------------------------------------------------------ */
/* Misc.                                                                                      */

static long h_app_threads; /* dispatch mode: application threads not joined yet */

int h_thread_count(void)
{
    h_apps_reap(false);
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - (int)H_LOAD(h_app_threads);
}

uint64_t h_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dULL;
}

junos_sync_state_t h_master_state(bool no_resync, uint32_t keepalive)
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

junos_sync_state_t h_backup_state(in_port_t port, bool no_resync, uint32_t keepalive)
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
void h_after_fork_child(void)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    h_log_mu = m;
    h_apps_after_fork();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    H_STORE(h_rt.cur_failed, 0);
}

/* Shared memory visible to forked children (MAP_SHARED|MAP_ANONYMOUS), zeroed. */
void *h_shared_alloc(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        abort();
    }
    memset(p, 0, n);
    return p;
}

int h_wait_child(pid_t pid, int64_t ms)
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

/* kill() only queues the signal: the child's threads can run on another core for a while after
 * it returns (long enough to read and acknowledge a burst), so a test that needs the child to be
 * stopped waits for the stop to be reported. */
bool h_stop_child(pid_t pid, int64_t ms)
{
    if (kill(pid, SIGSTOP) != 0)
        return false;
    int64_t dl = h_now_ms() + h_tmo(ms);
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG | WUNTRACED);
        if (r == pid && WIFSTOPPED(st))
            return true;
        if (r < 0 || h_now_ms() >= dl)
            return false;
        h_sleep_us(500);
    }
}


/* ------------------------------------------------------------------------------------------ */
/* Dispatch mode: an application thread per started context (see harness.h).                 */

typedef struct {
    junos_sync_context_t *ctx; /* NULL: slot free, or (zombie) its thread is to be joined */
    int fd;                    /* junos_sync_get_fd's descriptor (the library closes it) */
    int wake;                  /* eventfd: wakes the application thread for a stop */
    bool has_thread;
    bool zombie;               /* the thread ended by itself (exit from a callback): join it */
    bool joining;              /* h_exit_ctx is joining it */
    int stop;                  /* atomic: call junos_sync_exit and end */
    int exited_in_cb;          /* atomic: junos_sync_exit was called on the thread (callback) */
    pthread_t thread;
} h_app_t;

#define H_APPS 64

static pthread_mutex_t h_apps_mu = PTHREAD_MUTEX_INITIALIZER;
static h_app_t h_apps[H_APPS];      /* under h_apps_mu */
static __thread h_app_t *h_my_app;  /* on an application thread: its slot */

bool h_dispatch_mode(void)
{
    return h_rt.dispatch != 0;
}

void h_dispatch_mode_off(void)
{
    h_rt.dispatch = 0;
}

bool h_on_app_thread(void)
{
    return h_my_app != NULL;
}

/* The live slot of ctx, or NULL. Lock held. */
static h_app_t *h_app_find(junos_sync_context_t *ctx)
{
    for (int i = 0; i < H_APPS; i++)
        if (h_apps[i].ctx == ctx && !h_apps[i].zombie)
            return &h_apps[i];
    return NULL;
}

/* Lock held. */
static void h_app_release(h_app_t *a)
{
    if (a->wake >= 0)
        close(a->wake);
    memset(a, 0, sizeof *a);
    a->wake = -1;
}

/* Joins a's thread (marked joining) and frees its slot. Called with the lock held; returns
 * without it. */
static void h_app_join(h_app_t *a)
{
    pthread_t th = a->thread;
    pthread_mutex_unlock(&h_apps_mu);
    pthread_join(th, NULL);
    pthread_mutex_lock(&h_apps_mu);
    h_app_release(a);
    H_DEC(h_app_threads);
    pthread_mutex_unlock(&h_apps_mu);
}

static bool h_app_free_slot(const h_app_t *a)
{
    return a->ctx == NULL && !a->zombie && !a->has_thread;
}

/* The application's event loop: wait for the descriptor (or a stop), dispatch. Never touches
 * the context after it is gone: after the exit it made on request, or after a dispatch whose
 * callback exited the context. */
static void *h_app_main(void *arg)
{
    h_app_t *a = (h_app_t *)arg;
    h_my_app = a;
    junos_sync_context_t *ctx = a->ctx; /* the slot's field changes under the lock only */
    bool failed = false;
    for (;;) {
        struct pollfd p[2];
        p[0].fd = failed ? -1 : a->fd; /* a failed context: only a stop is awaited */
        p[0].events = POLLIN;
        p[0].revents = 0;
        p[1].fd = a->wake;
        p[1].events = POLLIN;
        p[1].revents = 0;
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            h_fail(__FILE__, __LINE__, "application thread: poll: %s", strerror(errno));
            break;
        }
        if (H_LOAD(a->stop)) {
            /* The exit the test asked for, here where the callbacks run (the API's rule). */
            junos_sync_exit(ctx);
            return NULL; /* joined by h_exit_ctx */
        }
        if (p[0].revents & (POLLERR | POLLNVAL)) {
            h_fail(__FILE__, __LINE__, "application thread: the context's descriptor %d is"
                   " in error (revents %#x)", a->fd, (unsigned)p[0].revents);
            failed = true;
            continue;
        }
        if (p[0].revents & POLLIN) {
            junos_sync_status_t r = junos_sync_dispatch(ctx);
            if (H_LOAD(a->exited_in_cb))
                break; /* a callback exited the context: it is gone */
            if (r != JUNOS_SYNC_OK) {
                h_fail(__FILE__, __LINE__, "junos_sync_dispatch returned %d", (int)r);
                failed = true;
            }
        }
    }
    /* Ended by itself: forget the context (its pointer may be reused by the next one), and
     * leave the thread to be joined, unless h_exit_ctx already waits for it. */
    pthread_mutex_lock(&h_apps_mu);
    a->ctx = NULL;
    if (!a->joining)
        a->zombie = true;
    pthread_mutex_unlock(&h_apps_mu);
    return NULL;
}

junos_sync_status_t h_start(junos_sync_context_t *ctx)
{
    if (!h_dispatch_mode() || ctx == NULL)
        return junos_sync_start(ctx);
    h_apps_reap(false);
    pthread_mutex_lock(&h_apps_mu);
    h_app_t *a = h_app_find(ctx);
    bool started_before = a != NULL && a->has_thread;
    pthread_mutex_unlock(&h_apps_mu);
    if (started_before)
        return junos_sync_start(ctx); /* a second start: the library's answer */
    if (a == NULL) {
        /* Before the start, on the calling thread: the library asks for it that way. */
        int fd = junos_sync_get_fd(ctx);
        if (fd < 0)
            return junos_sync_start(ctx); /* already started elsewhere: the library's answer */
        int wake = eventfd(0, EFD_CLOEXEC);
        if (wake < 0) {
            h_fail(__FILE__, __LINE__, "eventfd: %s", strerror(errno));
            return junos_sync_start(ctx);
        }
        pthread_mutex_lock(&h_apps_mu);
        for (int i = 0; i < H_APPS && a == NULL; i++)
            if (h_app_free_slot(&h_apps[i]))
                a = &h_apps[i];
        if (a == NULL) {
            pthread_mutex_unlock(&h_apps_mu);
            close(wake);
            fprintf(stderr, "harness: more than %d contexts in dispatch mode\n", H_APPS);
            abort();
        }
        memset(a, 0, sizeof *a);
        a->ctx = ctx;
        a->fd = fd;
        a->wake = wake;
        pthread_mutex_unlock(&h_apps_mu);
    }
    junos_sync_status_t r = junos_sync_start(ctx);
    pthread_mutex_lock(&h_apps_mu);
    /* Gone if bind_done exited the context inside the start (the slot went with the exit). */
    a = h_app_find(ctx);
    if (r == JUNOS_SYNC_OK && a != NULL) {
        a->has_thread = true;
        if (pthread_create(&a->thread, NULL, h_app_main, a) != 0) {
            pthread_mutex_unlock(&h_apps_mu);
            fprintf(stderr, "harness: cannot create an application thread\n");
            abort();
        }
        H_INC(h_app_threads);
    }
    pthread_mutex_unlock(&h_apps_mu);
    return r;
}

void h_exit_ctx(junos_sync_context_t *ctx)
{
    if (!h_dispatch_mode() || ctx == NULL) {
        junos_sync_exit(ctx);
        return;
    }
    pthread_mutex_lock(&h_apps_mu);
    h_app_t *a = h_app_find(ctx);
    if (a == NULL || !a->has_thread) {
        /* Never started (or the start failed, or bind_done exits inside the start): nothing
         * dispatches, so this thread is the one to exit on. */
        if (a != NULL)
            h_app_release(a);
        pthread_mutex_unlock(&h_apps_mu);
        junos_sync_exit(ctx);
        return;
    }
    if (a == h_my_app) {
        /* From a callback of this context (or a callback its exit runs): the library finishes
         * the exit when the callback returns; the thread then stops dispatching. */
        H_STORE(a->exited_in_cb, 1);
        pthread_mutex_unlock(&h_apps_mu);
        junos_sync_exit(ctx);
        return;
    }
    /* From another thread: the application thread exits the context and ends. */
    a->joining = true;
    H_STORE(a->stop, 1);
    uint64_t one = 1;
    if (write(a->wake, &one, sizeof one) != (ssize_t)sizeof one)
        h_fail(__FILE__, __LINE__, "waking the application thread: %s", strerror(errno));
    h_app_join(a);
}

/* Joins the application threads that ended by themselves (exit from a callback) and frees
 * their slots; `all`, at the end of a test, also frees the slots of contexts registered but
 * never started. */
static void h_apps_reap(bool all)
{
    for (;;) {
        h_app_t *a = NULL;
        pthread_mutex_lock(&h_apps_mu);
        for (int i = 0; i < H_APPS && a == NULL; i++)
            if (h_apps[i].zombie)
                a = &h_apps[i];
        if (a == NULL) {
            if (all)
                for (int i = 0; i < H_APPS; i++)
                    if (h_apps[i].ctx != NULL && !h_apps[i].has_thread)
                        h_app_release(&h_apps[i]);
            pthread_mutex_unlock(&h_apps_mu);
            return;
        }
        a->zombie = false;
        a->joining = true;
        h_app_join(a);
    }
}

/* In a forked child: the parent's application threads do not exist here. */
static void h_apps_after_fork(void)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    h_apps_mu = m;
    memset(h_apps, 0, sizeof h_apps);
    for (int i = 0; i < H_APPS; i++)
        h_apps[i].wake = -1;
    H_STORE(h_app_threads, 0);
}
