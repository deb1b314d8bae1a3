/*
 * flowd -- an example flow-monitoring daemon replicated with junos-sync.
 *
 * The master keeps a table of flows (5-tuple -> packet/byte counters) and replicates every
 * change to a hot-standby backup as add/update/delete records (see flowd.h). A backup that
 * (re)connects gets the whole table by a resync walk, then the live stream. A backup can be
 * promoted to master in place with junos_sync_switchover, keeping its table.
 *
 *   flowd master [port]     listen on 127.0.0.1:port (0 or absent: any free port)
 *   flowd backup <port>     replicate from the master on 127.0.0.1:port
 *   ... --addr A            either role, last: the address to bind (master, 0.0.0.0 = all
 *                           IPv4, :: = all IPv6 and IPv4) or the master's address (backup),
 *                           instead of 127.0.0.1. An IPv4 address goes in the state's
 *                           server_addr, as 1.0 programs give it; anything else (IPv6,
 *                           fe80::1%eth1, a host name) through junos_sync_set_address
 *   flowd --loop=MODE ...   first: how the daemon runs (below); thread if absent
 *
 * It is driven by line commands on stdin and answers each with exactly one line on stdout, so a
 * script can drive it (see demo.sh). Events and library log lines go to stderr, prefixed with
 * the daemon's role (and $FLOWD_NAME, if set).
 *
 *   fill N [SEED]           master: add N new flows
 *   churn N [SEED]          master: N random add/update/delete operations
 *   barrier [SECS]          master: queue a marker with ack_requested, wait for its ack
 *   digest                  "digest <entries> <order-independent 64-bit hex digest>"
 *   wait-synced [SECS]      backup: wait for the initial resync to complete
 *   wait-conn up|down [SECS] wait until the connection to the peer is up or down
 *   switchover-master PORT [ADDR]  backup: become master on ADDR:PORT (0 = any free port;
 *                           ADDR through junos_sync_set_address, else the state's address:
 *                           127.0.0.1, or --addr's if IPv4)
 *   peer                    "peer <state> <address> <port>" of junos_sync_get_peer_info
 *                           (address "-" when not connected)
 *   stats                   library counters
 *   quit                    junos_sync_exit, print final counters, exit 0 (also on EOF)
 *
 * Loops (--loop=MODE):
 *   thread    junos-sync calls back on its own loop thread while commands run on the main
 *             thread, so everything the callbacks touch is protected by one mutex (flowd_lock),
 *             and waiting commands block on a condition variable.
 *   eventlib  one thread, an ISC eventlib loop (a Junos SDK daemon's): stdin and timers are
 *             eventlib handlers, and junos_sync_set_event_context puts the library's callbacks
 *             in an eventlib handler too. Everything runs on the main thread: no mutex.
 *   epoll     one thread, an epoll loop: junos_sync_get_fd gives the descriptor to watch, and
 *             the loop calls junos_sync_dispatch when it is readable. No mutex either.
 * In the single-threaded modes nothing may block the loop, so a waiting command (barrier,
 * wait-synced, wait-conn, switchover-master) is answered from the loop once what it waits for
 * has happened or its deadline has passed; the next input line is read after that answer.
 */

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ISC eventlib (on Junos, the SDK's libisc; here c-tests/eventlib.c, linked in with -rdynamic
 * so that the library finds evSelectFD/evDeselectFD in the process). */
#include <isc/eventlib.h>
#include <jnx/junos_sync.h>

#include "flowd.h"

/* The address to bind (master) or of the master (backup), as --addr gave it (addr_text); in
 * host byte order when it is IPv4 (flowd_addr), else given with junos_sync_set_address
 * (addr_by_name). listen_text: what the master listens on, for its log. */
static uint32_t flowd_addr = INADDR_LOOPBACK;
static char addr_text[256] = "127.0.0.1";
static bool addr_by_name;
static char listen_text[256] = "127.0.0.1";

/* "A:PORT", or "[A]:PORT" for an IPv6 address. */
static const char *
addr_port (char *buf, size_t cap, const char *a, unsigned port)
{
    snprintf(buf, cap, strchr(a, ':') != NULL ? "[%s]:%u" : "%s:%u", a, port);
    return buf;
}

#define FLOWD_KEEPALIVE   2            /* seconds: a dead or hung peer is noticed quickly */
#define FT_BUCKETS        (1u << 16)   /* fixed, so a resync walk's order never changes */
#define DEFAULT_WAIT_SECS 20

/* ---------------------------------------------------------------------------------------- */
/* The flow table                                                                             */

typedef struct flow_key_s {      /* host byte order */
    uint32_t fk_src_addr;
    uint32_t fk_dst_addr;
    uint16_t fk_src_port;
    uint16_t fk_dst_port;
    uint8_t  fk_proto;
} flow_key_t;

typedef struct flow_entry_s {
    struct flow_entry_s *fe_next;   /* hash chain, sorted by key */
    uint32_t     fe_index;          /* position in ft_vec (random picks for churn) */
    flow_key_t   fe_key;
    uint32_t     fe_first_seen;
    uint32_t     fe_last_seen;
    uint64_t     fe_packets;
    uint64_t     fe_bytes;
} flow_entry_t;

typedef enum { LOOP_THREAD, LOOP_EVENTLIB, LOOP_EPOLL } loop_mode_t;

static loop_mode_t loop_mode = LOOP_THREAD;
static const char *const loop_names[] = {"thread", "eventlib", "epoll"};
static pthread_t main_thread;

/* --loop=thread only: the callbacks run on the library's thread. */
static pthread_mutex_t flowd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t  flowd_cond = PTHREAD_COND_INITIALIZER;

/* The table and the daemon state below are shared with the callbacks: locked with
 * --loop=thread; in the single-threaded modes the callbacks run on this thread, between our
 * own handlers, so there is nothing to lock. */
static void
table_lock (void)
{
    if (loop_mode == LOOP_THREAD)
        pthread_mutex_lock(&flowd_lock);
}

static void
table_unlock (void)
{
    if (loop_mode == LOOP_THREAD)
        pthread_mutex_unlock(&flowd_lock);
}

static void flowd_wake(void);

static flow_entry_t  *ft_buckets[FT_BUCKETS];
static flow_entry_t **ft_vec;       /* every entry once, in no particular order */
static uint32_t       ft_count;
static uint32_t       ft_cap;

/* ---------------------------------------------------------------------------------------- */
/* Daemon state (all protected by flowd_lock unless noted)                                   */

