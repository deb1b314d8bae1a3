//! A context's authentication keys: set through the API or read from the files named by
//! `JUNOS_SYNC_AUTH_KEY_FILE` (see `env_vars`), kept only as derived Noise PSKs (wiped when
//! dropped).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use crate::proto::noise::{Psk, MAX_KEY_LEN, MIN_KEY_LEN};

/// Keys a context holds at most: the one in use and some accepted during a rotation.
pub(crate) const MAX_KEYS: usize = 4;

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

    /// The keys in the files at `paths`, the first tried first (`JUNOS_SYNC_AUTH_KEY_FILE`,
    /// read in `env_vars`). Any unusable file is an error: a daemon told to use a key must not
    /// run without one.
    pub(crate) fn from_files(paths: &[&Path]) -> Result<Keys, String> {
        if paths.len() > MAX_KEYS {
            return Err(format!("names more than {MAX_KEYS} key files"));
        }
        let mut keys = Keys::default();
        for path in paths {
            keys.0.push(Psk::derive(&read_key_file(path)?));
        }
        Ok(keys)
    }
}

/// What kind of file, for a file that is not a regular one.
fn kind(t: fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a file"
    }
}

/// Reads a raw key file the way ssh reads a private key: a regular file (checked on the open
/// descriptor before any read: a FIFO would wait for a writer for ever, and `O_NONBLOCK` makes
/// its open return at once), not a symlink, owned by this process's user or root, readable
/// by its owner only, holding a usable key that is not one byte repeated (a file of zeros
/// or of one letter is a mistake, not a key).
fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let p = path.display();
    let what = |e: std::io::Error| format!("cannot read key file {p}: {e}");
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(what)?;
    let meta = f.metadata().map_err(what)?;
    if !meta.is_file() {
        return Err(format!("key file {p} is not a regular file ({})", kind(meta.file_type())));
    }
    let me = crate::sys::euid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "key file {p} is owned by uid {}, neither this process's user (uid {me}) nor root",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "key file {p} is accessible by group or others (mode {:o}); chmod 600 it",
            meta.mode() & 0o777
        ));
    }
    let mut key = Zeroizing::new(Vec::with_capacity(64));
    f.by_ref().take(MAX_KEY_LEN as u64 + 1).read_to_end(&mut key).map_err(what)?;
    if let Some(why) = Keys::problem(&key) {
        return Err(format!("key file {p}: {why}"));
    }
    if key.iter().all(|&b| b == key[0]) {
        return Err(format!(
            "key file {p} holds one byte repeated (0x{:02x}, {} times): not a key (junos-sync-keygen makes one)",
            key[0],
            key.len()
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn file(name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("jsync-keys-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        let _ = fs::remove_file(&p);
        fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn key(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 37 + 11) as u8).collect()
    }

    #[test]
    fn key_files_must_be_private_and_long_enough() {
        assert!(read_key_file(&file("ok", &key(32), 0o600)).is_ok());
        assert!(read_key_file(&file("ro", &key(16), 0o400)).is_ok());
        let e = read_key_file(&file("group", &key(32), 0o640)).unwrap_err();
        assert!(e.contains("group or others"), "{e}");
        assert!(read_key_file(&file("other", &key(32), 0o604)).is_err());
        assert!(read_key_file(&file("empty", b"", 0o600)).unwrap_err().contains("at least 16"));
        assert!(read_key_file(&file("short", &key(15), 0o600)).is_err());
        assert!(read_key_file(&file("huge", &key(MAX_KEY_LEN + 1), 0o600)).is_err());
        assert!(read_key_file(Path::new("/nonexistent/jsync.key")).unwrap_err().contains("cannot read"));
        let e = read_key_file(&std::env::temp_dir()).unwrap_err();
        assert!(e.contains("is not a regular file (a directory)"), "{e}");
        let e = read_key_file(&file("zeros", &[0; 16], 0o600)).unwrap_err();
        assert!(
            e.ends_with("holds one byte repeated (0x00, 16 times): not a key (junos-sync-keygen makes one)"),
            "{e}"
        );
        assert!(read_key_file(&file("sevens", &[7; 64], 0o600)).unwrap_err().contains("(0x07, 64 times)"));
    }

    #[test]
    fn a_symlink_is_not_followed() {
        let target = file("target", &key(32), 0o600);
        let link = target.with_file_name("link");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(read_key_file(&link).unwrap_err().contains("cannot read key file"));
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
        let p = file("four", &key(20), 0o600);
        assert_eq!(Keys::from_files(&[p.as_path(); 4]).unwrap().psks().len(), 4);
        assert_eq!(Keys::from_files(&[p.as_path(); 5]).err().unwrap(), "names more than 4 key files");
    }
}
