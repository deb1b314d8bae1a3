/*
 * Raw TCP baselines on 127.0.0.1: what a hand-written C transport gets on this machine. The
 * parent (CPU A) sends, the forked child (CPU B) receives, both with TCP_NODELAY and default
 * socket buffers. Prints one JSON object on stdout, or fails loudly.
 *
 *   tcp_baseline stream LEN N [nomalloc | hold]
 *       Sender: per message malloc(8 + LEN) (a TLV, as the application would allocate it), fill
 *       the payload, frame it as a 4-byte length + payload into a 64 KiB buffer, free the TLV;
 *       write the buffer whenever the next frame would not fit. `nomalloc`: fill straight into
 *       the frame buffer, no malloc/free. `hold`: each TLV is freed only once the reader's
 *       cumulative ack covers it (what junos-sync's contract asks of the library), on the
 *       sending thread, after each write and at the end. Reader: 256 KiB reads, frames parsed in place, one
 *       bench_consume() call per message, a cumulative 8-byte ack (messages consumed so far)
 *       per 64 KiB consumed and one at the end. Clock: first message -> the sender has read the
 *       ack for the N-th message.
 *   tcp_baseline pingpong LEN N WARMUP
 *       N sequential round trips after WARMUP: the client writes one frame (4-byte length +
 *       LEN payload), the server consumes it and echoes the frame back, the client reads it
 *       and compares it byte for byte. t0 before the write, t1 when the echo is complete.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "common.h"

#define FRAME_BUF (64 * 1024)
#define READ_BUF (256 * 1024)
#define ACK_EVERY (64 * 1024)

typedef struct {
    b_check_t chk;
    double cpu_s;
    int64_t t_done;
    long hwm_kb;
} r_result_t;

static void nodelay(int fd)
{
    int one = 1;
    B_CHECK(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0, "TCP_NODELAY: %s",
            strerror(errno));
}

static int listen_any(in_port_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    B_CHECK(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    B_CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0, "bind: %s", strerror(errno));
    B_CHECK(listen(fd, 4) == 0, "listen: %s", strerror(errno));
    socklen_t l = sizeof a;
    B_CHECK(getsockname(fd, (struct sockaddr *)&a, &l) == 0, "getsockname");
    *port = ntohs(a.sin_port);
    return fd;
}

static int accept_one(int lfd)
{
    int fd;
    do {
        fd = accept(lfd, NULL, NULL);
    } while (fd < 0 && errno == EINTR);
    B_CHECK(fd >= 0, "accept: %s", strerror(errno));
    close(lfd);
    nodelay(fd);
    return fd;
}

static int connect_to(in_port_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    B_CHECK(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    B_CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s", strerror(errno));
    nodelay(fd);
    return fd;
}

/* ------------------------------------------------------------------------------------------ */
/* Stream                                                                                      */

static uint64_t s_acked;
static uint8_t s_ackbuf[8];
static size_t s_ackhave;

