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
 *   jsync_bench latency LEN N WARMUP [chained]
 *                                      N sequential round trips after WARMUP unrecorded ones:
 *                                      t0 just before junos_sync_queue(ack_requested) on the
 *                                      application thread, t1 on entry of sync_ack_notify_func.
 *                                      The next TLV is queued by the application thread once
 *                                      the callback has posted a semaphore (the wait is not in
 *                                      the figure). `chained`: queued from inside the ack
 *                                      callback instead (no application-thread hop).
 *   jsync_bench resync  ENTRIES LEN    master database of ENTRIES entries of LEN bytes; clock:
 *                                      backup's junos_sync_init -> its sync_init_sync_done_func.
 *   jsync_bench memory  N LEN stall|nobackup
 *                                      master RSS before/after queueing N TLVs that stay
 *                                      unacknowledged: `stall` = a connected backup that is
 *                                      SIGSTOPped (then SIGCONTed: all N must arrive intact),
 *                                      `nobackup` = no backup ever (junos_sync_exit must free
 *                                      all N).
 *   jsync_bench memctl  N LEN          control, no library: RSS of N malloc'd TLVs alone.
 */
#include <jnx/junos_sync.h>

#include <arpa/inet.h>
#include <malloc.h>
#include <semaphore.h>

#include "common.h"

/* ------------------------------------------------------------------------------------------ */
/* Shared                                                                                      */

static int64_t g_deadline_s = 120; /* per wait */
static int g_quiet; /* measurement over: the teardown's log lines are expected */

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
    }
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s[%d] libjunos-sync: %s\n", b_prog, (int)getpid(), line);
}