static junos_sync_context_t *sync_ctx;   /* set and cleared by the main thread only */
static bool     is_master;               /* main thread only */
static in_port_t bound_port;
static bool     conn_up;
static bool     synced;                  /* backup: initial resync complete */
static size_t   synced_entries;
static uint32_t barrier_next = 1;        /* main thread only */
static uint32_t barrier_acked;

static struct {
    uint64_t queued;            /* master: records queued */
    uint64_t queue_errors;      /* master: junos_sync_queue failures */
    uint64_t walked;            /* master: records produced by resync walks */
    uint64_t resyncs;           /* both: completed initial resyncs */
    uint64_t applied_add;       /* backup: records applied */
    uint64_t applied_update;
    uint64_t applied_delete;
    /*
     * Backup: records for flows we do not have. Normal around a resync: a flow updated and
     * then deleted on the master before the walk reached it is in neither the walk nor our
     * table, and its update and delete follow the walk; adds queued before the backup
     * connected are replayed after the walk. Records carry whole flows, so applying them in
     * order converges on the master's table all the same.
     */
    uint64_t update_unknown;
    uint64_t delete_unknown;
    uint64_t bad_records;       /* backup: malformed payloads */
    uint64_t off_loop;          /* single-threaded modes: callbacks not on the main thread
                                 * (must stay 0; atomic, since it counts the exception) */
} counters;

/* "master", "backup A", ...: read by the log function on any thread, so swapped atomically. */
static char label_master[64], label_backup[64];
static const char *label = "flowd";

/* ---------------------------------------------------------------------------------------- */
/* Logging                                                                                    */

/*
 * Variadic, as junos-sync's sync_log_msg_func expects (the library always calls it as
 * log("%s", text)). One fprintf per line, so lines from different threads do not mix.
 */
static void
flowd_log (const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(stderr, "    [%s] %s\n", __atomic_load_n(&label, __ATOMIC_ACQUIRE), buf);
}

static void
set_role (bool master)
{
    is_master = master;
    __atomic_store_n(&label, master ? label_master : label_backup, __ATOMIC_RELEASE);
}

static void *
xmalloc (size_t len)
{
    void *p = malloc(len);

    if (p == NULL) {
        flowd_log("out of memory");
        abort();
    }
    return p;
}

/* ---------------------------------------------------------------------------------------- */
/* Hashing and the order-independent digest                                                   */

