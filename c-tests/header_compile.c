/*
 * Header compile check, order "eventlib before": the application includes ISC eventlib's
 * header first, then ours, which must take evContext from it. Built by the Makefile as C11 and
 * C++17 (-Wall -Wextra -Werror, with -Ic-tests so <isc/eventlib.h> is the stand-in in
 * c-tests/isc/). See also header_order_after.c and header_order_none.c.
 */
#include <isc/eventlib.h>
#include <jnx/junos_sync.h>
#include <jnx/junos_sync.h> /* idempotent */

#if !defined(_EVENTLIB_H)
#error "the eventlib guard vanished"
#endif
#if defined(JUNOS_SYNC_EVCONTEXT_DEFINED)
#error "junos_sync.h declared its own evContext although <isc/eventlib.h> was included first"
#endif

#define HC_FN hc_use_eventlib_before
#include "header_use.h"
