/*
 * junos_sync_set_address (IPv6, scopes, host names) and what shows the peer's address:
 *   - bad input (NULL, not an address, a link-local address without its interface, an
 *     interface that does not exist, a scope on IPv4, multicast, too long, not UTF-8) is
 *     JUNOS_SYNC_ERR_INVALID with a log line, and changes nothing;
 *   - a backup's address is checked by its start (init takes a state without one); a name that
 *     does not resolve fails the start, which may be tried again;
 *   - a master and a backup over ::1: resync, stream with acknowledgements, both peers'
 *     junos_sync_peer_info_t (peer_address "::1", peer_addr 0, the ports), no exposure warning;
 *   - a master on :: reached by an IPv4 backup (the state's server_addr, shown as 127.0.0.1,
 *     not ::ffff:127.0.0.1) and then an IPv6 one; the warning names [::]:port unkeyed only;
 *   - peer_address is written whole or not at all within the caller's size (1.1's struct);
 *   - an address set after the start is for the next switchover: a name that does not resolve
 *     fails it and changes nothing; the promoted backup listens on [::1] and a new backup
 *     resyncs from it there;
 *   - host names: a pair over "localhost".
 * Keyed under JSYNC_TEST_KEYED=1 (run.sh), dispatch mode under JSYNC_TEST_DISPATCH=1.
 * The IPv6 tests are skipped where ::1 cannot be bound.
 */
#include "pair.h"

#include <net/if.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

/* ---- the master -------------------------------------------------------------------------- */

static h_table_t mtab;
static h_cbstat_t mcs;
static junos_sync_context_t *mctx;
static in_port_t mport;
static long m_bind_calls, m_walk_bad, m_acks, m_sync_done_calls;
static size_t m_sync_n;

static void m_ack(junos_sync_tlv_t *tlv, size_t len)
{
    (void)tlv;
    (void)len;
    h_cb_enter(&mcs);
    H_INC(m_acks);
    h_cb_leave(&mcs);
}

H_CB_WALK(m_get_next, mcs, mtab, 4, m_walk_bad)
H_CB_CONN(m_conn, mcs)
H_CB_SYNC_DONE(m_sync_done, mcs, m_sync_n, m_sync_done_calls)
H_CB_BIND(m_bind, mport, m_bind_calls)

/* A backup's decode: the record applied to `tab`, or counted in `bad`. */
static void decode_into(h_cbstat_t *cs, h_table_t *tab, long *bad, const void *data, size_t len)
{
    h_wire_t w;
    h_cb_enter(cs);
    if (h_wire_decode(data, len, &w))
        h_table_apply(tab, &w);
    else
        H_INC(*bad);
    h_cb_leave(cs);
}

/* ---- backup B (promoted to master in test_switchover_takes_the_address_set_after_start) -- */

static h_table_t btab;
static h_cbstat_t bcs;
static junos_sync_context_t *bctx;
static in_port_t bport;
static long b_bad, b_sync_done_calls, b_db_clears, b_bind_calls, b_walk_bad;
static size_t b_sync_n;

static void b_decode(void *data, size_t len)
{
    decode_into(&bcs, &btab, &b_bad, data, len);
}

H_CB_CONN(b_conn, bcs)
H_CB_SYNC_DONE(b_sync_done, bcs, b_sync_n, b_sync_done_calls)
H_CB_DB_CLEAR(b_db_clear, bcs, btab, b_db_clears)
H_CB_WALK(b_get_next, bcs, btab, 4, b_walk_bad)
H_CB_BIND(b_bind, bport, b_bind_calls)

/* ---- backup C (of the promoted B) ------------------------------------------------------ */

static h_table_t ctab;
static h_cbstat_t ccs;
static junos_sync_context_t *cctx;
static long c_bad, c_sync_done_calls, c_db_clears;
static size_t c_sync_n;

static void c_decode(void *data, size_t len)
{
    decode_into(&ccs, &ctab, &c_bad, data, len);
}

H_CB_CONN(c_conn, ccs)
H_CB_SYNC_DONE(c_sync_done, ccs, c_sync_n, c_sync_done_calls)
H_CB_DB_CLEAR(c_db_clear, ccs, ctab, c_db_clears)