static uint64_t
mix64 (uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t
flow_key_hash (const flow_key_t *k)
{
    uint64_t h = mix64(((uint64_t)k->fk_src_addr << 32) | k->fk_dst_addr);

    return mix64(h ^ (((uint64_t)k->fk_src_port << 24) | ((uint64_t)k->fk_dst_port << 8) |
                      k->fk_proto));
}

static uint32_t
flow_bucket (const flow_key_t *k)
{
    return (uint32_t)flow_key_hash(k) & (FT_BUCKETS - 1);
}

/* Each entry hashes to 64 bits; the table's digest is their sum, so order does not matter. */
static uint64_t
flow_entry_digest (const flow_entry_t *fe)
{
    uint64_t h = flow_key_hash(&fe->fe_key);

    h = mix64(h ^ fe->fe_packets);
    h = mix64(h ^ fe->fe_bytes);
    h = mix64(h ^ (((uint64_t)fe->fe_first_seen << 32) | fe->fe_last_seen));
    return h;
}

static int
flow_key_cmp (const flow_key_t *a, const flow_key_t *b)
{
    if (a->fk_src_addr != b->fk_src_addr)
        return a->fk_src_addr < b->fk_src_addr ? -1 : 1;
    if (a->fk_dst_addr != b->fk_dst_addr)
        return a->fk_dst_addr < b->fk_dst_addr ? -1 : 1;
    if (a->fk_src_port != b->fk_src_port)
        return a->fk_src_port < b->fk_src_port ? -1 : 1;
    if (a->fk_dst_port != b->fk_dst_port)
        return a->fk_dst_port < b->fk_dst_port ? -1 : 1;
    if (a->fk_proto != b->fk_proto)
        return a->fk_proto < b->fk_proto ? -1 : 1;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Table operations; the caller holds flowd_lock                                              */

/* Finds key; *linkp is where it is, or where it would be inserted (chains are sorted). */
static flow_entry_t *
ft_find (const flow_key_t *key, flow_entry_t ***linkp)
{
    flow_entry_t **link = &ft_buckets[flow_bucket(key)];
    int cmp = 1;

    while (*link != NULL && (cmp = flow_key_cmp(&(*link)->fe_key, key)) < 0)
        link = &(*link)->fe_next;
    *linkp = link;
    return (*link != NULL && cmp == 0) ? *link : NULL;
}

static flow_entry_t *
ft_insert (flow_entry_t **link, const flow_key_t *key)
{
    flow_entry_t *fe = xmalloc(sizeof(*fe));

    bzero(fe, sizeof(*fe));
    fe->fe_key = *key;
    fe->fe_next = *link;
    *link = fe;
    if (ft_count == ft_cap) {
        ft_cap = ft_cap ? ft_cap * 2 : 1024;
        ft_vec = realloc(ft_vec, ft_cap * sizeof(*ft_vec));
        if (ft_vec == NULL) {
            flowd_log("out of memory");
            abort();
        }
    }
    fe->fe_index = ft_count;
    ft_vec[ft_count++] = fe;
    return fe;
}

static void
ft_remove (flow_entry_t **link)
{
    flow_entry_t *fe = *link;

    *link = fe->fe_next;
    ft_vec[fe->fe_index] = ft_vec[--ft_count];
    ft_vec[fe->fe_index]->fe_index = fe->fe_index;
    free(fe);
}

static void
ft_clear (void)
{
    for (uint32_t i = 0; i < ft_count; i++)
        free(ft_vec[i]);
    ft_count = 0;
    bzero(ft_buckets, sizeof(ft_buckets));
}

/* The first entry after key in walk order (bucket, then key within the bucket). */
static flow_entry_t *
ft_successor (const flow_key_t *key)
{
    uint32_t b = flow_bucket(key);
    flow_entry_t *fe = ft_buckets[b];

    while (fe != NULL && flow_key_cmp(&fe->fe_key, key) <= 0)
        fe = fe->fe_next;
    while (fe == NULL && ++b < FT_BUCKETS)
        fe = ft_buckets[b];
    return fe;
}

static uint64_t
ft_digest (void)
{
    uint64_t sum = 0;

    for (uint32_t i = 0; i < ft_count; i++)
        sum += flow_entry_digest(ft_vec[i]);
    return sum;
}

/* ---------------------------------------------------------------------------------------- */
/* Records                                                                                    */

static void
rec_to_key (const flowd_rec_t *rec, flow_key_t *key)
{
    bzero(key, sizeof(*key));
    key->fk_src_addr = ntohl(rec->fr_src_addr);
    key->fk_dst_addr = ntohl(rec->fr_dst_addr);
    key->fk_src_port = ntohs(rec->fr_src_port);
    key->fk_dst_port = ntohs(rec->fr_dst_port);
    key->fk_proto = rec->fr_proto;
}

/* A malloc'd TLV for one flow; junos-sync frees it with sync_free_func (free). */
static junos_sync_tlv_t *
flow_tlv_alloc (uint8_t op, const flow_entry_t *fe)
{
    size_t len = (op == FLOWD_OP_DELETE) ? FLOWD_REC_KEY_LEN : sizeof(flowd_rec_t);
    junos_sync_tlv_t *tlv = xmalloc(sizeof(*tlv) + len);
    flowd_rec_t *rec = (flowd_rec_t *)&tlv->tlv_value;

    tlv->tlv_type = op;
    tlv->tlv_len = (uint32_t)len;
    bzero(rec, len);
    rec->fr_op = op;
    rec->fr_proto = fe->fe_key.fk_proto;
    rec->fr_src_addr = htonl(fe->fe_key.fk_src_addr);
    rec->fr_dst_addr = htonl(fe->fe_key.fk_dst_addr);
    rec->fr_src_port = htons(fe->fe_key.fk_src_port);
    rec->fr_dst_port = htons(fe->fe_key.fk_dst_port);
    if (op != FLOWD_OP_DELETE) {
        rec->fr_first_seen = htonl(fe->fe_first_seen);
        rec->fr_last_seen = htonl(fe->fe_last_seen);
        rec->fr_packets = htobe64(fe->fe_packets);
        rec->fr_bytes = htobe64(fe->fe_bytes);
    }
    return tlv;
}

/* Master: hand a record to junos-sync. On error the TLV is still ours. Table locked. */
static void
flow_queue (junos_sync_tlv_t *tlv, bool ack)
{
    junos_sync_status_t st = junos_sync_queue(sync_ctx, tlv, ack);

    if (st != JUNOS_SYNC_OK) {
        counters.queue_errors++;
        flowd_log("junos_sync_queue failed (status %d), record dropped", (int)st);
        free(tlv);
        return;
    }
    counters.queued++;
}

/* ---------------------------------------------------------------------------------------- */
/* junos-sync callbacks (the library's loop thread, or the main thread in the single-threaded   */
/* modes)                                                                                     */

/* Single-threaded modes: every callback runs on the main thread (counted if one does not). */
static void
on_loop_thread (void)
{
    if (loop_mode != LOOP_THREAD && !pthread_equal(pthread_self(), main_thread))
        __atomic_add_fetch(&counters.off_loop, 1, __ATOMIC_RELAXED);
}

/*
 * Master: resync walk. The cursor we return points into the TLV we just built (junos-sync keeps
 * it alive until the next call returns), so a flow deleted meanwhile cannot leave us with a
 * dangling pointer: we continue from its key. Changes made during the walk are queued as usual
 * and delivered after the walk, so the backup converges on the table as it is.
 */
static void *
flowd_get_next (void *current, junos_sync_getnext_data_t *gndata)
{
    flow_entry_t *fe;
    junos_sync_tlv_t *tlv = NULL;

    on_loop_thread();

    table_lock();
    if (current == NULL) {
        fe = NULL;
        for (uint32_t b = 0; fe == NULL && b < FT_BUCKETS; b++)
            fe = ft_buckets[b];
    } else {
        flow_key_t key;

        rec_to_key(current, &key);
        fe = ft_successor(&key);
    }
    if (fe != NULL) {
        tlv = flow_tlv_alloc(FLOWD_OP_ADD, fe);
        counters.walked++;
    }
    table_unlock();

    gndata->data = tlv;
    return tlv != NULL ? (void *)&tlv->tlv_value : NULL;
}

/* Backup: apply one record. */
static void
flowd_decode (void *data, size_t len)
{
    flowd_rec_t *rec = data;
    flow_entry_t *fe, **link;
    flow_key_t key;

    on_loop_thread();

    if (len >= sizeof(flowd_barrier_t) && rec->fr_op == FLOWD_OP_BARRIER)
        return;

    table_lock();
    if (len < FLOWD_REC_KEY_LEN ||
        (rec->fr_op != FLOWD_OP_DELETE && len < sizeof(flowd_rec_t))) {
        counters.bad_records++;
        table_unlock();
        flowd_log("malformed record (op %u, %zu bytes) ignored", rec->fr_op, len);
        return;
    }
    rec_to_key(rec, &key);
    fe = ft_find(&key, &link);
    switch (rec->fr_op) {
    case FLOWD_OP_ADD:
    case FLOWD_OP_UPDATE:
        if (rec->fr_op == FLOWD_OP_ADD) {
            counters.applied_add++;
        } else {
            counters.applied_update++;
            if (fe == NULL)
                counters.update_unknown++;
        }
        if (fe == NULL)
            fe = ft_insert(link, &key);
        fe->fe_first_seen = ntohl(rec->fr_first_seen);
        fe->fe_last_seen = ntohl(rec->fr_last_seen);
        fe->fe_packets = be64toh(rec->fr_packets);
        fe->fe_bytes = be64toh(rec->fr_bytes);
        break;
    case FLOWD_OP_DELETE:
        counters.applied_delete++;
        if (fe != NULL)
            ft_remove(link);
        else
            counters.delete_unknown++;
        break;
    default:
        counters.bad_records++;
        break;
    }
    table_unlock();
}

/* Backup: a full resync starts. */
static void
flowd_db_clear (void)
{
    uint32_t n;

    on_loop_thread();

    table_lock();
    n = ft_count;
    ft_clear();
    synced = false;
    table_unlock();
    flowd_log("resync starting: flow table cleared (%" PRIu32 " flows dropped)", n);
}

static void
flowd_init_sync_done (size_t entries)
{
    on_loop_thread();
    table_lock();
    synced = true;
    synced_entries = entries;
    counters.resyncs++;
    flowd_wake();
    table_unlock();
    flowd_log("initial resync complete: %zu flows", entries);
}

static void
flowd_conn_status (junos_sync_conn_status_t status)
{
    on_loop_thread();
    table_lock();
    conn_up = (status == JUNOS_SYNC_CONN_UP);
    flowd_wake();
    table_unlock();
    flowd_log("connection to %s %s", __atomic_load_n(&label, __ATOMIC_ACQUIRE) == label_master
              ? "backup" : "master", status == JUNOS_SYNC_CONN_UP ? "UP" : "DOWN");
}

/* Master: the listening port (start: on our thread; switchover: on the library's loop thread,
 * or at the next dispatch in the single-threaded modes). */
static void
flowd_bind_done (in_port_t port)
{
    on_loop_thread();
    table_lock();
    bound_port = port;
    flowd_wake();
    table_unlock();
    char where[300];

    flowd_log("listening on %s", addr_port(where, sizeof(where), listen_text, (unsigned)port));
}

/* Master: a record queued with ack_requested was applied by the backup. */
static void
flowd_ack_notify (junos_sync_tlv_t *tlv, size_t len)
{
    const flowd_barrier_t *b = (const flowd_barrier_t *)&tlv->tlv_value;

    on_loop_thread();

    if (tlv->tlv_type != FLOWD_OP_BARRIER || len < sizeof(*b))
        return;
    table_lock();
    if (ntohl(b->fb_id) > barrier_acked)
        barrier_acked = ntohl(b->fb_id);
    flowd_wake();
    table_unlock();
}

/* libc's free, where the single-threaded modes check the thread: the library frees what it
 * owns at a dispatch, in junos_sync_exit, or inside junos_sync_queue (an overflow). */
static void
flowd_free (void *p)
{
    on_loop_thread();
    free(p);
}

static void
master_callbacks (junos_sync_callbacks_t *cb)
{
    bzero(cb, sizeof(*cb));
    cb->sync_data_get_next_func = flowd_get_next;
    cb->sync_conn_status_change_func = flowd_conn_status;
    cb->sync_init_sync_done_func = flowd_init_sync_done;
    cb->sync_bind_done_func = flowd_bind_done;
    cb->sync_ack_notify_func = flowd_ack_notify;
    cb->sync_log_msg_func = flowd_log;
    cb->sync_malloc_func = malloc;
    cb->sync_free_func = flowd_free;
}

static void
backup_callbacks (junos_sync_callbacks_t *cb)
{
    bzero(cb, sizeof(*cb));
    cb->sync_data_decode_func = flowd_decode;
    cb->sync_db_clear_func = flowd_db_clear;
    cb->sync_conn_status_change_func = flowd_conn_status;
    cb->sync_init_sync_done_func = flowd_init_sync_done;
    cb->sync_log_msg_func = flowd_log;
    cb->sync_malloc_func = malloc;
    cb->sync_free_func = flowd_free;
}

static void
sync_state (junos_sync_state_t *state, bool master, uint16_t port)
{
    bzero(state, sizeof(*state));
    state->is_master = master;
    state->server_addr = flowd_addr;   /* host byte order */
    state->server_port = port;
    state->keepalive_time = FLOWD_KEEPALIVE;
}

/* ---------------------------------------------------------------------------------------- */
/* Commands (main thread)                                                                     */

static uint64_t rng_state;

static uint64_t
rng_next (void)
{
    rng_state += 0x9e3779b97f4a7c15ULL;
    return mix64(rng_state);
}

/* Master, under flowd_lock: a new flow with a key not in the table yet. */
static flow_entry_t *
flow_create (uint32_t now)
{
    flow_entry_t *fe, **link;
    flow_key_t key;

    do {
        uint64_t r = rng_next();

        bzero(&key, sizeof(key));
        key.fk_src_addr = 0x0a000000u | (uint32_t)(r & 0xffffff);            /* 10/8 */
        key.fk_dst_addr = 0xc0a80000u | (uint32_t)((r >> 24) & 0xffff);     /* 192.168/16 */
        key.fk_src_port = (uint16_t)(1024 + ((r >> 40) % 64000));
        key.fk_dst_port = (r >> 60) & 1 ? 443 : 53;
        key.fk_proto = key.fk_dst_port == 53 ? IPPROTO_UDP : IPPROTO_TCP;
    } while (ft_find(&key, &link) != NULL);

    fe = ft_insert(link, &key);
    fe->fe_first_seen = fe->fe_last_seen = now;
    fe->fe_packets = 1 + rng_next() % 100;
    fe->fe_bytes = fe->fe_packets * (64 + rng_next() % 1437);
    return fe;
}

static void
cmd_fill (unsigned long n)
{
    uint32_t now = (uint32_t)time(NULL);

    table_lock();
    for (unsigned long i = 0; i < n; i++)
        flow_queue(flow_tlv_alloc(FLOWD_OP_ADD, flow_create(now)), false);
    printf("filled %lu flows %" PRIu32 "\n", n, ft_count);
    table_unlock();
}

static void
cmd_churn (unsigned long n)
{
    uint32_t now = (uint32_t)time(NULL);
    unsigned long adds = 0, updates = 0, deletes = 0;

    table_lock();
    for (unsigned long i = 0; i < n; i++) {
        uint64_t r = rng_next() % 10;

        if (ft_count == 0 || r < 3) {                    /* 30%: a new flow */
            flow_queue(flow_tlv_alloc(FLOWD_OP_ADD, flow_create(now)), false);
            adds++;
        } else if (r < 7) {                              /* 40%: packets seen */
            flow_entry_t *fe = ft_vec[rng_next() % ft_count];
            uint64_t pkts = 1 + rng_next() % 50;

            fe->fe_packets += pkts;
            fe->fe_bytes += pkts * (64 + rng_next() % 1437);
            fe->fe_last_seen = now;
            flow_queue(flow_tlv_alloc(FLOWD_OP_UPDATE, fe), false);
            updates++;
        } else {                                         /* 30%: flow expired */
            flow_entry_t *fe = ft_vec[rng_next() % ft_count], **link;

            flow_queue(flow_tlv_alloc(FLOWD_OP_DELETE, fe), false);
            ft_find(&fe->fe_key, &link);
            ft_remove(link);
            deletes++;
        }
    }
    printf("churned %lu adds %lu updates %lu deletes %lu flows %" PRIu32 "\n",
           n, adds, updates, deletes, ft_count);
    table_unlock();
}

/* ---------------------------------------------------------------------------------------- */
/* Commands that wait: barrier, wait-synced, wait-conn, switchover-master                      */

/*
 * Each is answered once what it waits for has happened (the callbacks make it happen), or with
 * "timeout ..." at its deadline. With --loop=thread the main thread blocks on flowd_cond, which
 * the callbacks signal from the library's thread. In the single-threaded modes the callbacks
 * run on this very thread, so blocking would wait forever: the command stays pending, the loop
 * keeps running, and wait_check() answers it after the callbacks that may satisfy it
 * (flowd_wake) and at its deadline; input lines wait meanwhile (main thread only).
 */
typedef enum { W_NONE, W_BARRIER, W_SYNCED, W_CONN, W_BIND } wait_kind_t;

static struct {
    wait_kind_t     kind;
    uint32_t        barrier;    /* W_BARRIER: the barrier's id */
    bool            up;         /* W_CONN: up or down */
    struct timespec deadline;   /* CLOCK_MONOTONIC */
} waiting;

static struct timespec
mono_after (unsigned secs)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += secs;
    return ts;
}

/* Milliseconds until the pending command's deadline (0 when it has passed). */
static int
wait_ms_left (void)
{
    struct timespec now;
    int64_t ms;

    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (int64_t)(waiting.deadline.tv_sec - now.tv_sec) * 1000 +
         (waiting.deadline.tv_nsec - now.tv_nsec + 999999) / 1000000;
    return ms > 0 ? (int)ms : 0;
}

/* Whether the pending command has what it waits for. Table locked. */
static bool
wait_satisfied (void)
{
    switch (waiting.kind) {
    case W_BARRIER:
        return barrier_acked >= waiting.barrier;
    case W_SYNCED:
        return synced;
    case W_CONN:
        return conn_up == waiting.up;
    case W_BIND:
        return bound_port != 0;
    case W_NONE:
        break;
    }
    return true;
}

/* Answers the pending command (ok: satisfied; else its deadline passed). Table locked. */
static void
wait_answer (bool ok)
{
    switch (waiting.kind) {
    case W_BARRIER:
        if (ok)
            printf("barrier %" PRIu32 " acked\n", waiting.barrier);
        else
            printf("timeout barrier %" PRIu32 "\n", waiting.barrier);
        break;
    case W_SYNCED:
        if (ok)
            printf("synced %zu flows %" PRIu32 "\n", synced_entries, ft_count);
        else
            printf("timeout wait-synced\n");
        break;
    case W_CONN:
        if (ok)
            printf("conn %s\n", waiting.up ? "up" : "down");
        else
            printf("timeout wait-conn\n");
        break;
    case W_BIND:
        if (ok)
            printf("master port %u flows %" PRIu32 "\n", (unsigned)bound_port, ft_count);
        else
            printf("timeout switchover-master\n");
        break;
    case W_NONE:
        break;
    }
    waiting.kind = W_NONE;
}

static void loop_deadline(bool armed);

/* Single-threaded modes: answers the pending command if it has what it waits for, or if its
 * deadline has passed. */
static void
wait_check (void)
{
    if (waiting.kind == W_NONE)
        return;
    if (wait_satisfied())
        wait_answer(true);
    else if (wait_ms_left() == 0)
        wait_answer(false);
    if (waiting.kind == W_NONE)
        loop_deadline(false);
}

/* Main thread, table locked: the command waits for `kind` for up to secs seconds. */
static void
wait_start (wait_kind_t kind, unsigned secs)
{
    waiting.kind = kind;
    waiting.deadline = mono_after(secs);
    if (loop_mode == LOOP_THREAD) {
        struct timespec deadline;
        int rc = 0;

        clock_gettime(CLOCK_REALTIME, &deadline);   /* pthread_cond_timedwait's clock */
        deadline.tv_sec += secs;
        while (!wait_satisfied() && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&flowd_cond, &flowd_lock, &deadline);
        wait_answer(wait_satisfied());
        return;
    }
    wait_check();
    if (waiting.kind != W_NONE)
        loop_deadline(true);
}

static void
cmd_barrier (unsigned secs)
{
    junos_sync_tlv_t *tlv = xmalloc(sizeof(*tlv) + sizeof(flowd_barrier_t));
    flowd_barrier_t *b = (flowd_barrier_t *)&tlv->tlv_value;
    uint32_t id = barrier_next++;

    tlv->tlv_type = FLOWD_OP_BARRIER;
    tlv->tlv_len = sizeof(*b);
    bzero(b, sizeof(*b));
    b->fb_op = FLOWD_OP_BARRIER;
    b->fb_id = htonl(id);

    table_lock();
    flow_queue(tlv, true);
    waiting.barrier = id;
    wait_start(W_BARRIER, secs);
    table_unlock();
}

static void
cmd_wait_synced (unsigned secs)
{
    table_lock();
    wait_start(W_SYNCED, secs);
    table_unlock();
}

static void
cmd_wait_conn (bool up, unsigned secs)
{
    table_lock();
    waiting.up = up;
    wait_start(W_CONN, secs);
    table_unlock();
}

/* Answered with the new port once bind_done has reported it: before junos_sync_switchover
 * returns with --loop=thread, at the next dispatch in the single-threaded modes. */
static void
cmd_switchover_master (uint16_t port, const char *addr)
{
    junos_sync_state_t state;
    junos_sync_callbacks_t callbacks;
    junos_sync_status_t st;
    struct in_addr a;

    /* Given after the start, the address is for the next switchover: this one. */
    if (addr != NULL && (st = junos_sync_set_address(sync_ctx, addr, port)) != JUNOS_SYNC_OK) {
        printf("error switchover address status %d\n", (int)st);
        return;
    }
    a.s_addr = htonl(flowd_addr);
    snprintf(listen_text, sizeof(listen_text), "%s", addr != NULL ? addr : inet_ntoa(a));
    sync_state(&state, true, port);
    master_callbacks(&callbacks);
    table_lock();
    bound_port = 0;
    table_unlock();
    set_role(true);              /* label first: bind_done logs during the switchover */
    st = junos_sync_switchover(sync_ctx, &state, &callbacks);
    if (st != JUNOS_SYNC_OK) {
        set_role(false);
        printf("error switchover status %d\n", (int)st);
        return;
    }
    table_lock();
    synced = false;
    wait_start(W_BIND, DEFAULT_WAIT_SECS);
    table_unlock();
}

/* ---------------------------------------------------------------------------------------- */
/* The single-threaded loops (main thread only)                                              */

static evContext ev_ctx;              /* --loop=eventlib */
static evFileID  ev_stdin_id;
static evTimerID ev_kick_id, ev_deadline_id;
static bool      ev_kick_armed, ev_deadline_armed;
static int       ep_fd = -1;          /* --loop=epoll */
static int       sync_fd = -1;        /* --loop=epoll: junos_sync_get_fd's */
static int       stdin_flags = -1;    /* --loop=epoll: stdin's flags before O_NONBLOCK */
static bool      loop_running;

/* Input lines not run yet (one command may be pending: the lines after it wait). */
static char   in_buf[4096];
static size_t in_len;
static bool   in_eof;

static bool run_command(char *line);
static void cmd_quit(void);

static void
loop_stop (void)
{
    loop_running = false;
    if (loop_mode == LOOP_EVENTLIB) {
        /* With stdin and the timers gone (the library deselected its descriptor in
         * junos_sync_exit), evMainLoop has nothing left and returns. */
        evDeselectFD(ev_ctx, ev_stdin_id);
        if (ev_kick_armed)
            evClearTimer(ev_ctx, ev_kick_id);
        if (ev_deadline_armed)
            evClearTimer(ev_ctx, ev_deadline_id);
        ev_kick_armed = ev_deadline_armed = false;
    }
}

/* Runs the input lines received, one at a time, while no command is pending. */
static void
input_run (void)
{
    while (loop_running && waiting.kind == W_NONE) {
        char *nl = memchr(in_buf, '\n', in_len);
        size_t used;

        if (nl == NULL) {
            if (!in_eof)
                return;
            /* EOF: the last line if unterminated, then as quit. */
            in_buf[in_len < sizeof(in_buf) ? in_len : sizeof(in_buf) - 1] = '\0';
            if (in_len > 0 && !run_command(in_buf)) {
                loop_stop();
                return;
            }
            in_len = 0;
            if (waiting.kind != W_NONE)
                return;
            cmd_quit();
            loop_stop();
            return;
        }
        *nl = '\0';
        used = (size_t)(nl - in_buf) + 1;
        if (!run_command(in_buf)) {
            loop_stop();
            return;
        }
        memmove(in_buf, in_buf + used, in_len - used);
        in_len -= used;
    }
}

/* stdin is readable: takes what is there (it is non-blocking: eventlib made it so, or we
 * did for epoll) and runs the complete lines. */
static void
input_read (void)
{
    for (;;) {
        ssize_t n;

        if (in_len == sizeof(in_buf)) {
            flowd_log("input line longer than %zu bytes: dropped", sizeof(in_buf));
            in_len = 0;
        }
        n = read(STDIN_FILENO, in_buf + in_len, sizeof(in_buf) - in_len);
        if (n > 0) {
            in_len += (size_t)n;
        } else if (n == 0) {
            in_eof = true;
            break;
        } else if (errno != EINTR) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                flowd_log("reading stdin: %s", strerror(errno));
                in_eof = true;
            }
            break;
        }
    }
    input_run();
}

