/*
 * A small ISC eventlib (see isc/eventlib.h) on poll(2), for the tests' single-threaded daemons
 * and for examples/flowd's --loop=eventlib: descriptors (evSelectFD/evDeselectFD), timers
 * (evSetTimer/evClearTimer) and the main loop (evGetNext/evDispatch/evMainLoop). The one copy:
 * the Makefile builds it into test_eventlib and into flowd.
 *
 * It behaves like ISC's where junos-sync could notice:
 *   - level-triggered: a descriptor that stays readable yields an event on every round;
 *   - evSelectFD puts the descriptor in non-blocking mode, evDeselectFD restores the mode it
 *     found;
 *   - a handler may deselect any descriptor (its own included) and clear any timer; events of
 *     a deselected descriptor that were due but not dispatched yet are dropped;
 *   - evGetNext(EV_WAIT) fails with ENOENT once nothing is selected and no timer is set, so a
 *     daemon's evMainLoop returns when its last descriptor is gone.
 * And it is strict where a library could misbehave unnoticed with the real one: a context is
 * used only by the thread that created it (ISC's is not thread-safe), and a descriptor closed
 * while still selected (poll reports POLLNVAL) is a bug of whoever closed it. Both abort with a
 * message, which fails the test that runs it.
 */
#include <isc/eventlib.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A test hook, not ISC API (test_eventlib.c): when set, the next evSelectFD fails with EINVAL
 * and clears it, so that a caller's handling of that failure can be tested. */
int eventlib_fail_next_select;

typedef struct ev_file {
    struct ev_file *next;
    int fd;
    int mask;
    bool was_nonblocking;
    evFileFunc func;
    void *uap;
} ev_file_t;

typedef struct ev_timer {
    struct ev_timer *next;
    struct timespec due, inter;
    evTimerFunc func;
    void *uap;
} ev_timer_t;

/* What evGetNext hands to evDispatch: a descriptor and what it is ready for, or a timer. */
typedef struct {
    ev_file_t *file;   /* NULL for a timer event */
    int mask;
    ev_timer_t *timer;
    struct timespec due, inter;
} ev_event_t;

typedef struct {
    pthread_t owner;
    ev_file_t *files;
    int nfiles;
    ev_timer_t *timers;        /* sorted by due */
    /* The last poll's ready descriptors, handed out one per evGetNext. */
    ev_event_t *ready;
    int nready, ready_next, ready_cap;
    struct pollfd *pfds;
    ev_file_t **pfd_file;
    int pfd_cap;
    ev_event_t current;        /* the event evGetNext handed out last */
} ev_ctx_t;

static void ev_die(const char *what)
{
    fprintf(stderr, "eventlib: %s\n", what);
    fflush(stderr);
    abort();
}

/* The context, checked to be used on the thread that owns it. */
static ev_ctx_t *ev_get(evContext ctx, const char *fn)
{
    ev_ctx_t *c = (ev_ctx_t *)ctx.opaque;
    if (c == NULL)
        ev_die("a NULL evContext");
    if (!pthread_equal(c->owner, pthread_self())) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s called from a thread that does not own the context"
                 " (ISC eventlib is not thread-safe)", fn);
        ev_die(msg);
    }
    return c;
}

static void *ev_alloc(size_t n)
{
    void *p = calloc(1, n);
    if (p == NULL)
        ev_die("out of memory");
    return p;
}

/* ---- time --------------------------------------------------------------------------------- */

struct timespec evConsTime(time_t sec, long nsec)
{
    struct timespec t;
    t.tv_sec = sec;
    t.tv_nsec = nsec;
    return t;
}