/* ---- helpers ------------------------------------------------------------------------- */

static bool keyed(void)
{
    const char *k = getenv("JUNOS_SYNC_AUTH_KEY_FILE");
    return k != NULL && *k != '\0';
}

/* Whether this machine has IPv6 on loopback (bind [::1]:0). */
static bool have_ipv6_loopback(void)
{
    struct sockaddr_in6 a;
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    bool ok;

    if (fd < 0)
        return false;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

#define NEED_IPV6()                                                                           \
    do {                                                                                      \
        if (!have_ipv6_loopback()) {                                                          \
            h_skip("no IPv6 on loopback (cannot bind ::1)");                                  \
            return;                                                                           \
        }                                                                                     \
    } while (0)

static void fill(h_table_t *t, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        h_rec_t r = {i, 1, 7000u + i};
        h_table_put(t, &r);
    }
}

/* A master listening on `address` (NULL: the state's 0.0.0.0), port 0; its port in mport. */
static void start_master(const char *address)
{
    junos_sync_state_t st = h_master_state(false, 0);
    junos_sync_callbacks_t cb = h_master_callbacks(m_ack, m_get_next, m_conn, m_sync_done, m_bind);
    mctx = junos_sync_init(&st, &cb);
    REQUIRE(mctx != NULL);
    if (address != NULL)
        REQUIRE(junos_sync_set_address(mctx, address, 0) == JUNOS_SYNC_OK);
    REQUIRE(junos_sync_start(mctx) == JUNOS_SYNC_OK);
    REQUIRE(mport != 0);
    CHECK_EQ(H_LOAD(m_bind_calls), 1);
}

/* Backup B of the master at `address` (NULL: the state's 127.0.0.1) and `port`. When `address`
 * is given, its state names 127.0.0.1:1 (junos_sync_init still wants an address and a port in
 * it, as libjunos-sync did), which junos_sync_set_address replaces. */
static void start_backup(const char *address, in_port_t port)
{
    junos_sync_state_t st = h_backup_state(address != NULL ? 1 : port, false, 0);
    junos_sync_callbacks_t cb = h_backup_callbacks(b_decode, b_conn, b_sync_done, b_db_clear);
    bctx = junos_sync_init(&st, &cb);
    REQUIRE(bctx != NULL);
    if (address != NULL)
        REQUIRE(junos_sync_set_address(bctx, address, port) == JUNOS_SYNC_OK);
    REQUIRE(junos_sync_start(bctx) == JUNOS_SYNC_OK);
}

/* n live puts on the master, every 10th with ack_requested; waits until B applied them all
 * and every acknowledgement came, then compares the tables. */
static void stream(uint32_t n, uint32_t first_id)
{
    static uint64_t seq;
    long acks0 = H_LOAD(m_acks), want = 0;
    for (uint32_t i = 0; i < n; i++) {
        h_rec_t r = {first_id + i, 2, ++seq};
        bool ack = i % 10 == 0;
        h_table_put(&mtab, &r);
        junos_sync_tlv_t *t = h_tlv_rec(H_OP_PUT, &r, seq, 0, i % 17);
        if (junos_sync_queue(mctx, t, ack) != JUNOS_SYNC_OK) {
            h_fail(__FILE__, __LINE__, "junos_sync_queue failed at %u", i);
            h_free(t);
            return;
        }
        want += ack;
    }
    CHECK_WAIT(H_LOAD(m_acks) - acks0 == want, 20000);
    CHECK_WAIT(h_digest_eq(h_table_digest(&mtab), h_table_digest(&btab)), 20000);
    CHECK_TABLES_EQUAL(&mtab, &btab);
}

/* The context's junos_sync_peer_info_t (size: the whole struct). */
static junos_sync_peer_info_t peer_info(junos_sync_context_t *ctx)
{
    junos_sync_peer_info_t pi;
    memset(&pi, 0x5a, sizeof pi);
    pi.size = sizeof pi;
    CHECK_EQ(junos_sync_get_peer_info(ctx, &pi), JUNOS_SYNC_OK);
    return pi;
}

