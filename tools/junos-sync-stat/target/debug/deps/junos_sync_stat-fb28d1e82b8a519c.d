/work/main/tools/junos-sync-stat/target/debug/deps/junos_sync_stat-fb28d1e82b8a519c.d: src/main.rs src/probe.rs src/prom.rs src/status.rs src/text.rs Cargo.toml

/work/main/tools/junos-sync-stat/target/debug/deps/libjunos_sync_stat-fb28d1e82b8a519c.rmeta: src/main.rs src/probe.rs src/prom.rs src/status.rs src/text.rs Cargo.toml

src/main.rs:
src/probe.rs:
src/prom.rs:
src/status.rs:
src/text.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
