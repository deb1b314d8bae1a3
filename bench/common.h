/*
 * Shared by the junos-sync benchmark programs (jsync_bench.c, tcp_baseline.c, zmq_baseline.c):
 * the payload every contender sends, the per-message check every receiver runs, clocks, CPU and
 * memory probes, CPU pinning, process plumbing, and the one-line JSON result.
 *
 * Payload of message `seq` (any length): 64-bit little-endian words, word 0 = seq, word i =
 * (seq + 1) * K1 + i * K2; a tail shorter than 8 bytes holds the low bytes of its word.
 * Receivers call bench_consume() once per message, in place: it checks the length and that
 * word 0 is the next expected sequence number (order), and folds every word into a Fletcher-style
 * 64-bit checksum that the sender recomputes after the clock has stopped (integrity).
 *
 * Every program prints exactly one JSON object on stdout and exits 0, or says what went wrong
 * on stderr and exits non-zero: a benchmark whose data did not arrive intact is a failure, not
 * a number.
 */
#ifndef JSYNC_BENCH_COMMON_H
#define JSYNC_BENCH_COMMON_H

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define B_K1 0x9E3779B97F4A7C15ull
#define B_K2 0xD6E8FEB86659FD93ull

#define B_LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define B_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)
#define B_INC(x) __atomic_add_fetch(&(x), 1, __ATOMIC_ACQ_REL)

/* ------------------------------------------------------------------------------------------ */
/* Failing loudly.                                                                             */

static const char *b_prog = "bench";

static void b_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void b_die(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s[%d]: FAIL: %s\n", b_prog, (int)getpid(), msg);
    fflush(stderr);
    _exit(2);
}

#define B_CHECK(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            b_die(__VA_ARGS__);                                                                    \
    } while (0)

static void b_alarm(int sig)
{
    (void)sig;
    static const char m[] = "bench: FAIL: watchdog timeout (BENCH_TIMEOUT seconds), process killed\n";
    ssize_t r = write(2, m, sizeof m - 1);
    (void)r;
    _exit(3);
}

/* Kills this process after BENCH_TIMEOUT seconds (default 180). */
static inline void b_watchdog(void)
{
    const char *v = getenv("BENCH_TIMEOUT");
    unsigned t = v && *v ? (unsigned)atoi(v) : 180;
    signal(SIGALRM, b_alarm);
    alarm(t ? t : 180);
}

/* ------------------------------------------------------------------------------------------ */
/* Clocks and probes.                                                                          */

static inline int64_t b_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void b_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* user+sys CPU seconds of the whole process (all threads). */
static inline double b_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* A field of /proc/self/status in kB (VmRSS, VmHWM), -1 if absent. */
static inline long b_status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    size_t n = strlen(field);
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static inline long b_env_long(const char *name, long def)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    return strtol(v, NULL, 10);
}

/* Pins the calling thread (and the threads it creates later) to one CPU when BENCH_PIN is not 0
 * and the CPU exists. Called first thing in both processes of a pair, before any thread exists,
 * so a library's loop thread or ZeroMQ's I/O thread shares its process's CPU. */
static inline void b_pin(int which)
{
    if (b_env_long("BENCH_PIN", 1) == 0)
        return;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 2)
        return;
    char name[32];
    snprintf(name, sizeof name, "BENCH_CPU_%s", which == 0 ? "A" : "B");
    int cpu = (int)b_env_long(name, which == 0 ? 0 : 1);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    B_CHECK(sched_setaffinity(0, sizeof set, &set) == 0, "sched_setaffinity(cpu %d): %s", cpu,
            strerror(errno));
}

/* ------------------------------------------------------------------------------------------ */
/* Payload and its check.                                                                      */

static inline uint64_t b_word(uint64_t seq, size_t i)
{
    return i == 0 ? seq : (seq + 1) * B_K1 + (uint64_t)i * B_K2;
}

static inline void b_fill(void *dst, size_t len, uint64_t seq)
{
    uint8_t *p = dst;
    size_t nw = len / 8, i;
    for (i = 0; i < nw; i++) {
        uint64_t w = b_word(seq, i);
        memcpy(p + 8 * i, &w, 8);
    }
    if (len % 8) {
        uint64_t w = b_word(seq, nw);
        memcpy(p + 8 * nw, &w, len % 8);
    }
}

typedef struct {
    uint64_t count;    /* messages consumed */
    uint64_t next_seq; /* word 0 expected next */
    uint64_t s1, s2;   /* checksum */
    uint64_t bad_len, bad_seq;
} b_check_t;

static inline void b_sum_word(b_check_t *c, uint64_t w)
{
    c->s1 += w;
    c->s2 += c->s1;
}

/* The receiver's per-message work, identical for every contender: called once per message with
 * the payload where it lies (any alignment). */
