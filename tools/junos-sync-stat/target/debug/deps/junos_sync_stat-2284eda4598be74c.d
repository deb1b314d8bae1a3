/work/main/tools/junos-sync-stat/target/debug/deps/junos_sync_stat-2284eda4598be74c.d: src/main.rs src/probe.rs src/prom.rs src/status.rs src/text.rs

/work/main/tools/junos-sync-stat/target/debug/deps/junos_sync_stat-2284eda4598be74c: src/main.rs src/probe.rs src/prom.rs src/status.rs src/text.rs

src/main.rs:
src/probe.rs:
src/prom.rs:
src/status.rs:
src/text.rs:
