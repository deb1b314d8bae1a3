/*
 * junos-sync-keygen [-f] [FILE] -- writes a new 32-byte random key for junos-sync.
 *
 * FILE defaults to junos-sync.key in the current directory. It is created with mode 0600 and
 * never replaced unless -f is given; then the new key is written to a temporary file beside it
 * and renamed over it, so FILE always holds a whole key, the old one or the new one.
 * Silent on success; on failure, one line on stderr naming the file and the reason, exit 1
 * (2 for a usage error). See junos-sync-keygen(1).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_LEN 32
#define DEFAULT_FILE "junos-sync.key"

static const char *prog = "junos-sync-keygen";

static int fail(const char *what, const char *path)
{
    fprintf(stderr, "%s: %s %s: %s\n", prog, what, path, strerror(errno));
    return -1;
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: %s [-f] [FILE]\n"
            "Writes a new %d-byte random key to FILE (default ./%s), mode 0600.\n"
            "  -f  replace FILE if it exists\n",
            prog, KEY_LEN, DEFAULT_FILE);
}

/* getrandom blocks until the kernel's pool is initialised, which is what a key needs. */
static int random_key(unsigned char *key)
{
    size_t got = 0;
    while (got < KEY_LEN) {
        ssize_t n = getrandom(key + got, KEY_LEN - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "%s: getrandom: %s\n", prog, strerror(errno));
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

/* Writes the key to a file just created as fd and makes it durable; mode exactly 0600
 * whatever the umask. */
static int write_key(int fd, const unsigned char *key, const char *path)
{
    size_t done = 0;
    if (fchmod(fd, 0600) != 0)
        return fail("cannot set the mode of", path);
    while (done < KEY_LEN) {
        ssize_t n = write(fd, key + done, KEY_LEN - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail("cannot write", path);
        }
        done += (size_t)n;
    }
    if (fsync(fd) != 0)
        return fail("cannot sync", path);
    return 0;
}

/* The directory entry of a rename must reach the disk too. */
static int sync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL)
        return fail("out of memory for", path);
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (fd < 0 || fsync(fd) != 0)
        rc = fail("cannot sync the directory", dir);
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

static int create_new(const char *path, const unsigned char *key)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        if (errno == EEXIST) {
            fprintf(stderr, "%s: %s exists; not replacing a key without -f\n", prog, path);
            return -1;
        }
        return fail("cannot create", path);
    }
    if (write_key(fd, key, path) != 0) {
        close(fd);
        unlink(path);
        return -1;
    }
    if (close(fd) != 0) {
        fail("cannot close", path);
        unlink(path);
        return -1;
    }
    return sync_dir_of(path);
}

static int replace(const char *path, const unsigned char *key)
{
    size_t len = strlen(path) + sizeof(".XXXXXX");
    char *tmp = malloc(len);
    if (tmp == NULL)
        return fail("out of memory for", path);
    snprintf(tmp, len, "%s.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC); /* O_EXCL, mode 0600 */
    int rc = -1;
    if (fd < 0) {
        fail("cannot create a temporary file for", path);
    } else if (write_key(fd, key, tmp) != 0) {
        close(fd);
        unlink(tmp);
    } else if (close(fd) != 0) {
        fail("cannot close", tmp);
        unlink(tmp);
    } else if (rename(tmp, path) != 0) {
        fail("cannot replace", path);
        unlink(tmp);
    } else {
        rc = sync_dir_of(path);
    }
    free(tmp);
    return rc;
}

int main(int argc, char **argv)
{
    int force = 0, opt;
    unsigned char key[KEY_LEN];

    while ((opt = getopt(argc, argv, "fh")) != -1) {
        switch (opt) {
        case 'f':
            force = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind > 1) {
        usage(stderr);
        return 2;
    }
    const char *path = optind < argc ? argv[optind] : DEFAULT_FILE;
    if (*path == '\0') {
        fprintf(stderr, "%s: empty file name\n", prog);
        return 2;
    }

    if (random_key(key) != 0)
        return 1;
    int rc = force ? replace(path, key) : create_new(path, key);
    explicit_bzero(key, sizeof key);
    return rc == 0 ? 0 : 1;
}