/* After the callbacks of a dispatch (or a timer): the pending command may be answerable now,
 * and then the next lines may run. */
static void
loop_after_events (void)
{
    wait_check();
    input_run();
}

static void
on_stdin (evContext ctx, void *uap, int fd, int eventmask)
{
    (void)ctx;
    (void)uap;
    (void)fd;
    (void)eventmask;
    input_read();
}

static void
on_kick (evContext ctx, void *uap, struct timespec due, struct timespec inter)
{
    (void)ctx;
    (void)uap;
    (void)due;
    (void)inter;
    ev_kick_armed = false;
    loop_after_events();
}

static void
on_deadline (evContext ctx, void *uap, struct timespec due, struct timespec inter)
{
    (void)ctx;
    (void)uap;
    (void)due;
    (void)inter;
    ev_deadline_armed = false;
    loop_after_events();
}

/* A callback changed what a pending command may wait for. Thread mode: wake the waiting main
 * thread. Eventlib: we are inside the library's eventlib handler; a timer due now gets us
 * control back after it (a command must not run inside a callback: switchover is refused
 * there). Epoll: the loop looks after every round anyway. Table locked. */
static void
flowd_wake (void)
{
    if (loop_mode == LOOP_THREAD) {
        pthread_cond_broadcast(&flowd_cond);
    } else if (loop_mode == LOOP_EVENTLIB && !ev_kick_armed && waiting.kind != W_NONE) {
        if (evSetTimer(ev_ctx, on_kick, NULL, evNowTime(), evConsTime(0, 0), &ev_kick_id) == 0)
            ev_kick_armed = true;
    }
}

