//! A context's authentication keys: set through the API or read from the files named by
//! `JUNOS_SYNC_AUTH_KEY_FILE`, kept only as derived Noise PSKs (wiped when dropped).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use zeroize::Zeroizing;

use crate::proto::noise::{Psk, MAX_KEY_LEN, MIN_KEY_LEN};

/// Keys a context holds at most: the one in use and some accepted during a rotation.
pub(crate) const MAX_KEYS: usize = 4;

/// The environment variable naming the key file(s).
pub(crate) const KEY_FILE_VAR: &str = "JUNOS_SYNC_AUTH_KEY_FILE";

/// The keys of one context, first the one a backup tries first.
#[derive(Default)]
pub(crate) struct Keys(Vec<Psk>);

impl Keys {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn psks(&self) -> &[Psk] {
        &self.0
    }

    /// Checks a key's length; why it is unusable, if it is.
    pub(crate) fn problem(key: &[u8]) -> Option<String> {
        if key.len() < MIN_KEY_LEN {
            return Some(format!("a key must have at least {MIN_KEY_LEN} bytes (this one has {})", key.len()));
        }
        if key.len() > MAX_KEY_LEN {
            return Some(format!("a key must have at most {MAX_KEY_LEN} bytes (this one has {})", key.len()));
        }
        None
    }

    /// Replaces every key with `key` (checked by the caller).
    pub(crate) fn set(&mut self, key: &[u8]) {
        self.0.clear();
        self.0.push(Psk::derive(key));
    }

    /// Adds a key also accepted; false if there are already `MAX_KEYS`.
    pub(crate) fn add(&mut self, key: &[u8]) -> bool {
        if self.0.len() >= MAX_KEYS {
            return false;
        }
        self.0.push(Psk::derive(key));
        true
    }

    /// The keys named by `JUNOS_SYNC_AUTH_KEY_FILE` (a path, or several separated by `:`, the
    /// first tried first), none when it is unset or empty. Any unusable file is an error: a
    /// daemon told to use a key must not run without one.
    pub(crate) fn from_env() -> Result<Keys, String> {
        let Some(v) = std::env::var_os(KEY_FILE_VAR) else { return Ok(Keys::default()) };
        let v = v.to_string_lossy().into_owned();
        let mut keys = Keys::default();
        for path in v.split(':').filter(|p| !p.is_empty()) {
            let key = read_key_file(path)?;
            if !keys.add(&key) {
                return Err(format!("{KEY_FILE_VAR} names more than {MAX_KEYS} key files"));
            }
        }
        Ok(keys)
    }
}

/// Reads a raw key file the way ssh reads a private key: it must be a regular file readable by
/// its owner only, and hold a usable key.
fn read_key_file(path: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let what = |e: std::io::Error| format!("{KEY_FILE_VAR}: cannot read key file {path}: {e}");
    let mut f = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(what)?;
    let meta = f.metadata().map_err(what)?;
    if !meta.is_file() {
        return Err(format!("{KEY_FILE_VAR}: key file {path} is not a regular file"));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{KEY_FILE_VAR}: key file {path} is accessible by group or others (mode {:o}); chmod 600 it",
            meta.mode() & 0o777
        ));
    }
    let mut key = Zeroizing::new(Vec::with_capacity(64));
    f.by_ref().take(MAX_KEY_LEN as u64 + 1).read_to_end(&mut key).map_err(what)?;
    if let Some(p) = Keys::problem(&key) {
        return Err(format!("{KEY_FILE_VAR}: key file {path}: {p}"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn file(name: &str, bytes: &[u8], mode: u32) -> String {
        let dir = std::env::temp_dir().join(format!("jsync-keys-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        let _ = fs::remove_file(&p);
        fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn key_files_must_be_private_and_long_enough() {
        assert!(read_key_file(&file("ok", &[7; 32], 0o600)).is_ok());
        assert!(read_key_file(&file("ro", &[7; 16], 0o400)).is_ok());
        let e = read_key_file(&file("group", &[7; 32], 0o640)).unwrap_err();
        assert!(e.contains("group or others"), "{e}");
        assert!(read_key_file(&file("other", &[7; 32], 0o604)).is_err());
        assert!(read_key_file(&file("empty", b"", 0o600)).unwrap_err().contains("at least 16"));
        assert!(read_key_file(&file("short", &[1; 15], 0o600)).is_err());
        assert!(read_key_file(&file("huge", &vec![1; MAX_KEY_LEN + 1], 0o600)).is_err());
        assert!(read_key_file("/nonexistent/jsync.key").unwrap_err().contains("cannot read"));
        let dir = std::env::temp_dir();
        assert!(read_key_file(dir.to_str().unwrap()).is_err(), "a directory is no key");
    }

    #[test]
    fn at_most_four_keys() {
        let mut k = Keys::default();
        for _ in 0..MAX_KEYS {
            assert!(k.add(&[1; 16]));
        }
        assert!(!k.add(&[1; 16]));
        k.set(&[2; 16]);
        assert_eq!(k.psks().len(), 1);
    }
}
