/*
 * Minimal stand-in for ISC eventlib's <isc/eventlib.h>, enough for the header-compatibility
 * tests: the same include guard and the same evContext spelling as the real header.
 */
#ifndef _EVENTLIB_H
#define _EVENTLIB_H

typedef struct { void *opaque; } evContext;

#endif /* _EVENTLIB_H */
