/*
 * Header compile check, order "eventlib after": the application includes our header first and
 * ISC eventlib's afterwards; both must coexist (no second evContext). Compile with -Ic-tests.
 */
#include <jnx/junos_sync.h>
#include <isc/eventlib.h>

#if defined(JUNOS_SYNC_EVCONTEXT_DEFINED)
#error "junos_sync.h declared its own evContext although <isc/eventlib.h> is available"
#endif

#define HC_FN hc_use_eventlib_after
#include "header_use.h"