struct timespec evAddTime(struct timespec a, struct timespec b)
{
    struct timespec t;
    t.tv_sec = a.tv_sec + b.tv_sec;
    t.tv_nsec = a.tv_nsec + b.tv_nsec;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

struct timespec evNowTime(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t;
}

int evCmpTime(struct timespec a, struct timespec b)
{
    if (a.tv_sec != b.tv_sec)
        return a.tv_sec < b.tv_sec ? -1 : 1;
    if (a.tv_nsec != b.tv_nsec)
        return a.tv_nsec < b.tv_nsec ? -1 : 1;
    return 0;
}

/* ---- contexts ----------------------------------------------------------------------------- */

int evCreate(evContext *ctx)
{
    if (ctx == NULL) {
        errno = EINVAL;
        return -1;
    }
    ev_ctx_t *c = (ev_ctx_t *)ev_alloc(sizeof *c);
    c->owner = pthread_self();
    ctx->opaque = c;
    return 0;
}

int evDestroy(evContext ctx)
{
    ev_ctx_t *c = ev_get(ctx, "evDestroy");
    while (c->files != NULL) {
        evFileID id;
        id.opaque = c->files;
        evDeselectFD(ctx, id);
    }
    while (c->timers != NULL) {
        ev_timer_t *t = c->timers;
        c->timers = t->next;
        free(t);
    }
    free(c->ready);
    free(c->pfds);
    free(c->pfd_file);
    free(c);
    return 0;
}

/* ---- descriptors -------------------------------------------------------------------------- */

int evSelectFD(evContext ctx, int fd, int eventmask, evFileFunc func, void *uap, evFileID *id)
{
    ev_ctx_t *c = ev_get(ctx, "evSelectFD");
    if (eventlib_fail_next_select) {
        eventlib_fail_next_select = 0;
        errno = EINVAL;
        return -1;
    }
    if (fd < 0 || func == NULL || (eventmask & (EV_READ | EV_WRITE | EV_EXCEPT)) == 0) {
        errno = EINVAL;
        return -1;
    }
    for (ev_file_t *f = c->files; f != NULL; f = f->next) {
        if (f->fd == fd && (f->mask & eventmask) != 0) {
            errno = ETOOMANYREFS; /* ISC's answer to selecting the same fd and event twice */
            return -1;
        }
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -1; /* EBADF */
    ev_file_t *f = (ev_file_t *)ev_alloc(sizeof *f);
    f->fd = fd;
    f->mask = eventmask;
    f->was_nonblocking = (fl & O_NONBLOCK) != 0;
    /* ISC eventlib makes selected descriptors non-blocking; a library must live with that. */
    if (!f->was_nonblocking && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        free(f);
        return -1;
    }
    f->func = func;
    f->uap = uap;
    f->next = c->files;
    c->files = f;
    c->nfiles++;
    if (id != NULL)
        id->opaque = f;
    return 0;
}

int evDeselectFD(evContext ctx, evFileID id)
{
    ev_ctx_t *c = ev_get(ctx, "evDeselectFD");
    ev_file_t **link = &c->files;
    while (*link != NULL && *link != (ev_file_t *)id.opaque)
        link = &(*link)->next;
    if (*link == NULL) {
        errno = ENOENT;
        return -1;
    }
    ev_file_t *f = *link;
    *link = f->next;
    c->nfiles--;
    /* Due events of this descriptor not dispatched yet are dropped. */
    for (int i = c->ready_next; i < c->nready; i++)
        if (c->ready[i].file == f)
            c->ready[i].file = NULL, c->ready[i].mask = 0;
    if (c->current.file == f)
        c->current.file = NULL, c->current.mask = 0;
    int fl = fcntl(f->fd, F_GETFL);
    if (fl < 0 && errno == EBADF) {
        char msg[128];
        snprintf(msg, sizeof msg, "evDeselectFD: fd %d was closed before it was deselected", f->fd);
        ev_die(msg);
    }
    if (fl >= 0 && !f->was_nonblocking)
        (void)fcntl(f->fd, F_SETFL, fl & ~O_NONBLOCK);
    free(f);
    return 0;
}

/* ---- timers ------------------------------------------------------------------------------- */

static void ev_timer_insert(ev_ctx_t *c, ev_timer_t *t)
{
    ev_timer_t **link = &c->timers;
    while (*link != NULL && evCmpTime((*link)->due, t->due) <= 0)
        link = &(*link)->next;
    t->next = *link;
    *link = t;
}

int evSetTimer(evContext ctx, evTimerFunc func, void *uap, struct timespec due,
               struct timespec inter, evTimerID *id)
{
    ev_ctx_t *c = ev_get(ctx, "evSetTimer");
    if (func == NULL) {
        errno = EINVAL;
        return -1;
    }
    ev_timer_t *t = (ev_timer_t *)ev_alloc(sizeof *t);
    t->due = due;
    t->inter = inter;
    t->func = func;
    t->uap = uap;
    ev_timer_insert(c, t);
    if (id != NULL)
        id->opaque = t;
    return 0;
}

int evClearTimer(evContext ctx, evTimerID id)
{
    ev_ctx_t *c = ev_get(ctx, "evClearTimer");
    ev_timer_t **link = &c->timers;
    while (*link != NULL && *link != (ev_timer_t *)id.opaque)
        link = &(*link)->next;
    if (*link == NULL) {
        /* A one-shot timer clearing itself from its own handler: it is off the list since
         * evGetNext, and evDispatch frees it when the handler returns. */
        if (id.opaque != NULL && c->current.timer == (ev_timer_t *)id.opaque)
            return 0;
        errno = ENOENT;
        return -1;
    }
    ev_timer_t *t = *link;
    *link = t->next;
    free(t);
    return 0;
}

/* ---- the loop ----------------------------------------------------------------------------- */

static void ev_grow(ev_ctx_t *c)
{
    if (c->pfd_cap >= c->nfiles)
        return;
    int cap = c->nfiles * 2 + 4;
    c->pfds = (struct pollfd *)realloc(c->pfds, (size_t)cap * sizeof *c->pfds);
    c->pfd_file = (ev_file_t **)realloc(c->pfd_file, (size_t)cap * sizeof *c->pfd_file);
    c->ready = (ev_event_t *)realloc(c->ready, (size_t)cap * sizeof *c->ready);
    if (c->pfds == NULL || c->pfd_file == NULL || c->ready == NULL)
        ev_die("out of memory");
    c->pfd_cap = c->ready_cap = cap;
}

/* Milliseconds from now until `due`, rounded up (0 if due). */
static int ev_ms_until(struct timespec due)
{
    struct timespec now = evNowTime();
    if (evCmpTime(due, now) <= 0)
        return 0;
    long long ns = (long long)(due.tv_sec - now.tv_sec) * 1000000000LL + (due.tv_nsec - now.tv_nsec);
    long long ms = (ns + 999999) / 1000000;
    return ms > 1000000000LL ? 1000000000 : (int)ms;
}

int evGetNext(evContext ctx, evEvent *ev, int options)
{
    ev_ctx_t *c = ev_get(ctx, "evGetNext");
    memset(&c->current, 0, sizeof c->current);
    for (;;) {
        /* Due descriptors from the last round first (skipping deselected ones). */
        while (c->ready_next < c->nready) {
            ev_event_t *e = &c->ready[c->ready_next++];
            if (e->file != NULL) {
                c->current = *e;
                ev->opaque = &c->current;
                return 0;
            }
        }
        /* Then a due timer: taken off the list here (a periodic one goes back on). */
        if (c->timers != NULL && evCmpTime(c->timers->due, evNowTime()) <= 0) {
            ev_timer_t *t = c->timers;
            c->timers = t->next;
            c->current.timer = t;
            c->current.due = t->due;
            c->current.inter = t->inter;
            if (t->inter.tv_sec != 0 || t->inter.tv_nsec != 0) {
                t->due = evAddTime(evNowTime(), t->inter);
                ev_timer_insert(c, t);
            }
            ev->opaque = &c->current;
            return 0;
        }
        if ((options & EV_WAIT) != 0 && c->nfiles == 0 && c->timers == NULL) {
            errno = ENOENT; /* nothing could ever happen */
            return -1;
        }
        /* A new round: poll every selected descriptor. */
        ev_grow(c);
        int n = 0;
        for (ev_file_t *f = c->files; f != NULL; f = f->next, n++) {
            c->pfds[n].fd = f->fd;
            c->pfds[n].events = (short)(((f->mask & EV_READ) ? POLLIN : 0) |
                                        ((f->mask & EV_WRITE) ? POLLOUT : 0) |
                                        ((f->mask & EV_EXCEPT) ? POLLPRI : 0));
            c->pfds[n].revents = 0;
            c->pfd_file[n] = f;
        }
        int tmo = 0;
        if ((options & EV_WAIT) != 0)
            tmo = c->timers != NULL ? ev_ms_until(c->timers->due) : -1;
        int r = poll(c->pfds, (nfds_t)n, tmo);
        if (r < 0)
            return -1; /* EINTR: the caller decides */
        c->nready = c->ready_next = 0;
        for (int i = 0; i < n && r > 0; i++) {
            short re = c->pfds[i].revents;
            if (re == 0)
                continue;
            if (re & POLLNVAL) {
                char msg[128];
                snprintf(msg, sizeof msg, "fd %d was closed while selected", c->pfds[i].fd);
                ev_die(msg);
            }
            int mask = 0;
            /* Hang-up and errors wake readers and writers, as select() does. */
            if (re & (POLLIN | POLLHUP | POLLERR))
                mask |= EV_READ;
            if (re & (POLLOUT | POLLERR))
                mask |= EV_WRITE;
            if (re & POLLPRI)
                mask |= EV_EXCEPT;
            mask &= c->pfd_file[i]->mask;
            if (mask == 0)
                continue;
            ev_event_t *e = &c->ready[c->nready++];
            memset(e, 0, sizeof *e);
            e->file = c->pfd_file[i];
            e->mask = mask;
        }
        if (c->nready == 0 && (options & EV_WAIT) == 0 &&
            (c->timers == NULL || evCmpTime(c->timers->due, evNowTime()) > 0)) {
            errno = EWOULDBLOCK;
            return -1;
        }
    }
}

int evDispatch(evContext ctx, evEvent ev)
{
    ev_ctx_t *c = ev_get(ctx, "evDispatch");
    ev_event_t *e = (ev_event_t *)ev.opaque;
    if (e != &c->current) {
        errno = EINVAL;
        return -1;
    }
    if (e->file != NULL) {
        /* Copied out: the handler may deselect (and so free) its own registration. */
        ev_file_t f = *e->file;
        e->file = NULL;
        f.func(ctx, f.uap, f.fd, e->mask);
    } else if (e->timer != NULL) {
        ev_timer_t *t = e->timer;
        bool oneshot = e->inter.tv_sec == 0 && e->inter.tv_nsec == 0;
        t->func(ctx, t->uap, e->due, e->inter);
        /* A periodic timer is back on the list (its handler may have cleared, so freed, it:
         * not touched any more); a one-shot one has been off it since evGetNext. */
        if (oneshot)
            free(t);
        e->timer = NULL;
    }
    return 0;
}

int evMainLoop(evContext ctx)
{
    evEvent ev;
    int r;
    while ((r = evGetNext(ctx, &ev, EV_WAIT)) == 0 || errno == EINTR) {
        if (r == 0 && (r = evDispatch(ctx, ev)) < 0)
            break;
    }
    return r;
}