/* Waits for a semaphore up to g_deadline_s; on timeout, dies with `what` and `diag()`. */
static void sem_wait_or_die(sem_t *s, const char *what, void (*diag)(char *, size_t))
{
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
static sem_t m_up_sem, m_sync_sem, m_done_sem, m_ack_sem;
static uint64_t m_frees;          /* sync_free_func calls */
static uint64_t m_free_target;    /* post m_done_sem when m_frees reaches it */
static int64_t m_t_last_free;
static uint64_t m_ups, m_downs, m_sync_dones;
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
        B_INC(m_ups);
        sem_post(&m_up_sem);
    } else {
        B_INC(m_downs);
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
static int64_t b_t_up, b_t_sync_done;

/* What the backup reports to the master's process. */
typedef struct {
    b_check_t chk;
    double cpu_s;      /* user+sys from CONN_UP (stream/latency) or init (resync) to done */
    int64_t t_start;   /* resync: just before junos_sync_init */
    int64_t t_done;    /* last decode / init_sync_done */
    uint64_t ups, downs, clears, sync_dones;
    uint64_t sync_n;
    uint64_t misaligned;
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

static void start_backup(in_port_t port, bool no_resync, uint32_t keepalive)
{
    sem_init(&b_up_sem, 0, 0);
    sem_init(&b_done_sem, 0, 0);
    sem_init(&b_sync_sem, 0, 0);
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
    bctx = junos_sync_init(&st, &cb);
    B_CHECK(bctx, "junos_sync_init (backup) returned NULL");
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
    B_STORE(m_free_target, n);
    double cpu0 = b_cpu_s();
    int64_t t0 = b_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        junos_sync_tlv_t *t = new_tlv(len, i);
        junos_sync_status_t rc;
        while ((rc = junos_sync_queue(mctx, t, false)) == JUNOS_SYNC_ERR_BACKLOG_FULL && bounded) {
            retries++;
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
        B_CHECK(rc == JUNOS_SYNC_OK, "junos_sync_queue #%llu returned %d", (unsigned long long)i,
                (int)rc);
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
         s = master_stats())
        b_sleep_ms(1);
    B_CHECK(s.backlog_bytes == 0, "backlog_bytes is still %llu 1 s after every TLV was freed",
            (unsigned long long)s.backlog_bytes);
    finish_pair(&p);

    double secs = (double)(t1 - t0) / 1e9;
    printf("{\"mode\": \"stream\", \"contender\": \"junos-sync%s\", \"len\": %zu, \"n\": %llu, "
           "\"secs\": %.6f, \"msgs_per_s\": %.1f, \"mb_per_s\": %.2f, "
           "\"cpu_master_s_per_M\": %.4f, \"cpu_backup_s_per_M\": %.4f, "
           "\"queue_phase_s\": %.6f, \"backup_last_decode_to_last_free_us\": %.1f, "
           "\"master_hwm_kb_before\": %ld, \"master_hwm_kb\": %ld, \"backup_hwm_kb\": %ld, "
           "\"backlog_limit_bytes\": %zu, \"backlog_full_retries\": %llu, \"verified\": true}\n",
           bounded ? " (bounded)" : "", len, (unsigned long long)n, secs, (double)n / secs,
           (double)n * (double)len / secs / 1e6, (cpu1 - cpu0) / (double)n * 1e6,
           r.cpu_s / (double)n * 1e6, (double)(t_queued - t0) / 1e9,
           (double)(t1 - r.t_done) / 1e3, hwm0, hwm1, r.hwm_kb, limit ? limit : (size_t)64 << 20,
           (unsigned long long)retries);
    return 0;
}

static int run_latency(size_t len, uint64_t n, uint64_t warm, bool chained)
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

    printf("{\"mode\": \"latency\", \"contender\": \"junos-sync%s\", \"len\": %zu, \"n\": %llu, "
           "\"warmup\": %llu, ",
           chained ? " (chained)" : "", len, (unsigned long long)n, (unsigned long long)warm);
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
    int64_t t0 = b_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        junos_sync_tlv_t *t = new_tlv(len, i);
        usable += malloc_usable_size(t);
        junos_sync_status_t rc = junos_sync_queue(mctx, t, false);
        B_CHECK(rc == JUNOS_SYNC_OK, "junos_sync_queue #%llu returned %d", (unsigned long long)i,
                (int)rc);
    }
    int64_t t1 = b_now_ns();
    long rss1 = settled_rss_kb(), hwm1 = b_status_kb("VmHWM");
    junos_sync_stats_t s = master_stats();
    B_CHECK(B_LOAD(m_frees) == 0, "%llu TLVs were freed while the backup was stalled",
            (unsigned long long)m_frees);
    B_CHECK(s.backlog_bytes == n * (len + 8), "backlog_bytes %llu, want %llu",
            (unsigned long long)s.backlog_bytes, (unsigned long long)(n * (len + 8)));

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
           "\"rss_delta_b_per_msg\": %.2f, \"verified\": true}\n",
           stall ? "stall" : "nobackup", len, (unsigned long long)n, (double)(t1 - t0) / 1e9, rss0,
           rss1, hwm0, hwm1, (double)usable / dn,
           ((double)(rss1 - rss0) * 1024.0 - (double)usable) / dn,
           ((double)(hwm1 - rss0) * 1024.0 - (double)usable) / dn,
           (double)(rss1 - rss0) * 1024.0 / dn);
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

static void usage(void)
{
    fprintf(stderr, "usage: jsync_bench stream LEN N | latency LEN N WARMUP [chained] | "
                    "resync ENTRIES LEN | memory N LEN stall|nobackup | memctl N LEN\n");
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
    if (strcmp(mode, "stream") == 0)
        return run_stream(a, b, argc >= 5 && strcmp(argv[4], "bounded") == 0);
    if (strcmp(mode, "latency") == 0 && argc >= 5)
        return run_latency(a, b, strtoull(argv[4], NULL, 10),
                           argc >= 6 && strcmp(argv[5], "chained") == 0);
    if (strcmp(mode, "resync") == 0)
        return run_resync(a, b);
    if (strcmp(mode, "memory") == 0 && argc >= 5)
        return run_memory(a, b, strcmp(argv[4], "stall") == 0);
    if (strcmp(mode, "memctl") == 0)
        return run_memctl(a, b);
    usage();
    return 64;
}
