/*
 * Configuration from the environment through the C API (issue 17, findings 6 and 8): every
 * JUNOS_SYNC_* variable junos_sync_init reads fails it, with one log line naming the variable
 * and its value, when the value cannot be used as it says; none is ignored or half-applied.
 * A FIFO named as the key file does not block junos_sync_init (it used to, forever, in open).
 */
#include "pair.h"

#include <sys/stat.h>

static char g_dir[64];

/* A master without resync: junos_sync_init checks nothing else of the application. */
static junos_sync_context_t *init_master(void)
{
    junos_sync_state_t st = h_master_state(true, 2);
    junos_sync_callbacks_t cb = h_callbacks();
    return junos_sync_init(&st, &cb);
}

/* With `var` set to `value`, junos_sync_init returns NULL and logs exactly one line, which
 * holds VAR="VALUE" and `why`. */
static void check_refused(const char *var, const char *value, const char *why)
{
    char named[512];
    snprintf(named, sizeof named, "%s=\"%s\"", var, value);
    REQUIRE(setenv(var, value, 1) == 0);
    long lines = h_log_count();
    junos_sync_context_t *c = init_master();
    unsetenv(var);
    CHECK_MSG(c == NULL, "junos_sync_init with %s returned a context", named);
    if (c != NULL)
        junos_sync_exit(c);
    CHECK_MSG(h_log_count() == lines + 1, "%s: %ld log lines, expected 1", named, h_log_count() - lines);
    CHECK_MSG(h_log_contains(named) && h_log_contains(why), "no log line with '%s' and '%s'", named, why);
}

/* Finding 6: a FIFO as the key file. Opening it for reading used to wait for a writer that
 * never comes; now init returns at once, saying what the file is. */
static void test_a_fifo_as_the_key_file_does_not_block_init(void)
{
    char path[128];
    h_tmp_dir(g_dir, sizeof g_dir, "config");
    snprintf(path, sizeof path, "%s/key", g_dir);
    REQUIRE(mkfifo(path, 0600) == 0);
    REQUIRE(setenv("JUNOS_SYNC_AUTH_KEY_FILE", path, 1) == 0);
    long lines = h_log_count();
    int64_t t0 = h_now_ms();
    junos_sync_context_t *c = init_master();
    int64_t took = h_now_ms() - t0;
    unsetenv("JUNOS_SYNC_AUTH_KEY_FILE");
    CHECK(c == NULL);
    if (c != NULL)
        junos_sync_exit(c);
    CHECK_LE(took, h_tmo(1000));
    CHECK_EQ(h_log_count(), lines + 1);
    CHECK(h_log_contains("JUNOS_SYNC_AUTH_KEY_FILE") && h_log_contains(path) && h_log_contains("is not a regular file"));
    unlink(path);
    rmdir(g_dir);
    CHECK_ALLOC_BALANCED(1000);
}

/* Finding 8: key files. An empty path list (":" or ""), a key of one repeated byte and a key
 * file of another unprivileged user each fail init; a good key file still keys it. */
static void test_key_file_input_fails_closed(void)
{
    char path[128];
    unsigned char key[32];
    h_tmp_dir(g_dir, sizeof g_dir, "config");
    check_refused("JUNOS_SYNC_AUTH_KEY_FILE", ":", "names an empty path");
    check_refused("JUNOS_SYNC_AUTH_KEY_FILE", "", "names an empty path");

    memset(key, 0, sizeof key);
    h_write_file(path, sizeof path, g_dir, "zeros", key, 16, 0600);
    check_refused("JUNOS_SYNC_AUTH_KEY_FILE", path, "holds one byte repeated (0x00, 16 times)");
    unlink(path);
    memset(key, 'a', sizeof key);
    h_write_file(path, sizeof path, g_dir, "aaaa", key, 32, 0600);
    check_refused("JUNOS_SYNC_AUTH_KEY_FILE", path, "holds one byte repeated (0x61, 32 times)");
    unlink(path);

    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (unsigned char)(i * 37 + 11);
    h_write_file(path, sizeof path, g_dir, "good", key, sizeof key, 0600);
    if (geteuid() == 0) {
        /* 0600 and well-formed, but someone else's: they could have written it, or swap it. */
        REQUIRE(chown(path, 12345, 12345) == 0);
        check_refused("JUNOS_SYNC_AUTH_KEY_FILE", path, "is owned by uid 12345, neither this process's user (uid 0) nor root");
        REQUIRE(chown(path, 0, 0) == 0);
    } else {
        h_note("not root: the case of a key file owned by another user needs chown, left out");
    }
    /* The good key file, alone and in a list, keys the context as before. */
    char list[300];
    snprintf(list, sizeof list, "%s:%s", path, path);
    const char *good[] = {path, list};
    for (size_t i = 0; i < 2; i++) {
        REQUIRE(setenv("JUNOS_SYNC_AUTH_KEY_FILE", good[i], 1) == 0);
        junos_sync_context_t *c = init_master();
        unsetenv("JUNOS_SYNC_AUTH_KEY_FILE");
        CHECK_MSG(c != NULL, "junos_sync_init with JUNOS_SYNC_AUTH_KEY_FILE=%s failed", good[i]);
        if (c != NULL)
            junos_sync_exit(c);
    }
    unlink(path);
    rmdir(g_dir);
    CHECK_ALLOC_BALANCED(1000);
}