static __attribute__((noinline)) void bench_consume(b_check_t *c, const void *data, size_t len,
                                                    size_t want_len)
{
    const uint8_t *p = data;
    c->count++;
    if (len != want_len) {
        c->bad_len++;
        return;
    }
    size_t nw = len / 8, i;
    uint64_t w0 = 0;
    if (len >= 8)
        memcpy(&w0, p, 8);
    if (w0 != c->next_seq)
        c->bad_seq++;
    c->next_seq = w0 + 1;
    for (i = 0; i < nw; i++) {
        uint64_t w;
        memcpy(&w, p + 8 * i, 8);
        b_sum_word(c, w);
    }
    if (len % 8) {
        uint64_t w = 0;
        memcpy(&w, p + 8 * nw, len % 8);
        b_sum_word(c, w);
    }
}

/* The checksum a receiver must end with after messages first..first+n-1 of length len. */
static inline void b_expected(b_check_t *c, uint64_t first, uint64_t n, size_t len)
{
    memset(c, 0, sizeof *c);
    uint8_t *buf = malloc(len + 8);
    B_CHECK(buf, "malloc");
    c->next_seq = first;
    for (uint64_t s = first; s < first + n; s++) {
        b_fill(buf, len, s);
        bench_consume(c, buf, len, len);
    }
    free(buf);
}

/* Dies unless `got` consumed exactly what `want` describes. */
static inline void b_verify(const char *what, const b_check_t *got, const b_check_t *want)
{
    B_CHECK(got->bad_len == 0, "%s: %llu messages had the wrong length", what,
            (unsigned long long)got->bad_len);
    B_CHECK(got->bad_seq == 0, "%s: %llu messages out of order (sequence word mismatch)", what,
            (unsigned long long)got->bad_seq);
    B_CHECK(got->count == want->count, "%s: receiver consumed %llu messages, sender sent %llu", what,
            (unsigned long long)got->count, (unsigned long long)want->count);
    B_CHECK(got->s1 == want->s1 && got->s2 == want->s2,
            "%s: payload checksum mismatch (got %016llx/%016llx, want %016llx/%016llx)", what,
            (unsigned long long)got->s1, (unsigned long long)got->s2, (unsigned long long)want->s1,
            (unsigned long long)want->s2);
}

/* ------------------------------------------------------------------------------------------ */
/* Process plumbing: a child forked before any thread exists, with a pipe each way.            */

typedef struct {
    pid_t pid;
    int to_child;   /* parent writes */
    int from_child; /* parent reads */
    int from_parent; /* child reads */
    int to_parent;  /* child writes */
} b_pair_t;

static inline void b_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        B_CHECK(w > 0, "write(fd %d): %s", fd, w < 0 ? strerror(errno) : "0 bytes");
        c += w;
        n -= (size_t)w;
    }
}

/* Reads exactly n bytes; false on end of file before the first byte. */
static inline bool b_read_all(int fd, void *p, size_t n)
{
    char *c = p;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, c + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0 && got == 0)
            return false;
        B_CHECK(r > 0, "read(fd %d): %s", fd, r < 0 ? strerror(errno) : "unexpected end of file");
        got += (size_t)r;
    }
    return true;
}

/* Forks. In the child, returns with pid == 0, pinned to CPU B, killed if the parent dies. In the
 * parent, pinned to CPU A. */
static inline b_pair_t b_fork(void)
{
    int a[2], b[2];
    B_CHECK(pipe(a) == 0 && pipe(b) == 0, "pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    b_pair_t p;
    p.pid = fork();
    B_CHECK(p.pid >= 0, "fork: %s", strerror(errno));
    if (p.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(9);
        close(a[1]);
        close(b[0]);
        p.from_parent = a[0];
        p.to_parent = b[1];
        p.to_child = p.from_child = -1;
        b_pin(1);
    } else {
        close(a[0]);
        close(b[1]);
        p.to_child = a[1];
        p.from_child = b[0];
        p.from_parent = p.to_parent = -1;
        b_pin(0);
    }
    return p;
}

/* Parent: waits for the child and dies unless it exited 0. */
static inline void b_reap(b_pair_t *p)
{
    int st;
    while (waitpid(p->pid, &st, 0) < 0) {
        B_CHECK(errno == EINTR, "waitpid: %s", strerror(errno));
    }
    B_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d %s %d", (int)p->pid,
            WIFEXITED(st) ? "exited with" : "was killed by signal",
            WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

/* ------------------------------------------------------------------------------------------ */
/* Latency samples.                                                                            */

static int b_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank quantile of sorted samples, in microseconds. */
static inline double b_quantile_us(const int64_t *sorted, size_t n, double q)
{
    size_t k = (size_t)(q * (double)n + 0.999999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return (double)sorted[k - 1] / 1000.0;
}

/* Prints "p50_us": .., "p99_us": .., "p999_us": .., "max_us": .., "mean_us": .. (sorts samples). */
static inline void b_print_latency(int64_t *ns, size_t n)
{
    qsort(ns, n, sizeof *ns, b_cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)ns[i];
    printf("\"p50_us\": %.2f, \"p99_us\": %.2f, \"p999_us\": %.2f, \"max_us\": %.2f, \"mean_us\": %.2f, "
           "\"min_us\": %.2f",
           b_quantile_us(ns, n, 0.50), b_quantile_us(ns, n, 0.99), b_quantile_us(ns, n, 0.999),
           (double)ns[n - 1] / 1000.0, sum / (double)n / 1000.0, (double)ns[0] / 1000.0);
}

#endif
