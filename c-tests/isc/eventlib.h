/*
 * Stand-in for ISC eventlib's <isc/eventlib.h>: the subset junos-sync's dispatch mode and the
 * tests' daemons use, with ISC's names, types and signatures, and the same include guard and
 * evContext spelling as the real header (the header-compatibility checks include it before,
 * after and instead of <jnx/junos_sync.h>). c-tests/eventlib.c implements it on poll(2); a
 * program that links it exports evSelectFD/evDeselectFD (-rdynamic), which is how
 * junos_sync_set_event_context finds an eventlib in the process.
 *
 * Like ISC's, a context is not thread-safe: it belongs to the thread that created it, and
 * c-tests/eventlib.c aborts when another thread calls in (that would be a library bug).
 */
#ifndef _EVENTLIB_H
#define _EVENTLIB_H

#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct { void *opaque; } evContext;
typedef struct { void *opaque; } evEvent;
typedef struct { void *opaque; } evFileID;
typedef struct { void *opaque; } evTimerID;

typedef void (*evFileFunc)(evContext ctx, void *uap, int fd, int eventmask);
typedef void (*evTimerFunc)(evContext ctx, void *uap, struct timespec due,
                            struct timespec inter);

/* eventmask bits of evSelectFD */
#define EV_READ   0x01
#define EV_WRITE  0x02
#define EV_EXCEPT 0x04

/* options of evGetNext */
#define EV_POLL 1 /* do not block */
#define EV_WAIT 2 /* block until an event is due */
#define EV_NULL 4 /* (accepted, ignored) */

int evCreate(evContext *ctx);
int evDestroy(evContext ctx);
/* One due event into *ev: 0, or -1 with errno (EWOULDBLOCK under EV_POLL when nothing is due,
 * ENOENT under EV_WAIT when nothing is selected and no timer is set, EINTR). */
int evGetNext(evContext ctx, evEvent *ev, int options);
int evDispatch(evContext ctx, evEvent ev);
/* evGetNext(EV_WAIT) + evDispatch until evGetNext fails; returns its -1 (errno ENOENT: the
 * loop ran out of descriptors and timers). */
int evMainLoop(evContext ctx);

int evSelectFD(evContext ctx, int fd, int eventmask, evFileFunc func, void *uap, evFileID *id);
int evDeselectFD(evContext ctx, evFileID id);

/* Times are CLOCK_MONOTONIC here (evNowTime), so deadlines do not move with the wall clock. */
struct timespec evConsTime(time_t sec, long nsec);
struct timespec evAddTime(struct timespec a, struct timespec b);
struct timespec evNowTime(void);
int evCmpTime(struct timespec a, struct timespec b);
/* A timer due at `due` (evNowTime's clock), then every `inter` unless inter is zero. */
int evSetTimer(evContext ctx, evTimerFunc func, void *uap, struct timespec due,
               struct timespec inter, evTimerID *id);
int evClearTimer(evContext ctx, evTimerID id);

#ifdef __cplusplus
}
#endif

#endif /* _EVENTLIB_H */