/* Waits until the context reports a peer whose address reads `want`. */
static void check_peer(junos_sync_context_t *ctx, const char *want)
{
    junos_sync_peer_info_t pi;
    int64_t dl = h_now_ms() + h_tmo(10000);
    do {
        pi = peer_info(ctx);
        if (pi.state == JUNOS_SYNC_LINK_UP && strcmp(pi.peer_address, want) == 0)
            return;
        h_sleep_us(2000);
    } while (h_now_ms() < dl);
    h_fail(__FILE__, __LINE__, "peer_address is \"%.*s\" (state %d), not \"%s\"",
           (int)sizeof pi.peer_address, pi.peer_address, (int)pi.state, want);
}

static void exit_pair(void)
{
    h_exit(mctx, &mcs);
    CHECK_WAIT(H_LOAD(bcs.down) >= H_LOAD(bcs.up), 10000);
    h_exit(bctx, &bcs);
    CHECK_CBSTAT(&mcs);
    CHECK_CBSTAT(&bcs);
    CHECK_EQ(H_LOAD(m_walk_bad), 0);
    CHECK_EQ(H_LOAD(b_bad), 0);
    CHECK_ALLOC_BALANCED(2000);
    CHECK_EQ(H_LOAD(h_log_bad_fmt), 0);
}

/* ---- tests ------------------------------------------------------------------------- */

static void test_bad_addresses_are_refused_and_logged(void)
{
    static const char *const bad[] = {
        "", "not an address", "192.0.2.1.7", "127.1", "[127.0.0.1]", "2001:db8::1::2",
        "fe80::1",                       /* link-local without its interface */
        "fe80::1%jsync-none0",           /* an interface that does not exist */
        "fe80::1%4000000000", "127.0.0.1%lo", "224.0.0.1", "ff02::1%lo", "a..b", "-a.example",
        "db\x1b[2J.example", "\xff\xfe", "[::1",
    };
    junos_sync_state_t st = h_master_state(true, 0);
    junos_sync_callbacks_t cb = h_callbacks();
    junos_sync_context_t *ctx = junos_sync_init(&st, &cb);
    char longname[2000];
    long logs;

    REQUIRE(ctx != NULL);
    CHECK_EQ(junos_sync_set_address(NULL, "::1", 0), JUNOS_SYNC_ERR_INVALID);
    logs = h_log_count();
    CHECK_EQ(junos_sync_set_address(ctx, NULL, 0), JUNOS_SYNC_ERR_INVALID);
    CHECK(h_log_count() > logs);
    CHECK(h_log_contains("junos_sync_set_address: address is NULL"));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        logs = h_log_count();
        CHECK_MSG(junos_sync_set_address(ctx, bad[i], 7000) == JUNOS_SYNC_ERR_INVALID,
                  "bad address #%zu accepted", i);
        CHECK_MSG(h_log_count() > logs, "bad address #%zu refused without a log line", i);
    }
    /* What is logged is escaped: no terminal control sequence reaches the log. */
    CHECK(!h_log_contains("\x1b"));
    CHECK(h_log_contains("link-local"));
    CHECK(h_log_contains("no interface named"));
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_EQ(junos_sync_set_address(ctx, longname, 7000), JUNOS_SYNC_ERR_INVALID);
    CHECK(h_log_contains("longer than"));

    /* What it takes: literals of both families, a scope by name and by index, names. */
    char by_index[64];
    snprintf(by_index, sizeof by_index, "fe80::1%%%u", if_nametoindex("lo"));
    static const char *const good[] = {"127.0.0.1", "0.0.0.0", "::", "::1", "[::1]",
                                       "fe80::1%lo", "[fe80::1%lo]", "::ffff:127.0.0.1",
                                       "localhost", "sync-a.example.net."};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK_MSG(junos_sync_set_address(ctx, good[i], 7000) == JUNOS_SYNC_OK, "%s refused", good[i]);
    CHECK_EQ(junos_sync_set_address(ctx, by_index, 7000), JUNOS_SYNC_OK);
    junos_sync_exit(ctx);
    CHECK_EQ(H_LOAD(h_log_bad_fmt), 0);
}