/* Reads acks; blocking or not. Returns false if nothing was available (non-blocking). */
static bool read_acks(int fd, bool block)
{
    uint8_t tmp[4096];
    ssize_t r = recv(fd, tmp, sizeof tmp, block ? 0 : MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return false;
    B_CHECK(r > 0, "sender: reading acks: %s", r < 0 ? strerror(errno) : "peer closed");
    for (ssize_t i = 0; i < r; i++) {
        s_ackbuf[s_ackhave++] = tmp[i];
        if (s_ackhave == 8) {
            uint64_t v;
            memcpy(&v, s_ackbuf, 8);
            B_CHECK(v >= s_acked, "ack went backwards (%llu after %llu)", (unsigned long long)v,
                    (unsigned long long)s_acked);
            s_acked = v;
            s_ackhave = 0;
        }
    }
    return true;
}

static void send_frames(int fd, const uint8_t *buf, size_t n)
{
    b_write_all(fd, buf, n);
    while (read_acks(fd, false)) {
    }
}

static void stream_reader(b_pair_t *p, in_port_t port, size_t len, uint64_t n)
{
    b_prog = "tcp_baseline(reader)";
    int fd = connect_to(port);
    uint8_t *buf = malloc(READ_BUF);
    B_CHECK(buf, "malloc");
    r_result_t res;
    memset(&res, 0, sizeof res);
    double cpu0 = b_cpu_s();
    size_t have = 0, since_ack = 0;
    b_check_t *c = &res.chk;
    while (c->count < n) {
        ssize_t r = read(fd, buf + have, READ_BUF - have);
        if (r < 0 && errno == EINTR)
            continue;
        B_CHECK(r > 0, "reader: read: %s", r < 0 ? strerror(errno) : "sender closed early");
        have += (size_t)r;
        size_t off = 0;
        for (;;) {
            if (have - off < 4)
                break;
            uint32_t l;
            memcpy(&l, buf + off, 4);
            B_CHECK(l <= READ_BUF - 4, "reader: frame length %u", l);
            if (have - off < 4 + (size_t)l)
                break;
            bench_consume(c, buf + off + 4, l, len);
            off += 4 + l;
            since_ack += 4 + l;
            if (since_ack >= ACK_EVERY || c->count == n) {
                uint64_t v = c->count;
                b_write_all(fd, &v, 8);
                since_ack = 0;
            }
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
    res.t_done = b_now_ns();
    res.cpu_s = b_cpu_s() - cpu0;
    res.hwm_kb = b_status_kb("VmHWM");
    B_CHECK(have == 0, "reader: %zu bytes after the last message", have);
    b_write_all(p->to_parent, &res, sizeof res);
    char ch;
    while (b_read_all(p->from_parent, &ch, 1)) {
    }
    _exit(0);
}

typedef enum { S_MALLOC, S_NOMALLOC, S_HOLD } s_kind_t;

/* `hold`: frees what the acks cover, in order. */
static void free_acked(uint8_t **held, uint64_t *freed)
{
    while (*freed < s_acked)
        free(held[(*freed)++]);
}

static int run_stream(size_t len, uint64_t n, s_kind_t kind)
{
    bool use_malloc = kind != S_NOMALLOC;
    in_port_t port;
    int lfd = listen_any(&port);
    b_pair_t p = b_fork();
    if (p.pid == 0) {
        close(lfd);
        stream_reader(&p, port, len, n);
    }
    b_prog = "tcp_baseline(sender)";
    int fd = accept_one(lfd);
    uint8_t *buf = malloc(FRAME_BUF);
    B_CHECK(buf, "malloc");
    B_CHECK(4 + len <= FRAME_BUF, "LEN too large");
    uint8_t **held = NULL;
    uint64_t freed = 0;
    if (kind == S_HOLD) {
        held = malloc(n * sizeof *held);
        B_CHECK(held, "malloc");
    }
    double cpu0 = b_cpu_s();
    int64_t t0 = b_now_ns();
    size_t used = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (used + 4 + len > FRAME_BUF) {
            send_frames(fd, buf, used);
            used = 0;
            if (held)
                free_acked(held, &freed);
        }
        uint32_t l = (uint32_t)len;
        memcpy(buf + used, &l, 4);
        if (use_malloc) {
            uint8_t *m = malloc(8 + len); /* a TLV: 8-byte header + payload */
            B_CHECK(m, "malloc");
            memcpy(m, &l, 4);
            memcpy(m + 4, &l, 4);
            b_fill(m + 8, len, i);
            memcpy(buf + used + 4, m + 8, len);
            if (held)
                held[i] = m;
            else
                free(m);
        } else {
            b_fill(buf + used + 4, len, i);
        }
        used += 4 + len;
    }
    if (used)
        send_frames(fd, buf, used);
    int64_t t_sent = b_now_ns();
    while (s_acked < n) {
        read_acks(fd, true);
        if (held)
            free_acked(held, &freed);
    }
    int64_t t1 = b_now_ns();
    B_CHECK(!held || freed == n, "freed %llu of %llu", (unsigned long long)freed,
            (unsigned long long)n);
    double cpu1 = b_cpu_s();
    B_CHECK(s_acked == n, "acked %llu, sent %llu", (unsigned long long)s_acked,
            (unsigned long long)n);

    r_result_t r;
    B_CHECK(b_read_all(p.from_child, &r, sizeof r), "reader exited without a result");
    b_check_t want;
    b_expected(&want, 0, n, len);
    b_verify("tcp stream", &r.chk, &want);
    close(p.to_child);
    close(fd);
    b_reap(&p);
    free(held);

    double secs = (double)(t1 - t0) / 1e9;
    printf("{\"mode\": \"stream\", \"contender\": \"raw TCP%s\", \"len\": %zu, \"n\": %llu, "
           "\"secs\": %.6f, \"msgs_per_s\": %.1f, \"mb_per_s\": %.2f, "
           "\"cpu_master_s_per_M\": %.4f, \"cpu_backup_s_per_M\": %.4f, \"send_phase_s\": %.6f, "
           "\"master_hwm_kb\": %ld, \"backup_hwm_kb\": %ld, \"verified\": true}\n",
           kind == S_MALLOC ? "" : kind == S_HOLD ? " (free after ack)" : " (no malloc)", len, (unsigned long long)n, secs, (double)n / secs,
           (double)n * (double)len / secs / 1e6, (cpu1 - cpu0) / (double)n * 1e6,
           r.cpu_s / (double)n * 1e6, (double)(t_sent - t0) / 1e9, b_status_kb("VmHWM"),
           r.hwm_kb);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Ping-pong                                                                                   */

/* Reads one frame of 4 + len bytes into buf (at most one message is ever in flight). */
static void read_frame(int fd, uint8_t *buf, size_t len)
{
    size_t have = 0;
    while (have < 4 + len) {
        ssize_t r = read(fd, buf + have, 4 + len - have);
        if (r < 0 && errno == EINTR)
            continue;
        B_CHECK(r > 0, "read: %s", r < 0 ? strerror(errno) : "peer closed");
        have += (size_t)r;
    }
    uint32_t l;
    memcpy(&l, buf, 4);
    B_CHECK(l == len, "frame length %u, want %zu", l, len);
}

static void pong_server(b_pair_t *p, in_port_t port, size_t len, uint64_t total)
{
    b_prog = "tcp_baseline(pong)";
    int fd = connect_to(port);
    uint8_t *buf = malloc(4 + len);
    B_CHECK(buf, "malloc");
    r_result_t res;
    memset(&res, 0, sizeof res);
    double cpu0 = b_cpu_s();
    for (uint64_t i = 0; i < total; i++) {
        read_frame(fd, buf, len);
        bench_consume(&res.chk, buf + 4, len, len);
        b_write_all(fd, buf, 4 + len);
    }
    res.t_done = b_now_ns();
    res.cpu_s = b_cpu_s() - cpu0;
    b_write_all(p->to_parent, &res, sizeof res);
    char ch;
    while (b_read_all(p->from_parent, &ch, 1)) {
    }
    _exit(0);
}

static int run_pingpong(size_t len, uint64_t n, uint64_t warm)
{
    in_port_t port;
    int lfd = listen_any(&port);
    b_pair_t p = b_fork();
    if (p.pid == 0) {
        close(lfd);
        pong_server(&p, port, len, n + warm);
    }
    b_prog = "tcp_baseline(ping)";
    int fd = accept_one(lfd);
    uint8_t *out = malloc(4 + len), *in = malloc(4 + len);
    int64_t *lat = calloc(n, sizeof *lat);
    B_CHECK(out && in && lat, "malloc");
    uint32_t l = (uint32_t)len;
    memcpy(out, &l, 4);
    for (uint64_t i = 0; i < n + warm; i++) {
        b_fill(out + 4, len, i);
        int64_t t0 = b_now_ns();
        b_write_all(fd, out, 4 + len);
        read_frame(fd, in, len);
        int64_t t1 = b_now_ns();
        B_CHECK(memcmp(in, out, 4 + len) == 0, "echo %llu differs", (unsigned long long)i);
        if (i >= warm)
            lat[i - warm] = t1 - t0;
    }
    r_result_t r;
    B_CHECK(b_read_all(p.from_child, &r, sizeof r), "server exited without a result");
    b_check_t want;
    b_expected(&want, 0, n + warm, len);
    b_verify("tcp pingpong", &r.chk, &want);
    close(p.to_child);
    close(fd);
    b_reap(&p);
    printf("{\"mode\": \"latency\", \"contender\": \"raw TCP ping-pong\", \"len\": %zu, \"n\": %llu, "
           "\"warmup\": %llu, ",
           len, (unsigned long long)n, (unsigned long long)warm);
    b_print_latency(lat, n);
    printf(", \"verified\": true}\n");
    return 0;
}

static s_kind_t usage(void)
{
    fprintf(stderr, "usage: tcp_baseline stream LEN N [nomalloc | hold] | pingpong LEN N WARMUP\n");
    exit(64);
}

int main(int argc, char **argv)
{
    b_prog = "tcp_baseline";
    b_watchdog();
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 4 && strcmp(argv[1], "stream") == 0)
        return run_stream(strtoull(argv[2], NULL, 10), strtoull(argv[3], NULL, 10),
                          argc < 5                          ? S_MALLOC
                          : strcmp(argv[4], "nomalloc") == 0 ? S_NOMALLOC
                          : strcmp(argv[4], "hold") == 0     ? S_HOLD
                                                             : usage());
    if (argc >= 5 && strcmp(argv[1], "pingpong") == 0)
        return run_pingpong(strtoull(argv[2], NULL, 10), strtoull(argv[3], NULL, 10),
                            strtoull(argv[4], NULL, 10));
    usage();
    return 64;
}