/* The pending command's deadline: an eventlib timer (epoll_wait's timeout covers epoll). */
static void
loop_deadline (bool armed)
{
    if (loop_mode != LOOP_EVENTLIB)
        return;
    if (ev_deadline_armed) {
        evClearTimer(ev_ctx, ev_deadline_id);
        ev_deadline_armed = false;
    }
    if (armed) {
        int ms = wait_ms_left();
        struct timespec due = evAddTime(evNowTime(), evConsTime(ms / 1000, (ms % 1000) * 1000000L));

        if (evSetTimer(ev_ctx, on_deadline, NULL, due, evConsTime(0, 0), &ev_deadline_id) == 0)
            ev_deadline_armed = true;
    }
}

/* Before the start: stdin joins the loop (the library's descriptor is in it already). */
static bool
loop_watch_stdin (void)
{
    if (loop_mode == LOOP_EVENTLIB) {
        if (evSelectFD(ev_ctx, STDIN_FILENO, EV_READ, on_stdin, NULL, &ev_stdin_id) != 0) {
            flowd_log("evSelectFD(stdin): %s", strerror(errno));
            return false;
        }
    } else if (loop_mode == LOOP_EPOLL) {
        struct epoll_event ev;

        bzero(&ev, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.fd = STDIN_FILENO;
        if (epoll_ctl(ep_fd, EPOLL_CTL_ADD, STDIN_FILENO, &ev) != 0) {
            /* (EPERM for a regular file: epoll takes pipes, FIFOs, sockets, terminals.) */
            flowd_log("--loop=epoll: epoll_ctl(stdin): %s", strerror(errno));
            return false;
        }
        stdin_flags = fcntl(STDIN_FILENO, F_GETFL);
        if (stdin_flags >= 0)
            (void)fcntl(STDIN_FILENO, F_SETFL, stdin_flags | O_NONBLOCK);
    }
    return true;
}

static int
eventlib_loop (void)
{
    loop_running = true;
    /* Until loop_stop leaves it nothing (ENOENT). */
    if (evMainLoop(ev_ctx) != 0 && errno != ENOENT)
        flowd_log("evMainLoop: %s", strerror(errno));
    evDestroy(ev_ctx);
    return 0;
}

static int
epoll_loop (void)
{
    loop_running = true;
    while (loop_running) {
        struct epoll_event evs[4];
        int n = epoll_wait(ep_fd, evs, 4, waiting.kind != W_NONE ? wait_ms_left() : -1);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            flowd_log("epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n && loop_running; i++) {
            if (evs[i].data.fd == sync_fd) {
                /* Runs the callbacks due, about a millisecond's worth; the descriptor stays
                 * readable (level-triggered: we come back) while more are due. */
                junos_sync_status_t st = junos_sync_dispatch(sync_ctx);

                if (st != JUNOS_SYNC_OK)
                    flowd_log("junos_sync_dispatch failed (status %d)", (int)st);
            } else {
                input_read();
            }
        }
        if (loop_running)
            loop_after_events();
    }
    if (stdin_flags >= 0)
        (void)fcntl(STDIN_FILENO, F_SETFL, stdin_flags);
    close(ep_fd);
    return 0;
}

static void
print_stats (const char *what)
{
    junos_sync_stats_t s;

    bzero(&s, sizeof(s));
    if (junos_sync_get_stats(sync_ctx, &s) != JUNOS_SYNC_OK) {
        printf("error stats\n");
        return;
    }
    printf("%s connections %" PRIu64 " full_resyncs %" PRIu64 " partial_resyncs %" PRIu64
           " frames_rejected %" PRIu64 " overflows %" PRIu64 " backlog_bytes %" PRIu64 "\n",
           what, s.connections, s.full_resyncs, s.partial_resyncs, s.frames_rejected,
           s.overflows, s.backlog_bytes);
}

/* The peer as junos_sync_get_peer_info has it (peer_address: since 1.2). */
static void
cmd_peer (void)
{
    static const char *const states[] = {"down", "connecting", "handshake", "up"};
    junos_sync_peer_info_t pi;

    bzero(&pi, sizeof(pi));
    pi.size = sizeof(pi);
    if (junos_sync_get_peer_info(sync_ctx, &pi) != JUNOS_SYNC_OK || (unsigned)pi.state > 3) {
        printf("error peer\n");
        return;
    }
    printf("peer %s %s %u\n", states[pi.state], pi.peer_address[0] != '\0' ? pi.peer_address : "-",
           (unsigned)pi.peer_port);
}

static void
cmd_quit (void)
{
    if (loop_mode == LOOP_EPOLL && sync_fd >= 0) {
        /* The library closes its descriptor in junos_sync_exit: out of the set first. */
        epoll_ctl(ep_fd, EPOLL_CTL_DEL, sync_fd, NULL);
        sync_fd = -1;
    }
    junos_sync_exit(sync_ctx);   /* no callback runs after this returns */
    sync_ctx = NULL;

    table_lock();
    printf("bye flows %" PRIu32 " queued %" PRIu64 " queue_errors %" PRIu64 " walked %" PRIu64
           " resyncs %" PRIu64 " applied add %" PRIu64 " update %" PRIu64 " delete %" PRIu64
           " update_unknown %" PRIu64 " delete_unknown %" PRIu64 " bad %" PRIu64
           " off_loop %" PRIu64 "\n",
           ft_count, counters.queued, counters.queue_errors, counters.walked, counters.resyncs,
           counters.applied_add, counters.applied_update, counters.applied_delete,
           counters.update_unknown, counters.delete_unknown, counters.bad_records,
           __atomic_load_n(&counters.off_loop, __ATOMIC_RELAXED));
    ft_clear();
    free(ft_vec);
    ft_vec = NULL;
    table_unlock();
}

/* Parses an optional unsigned number; returns dflt when absent, -1 when malformed. */
static long
arg_num (const char *s, long dflt)
{
    char *end;
    unsigned long v;

    if (s == NULL)
        return dflt;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > 0x7fffffffUL)
        return -1;
    return (long)v;
}

