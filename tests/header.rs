//! `make header-check`: the committed C header must be exactly what cbindgen generates from
//! the Rust source. `JUNOS_SYNC_BLESS=1` (`make header`) rewrites the committed copy instead.

use std::path::Path;

#[test]
fn committed_header_matches_generated() {
    let generated = include_str!(env!("JUNOS_SYNC_GENERATED_HEADER"));
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/jnx/junos_sync.h");
    if std::env::var_os("JUNOS_SYNC_BLESS").is_some() {
        std::fs::write(&committed, generated).expect("write include/jnx/junos_sync.h");
        return;
    }
    let current = std::fs::read_to_string(&committed).unwrap_or_default();
    assert!(
        current == generated,
        "include/jnx/junos_sync.h differs from what cbindgen generates; run `make header` and commit it"
    );
}
