/*
 * Header compile check, "no eventlib": compiled WITHOUT -Ic-tests (no <isc/eventlib.h> on the
 * include path), so the header must supply its own layout-compatible evContext.
 */
#include <jnx/junos_sync.h>

#if !defined(JUNOS_SYNC_EVCONTEXT_DEFINED)
#error "expected junos_sync.h to declare evContext itself (is an isc/eventlib.h on the path?)"
#endif

typedef char hc_evcontext_is_one_pointer[sizeof(evContext) == sizeof(void *) ? 1 : -1];

#define HC_FN hc_use_no_eventlib
#include "header_use.h"
