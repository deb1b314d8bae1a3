/*
 * junos-sync benchmarks, linked against the library like any application. Each run forks once,
 * before any thread exists: the parent is the master, the child the backup (each pinned to its
 * own CPU unless BENCH_PIN=0), on 127.0.0.1. Prints one JSON object on stdout, or fails loudly.
 *
 *   jsync_bench stream  LEN N [bounded]
 *                                      the app mallocs, fills and queues N TLVs of LEN payload
 *                                      bytes (no ack requested); clock: first malloc -> the N-th
 *                                      sync_free_func call on the master (after the backup's
 *                                      ack). The backup checks every payload (bench_consume).
 *                                      Backlog limit 1 TiB: the app never waits. `bounded`: the
 *                                      default limit with no_resync; on BACKLOG_FULL the app
 *                                      sleeps 50 us and retries.
 *   jsync_bench latency LEN N WARMUP [chained | wait]
 *                                      N sequential round trips after WARMUP unrecorded ones:
 *                                      t0 just before junos_sync_queue(ack_requested) on the
 *                                      application thread, t1 on entry of sync_ack_notify_func.
 *                                      The next TLV is queued by the application thread once
 *                                      the callback has posted a semaphore (the wait is not in
 *                                      the figure). `chained`: queued from inside the ack
 *                                      callback instead (no application-thread hop).
 *                                      `wait`: junos_sync_queue(ack_requested=false) then
 *                                      junos_sync_wait; t1 when the wait returns OK.
 *   jsync_bench resync  ENTRIES LEN    master database of ENTRIES entries of LEN bytes; clock:
 *                                      backup's junos_sync_init -> its sync_init_sync_done_func.
 *   jsync_bench memory  N LEN stall|nobackup
 *                                      master RSS before/after queueing N TLVs that stay
 *                                      unacknowledged: `stall` = a connected backup that is
 *                                      SIGSTOPped (then SIGCONTed: all N must arrive intact),
 *                                      `nobackup` = no backup ever (junos_sync_exit must free
 *                                      all N).
 *   jsync_bench memctl  N LEN          control, no library: RSS of N malloc'd TLVs alone.
 *   jsync_bench handshake N WARMUP     with a master running, the backup process starts a new
 *                                      backup context N+WARMUP times, one after the other: t0
 *                                      just before junos_sync_start (backup), t1 on entry of
 *                                      each side's sync_conn_status_change_func(CONN_UP) (one
 *                                      clock, CLOCK_MONOTONIC, across both processes); then it
 *                                      exits that context and the next starts once the master
 *                                      saw the disconnection. Last, a backup with a key the
 *                                      master does not hold must be refused (auth_failures on
 *                                      both sides, no CONN_UP): proof the pair was keyed as the
 *                                      environment says, or unkeyed.
 *
 * Keyed: every context of both processes is keyed when JUNOS_SYNC_AUTH_KEY_FILE names a key
 * file (read by junos_sync_init, inherited by the forked backup); the JSON says "keyed".
 *
 * `dispatch` (an option word of stream and latency): both contexts in dispatch mode
 * (junos_sync_get_fd before junos_sync_start), every callback on the process's main thread
 * inside junos_sync_dispatch. The master's main thread queues, and every
 * BENCH_JSYNC_DISPATCH_EVERY messages (default 1024) polls the descriptor with timeout 0 and
 * dispatches if it is readable; every wait (the session, the last free, each ack in latency)
 * is a loop of poll(fd, 100 ms) + junos_sync_dispatch. The backup's main thread does the same
 * until its last message. Acknowledged TLVs are freed there, on the thread that allocated
 * them.
 */
#include <jnx/junos_sync.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <semaphore.h>

#include "common.h"

#ifdef BENCH_REF
/* Built against an earlier library (BENCH_REF_LIB in run.sh) for the thread-mode rows: the
 * calls it may lack fail here instead of at link time. */
#define junos_sync_get_fd(ctx) ((void)(ctx), b_die("dispatch mode: not in this build (BENCH_REF)"), -1)
#define junos_sync_wait(ctx, ms) ((void)(ctx), (void)(ms), b_die("junos_sync_wait: not in this build (BENCH_REF)"), JUNOS_SYNC_ERR_STATE)
#define junos_sync_dispatch(ctx) ((void)(ctx), JUNOS_SYNC_ERR_STATE)
#define junos_sync_set_auth_key(ctx, k, n)                                                        \
    ((void)(ctx), (void)(k), (void)(n), b_die("junos_sync_set_auth_key: not in this build"),     \
     JUNOS_SYNC_ERR_STATE)
#endif

/* ------------------------------------------------------------------------------------------ */
/* Shared                                                                                      */

static int64_t g_deadline_s = 120; /* per wait */
static int g_quiet; /* measurement over: the teardown's log lines are expected */
static bool g_keyed; /* JUNOS_SYNC_AUTH_KEY_FILE is set: junos_sync_init keys every context */
static bool g_handshake; /* handshake mode: the master's "closed by peer" lines are expected */

static void log_msg(const char *fmt, ...)
{
    if (B_LOAD(g_quiet))
        return;
    if (b_env_long("BENCH_VERBOSE", 0) == 0 && strstr(fmt, "%s") != NULL) {
        /* Keep the common lines quiet; show anything that looks like trouble. */
        va_list ap;
        va_start(ap, fmt);
        const char *s = va_arg(ap, const char *);
        va_end(ap);
        if (s && !strstr(s, "lost") && !strstr(s, "drop") && !strstr(s, "refused") &&
            !strstr(s, "over") && !strstr(s, "error") && !strstr(s, "dead") && !strstr(s, "fail"))
            return;
        if (s && g_handshake && strstr(s, "closed by peer"))
            return;
    }
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s[%d] libjunos-sync: %s\n", b_prog, (int)getpid(), line);
}

/* Dispatch mode: this process's context and its descriptor (-1: thread mode). */
static bool g_dispatch;
static junos_sync_context_t *g_disp_ctx;
static int g_disp_fd = -1;
static uint64_t g_dispatches, g_polls;

/* Dispatch mode, before junos_sync_start: every callback of ctx will run in pump(). */
static void enable_dispatch(junos_sync_context_t *ctx)
{
    int fd = junos_sync_get_fd(ctx);
    B_CHECK(fd >= 0, "junos_sync_get_fd returned %d", fd);
    g_disp_ctx = ctx;
    g_disp_fd = fd;
}