/* Finding 8: JUNOS_SYNC_BACKLOG_LIMIT is a number of bytes, 1 or more, or init fails (0 was
 * taken as a limit of 0, which the API refuses; other words were ignored). */
static void test_backlog_limit_input_fails_closed(void)
{
    static const char *bad[] = {"0", "abc", "-5", "", " 5", "5 ", "1e6", "0x10", "+5", "18446744073709551616"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        check_refused("JUNOS_SYNC_BACKLOG_LIMIT", bad[i], "not a backlog limit");
    REQUIRE(setenv("JUNOS_SYNC_BACKLOG_LIMIT", "1048576", 1) == 0);
    junos_sync_context_t *c = init_master();
    unsetenv("JUNOS_SYNC_BACKLOG_LIMIT");
    CHECK(c != NULL);
    if (c != NULL)
        junos_sync_exit(c);
    CHECK_ALLOC_BALANCED(1000);
}

/* Finding 8 (and 4): JUNOS_SYNC_STATUS_DIR must name a directory the daemon can trust. */
static void test_status_dir_input_fails_closed(void)
{
    char path[128], open_dir[128], sticky[128];
    h_tmp_dir(g_dir, sizeof g_dir, "config");
    check_refused("JUNOS_SYNC_STATUS_DIR", "", "set but empty");
    snprintf(path, sizeof path, "%s/none", g_dir);
    check_refused("JUNOS_SYNC_STATUS_DIR", path, "No such file or directory");
    h_write_file(path, sizeof path, g_dir, "file", "x", 1, 0600);
    check_refused("JUNOS_SYNC_STATUS_DIR", path, "is not a directory");
    unlink(path);
    snprintf(open_dir, sizeof open_dir, "%s/open", g_dir);
    REQUIRE(mkdir(open_dir, 0700) == 0 && chmod(open_dir, 0777) == 0);
    check_refused("JUNOS_SYNC_STATUS_DIR", open_dir, "is writable by group or others (mode 777) and not sticky");
    snprintf(sticky, sizeof sticky, "%s/sticky", g_dir);
    REQUIRE(mkdir(sticky, 0700) == 0 && chmod(sticky, 01777) == 0);
    REQUIRE(setenv("JUNOS_SYNC_STATUS_DIR", sticky, 1) == 0);
    junos_sync_context_t *c = init_master();
    unsetenv("JUNOS_SYNC_STATUS_DIR");
    CHECK(c != NULL);
    if (c != NULL)
        junos_sync_exit(c);
    rmdir(open_dir);
    rmdir(sticky);
    rmdir(g_dir);
    CHECK_ALLOC_BALANCED(1000);
}

int main(int argc, char **argv)
{
    h_init(argc, argv);
    RUN_T(test_a_fifo_as_the_key_file_does_not_block_init, 20);
    RUN_T(test_key_file_input_fails_closed, 30);
    RUN_T(test_backlog_limit_input_fails_closed, 30);
    RUN_T(test_status_dir_input_fails_closed, 30);
    return h_summary();
}