static void test_backup_address_is_checked_at_start(void)
{
    junos_sync_state_t st = h_backup_state(0, false, 0);
    junos_sync_callbacks_t cb = h_backup_callbacks(b_decode, b_conn, b_sync_done, b_db_clear);
    long logs;
    int64_t t0;

    st.server_addr = 0;
    logs = h_log_count();
    /* No master's address or port in the state: init refuses it, as libjunos-sync did. */
    CHECK(junos_sync_init(&st, &cb) == NULL);
    CHECK(h_log_count() > logs);
    st = h_backup_state(1, false, 0); /* 127.0.0.1:1, replaced below */
    bctx = junos_sync_init(&st, &cb);
    REQUIRE(bctx != NULL);
    CHECK_EQ(junos_sync_set_address(bctx, "::", 7000), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_start(bctx), JUNOS_SYNC_ERR_INVALID);
    CHECK(h_log_contains("needs the master's address"));
    CHECK_EQ(junos_sync_set_address(bctx, "127.0.0.1", 0), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_start(bctx), JUNOS_SYNC_ERR_INVALID);

    /* A name that does not resolve: refused within the resolver's bound, and the context may
     * be started again. */
    CHECK_EQ(junos_sync_set_address(bctx, "jsync-no-such-host.invalid", 7000), JUNOS_SYNC_OK);
    t0 = h_now_ms();
    logs = h_log_count();
    CHECK_EQ(junos_sync_start(bctx), JUNOS_SYNC_ERR_INVALID);
    CHECK_LE(h_now_ms() - t0, 5000 + h_tmo(2000));
    CHECK(h_log_count() > logs && h_log_contains("jsync-no-such-host.invalid"));
    CHECK_EQ(junos_sync_set_address(bctx, "127.0.0.1", 7000), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_start(bctx), JUNOS_SYNC_OK);
    /* Once started, a second start is still JUNOS_SYNC_ERR_STATE. */
    CHECK_EQ(junos_sync_start(bctx), JUNOS_SYNC_ERR_STATE);
    h_exit(bctx, &bcs);
    CHECK_CBSTAT(&bcs);
    CHECK_ALLOC_BALANCED(1000);
}

static void test_pair_over_ipv6_loopback(void)
{
    NEED_IPV6();
    const uint32_t n = (uint32_t)h_scaled_min(20000, 2000);
    h_table_init(&mtab, 2 * n + 10);
    h_table_init(&btab, 2 * n + 10);
    fill(&mtab, n);
    start_master("::1");
    CHECK(!h_log_contains("WARNING: listening on")); /* ::1 is loopback */
    start_backup("::1", mport);
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1 && H_LOAD(m_sync_done_calls) == 1, 20000);
    CHECK_EQ(b_sync_n, n);
    CHECK_EQ(H_LOAD(b_db_clears), 1);
    stream(n, n);

    check_peer(mctx, "::1");
    check_peer(bctx, "::1");
    junos_sync_peer_info_t m = peer_info(mctx), b = peer_info(bctx);
    CHECK_EQ(m.peer_addr, 0);        /* an IPv6 peer has no IPv4 address */
    CHECK_NE(m.peer_port, 0);
    CHECK_EQ(m.port, mport);
    CHECK_EQ(b.peer_addr, 0);
    CHECK_EQ(b.peer_port, mport);
    CHECK_EQ(b.port, mport);
    CHECK_EQ(m.keyed, keyed());
    CHECK(h_log_contains("connected to master [::1]:"));

    junos_sync_stats_t s;
    CHECK_EQ(junos_sync_get_stats(mctx, &s), JUNOS_SYNC_OK);
    CHECK_EQ(s.connections, 1);
    CHECK_EQ(s.full_resyncs, 1);
    CHECK_EQ(s.auth_failures, 0);
    exit_pair();
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
}