/* Dispatch mode: one poll of the descriptor (timeout_ms 0: just look) and, if it is readable,
 * one junos_sync_dispatch. */
static void pump(int timeout_ms)
{
    struct pollfd pfd = {g_disp_fd, POLLIN, 0};
    g_polls++;
    int r = poll(&pfd, 1, timeout_ms);
    if (r < 0) {
        B_CHECK(errno == EINTR, "poll: %s", strerror(errno));
        return;
    }
    if (r == 0)
        return;
    junos_sync_status_t rc = junos_sync_dispatch(g_disp_ctx);
    B_CHECK(rc == JUNOS_SYNC_OK, "junos_sync_dispatch returned %d", (int)rc);
    g_dispatches++;
}

/* Waits for a semaphore up to g_deadline_s; on timeout, dies with `what` and `diag()`. In
 * dispatch mode the callbacks that post it run here: poll the descriptor and dispatch. */
static void sem_wait_or_die(sem_t *s, const char *what, void (*diag)(char *, size_t))
{
    if (g_disp_fd >= 0) {
        int64_t end = b_now_ns() + g_deadline_s * 1000000000;
        while (sem_trywait(s) != 0) {
            if (b_now_ns() > end) {
                char d[512] = "";
                if (diag)
                    diag(d, sizeof d);
                b_die("timed out after %llds dispatching, waiting for %s %s",
                      (long long)g_deadline_s, what, d);
            }
            pump(100);
        }
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += g_deadline_s;
    for (;;) {
        if (sem_timedwait(s, &ts) == 0)
            return;
        if (errno == EINTR)
            continue;
        char d[512] = "";
        if (diag)
            diag(d, sizeof d);
        b_die("timed out after %llds waiting for %s %s", (long long)g_deadline_s, what, d);
    }
}

static junos_sync_tlv_t *new_tlv(size_t len, uint64_t seq)
{
    junos_sync_tlv_t *t = malloc(sizeof *t + len);
    B_CHECK(t, "malloc");
    t->tlv_type = 7;
    t->tlv_len = (uint32_t)len;
    b_fill(t->tlv_value, len, seq);
    return t;
}

/* ------------------------------------------------------------------------------------------ */
/* Master                                                                                      */

static junos_sync_context_t *mctx;
static in_port_t m_port;
static sem_t m_up_sem, m_sync_sem, m_done_sem, m_ack_sem, m_down_sem;
static uint64_t m_frees;          /* sync_free_func calls */
static uint64_t m_free_target;    /* post m_done_sem when m_frees reaches it */
static int64_t m_t_last_free;
static uint64_t m_ups, m_downs, m_sync_dones;
static int64_t m_t_up; /* the last CONN_UP */
static size_t m_sync_n;
static int64_t m_t_sync_done;
/* latency */
static int64_t *m_lat;
static uint64_t m_lat_n, m_lat_warm, m_lat_i, m_lat_bad;
static int64_t m_t0;
static size_t m_len;
static bool m_chained;
static uint64_t m_queue_errors;
/* resync walk */
static uint8_t *m_db;
static size_t m_db_n, m_db_len;
static size_t m_walk_next; /* index of the entry get_next returns next */
static uint64_t m_walk_calls, m_walk_starts, m_walk_bad_cursor;

static void m_free(void *p)
{
    free(p);
    uint64_t n = B_INC(m_frees);
    if (n == B_LOAD(m_free_target)) {
        m_t_last_free = b_now_ns();
        sem_post(&m_done_sem);
    }
}

static void m_conn(junos_sync_conn_status_t st)
{
    if (st == JUNOS_SYNC_CONN_UP) {
        B_STORE(m_t_up, b_now_ns());
        B_INC(m_ups);
        sem_post(&m_up_sem);
    } else {
        B_INC(m_downs);
        sem_post(&m_down_sem);
    }
}

static void m_sync_done(size_t n)
{
    m_sync_n = n;
    m_t_sync_done = b_now_ns();
    B_INC(m_sync_dones);
    sem_post(&m_sync_sem);
}

static void m_bind(in_port_t port)
{
    m_port = port;
}

static void m_ack(junos_sync_tlv_t *t, size_t len)
{
    int64_t t1 = b_now_ns();
    uint64_t i = m_lat_i;
    uint64_t w0 = UINT64_MAX;
    if (t && len == m_len && t->tlv_len == len && len >= 8)
        memcpy(&w0, t->tlv_value, 8);
    if (w0 != i) {
        m_lat_bad++;
    } else if (i >= m_lat_warm) {
        m_lat[i - m_lat_warm] = t1 - B_LOAD(m_t0);
    }
    m_lat_i = i + 1;
    if (m_chained && i + 1 < m_lat_warm + m_lat_n) {
        junos_sync_tlv_t *nt = new_tlv(m_len, i + 1);
        B_STORE(m_t0, b_now_ns());
        if (junos_sync_queue(mctx, nt, true) != JUNOS_SYNC_OK) {
            m_queue_errors++;
            free(nt);
            sem_post(&m_ack_sem);
        }
        return;
    }
    sem_post(&m_ack_sem);
}

/* The database walk: the cursor is the address of the entry returned last. */
static void *m_get_next(void *cur, junos_sync_getnext_data_t *gn)
{
    m_walk_calls++;
    if (cur == NULL) {
        m_walk_starts++;
        m_walk_next = 0;
    } else if (m_walk_next == 0 || cur != m_db + (m_walk_next - 1) * m_db_len) {
        m_walk_bad_cursor++;
    }
    if (m_walk_next >= m_db_n)
        return NULL;
    junos_sync_tlv_t *t = malloc(sizeof *t + m_db_len);
    B_CHECK(t, "malloc");
    t->tlv_type = 9;
    t->tlv_len = (uint32_t)m_db_len;
    memcpy(t->tlv_value, m_db + m_walk_next * m_db_len, m_db_len);
    gn->data = t;
    return m_db + (m_walk_next++) * m_db_len;
}

static void m_diag(char *out, size_t n)
{
    junos_sync_stats_t s;
    memset(&s, 0, sizeof s);
    if (mctx)
        junos_sync_get_stats(mctx, &s);
    snprintf(out, n,
             "(master: frees %llu/%llu, ups %llu, downs %llu, acks %llu, backlog_bytes %llu, "
             "overflows %llu, connections %llu)",
             (unsigned long long)B_LOAD(m_frees), (unsigned long long)B_LOAD(m_free_target),
             (unsigned long long)B_LOAD(m_ups), (unsigned long long)B_LOAD(m_downs),
             (unsigned long long)m_lat_i, (unsigned long long)s.backlog_bytes,
             (unsigned long long)s.overflows, (unsigned long long)s.connections);
}

static void start_master(bool no_resync, uint32_t keepalive, size_t backlog_limit)
{
    sem_init(&m_up_sem, 0, 0);
    sem_init(&m_sync_sem, 0, 0);
    sem_init(&m_done_sem, 0, 0);
    sem_init(&m_ack_sem, 0, 0);
    sem_init(&m_down_sem, 0, 0);
    B_STORE(m_free_target, UINT64_MAX);
    junos_sync_state_t st;
    memset(&st, 0, sizeof st);
    st.is_master = true;
    st.no_resync = no_resync;
    st.server_addr = INADDR_LOOPBACK;
    st.server_port = 0;
    st.keepalive_time = keepalive;
    junos_sync_callbacks_t cb;
    memset(&cb, 0, sizeof cb);
    cb.sync_ack_notify_func = m_ack;
    cb.sync_data_get_next_func = m_get_next;
    cb.sync_conn_status_change_func = m_conn;
    cb.sync_init_sync_done_func = m_sync_done;
    cb.sync_bind_done_func = m_bind;
    cb.sync_log_msg_func = log_msg;
    cb.sync_free_func = m_free;
    mctx = junos_sync_init(&st, &cb);
    B_CHECK(mctx, "junos_sync_init (master) returned NULL");
    if (backlog_limit)
        B_CHECK(junos_sync_set_backlog_limit(mctx, backlog_limit) == JUNOS_SYNC_OK,
                "junos_sync_set_backlog_limit");
    if (g_dispatch)
        enable_dispatch(mctx);
    B_CHECK(junos_sync_start(mctx) == JUNOS_SYNC_OK, "junos_sync_start (master)");
    B_CHECK(m_port != 0, "sync_bind_done_func not called with a port");
}

static junos_sync_stats_t master_stats(void)
{
    junos_sync_stats_t s;
    B_CHECK(junos_sync_get_stats(mctx, &s) == JUNOS_SYNC_OK, "junos_sync_get_stats");
    return s;
}

/* The backup is connected and (with resync) the initial resync is acknowledged. */
static void wait_session(bool resync)
{
    sem_wait_or_die(&m_up_sem, "the backup to connect", m_diag);
    if (resync)
        sem_wait_or_die(&m_sync_sem, "the master's sync_init_sync_done_func", m_diag);
}

/* ------------------------------------------------------------------------------------------ */
/* Backup (child process)                                                                      */

static junos_sync_context_t *bctx;
static sem_t b_up_sem, b_done_sem, b_sync_sem;
static b_check_t b_chk;
static size_t b_len;
static uint64_t b_target = UINT64_MAX;
static uint64_t b_ups, b_downs, b_clears, b_sync_dones;
static size_t b_sync_n;
static double b_cpu_up;
static int64_t b_t_up, b_t_up_last, b_t_sync_done;

/* What the backup reports to the master's process. */
typedef struct {
    b_check_t chk;
    double cpu_s;      /* user+sys from CONN_UP (stream/latency) or init (resync) to done */
    int64_t t_start;   /* resync: just before junos_sync_init */
    int64_t t_done;    /* last decode / init_sync_done */
    uint64_t ups, downs, clears, sync_dones;
    uint64_t sync_n;
    uint64_t misaligned;
    uint64_t dispatches; /* dispatch mode: junos_sync_dispatch calls */
    long hwm_kb;
} b_result_t;
static b_result_t b_res;

static void b_decode(void *data, size_t len)
{
    if (((uintptr_t)data & 7) != 0)
        b_res.misaligned++; /* the header promises 8-byte alignment */
    bench_consume(&b_chk, data, len, b_len);
    if (b_chk.count == b_target) {
        b_res.t_done = b_now_ns();
        b_res.cpu_s = b_cpu_s() - b_cpu_up;
        sem_post(&b_done_sem);
    }
}

static void b_conn(junos_sync_conn_status_t st)
{
    if (st == JUNOS_SYNC_CONN_UP) {
        B_STORE(b_t_up_last, b_now_ns());
        if (B_INC(b_ups) == 1) {
            b_t_up = b_now_ns();
            if (b_cpu_up == 0)
                b_cpu_up = b_cpu_s();
        }
        sem_post(&b_up_sem);
    } else {
        B_INC(b_downs);
    }
}

static void b_db_clear(void)
{
    b_clears++;
    memset(&b_chk, 0, sizeof b_chk);
}

static void b_sync_done(size_t n)
{
    b_t_sync_done = b_now_ns();
    b_sync_n = n;
    B_INC(b_sync_dones);
    sem_post(&b_sync_sem);
}

static void b_diag(char *out, size_t n)
{
    snprintf(out, n, "(backup: decoded %llu/%llu, ups %llu, downs %llu, clears %llu)",
             (unsigned long long)b_chk.count, (unsigned long long)b_target,
             (unsigned long long)B_LOAD(b_ups), (unsigned long long)B_LOAD(b_downs),
             (unsigned long long)b_clears);
}

static void backup_sems_init(void)
{
    sem_init(&b_up_sem, 0, 0);
    sem_init(&b_done_sem, 0, 0);
    sem_init(&b_sync_sem, 0, 0);
}

/* A backup context of the master at `port`, not started. */
static junos_sync_context_t *new_backup(in_port_t port, bool no_resync, uint32_t keepalive)
{
    junos_sync_state_t st;
    memset(&st, 0, sizeof st);
    st.is_master = false;
    st.no_resync = no_resync;
    st.server_addr = INADDR_LOOPBACK;
    st.server_port = port;
    st.keepalive_time = keepalive;
    junos_sync_callbacks_t cb;
    memset(&cb, 0, sizeof cb);
    cb.sync_data_decode_func = b_decode;
    cb.sync_conn_status_change_func = b_conn;
    cb.sync_init_sync_done_func = b_sync_done;
    cb.sync_log_msg_func = log_msg;
    cb.sync_db_clear_func = b_db_clear;
    junos_sync_context_t *ctx = junos_sync_init(&st, &cb);
    B_CHECK(ctx, "junos_sync_init (backup) returned NULL");
    return ctx;
}

static void start_backup(in_port_t port, bool no_resync, uint32_t keepalive)
{
    backup_sems_init();
    bctx = new_backup(port, no_resync, keepalive);
    if (g_dispatch)
        enable_dispatch(bctx);
    B_CHECK(junos_sync_start(bctx) == JUNOS_SYNC_OK, "junos_sync_start (backup)");
}

/* The child: connects to the master's port (read from the pipe), decodes until `target`
 * messages (or the initial sync when resync_mode), reports, and leaves when the parent closes
 * its pipe. */
static void backup_main(b_pair_t *p, size_t len, uint64_t target, bool resync_mode,
                        uint32_t keepalive)
{
    b_prog = "jsync_bench(backup)";
    b_len = len;
    b_target = target;
    in_port_t port;
    B_CHECK(b_read_all(p->from_parent, &port, sizeof port), "master went away before its port");
    b_res.t_start = b_now_ns();
    if (resync_mode)
        b_cpu_up = b_cpu_s();
    start_backup(port, false, keepalive);
    if (resync_mode) {
        sem_wait_or_die(&b_sync_sem, "sync_init_sync_done_func", b_diag);
        b_res.t_done = b_t_sync_done;
        b_res.cpu_s = b_cpu_s() - b_cpu_up;
    } else {
        sem_wait_or_die(&b_done_sem, "the last message", b_diag);
    }
    b_res.chk = b_chk;
    b_res.ups = B_LOAD(b_ups);
    b_res.downs = B_LOAD(b_downs);
    b_res.clears = b_clears;
    b_res.sync_dones = B_LOAD(b_sync_dones);
    b_res.sync_n = b_sync_n;
    b_res.hwm_kb = b_status_kb("VmHWM");
    b_res.dispatches = g_dispatches;
    b_write_all(p->to_parent, &b_res, sizeof b_res);
    B_STORE(g_quiet, 1);
    char c;
    while (b_read_all(p->from_parent, &c, 1)) {
    }
    junos_sync_exit(bctx);
    _exit(0);
}

static b_result_t read_backup_result(b_pair_t *p)
{
    b_result_t r;
    B_CHECK(b_read_all(p->from_child, &r, sizeof r), "backup exited without a result");
    return r;
}

static void finish_pair(b_pair_t *p)
{
    B_STORE(g_quiet, 1);
    junos_sync_exit(mctx);
    mctx = NULL;
    g_disp_fd = -1;
    close(p->to_child);
    b_reap(p);
}

static void check_session(const b_result_t *r, const char *what)
{
    B_CHECK(r->misaligned == 0, "%s: %llu payloads were not 8-byte aligned", what,
            (unsigned long long)r->misaligned);
    B_CHECK(r->ups == 1 && r->downs == 0, "%s: backup saw %llu connections and %llu disconnections",
            what, (unsigned long long)r->ups, (unsigned long long)r->downs);
    B_CHECK(B_LOAD(m_ups) == 1 && B_LOAD(m_downs) == 0,
            "%s: master saw %llu connections and %llu disconnections", what,
            (unsigned long long)m_ups, (unsigned long long)m_downs);
    junos_sync_stats_t s = master_stats();
    B_CHECK(s.overflows == 0, "%s: the backlog overflowed %llu times", what,
            (unsigned long long)s.overflows);
}

/* ------------------------------------------------------------------------------------------ */
/* Modes                                                                                       */

static int run_stream(size_t len, uint64_t n, bool bounded)
{
    b_pair_t p = b_fork();
    if (p.pid == 0)
        backup_main(&p, len, n, false, 60);
    b_prog = "jsync_bench(master)";
    /* Unbounded (the figure): room for everything, the application never waits and nothing
     * overflows. Bounded: the library's default limit with no_resync, and the application
     * retries after 50 us on JUNOS_SYNC_ERR_BACKLOG_FULL (flow control, like a blocking write).
     * BENCH_JSYNC_BACKLOG_LIMIT=bytes overrides the limit (0: the library's default). */
    size_t limit = (size_t)b_env_long("BENCH_JSYNC_BACKLOG_LIMIT", bounded ? 0 : 1L << 40);
    start_master(bounded, 60, limit);
    b_write_all(p.to_child, &m_port, sizeof m_port);
    wait_session(!bounded);

    long hwm0 = b_status_kb("VmHWM");
    uint64_t retries = 0;
    /* Dispatch mode: a look at the descriptor every `every` messages (frees and acks wait
     * until then); one word so that the queue loop stays the same in both modes. */
    uint64_t every = g_dispatch ? (uint64_t)b_env_long("BENCH_JSYNC_DISPATCH_EVERY", 1024) : 0;
    B_CHECK(!g_dispatch || every > 0, "BENCH_JSYNC_DISPATCH_EVERY must be at least 1");
    uint64_t next_look = every ? every : UINT64_MAX;
    uint64_t disp0 = g_dispatches, polls0 = g_polls;
    B_STORE(m_free_target, n);
    double cpu0 = b_cpu_s();
    int64_t t0 = b_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        junos_sync_tlv_t *t = new_tlv(len, i);
        junos_sync_status_t rc;
        while ((rc = junos_sync_queue(mctx, t, false)) == JUNOS_SYNC_ERR_BACKLOG_FULL && bounded) {
            retries++;
            if (g_dispatch) {
                pump(1); /* the acks that make room are taken here */
                continue;
            }
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
        B_CHECK(rc == JUNOS_SYNC_OK, "junos_sync_queue #%llu returned %d", (unsigned long long)i,
                (int)rc);
        if (i + 1 == next_look) {
            pump(0);
            next_look += every;
        }
    }
    int64_t t_queued = b_now_ns();
    sem_wait_or_die(&m_done_sem, "the last sync_free_func", m_diag);
    int64_t t1 = m_t_last_free;
    double cpu1 = b_cpu_s();
    long hwm1 = b_status_kb("VmHWM");
    junos_sync_stats_t s = master_stats();
    B_CHECK(s.overflows == 0,
            "the backlog overflowed (%llu times, limit %zu): TLVs were freed without an ack and "
            "the backup was resynced from the (empty) database",
            (unsigned long long)s.overflows, limit);

    b_result_t r = read_backup_result(&p);
    b_check_t want;
    b_expected(&want, 0, n, len);
    b_verify("stream", &r.chk, &want);
    check_session(&r, "stream");
    B_CHECK(B_LOAD(m_frees) == n, "master freed %llu TLVs, queued %llu",
            (unsigned long long)m_frees, (unsigned long long)n);
    /* The loop publishes freed bytes once per turn: allow it a moment, then insist. */
    int64_t settle0 = b_now_ns();
    for (s = master_stats(); s.backlog_bytes != 0 && b_now_ns() - settle0 < 1000000000;
         s = master_stats()) {
        if (g_dispatch)
            pump(1);
        else
            b_sleep_ms(1);
    }
    B_CHECK(s.backlog_bytes == 0, "backlog_bytes is still %llu 1 s after every TLV was freed",
            (unsigned long long)s.backlog_bytes);
    uint64_t dispatches = g_dispatches - disp0, polls = g_polls - polls0;
    finish_pair(&p);

    double secs = (double)(t1 - t0) / 1e9;
    printf("{\"mode\": \"stream\", \"contender\": \"junos-sync%s%s%s\", \"keyed\": %s, "
           "\"dispatch\": %s, \"dispatch_every\": %llu, \"master_dispatches\": %llu, "
           "\"master_polls\": %llu, \"backup_dispatches\": %llu, \"len\": %zu, \"n\": %llu, "
           "\"secs\": %.6f, \"msgs_per_s\": %.1f, \"mb_per_s\": %.2f, "
           "\"cpu_master_s_per_M\": %.4f, \"cpu_backup_s_per_M\": %.4f, "
           "\"queue_phase_s\": %.6f, \"backup_last_decode_to_last_free_us\": %.1f, "
           "\"master_hwm_kb_before\": %ld, \"master_hwm_kb\": %ld, \"backup_hwm_kb\": %ld, "
           "\"backlog_limit_bytes\": %zu, \"backlog_full_retries\": %llu, \"verified\": true}\n",
           bounded ? " (bounded)" : "", g_keyed ? " keyed" : "", g_dispatch ? " dispatch" : "",
           g_keyed ? "true" : "false", g_dispatch ? "true" : "false", (unsigned long long)every,
           (unsigned long long)dispatches, (unsigned long long)polls,
           (unsigned long long)r.dispatches, len, (unsigned long long)n, secs, (double)n / secs,
           (double)n * (double)len / secs / 1e6, (cpu1 - cpu0) / (double)n * 1e6,
           r.cpu_s / (double)n * 1e6, (double)(t_queued - t0) / 1e9,
           (double)(t1 - r.t_done) / 1e3, hwm0, hwm1, r.hwm_kb, limit ? limit : (size_t)64 << 20,
           (unsigned long long)retries);
    return 0;
}

static int run_latency(size_t len, uint64_t n, uint64_t warm, bool chained, bool waited)
{
    b_pair_t p = b_fork();
    if (p.pid == 0)
        backup_main(&p, len, n + warm, false, 60);
    b_prog = "jsync_bench(master)";
    m_len = len;
    m_lat_n = n;
    m_lat_warm = warm;
    m_chained = chained;
    m_lat = calloc(n, sizeof *m_lat);
    B_CHECK(m_lat, "calloc");
    start_master(false, 60, 0);
    b_write_all(p.to_child, &m_port, sizeof m_port);
    wait_session(true);
    B_STORE(m_free_target, n + warm);

    if (chained) {
        junos_sync_tlv_t *t = new_tlv(len, 0);
        B_STORE(m_t0, b_now_ns());
        B_CHECK(junos_sync_queue(mctx, t, true) == JUNOS_SYNC_OK, "junos_sync_queue");
        sem_wait_or_die(&m_ack_sem, "the last ack (chained)", m_diag);
        B_CHECK(m_queue_errors == 0, "junos_sync_queue failed inside the ack callback");
        B_CHECK(m_lat_i == n + warm, "chained: %llu acks, want %llu", (unsigned long long)m_lat_i,
                (unsigned long long)(n + warm));
    } else if (waited) {
        /* queue then junos_sync_wait: t1 when the wait returns OK (no ack notification). */
        for (uint64_t i = 0; i < n + warm; i++) {
            junos_sync_tlv_t *t = new_tlv(len, i);
            int64_t t0 = b_now_ns();
            junos_sync_status_t rc = junos_sync_queue(mctx, t, false);
            B_CHECK(rc == JUNOS_SYNC_OK, "junos_sync_queue returned %d", (int)rc);
            rc = junos_sync_wait(mctx, 10000);
            int64_t t1 = b_now_ns();
            B_CHECK(rc == JUNOS_SYNC_OK, "junos_sync_wait returned %d", (int)rc);
            if (i >= warm)
                m_lat[i - warm] = t1 - t0;
        }
    } else {
        for (uint64_t i = 0; i < n + warm; i++) {
            junos_sync_tlv_t *t = new_tlv(len, i);
            B_STORE(m_t0, b_now_ns());
            junos_sync_status_t rc = junos_sync_queue(mctx, t, true);
            B_CHECK(rc == JUNOS_SYNC_OK, "junos_sync_queue returned %d", (int)rc);
            sem_wait_or_die(&m_ack_sem, "sync_ack_notify_func", m_diag);
        }
    }
    sem_wait_or_die(&m_done_sem, "the last sync_free_func", m_diag);
    B_CHECK(m_lat_bad == 0, "%llu ack notifications for the wrong TLV", (unsigned long long)m_lat_bad);

    b_result_t r = read_backup_result(&p);
    b_check_t want;
    b_expected(&want, 0, n + warm, len);
    b_verify("latency", &r.chk, &want);
    check_session(&r, "latency");
    finish_pair(&p);

    printf("{\"mode\": \"latency\", \"contender\": \"junos-sync%s%s%s%s\", \"keyed\": %s, "
           "\"dispatch\": %s, \"len\": %zu, \"n\": %llu, \"warmup\": %llu, ",
           chained ? " (chained)" : "", waited ? " (queue then wait)" : "", g_keyed ? " keyed" : "", g_dispatch ? " dispatch" : "",
           g_keyed ? "true" : "false", g_dispatch ? "true" : "false", len, (unsigned long long)n,
           (unsigned long long)warm);
    b_print_latency(m_lat, n);
    printf(", \"verified\": true}\n");
    return 0;
}

static int run_resync(uint64_t entries, size_t len)
{
    b_pair_t p = b_fork();
    if (p.pid == 0)
        backup_main(&p, len, UINT64_MAX, true, 60);
    b_prog = "jsync_bench(master)";
    m_db_n = entries;
    m_db_len = len;
    m_db = malloc(entries * len);
    B_CHECK(m_db, "malloc db");
    for (uint64_t i = 0; i < entries; i++)
        b_fill(m_db + i * len, len, i);
    start_master(false, 60, 0); /* the default backlog limit: the walk is paced by it */
    double cpu0 = b_cpu_s();
    b_write_all(p.to_child, &m_port, sizeof m_port);
    sem_wait_or_die(&m_sync_sem, "the master's sync_init_sync_done_func", m_diag);
    double cpu1 = b_cpu_s();
    long hwm = b_status_kb("VmHWM");

    b_result_t r = read_backup_result(&p);
    b_check_t want;
    b_expected(&want, 0, entries, len);
    b_verify("resync", &r.chk, &want);
    B_CHECK(r.clears == 1, "backup's sync_db_clear_func ran %llu times", (unsigned long long)r.clears);
    B_CHECK(r.sync_dones == 1 && r.sync_n == entries,
            "backup: sync_init_sync_done_func ran %llu times, last with %llu entries (want 1, %llu)",
            (unsigned long long)r.sync_dones, (unsigned long long)r.sync_n,
            (unsigned long long)entries);
    B_CHECK(m_sync_n == entries, "master: sync_init_sync_done_func(%zu), want %llu", m_sync_n,
            (unsigned long long)entries);
    B_CHECK(m_walk_starts == 1 && m_walk_bad_cursor == 0 && m_walk_calls == entries + 1,
            "walk: %llu starts, %llu calls with a wrong cursor, %llu calls (want 1, 0, %llu)",
            (unsigned long long)m_walk_starts, (unsigned long long)m_walk_bad_cursor,
            (unsigned long long)m_walk_calls, (unsigned long long)(entries + 1));
    check_session(&r, "resync");
    finish_pair(&p);

    double secs = (double)(r.t_done - r.t_start) / 1e9;
    printf("{\"mode\": \"resync\", \"contender\": \"junos-sync\", \"len\": %zu, \"n\": %llu, "
           "\"secs\": %.6f, \"entries_per_s\": %.1f, \"master_done_after_s\": %.6f, "
           "\"cpu_master_s\": %.4f, \"cpu_backup_s\": %.4f, \"master_hwm_kb\": %ld, "
           "\"backup_hwm_kb\": %ld, \"backlog_limit\": \"default\", \"verified\": true}\n",
           len, (unsigned long long)entries, secs, (double)entries / secs,
           (double)(m_t_sync_done - r.t_start) / 1e9, cpu1 - cpu0, r.cpu_s, hwm, r.hwm_kb);
    return 0;
}

/* RSS once it stops moving (the loop thread drains the queue channel into its backlog). */
static long settled_rss_kb(void)
{
    long prev = -1, cur = b_status_kb("VmRSS");
    for (int i = 0; i < 40 && cur != prev; i++) {
        b_sleep_ms(100);
        prev = cur;
        cur = b_status_kb("VmRSS");
    }
    return cur;
}

static int run_memory(uint64_t n, size_t len, bool stall)
{
    b_pair_t p = {0, -1, -1, -1, -1};
    uint32_t keepalive = 3600; /* a stopped backup must not be declared dead meanwhile */
    if (stall) {
        p = b_fork();
        if (p.pid == 0)
            backup_main(&p, len, n, false, keepalive);
    } else {
        b_pin(0);
    }
    b_prog = "jsync_bench(master)";
    size_t limit = (size_t)1 << 40;
    start_master(false, keepalive, limit);
    if (stall) {
        b_write_all(p.to_child, &m_port, sizeof m_port);
        wait_session(true);
        B_CHECK(kill(p.pid, SIGSTOP) == 0, "SIGSTOP: %s", strerror(errno));
        int st;
        B_CHECK(waitpid(p.pid, &st, WUNTRACED) == p.pid && WIFSTOPPED(st), "backup did not stop");
    }
    b_sleep_ms(200);
    long rss0 = settled_rss_kb(), hwm0 = b_status_kb("VmHWM");
    size_t usable = 0;
    /* What the backlog charges for one TLV (its payload and its entry's cost, which differs
     * between releases): read after the first, checked for all of them below. */
    uint64_t charge = 0;
    int64_t t0 = b_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        junos_sync_tlv_t *t = new_tlv(len, i);
        usable += malloc_usable_size(t);
        junos_sync_status_t rc = junos_sync_queue(mctx, t, false);
        B_CHECK(rc == JUNOS_SYNC_OK, "junos_sync_queue #%llu returned %d", (unsigned long long)i,
                (int)rc);
        if (i == 0)
            charge = master_stats().backlog_bytes;
    }
    int64_t t1 = b_now_ns();
    long rss1 = settled_rss_kb(), hwm1 = b_status_kb("VmHWM");
    junos_sync_stats_t s = master_stats();
    B_CHECK(B_LOAD(m_frees) == 0, "%llu TLVs were freed while the backup was stalled",
            (unsigned long long)m_frees);
    B_CHECK(charge > len, "one %zu-byte TLV charged %llu bytes to the backlog", len,
            (unsigned long long)charge);
    B_CHECK(s.backlog_bytes == n * charge, "backlog_bytes %llu, want %llu (%llu per TLV)",
            (unsigned long long)s.backlog_bytes, (unsigned long long)(n * charge),
            (unsigned long long)charge);

    if (stall) {
        /* Let the backup go: everything held must now arrive, intact, and be freed. */
        B_STORE(m_free_target, n);
        B_CHECK(kill(p.pid, SIGCONT) == 0, "SIGCONT: %s", strerror(errno));
        if (B_LOAD(m_frees) < n)
            sem_wait_or_die(&m_done_sem, "the last sync_free_func after SIGCONT", m_diag);
        b_result_t r = read_backup_result(&p);
        b_check_t want;
        b_expected(&want, 0, n, len);
        b_verify("memory", &r.chk, &want);
        check_session(&r, "memory");
        finish_pair(&p);
    } else {
        junos_sync_exit(mctx);
        B_CHECK(B_LOAD(m_frees) == n, "junos_sync_exit freed %llu of %llu held TLVs",
                (unsigned long long)m_frees, (unsigned long long)n);
    }
    double dn = (double)n;
    printf("{\"mode\": \"memory\", \"contender\": \"junos-sync\", \"variant\": \"%s\", \"len\": %zu, "
           "\"n\": %llu, \"queue_s\": %.6f, \"rss_kb_before\": %ld, \"rss_kb_after\": %ld, "
           "\"hwm_kb_before\": %ld, \"hwm_kb_after\": %ld, \"tlv_usable_bytes_each\": %.2f, "
           "\"overhead_b_per_msg\": %.2f, \"peak_overhead_b_per_msg\": %.2f, "
           "\"rss_delta_b_per_msg\": %.2f, \"backlog_charge_b_per_msg\": %llu, \"verified\": true}\n",
           stall ? "stall" : "nobackup", len, (unsigned long long)n, (double)(t1 - t0) / 1e9, rss0,
           rss1, hwm0, hwm1, (double)usable / dn,
           ((double)(rss1 - rss0) * 1024.0 - (double)usable) / dn,
           ((double)(hwm1 - rss0) * 1024.0 - (double)usable) / dn,
           (double)(rss1 - rss0) * 1024.0 / dn, (unsigned long long)charge);
    return 0;
}

/* What N TLVs cost with malloc alone (chunk headers and rounding included), no library. */
static int run_memctl(uint64_t n, size_t len)
{
    void **ptrs = malloc(n * sizeof *ptrs);
    B_CHECK(ptrs, "malloc");
    memset(ptrs, 1, n * sizeof *ptrs); /* touched before the first reading */
    b_sleep_ms(50);
    long rss0 = b_status_kb("VmRSS");
    size_t usable = 0;
    for (uint64_t i = 0; i < n; i++) {
        ptrs[i] = new_tlv(len, i);
        usable += malloc_usable_size(ptrs[i]);
    }
    long rss1 = b_status_kb("VmRSS");
    for (uint64_t i = 0; i < n; i++)
        free(ptrs[i]);
    free(ptrs);
    printf("{\"mode\": \"memctl\", \"contender\": \"malloc alone\", \"len\": %zu, \"n\": %llu, "
           "\"rss_delta_b_per_tlv\": %.2f, \"tlv_usable_bytes_each\": %.2f, \"verified\": true}\n",
           len, (unsigned long long)n, (double)(rss1 - rss0) * 1024.0 / (double)n,
           (double)usable / (double)n);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Handshake                                                                                   */

typedef struct {
    int64_t t0;   /* just before junos_sync_start (backup) */
    int64_t t_up; /* the backup's CONN_UP */
} hs_sample_t;

/* What the backup process reports at the end of a handshake run. */
typedef struct {
    uint64_t ups, downs;
    uint64_t wrong_key_auth_failures; /* the wrong-key backup's own count */
    uint64_t wrong_key_ups;
} hs_result_t;

static void random_bytes(void *out, size_t n)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    B_CHECK(fd >= 0, "/dev/urandom: %s", strerror(errno));
    B_CHECK(b_read_all(fd, out, n), "/dev/urandom: end of file");
    close(fd);
}

