//! Build script: generates the C header. (The Makefile links the shared library, soname and
//! symbol versions included, from the staticlib.)
//!
//! The header goes to `$OUT_DIR/junos_sync.h`; `tests/header.rs` compares it with the committed
//! `include/jnx/junos_sync.h` (that is `make header-check`) and rewrites the committed copy when
//! `JUNOS_SYNC_BLESS=1` (that is `make header`).
use std::{env, path::PathBuf};

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it")).join("junos_sync.h");

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write_to_file(&out);
    println!("cargo:rustc-env=JUNOS_SYNC_GENERATED_HEADER={}", out.display());
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=src");
}