static void test_dual_stack_master(void)
{
    NEED_IPV6();
    const uint32_t n = (uint32_t)h_scaled_min(5000, 500);
    char warning[64];
    h_table_init(&mtab, 4 * n + 10);
    h_table_init(&btab, 4 * n + 10);
    fill(&mtab, n);
    start_master("::");
    snprintf(warning, sizeof warning, "WARNING: listening on [::]:%u ", (unsigned)mport);
    CHECK_MSG(h_log_contains(warning) == !keyed(), "keyed %d, warning about [::]:%u %s", keyed(),
              (unsigned)mport, h_log_contains(warning) ? "logged" : "not logged");

    /* Over IPv4, the 1.0 way (server_addr 127.0.0.1): the master shows it as IPv4. */
    start_backup(NULL, mport);
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1, 20000);
    stream(n, n);
    check_peer(mctx, "127.0.0.1");
    check_peer(bctx, "127.0.0.1");
    CHECK_EQ(peer_info(mctx).peer_addr, INADDR_LOOPBACK);
    CHECK_EQ(peer_info(bctx).peer_addr, INADDR_LOOPBACK);
    h_exit(bctx, &bcs);
    CHECK_CBSTAT(&bcs);
    CHECK_WAIT(H_LOAD(mcs.down) == 1, 10000);

    /* Over IPv6, on the same listener: a new backup, so a full resync. */
    memset(&bcs, 0, sizeof bcs);
    H_STORE(b_sync_done_calls, 0);
    h_table_clear(&btab);
    start_backup("::1", mport);
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1, 20000);
    CHECK_EQ(b_sync_n, 2 * n);
    stream(n, 2 * n);
    check_peer(mctx, "::1");
    CHECK_EQ(peer_info(mctx).peer_addr, 0);

    junos_sync_stats_t s;
    CHECK_EQ(junos_sync_get_stats(mctx, &s), JUNOS_SYNC_OK);
    CHECK_EQ(s.connections, 2);
    CHECK_EQ(s.full_resyncs, 2);
    exit_pair();
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
}

static void test_peer_address_within_size(void)
{
    NEED_IPV6();
    const size_t at = offsetof(junos_sync_peer_info_t, peer_address);
    unsigned char raw[sizeof(junos_sync_peer_info_t) + 16];
    junos_sync_peer_info_t pi;

    /* Layout: appended after release 1.1's 72 bytes. */
    CHECK_EQ(at, 72);
    CHECK_EQ(sizeof pi.peer_address, JUNOS_SYNC_ADDRSTRLEN);
    CHECK_EQ(sizeof pi, 72 + JUNOS_SYNC_ADDRSTRLEN);

    h_table_init(&mtab, 10);
    h_table_init(&btab, 10);
    start_master("::1");
    pi = peer_info(mctx); /* no backup yet: "" */
    CHECK_EQ(pi.peer_address[0], '\0');
    CHECK_EQ(pi.peer_port, 0);
    start_backup("::1", mport);
    check_peer(bctx, "::1");
    /* 1.1's struct: nothing past its end. A size that cuts peer_address: not a byte of it. */
    const size_t sizes[] = {at, at + 10, at + JUNOS_SYNC_ADDRSTRLEN - 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint32_t sz = (uint32_t)sizes[i];
        memset(raw, 0xa5, sizeof raw);
        memcpy(raw, &sz, sizeof sz);
        CHECK_EQ(junos_sync_get_peer_info(bctx, (junos_sync_peer_info_t *)(void *)raw), JUNOS_SYNC_OK);
        for (size_t j = at; j < sizeof raw; j++)
            CHECK_MSG(raw[j] == 0xa5, "size %u: byte %zu written", (unsigned)sz, j);
        memcpy(&pi, raw, at);
        CHECK_EQ(pi.peer_port, mport);
    }
    /* The whole struct: the text and its NUL, nothing after it. */
    uint32_t sz = (uint32_t)sizeof pi;
    memset(raw, 0xa5, sizeof raw);
    memcpy(raw, &sz, sizeof sz);
    CHECK_EQ(junos_sync_get_peer_info(bctx, (junos_sync_peer_info_t *)(void *)raw), JUNOS_SYNC_OK);
    CHECK(strcmp((const char *)raw + at, "::1") == 0);
    for (size_t j = sizeof pi; j < sizeof raw; j++)
        CHECK(raw[j] == 0xa5);
    exit_pair();
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
}