static uint64_t stats_auth_failures(junos_sync_context_t *ctx)
{
    junos_sync_stats_t s;
    B_CHECK(junos_sync_get_stats(ctx, &s) == JUNOS_SYNC_OK, "junos_sync_get_stats");
    return s.auth_failures;
}

static void hs_backup_main(b_pair_t *p, uint64_t total)
{
    b_prog = "jsync_bench(backup)";
    in_port_t port;
    B_CHECK(b_read_all(p->from_parent, &port, sizeof port), "master went away before its port");
    backup_sems_init();
    for (uint64_t i = 0; i < total; i++) {
        junos_sync_context_t *ctx = new_backup(port, false, 60);
        hs_sample_t smp;
        smp.t0 = b_now_ns();
        B_CHECK(junos_sync_start(ctx) == JUNOS_SYNC_OK, "junos_sync_start (backup #%llu)",
                (unsigned long long)i);
        sem_wait_or_die(&b_up_sem, "the backup's CONN_UP", b_diag);
        smp.t_up = B_LOAD(b_t_up_last);
        junos_sync_exit(ctx);
        b_write_all(p->to_parent, &smp, sizeof smp);
        char go;
        B_CHECK(b_read_all(p->from_parent, &go, 1), "master went away");
    }
    /* A backup holding a key the master does not hold (a random one: the master is keyed with
     * another key, or not at all) must fail authentication and never come up. */
    hs_result_t r;
    memset(&r, 0, sizeof r);
    B_STORE(g_quiet, 1); /* its authentication failures are the point */
    uint64_t ups0 = B_LOAD(b_ups);
    junos_sync_context_t *ctx = new_backup(port, false, 60);
    uint8_t key[32];
    random_bytes(key, sizeof key);
    B_CHECK(junos_sync_set_auth_key(ctx, key, sizeof key) == JUNOS_SYNC_OK,
            "junos_sync_set_auth_key");
    B_CHECK(junos_sync_start(ctx) == JUNOS_SYNC_OK, "junos_sync_start (wrong-key backup)");
    int64_t end = b_now_ns() + 10 * 1000000000LL;
    while ((r.wrong_key_auth_failures = stats_auth_failures(ctx)) == 0 && b_now_ns() < end)
        b_sleep_ms(1);
    r.wrong_key_ups = B_LOAD(b_ups) - ups0;
    junos_sync_exit(ctx);
    r.ups = ups0;
    r.downs = B_LOAD(b_downs);
    b_write_all(p->to_parent, &r, sizeof r);
    char c;
    while (b_read_all(p->from_parent, &c, 1)) {
    }
    _exit(0);
}

