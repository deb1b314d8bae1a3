//! The environment variables `junos_sync_init` reads, read once and checked there. A variable
//! that is set means what it says or the init fails, with a line naming the variable and its
//! value: a daemon told to use a key, a backlog limit or a status directory must not run
//! without it, nor with something else in its place. Unset, each has its default.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::engine::config::DEFAULT_BACKLOG_LIMIT;
use crate::engine::keys::Keys;
use crate::engine::status::socket::{checked_dir, STATUS_DIR_VAR};

/// The key file(s): a path, or several separated by `:` (a rotation, the first tried first).
pub(crate) const KEY_FILE_VAR: &str = "JUNOS_SYNC_AUTH_KEY_FILE";
/// The backlog limit in bytes, as `junos_sync_set_backlog_limit` takes it.
pub(crate) const BACKLOG_LIMIT_VAR: &str = "JUNOS_SYNC_BACKLOG_LIMIT";

/// Backup: bytes of a full resync held until its end, as `junos_sync_set_resync_buffer` takes it.
pub(crate) const RESYNC_BUFFER_VAR: &str = "JUNOS_SYNC_RESYNC_BUFFER";

/// What the environment asks of a new context.
pub(crate) struct FromEnv {
    pub keys: Keys,
    pub backlog_limit: usize,
    /// Absolute: a daemon that changes directory later still finds (and removes) its socket.
    pub status_dir: Option<PathBuf>,
    /// 0: off (the drop-in order).
    pub resync_buffer: usize,
}

/// Every variable, or why one of them cannot be used.
pub(crate) fn read() -> Result<FromEnv, String> {
    Ok(FromEnv {
        keys: keys(std::env::var_os(KEY_FILE_VAR))?,
        backlog_limit: backlog_limit(std::env::var_os(BACKLOG_LIMIT_VAR))?,
        status_dir: status_dir(std::env::var_os(STATUS_DIR_VAR))?,
        resync_buffer: resync_buffer(std::env::var_os(RESYNC_BUFFER_VAR))?,
    })
}

/// `NAME="value": why` (the value quoted and escaped as Rust's Debug does).
fn refused(name: &str, value: &OsStr, why: &str) -> String {
    format!("{name}={value:?}: {why}")
}

fn keys(v: Option<OsString>) -> Result<Keys, String> {
    let Some(v) = v else { return Ok(Keys::default()) };
    let paths: Vec<&Path> = v.as_bytes().split(|&b| b == b':').map(|p| Path::new(OsStr::from_bytes(p))).collect();
    if paths.iter().any(|p| p.as_os_str().is_empty()) {
        return Err(refused(
            KEY_FILE_VAR,
            &v,
            "names an empty path (it is PATH or PATH:PATH...; unset it for a context without a key)",
        ));
    }
    Keys::from_files(&paths).map_err(|why| refused(KEY_FILE_VAR, &v, &why))
}

fn backlog_limit(v: Option<OsString>) -> Result<usize, String> {
    let Some(v) = v else { return Ok(DEFAULT_BACKLOG_LIMIT) };
    let digits = !v.is_empty() && v.as_bytes().iter().all(u8::is_ascii_digit);
    match v.to_str().filter(|_| digits).and_then(|s| s.parse::<usize>().ok()) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(refused(
            BACKLOG_LIMIT_VAR,
            &v,
            &format!("not a backlog limit (a number of bytes from 1 to {}, in decimal digits)", usize::MAX),
        )),
    }
}

fn resync_buffer(v: Option<OsString>) -> Result<usize, String> {
    let Some(v) = v else { return Ok(0) };
    let digits = !v.is_empty() && v.as_bytes().iter().all(u8::is_ascii_digit);
    match v.to_str().filter(|_| digits).and_then(|s| s.parse::<usize>().ok()) {
        Some(n) => Ok(n),
        None => Err(refused(
            RESYNC_BUFFER_VAR,
            &v,
            &format!("not a resync buffer (a number of bytes from 0, off, to {}, in decimal digits)", usize::MAX),
        )),
    }
}

fn status_dir(v: Option<OsString>) -> Result<Option<PathBuf>, String> {
    let Some(v) = v else { return Ok(None) };
    if v.is_empty() {
        return Err(refused(STATUS_DIR_VAR, &v, "set but empty (unset it for no status socket)"));
    }
    let dir =
        std::path::absolute(Path::new(&v)).map_err(|e| refused(STATUS_DIR_VAR, &v, &format!("cannot use it: {e}")))?;
    checked_dir(&dir).map_err(|why| refused(STATUS_DIR_VAR, &v, &why))?;
    Ok(Some(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn backlog_limits() {
        assert_eq!(backlog_limit(None), Ok(DEFAULT_BACKLOG_LIMIT));
        assert_eq!(backlog_limit(os("1")), Ok(1));
        assert_eq!(backlog_limit(os("268435456")), Ok(268_435_456));
        for bad in ["0", "", "abc", "-5", "+5", " 5", "5 ", "1e6", "0x10", "99999999999999999999999"] {
            let e = backlog_limit(os(bad)).unwrap_err();
            assert!(e.starts_with(&format!("JUNOS_SYNC_BACKLOG_LIMIT={bad:?}: not a backlog limit")), "{e}");
        }
        let e = backlog_limit(Some(OsString::from(OsStr::from_bytes(b"1\xff")))).unwrap_err();
        assert!(e.starts_with(r#"JUNOS_SYNC_BACKLOG_LIMIT="1\xFF": "#), "{e}");
    }

    #[test]
    fn resync_buffers() {
        assert_eq!(resync_buffer(None), Ok(0));
        assert_eq!(resync_buffer(os("0")), Ok(0));
        assert_eq!(resync_buffer(os("33554432")), Ok(33_554_432));
        for bad in ["", "abc", "-5", " 5", "5 ", "1e6", "32M", "99999999999999999999999"] {
            let e = resync_buffer(os(bad)).unwrap_err();
            assert!(e.starts_with(&format!("JUNOS_SYNC_RESYNC_BUFFER={bad:?}: not a resync buffer")), "{e}");
        }
    }

    #[test]
    fn key_file_lists() {
        assert!(keys(None).unwrap().is_empty());
        for bad in ["", ":", "a:", ":a", "a::b"] {
            let e = keys(os(bad)).err().unwrap();
            assert!(e.starts_with(&format!("JUNOS_SYNC_AUTH_KEY_FILE={bad:?}: names an empty path")), "{e}");
        }
        let e = keys(os("/nonexistent/k")).err().unwrap();
        assert!(
            e.starts_with(r#"JUNOS_SYNC_AUTH_KEY_FILE="/nonexistent/k": cannot read key file /nonexistent/k: "#),
            "{e}"
        );
    }

    #[test]
    fn status_dirs() {
        assert_eq!(status_dir(None), Ok(None));
        assert!(status_dir(os("")).unwrap_err().ends_with("set but empty (unset it for no status socket)"));
        let d = std::env::temp_dir().join(format!("jsync-env-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        assert_eq!(status_dir(Some(d.clone().into())), Ok(Some(d.clone())));
        let e = status_dir(Some(d.join("none").into())).unwrap_err();
        assert!(e.contains("cannot use it: No such file or directory"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
