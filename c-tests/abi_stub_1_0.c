/*
 * A stand-in for release 1.0 of libjunos-sync.so.1 to link old programs against: its eight
 * functions by name, nothing more (a link needs only the names; scripts/check-compat-1.0.sh
 * checks them against the recorded 1.0 ABI). Built unversioned, as 1.0 first shipped, and with
 * the JUNOS_SYNC_1.0 node. Never run: the programs run against the real library.
 */
void junos_sync_init(void);
void junos_sync_set_event_context(void);
void junos_sync_start(void);
void junos_sync_queue(void);
void junos_sync_switchover(void);
void junos_sync_exit(void);
void junos_sync_set_backlog_limit(void);
void junos_sync_get_stats(void);

void junos_sync_init(void) { }
void junos_sync_set_event_context(void) { }
void junos_sync_start(void) { }
void junos_sync_queue(void) { }
void junos_sync_switchover(void) { }
void junos_sync_exit(void) { }
void junos_sync_set_backlog_limit(void) { }
void junos_sync_get_stats(void) { }