static void test_switchover_takes_the_address_set_after_start(void)
{
    NEED_IPV6();
    const uint32_t n = (uint32_t)h_scaled_min(3000, 300);
    junos_sync_state_t st;
    junos_sync_callbacks_t cb;
    char listening[64];
    long logs;

    h_table_init(&mtab, 2 * n + 10);
    h_table_init(&btab, 2 * n + 10);
    h_table_init(&ctab, 2 * n + 10);
    fill(&mtab, n);
    start_master("::1");
    start_backup("::1", mport);
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1, 20000);
    stream(n, n);

    /* Set after the start: for the next switchover; the running backup is not touched. */
    CHECK_EQ(junos_sync_set_address(bctx, "jsync-no-such-host.invalid", 0), JUNOS_SYNC_OK);
    st = h_master_state(false, 0);
    cb = h_master_callbacks(NULL, b_get_next, b_conn, b_sync_done, b_bind);
    logs = h_log_count();
    CHECK_EQ(junos_sync_switchover(bctx, &st, &cb), JUNOS_SYNC_ERR_INVALID);
    CHECK(h_log_count() > logs && h_log_contains("junos_sync_switchover: \"jsync-no-such-host.invalid\""));
    CHECK_EQ(peer_info(bctx).is_master, false);
    CHECK_EQ(H_LOAD(b_bind_calls), 0);
    stream(10, 2 * n); /* still replicating */

    /* The master goes; B becomes master on [::1], not on the state's 0.0.0.0. */
    CHECK_EQ(junos_sync_set_address(bctx, "::1", 0), JUNOS_SYNC_OK);
    h_exit(mctx, &mcs);
    CHECK_CBSTAT(&mcs);
    CHECK_WAIT(H_LOAD(bcs.down) == 1, 10000);
    CHECK_EQ(junos_sync_switchover(bctx, &st, &cb), JUNOS_SYNC_OK);
    CHECK_WAIT(H_LOAD(b_bind_calls) == 1, 10000);
    REQUIRE(bport != 0);
    snprintf(listening, sizeof listening, "switched over to master listening on [::1]:%u", (unsigned)bport);
    CHECK(h_log_contains(listening));
    CHECK(!h_log_contains("WARNING: listening on [::1]"));
    CHECK_EQ(peer_info(bctx).is_master, true);

    /* A new backup of B over ::1 gets B's table by a resync. */
    st = h_backup_state(1, false, 0); /* replaced by the address below */
    cb = h_backup_callbacks(c_decode, c_conn, c_sync_done, c_db_clear);
    cctx = junos_sync_init(&st, &cb);
    REQUIRE(cctx != NULL);
    CHECK_EQ(junos_sync_set_address(cctx, "::1", bport), JUNOS_SYNC_OK);
    REQUIRE(junos_sync_start(cctx) == JUNOS_SYNC_OK);
    CHECK_WAIT(H_LOAD(c_sync_done_calls) == 1, 20000);
    CHECK_EQ(c_sync_n, h_table_count(&btab));
    CHECK_TABLES_EQUAL(&btab, &ctab);
    CHECK_TABLES_EQUAL(&mtab, &ctab);
    check_peer(cctx, "::1");
    check_peer(bctx, "::1");

    h_exit(bctx, &bcs);
    CHECK_WAIT(H_LOAD(ccs.down) >= H_LOAD(ccs.up), 10000);
    h_exit(cctx, &ccs);
    CHECK_CBSTAT(&bcs);
    CHECK_CBSTAT(&ccs);
    CHECK_EQ(H_LOAD(b_walk_bad), 0);
    CHECK_EQ(H_LOAD(c_bad), 0);
    CHECK_ALLOC_BALANCED(2000);
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
    h_table_destroy(&ctab);
}

static void test_pair_by_host_name(void)
{
    const uint32_t n = (uint32_t)h_scaled_min(2000, 200);
    h_table_init(&mtab, 2 * n + 10);
    h_table_init(&btab, 2 * n + 10);
    fill(&mtab, n);
    start_master("localhost");
    CHECK(h_log_contains("junos_sync_start: \"localhost\" is "));
    start_backup("localhost", mport);
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1, 20000);
    CHECK_EQ(b_sync_n, n);
    stream(n, n);
    exit_pair();
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
}

int main(int argc, char **argv)
{
    h_init(argc, argv);
    RUN(test_bad_addresses_are_refused_and_logged);
    RUN(test_backup_address_is_checked_at_start);
    RUN(test_pair_over_ipv6_loopback);
    RUN(test_dual_stack_master);
    RUN(test_peer_address_within_size);
    RUN(test_switchover_takes_the_address_set_after_start);
    RUN(test_pair_by_host_name);
    return h_summary();
}