/* Prints "NAME_p50_us", p99, max, mean of ns[0..n) (sorts them). */
static void print_quantiles(const char *name, int64_t *ns, size_t n)
{
    qsort(ns, n, sizeof *ns, b_cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)ns[i];
    printf("\"%s_p50_us\": %.2f, \"%s_p99_us\": %.2f, \"%s_max_us\": %.2f, \"%s_mean_us\": %.2f, "
           "\"%s_min_us\": %.2f, ",
           name, b_quantile_us(ns, n, 0.50), name, b_quantile_us(ns, n, 0.99), name,
           (double)ns[n - 1] / 1000.0, name, sum / (double)n / 1000.0, name,
           (double)ns[0] / 1000.0);
}

static int run_handshake(uint64_t n, uint64_t warm)
{
    B_CHECK(n > 0, "handshake: N must be at least 1");
    g_handshake = true;
    b_pair_t p = b_fork();
    if (p.pid == 0)
        hs_backup_main(&p, n + warm);
    b_prog = "jsync_bench(master)";
    int64_t *lat_b = calloc(n, sizeof *lat_b), *lat_m = calloc(n, sizeof *lat_m);
    B_CHECK(lat_b && lat_m, "calloc");
    start_master(false, 60, 0);
    double cpu0 = b_cpu_s();
    b_write_all(p.to_child, &m_port, sizeof m_port);
    for (uint64_t i = 0; i < n + warm; i++) {
        sem_wait_or_die(&m_up_sem, "the master's CONN_UP", m_diag);
        int64_t t_mup = B_LOAD(m_t_up);
        hs_sample_t smp;
        B_CHECK(b_read_all(p.from_child, &smp, sizeof smp), "backup exited during the runs");
        B_CHECK(smp.t_up > smp.t0 && t_mup > smp.t0, "CONN_UP before junos_sync_start");
        if (i >= warm) {
            lat_b[i - warm] = smp.t_up - smp.t0;
            lat_m[i - warm] = t_mup - smp.t0;
        }
        /* The next backup starts once this one is gone (a second live backup is refused). */
        sem_wait_or_die(&m_down_sem, "the master's CONN_DOWN", m_diag);
        b_write_all(p.to_child, "g", 1);
    }
    double cpu1 = b_cpu_s();
    B_STORE(g_quiet, 1);
    uint64_t af0 = stats_auth_failures(mctx);
    hs_result_t r;
    B_CHECK(b_read_all(p.from_child, &r, sizeof r), "backup exited without a result");
    uint64_t total = n + warm;
    B_CHECK(r.ups == total && r.downs == total && B_LOAD(m_ups) == total &&
                B_LOAD(m_downs) == total,
            "backup saw %llu connections and %llu disconnections, master %llu and %llu (want %llu)",
            (unsigned long long)r.ups, (unsigned long long)r.downs,
            (unsigned long long)B_LOAD(m_ups), (unsigned long long)B_LOAD(m_downs),
            (unsigned long long)total);
    B_CHECK(af0 == 0, "the master counted %llu authentication failures during the runs",
            (unsigned long long)af0);
    B_CHECK(r.wrong_key_ups == 0 && B_LOAD(m_ups) == total,
            "a backup with a key the master does not hold connected: the master is not keyed "
            "as %s", g_keyed ? "JUNOS_SYNC_AUTH_KEY_FILE says" : "it should be (not at all)");
    B_CHECK(r.wrong_key_auth_failures > 0,
            "a backup with a key the master does not hold saw no authentication failure in 10 s");
    /* The master counts its side of that failure too (it may lag the backup's a little). */
    int64_t end = b_now_ns() + 5 * 1000000000LL;
    uint64_t af;
    while ((af = stats_auth_failures(mctx)) == 0 && b_now_ns() < end)
        b_sleep_ms(1);
    B_CHECK(af > 0, "the master counted no authentication failure for the wrong-key backup");
    finish_pair(&p);

    printf("{\"mode\": \"handshake\", \"contender\": \"junos-sync%s\", \"keyed\": %s, \"n\": %llu, "
           "\"warmup\": %llu, ",
           g_keyed ? " keyed" : "", g_keyed ? "true" : "false", (unsigned long long)n,
           (unsigned long long)warm);
    print_quantiles("backup", lat_b, n);
    print_quantiles("master", lat_m, n);
    printf("\"cpu_master_us_per_handshake\": %.1f, \"wrong_key_refused\": true, "
           "\"verified\": true}\n",
           (cpu1 - cpu0) / (double)total * 1e6);
    free(lat_b);
    free(lat_m);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: jsync_bench stream LEN N [bounded] [dispatch] | "
                    "latency LEN N WARMUP [chained | wait] [dispatch] | resync ENTRIES LEN | "
                    "memory N LEN stall|nobackup | memctl N LEN | handshake N WARMUP\n");
    exit(64);
}