/* Runs one command line; returns false on quit. */
static bool
run_command (char *line)
{
    char *save = NULL;
    char *cmd = strtok_r(line, " \t\r\n", &save);
    char *a1 = cmd ? strtok_r(NULL, " \t\r\n", &save) : NULL;
    char *a2 = a1 ? strtok_r(NULL, " \t\r\n", &save) : NULL;

    if (cmd == NULL) {
        return true;
    } else if (strcmp(cmd, "quit") == 0) {
        cmd_quit();
        return false;
    } else if (strcmp(cmd, "digest") == 0) {
        table_lock();
        printf("digest %" PRIu32 " %016" PRIx64 "\n", ft_count, ft_digest());
        table_unlock();
    } else if (strcmp(cmd, "stats") == 0) {
        print_stats("stats");
    } else if (strcmp(cmd, "wait-conn") == 0 && a1 != NULL &&
               (strcmp(a1, "up") == 0 || strcmp(a1, "down") == 0) &&
               arg_num(a2, DEFAULT_WAIT_SECS) >= 0) {
        cmd_wait_conn(strcmp(a1, "up") == 0, (unsigned)arg_num(a2, DEFAULT_WAIT_SECS));
    } else if (!is_master && strcmp(cmd, "wait-synced") == 0 &&
               arg_num(a1, DEFAULT_WAIT_SECS) >= 0) {
        cmd_wait_synced((unsigned)arg_num(a1, DEFAULT_WAIT_SECS));
    } else if (strcmp(cmd, "peer") == 0) {
        cmd_peer();
    } else if (!is_master && strcmp(cmd, "switchover-master") == 0 &&
               arg_num(a1, -1) >= 0 && arg_num(a1, -1) <= 65535) {
        cmd_switchover_master((uint16_t)arg_num(a1, 0), a2);
    } else if (is_master && strcmp(cmd, "fill") == 0 && arg_num(a1, -1) >= 0 &&
               arg_num(a2, 0) >= 0) {
        if (a2 != NULL)
            rng_state = (uint64_t)arg_num(a2, 0);
        cmd_fill((unsigned long)arg_num(a1, 0));
    } else if (is_master && strcmp(cmd, "churn") == 0 && arg_num(a1, -1) >= 0 &&
               arg_num(a2, 0) >= 0) {
        if (a2 != NULL)
            rng_state = (uint64_t)arg_num(a2, 0);
        cmd_churn((unsigned long)arg_num(a1, 0));
    } else if (is_master && strcmp(cmd, "barrier") == 0 &&
               arg_num(a1, DEFAULT_WAIT_SECS) >= 0) {
        cmd_barrier((unsigned)arg_num(a1, DEFAULT_WAIT_SECS));
    } else {
        printf("error unknown or misplaced command '%s' (role %s)\n", cmd,
               is_master ? "master" : "backup");
    }
    return true;
}

