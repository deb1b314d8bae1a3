/*
 * ZeroMQ PUSH/PULL baseline over TCP on 127.0.0.1 (libzmq defaults: one I/O thread per context,
 * high-water marks of 1000 messages). The parent (CPU A) PUSHes, the forked child (CPU B) PULLs;
 * each creates its own context after the fork. Prints one JSON object on stdout, or fails loudly.
 *
 *   zmq_baseline stream LEN N
 *       Sender: per message fill a reused LEN-byte buffer and zmq_send() it (libzmq copies it:
 *       no malloc, no free, no ack). Receiver: zmq_msg_recv() into one zmq_msg_t, one
 *       bench_consume() call per message on zmq_msg_data() in place. One unmeasured 1-byte
 *       message first makes sure the connection is up. Clock: first fill -> the receiver has
 *       consumed the N-th message (its CLOCK_MONOTONIC timestamp, sent back over a pipe).
 */
#include <zmq.h>

#include "common.h"

typedef struct {
    b_check_t chk;
    double cpu_s;
    int64_t t_done;
    long hwm_kb;
} z_result_t;

static void puller(b_pair_t *p, size_t len, uint64_t n)
{
    b_prog = "zmq_baseline(pull)";
    char ep[256];
    uint32_t eplen;
    B_CHECK(b_read_all(p->from_parent, &eplen, 4) && eplen < sizeof ep, "no endpoint");
    B_CHECK(b_read_all(p->from_parent, ep, eplen), "no endpoint");
    ep[eplen] = 0;
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_PULL);
    B_CHECK(s, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    B_CHECK(zmq_connect(s, ep) == 0, "zmq_connect %s: %s", ep, zmq_strerror(zmq_errno()));
    zmq_msg_t m;
    zmq_msg_init(&m);
    B_CHECK(zmq_msg_recv(&m, s, 0) == 1, "warm-up message: %s", zmq_strerror(zmq_errno()));
    char ready = 'r';
    b_write_all(p->to_parent, &ready, 1);

    z_result_t res;
    memset(&res, 0, sizeof res);
    double cpu0 = b_cpu_s();
    while (res.chk.count < n) {
        int r = zmq_msg_recv(&m, s, 0);
        if (r < 0 && zmq_errno() == EINTR)
            continue;
        B_CHECK(r >= 0, "zmq_msg_recv: %s", zmq_strerror(zmq_errno()));
        bench_consume(&res.chk, zmq_msg_data(&m), zmq_msg_size(&m), len);
    }
    res.t_done = b_now_ns();
    res.cpu_s = b_cpu_s() - cpu0;
    res.hwm_kb = b_status_kb("VmHWM");
    b_write_all(p->to_parent, &res, sizeof res);
    char ch;
    while (b_read_all(p->from_parent, &ch, 1)) {
    }
    zmq_msg_close(&m);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(s);
    zmq_ctx_term(ctx);
    _exit(0);
}

static int run_stream(size_t len, uint64_t n)
{
    b_pair_t p = b_fork();
    if (p.pid == 0)
        puller(&p, len, n);
    b_prog = "zmq_baseline(push)";
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_PUSH);
    B_CHECK(s, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    B_CHECK(zmq_bind(s, "tcp://127.0.0.1:*") == 0, "zmq_bind: %s", zmq_strerror(zmq_errno()));
    char ep[256];
    size_t eplen = sizeof ep;
    B_CHECK(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &eplen) == 0, "ZMQ_LAST_ENDPOINT");
    uint32_t l = (uint32_t)strlen(ep);
    b_write_all(p.to_child, &l, 4);
    b_write_all(p.to_child, ep, l);
    B_CHECK(zmq_send(s, "w", 1, 0) == 1, "zmq_send warm-up: %s", zmq_strerror(zmq_errno()));
    char ready;
    B_CHECK(b_read_all(p.from_child, &ready, 1), "puller exited before it was ready");

    uint8_t *buf = malloc(len + 8);
    B_CHECK(buf, "malloc");
    double cpu0 = b_cpu_s();
    int64_t t0 = b_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        b_fill(buf, len, i);
        int r = zmq_send(s, buf, len, 0);
        if (r < 0 && zmq_errno() == EINTR) {
            i--;
            continue;
        }
        B_CHECK(r == (int)len, "zmq_send: %s", zmq_strerror(zmq_errno()));
    }
    int64_t t_sent = b_now_ns();
    z_result_t r;
    B_CHECK(b_read_all(p.from_child, &r, sizeof r), "puller exited without a result");
    double cpu1 = b_cpu_s();
    int64_t t1 = r.t_done;
    b_check_t want;
    b_expected(&want, 0, n, len);
    b_verify("zmq stream", &r.chk, &want);
    close(p.to_child);
    b_reap(&p);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(s);
    zmq_ctx_term(ctx);

    double secs = (double)(t1 - t0) / 1e9;
    printf("{\"mode\": \"stream\", \"contender\": \"ZeroMQ PUSH/PULL\", \"len\": %zu, \"n\": %llu, "
           "\"secs\": %.6f, \"msgs_per_s\": %.1f, \"mb_per_s\": %.2f, "
           "\"cpu_master_s_per_M\": %.4f, \"cpu_backup_s_per_M\": %.4f, \"send_phase_s\": %.6f, "
           "\"master_hwm_kb\": %ld, \"backup_hwm_kb\": %ld, \"zmq_version\": \"%d.%d.%d\", "
           "\"verified\": true}\n",
           len, (unsigned long long)n, secs, (double)n / secs, (double)n * (double)len / secs / 1e6,
           (cpu1 - cpu0) / (double)n * 1e6, r.cpu_s / (double)n * 1e6, (double)(t_sent - t0) / 1e9,
           b_status_kb("VmHWM"), r.hwm_kb, ZMQ_VERSION_MAJOR, ZMQ_VERSION_MINOR, ZMQ_VERSION_PATCH);
    return 0;
}

int main(int argc, char **argv)
{
    b_prog = "zmq_baseline";
    b_watchdog();
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 4 && strcmp(argv[1], "stream") == 0)
        return run_stream(strtoull(argv[2], NULL, 10), strtoull(argv[3], NULL, 10));
    fprintf(stderr, "usage: zmq_baseline stream LEN N\n");
    return 64;
}