int main(int argc, char **argv)
{
    b_prog = "jsync_bench";
    b_watchdog();
    g_deadline_s = b_env_long("BENCH_TIMEOUT", 180) - 5;
    if (g_deadline_s < 5)
        g_deadline_s = 5;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 4)
        usage();
    const char *mode = argv[1];
    unsigned long long a = strtoull(argv[2], NULL, 10), b = strtoull(argv[3], NULL, 10);
    const char *ka = getenv("JUNOS_SYNC_AUTH_KEY_FILE");
    g_keyed = ka && *ka;
    /* Option words after the numbers, in any order. */
    bool bounded = false, chained = false, waited = false;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "bounded") == 0)
            bounded = true;
        else if (strcmp(argv[i], "chained") == 0)
            chained = true;
        else if (strcmp(argv[i], "wait") == 0)
            waited = true;
        else if (strcmp(argv[i], "dispatch") == 0)
            g_dispatch = true;
    }
    if (g_dispatch && strcmp(mode, "stream") != 0 && strcmp(mode, "latency") != 0)
        usage();
    if (strcmp(mode, "stream") == 0)
        return run_stream(a, b, bounded);
    if (strcmp(mode, "latency") == 0 && argc >= 5)
        return run_latency(a, b, strtoull(argv[4], NULL, 10), chained, waited);
    if (strcmp(mode, "handshake") == 0)
        return run_handshake(a, b);
    if (strcmp(mode, "resync") == 0)
        return run_resync(a, b);
    if (strcmp(mode, "memory") == 0 && argc >= 5)
        return run_memory(a, b, strcmp(argv[4], "stall") == 0);
    if (strcmp(mode, "memctl") == 0)
        return run_memctl(a, b);
    usage();
    return 64;
}