static void
usage (void)
{
    fprintf(stderr, "usage: flowd [--loop=thread|eventlib|epoll] master [port] [--addr A]\n"
                    "       flowd [--loop=thread|eventlib|epoll] backup <port> [--addr A]\n"
                    "commands on stdin: fill N [SEED], churn N [SEED], barrier [SECS], digest,\n"
                    "  wait-synced [SECS], wait-conn up|down [SECS],\n"
                    "  switchover-master PORT [ADDR], peer, stats, quit\n");
    exit(2);
}

int
main (int argc, char **argv)
{
    junos_sync_state_t state;
    junos_sync_callbacks_t callbacks;
    junos_sync_status_t st;
    const char *name = getenv("FLOWD_NAME");   /* "A", "B": tells daemons apart in logs */
    char line[256];
    long port;
    bool master;

    main_thread = pthread_self();
    if (argc >= 2 && strncmp(argv[1], "--loop=", 7) == 0) {
        const char *m = argv[1] + 7;

        if (strcmp(m, "thread") == 0)
            loop_mode = LOOP_THREAD;
        else if (strcmp(m, "eventlib") == 0)
            loop_mode = LOOP_EVENTLIB;
        else if (strcmp(m, "epoll") == 0)
            loop_mode = LOOP_EPOLL;
        else
            usage();
        argv++;
        argc--;
    }
    if (argc >= 4 && strcmp(argv[argc - 2], "--addr") == 0) {
        struct in_addr a;

        if (strlen(argv[argc - 1]) >= sizeof(addr_text))
            usage();
        if (inet_pton(AF_INET, argv[argc - 1], &a) == 1)
            flowd_addr = ntohl(a.s_addr);
        else
            addr_by_name = true;
        snprintf(addr_text, sizeof(addr_text), "%s", argv[argc - 1]);
        snprintf(listen_text, sizeof(listen_text), "%s", argv[argc - 1]);
        argc -= 2;
    }
    if (argc < 2 || argc > 3)
        usage();
    if (strcmp(argv[1], "master") == 0)
        master = true;
    else if (strcmp(argv[1], "backup") == 0 && argc == 3)
        master = false;
    else
        usage();
    port = arg_num(argc == 3 ? argv[2] : NULL, 0);
    if (port < 0 || port > 65535 || (!master && port == 0))
        usage();

    setvbuf(stdout, NULL, _IOLBF, 0);   /* one answer per line, to a pipe */
    if (name != NULL && *name == '\0')
        name = NULL;
    snprintf(label_master, sizeof(label_master), "master%s%s", name ? " " : "", name ? name : "");
    snprintf(label_backup, sizeof(label_backup), "backup%s%s", name ? " " : "", name ? name : "");
    set_role(master);
    {
        struct timeval tv;

        gettimeofday(&tv, NULL);
        rng_state = ((uint64_t)tv.tv_sec << 20) ^ (uint64_t)tv.tv_usec;
    }

    sync_state(&state, master, (uint16_t)port);
    if (master)
        master_callbacks(&callbacks);
    else
        backup_callbacks(&callbacks);

    sync_ctx = junos_sync_init(&state, &callbacks);
    if (sync_ctx == NULL) {
        flowd_log("junos_sync_init failed");
        return 1;
    }
    if (addr_by_name &&
        (st = junos_sync_set_address(sync_ctx, addr_text, (uint16_t)port)) != JUNOS_SYNC_OK) {
        flowd_log("junos_sync_set_address(\"%s\") failed (status %d)", addr_text, (int)st);
        junos_sync_exit(sync_ctx);
        return 1;
    }
    /* Dispatch mode is chosen before the start. */
    if (loop_mode == LOOP_EVENTLIB) {
        if (evCreate(&ev_ctx) != 0) {
            flowd_log("evCreate: %s", strerror(errno));
            return 1;
        }
        st = junos_sync_set_event_context(sync_ctx, ev_ctx);
        /* Without eventlib in the process the context stays in thread mode (it logs why),
         * and our unlocked table would be shared with the library's thread: refuse. Before
         * the start, a dispatch is OK exactly when the context is in dispatch mode. */
        if (st != JUNOS_SYNC_OK || junos_sync_dispatch(sync_ctx) != JUNOS_SYNC_OK) {
            flowd_log("--loop=eventlib: callbacks cannot run on the eventlib loop (status %d)",
                      (int)st);
            junos_sync_exit(sync_ctx);
            return 1;
        }
    } else if (loop_mode == LOOP_EPOLL) {
        struct epoll_event ev;

        sync_fd = junos_sync_get_fd(sync_ctx);
        ep_fd = epoll_create1(EPOLL_CLOEXEC);
        bzero(&ev, sizeof(ev));
        ev.events = EPOLLIN;            /* level-triggered: readable while callbacks are due */
        ev.data.fd = sync_fd;
        if (sync_fd < 0 || ep_fd < 0 || epoll_ctl(ep_fd, EPOLL_CTL_ADD, sync_fd, &ev) != 0) {
            flowd_log("--loop=epoll: cannot watch the library's descriptor (%d): %s", sync_fd,
                      strerror(errno));
            junos_sync_exit(sync_ctx);
            return 1;
        }
    }
    if (!loop_watch_stdin()) {
        junos_sync_exit(sync_ctx);
        return 1;
    }
    st = junos_sync_start(sync_ctx);
    if (st != JUNOS_SYNC_OK) {
        flowd_log("junos_sync_start failed (status %d)", (int)st);
        junos_sync_exit(sync_ctx);
        return 1;
    }
    if (master) {
        printf("ready master port %u keepalive %d loop %s\n", (unsigned)bound_port,
               FLOWD_KEEPALIVE, loop_names[loop_mode]);
    } else {
        char where[300];

        flowd_log("replicating from master %s",
                  addr_port(where, sizeof(where), addr_text, (unsigned)port));
        printf("ready backup port %ld keepalive %d loop %s\n", port, FLOWD_KEEPALIVE,
               loop_names[loop_mode]);
    }

    if (loop_mode == LOOP_EVENTLIB)
        return eventlib_loop();
    if (loop_mode == LOOP_EPOLL)
        return epoll_loop();
    while (fgets(line, sizeof(line), stdin) != NULL) {
        if (!run_command(line))
            return 0;
    }
    cmd_quit();   /* EOF: same as quit */
    return 0;
}
