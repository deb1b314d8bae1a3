//! The status socket (`JUNOS_SYNC_STATUS_DIR`) and `Context::status`: where the socket is, who
//! may read it, what it says while a resync runs and after, and that it goes at exit.

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use common::*;
use junos_sync::LinkState;

engine_tests!(status_socket_follows_a_resync_and_goes_at_exit);

fn ask(path: &Path) -> String {
    let mut s = String::new();
    UnixStream::connect(path).unwrap().read_to_string(&mut s).unwrap();
    s
}

/// The number after `"key":` in a JSON line (every field is unique in the status).
fn num(json: &str, key: &str) -> u64 {
    let at = json.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("{key} missing in {json}")) + key.len() + 3;
    json[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
}

/// The socket of this process's context of `role` on `port`, once there
/// (`junos-sync.PID.ROLE.PORT.N.sock`: N numbers a process's status sockets).
fn socket(dir: &Path, role: &str, port: u16) -> PathBuf {
    let prefix = format!("junos-sync.{}.{role}.{port}.", std::process::id());
    let mut found = None;
    wait_for(&format!("a socket {prefix}N.sock"), 10, || {
        found = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".sock"))
        });
        found.is_some()
    });
    found.expect("found")
}

fn status_socket_follows_a_resync_and_goes_at_exit() {
    let which = common::mode::running().mode;
    let dir = std::env::temp_dir().join(format!("jsync-status-{}-{which:?}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    const N: u32 = 20_000;
    // Both contexts read the directory at init, while this test holds the environment.
    let (mut m, mut b) = {
        let _env = env_lock();
        std::env::set_var("JUNOS_SYNC_STATUS_DIR", &dir);
        let m = Node::new(master_cfg(false));
        m.fill_db(N, OP_LEN);
        m.start();
        let b = Node::new(backup_cfg(m.port(), false));
        std::env::remove_var("JUNOS_SYNC_STATUS_DIR");
        (m, b)
    };
    let port = m.port();
    let ms = socket(&dir, "master", port);
    wait_for("master's socket", 10, || ms.exists());
    let mode = std::fs::metadata(&ms).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the status socket is readable by others");
    let idle = ask(&ms);
    assert!(idle.contains("\"role\":\"master\"") && idle.contains("\"state\":\"down\""), "{idle}");
    assert_eq!(num(&idle, "pid"), u64::from(std::process::id()));

    b.decode_delay_us.store(20, Ordering::SeqCst); // a walk slow enough to watch
    b.start();
    let bs = socket(&dir, "backup", port);
    wait_for("backup's socket", 10, || bs.exists());
    let mut seen = Vec::new();
    wait_for("resync acknowledged", 30, || {
        let j = ask(&ms);
        if j.contains("\"resync\":{") {
            seen.push((num(&j, "walked"), num(&j, "acked")));
        }
        j.contains("\"running\":false") && num(&j, "acked") == u64::from(N)
    });
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1), "progress went back: {seen:?}");
    assert!(seen.iter().any(|&(w, a)| w > 0 && a < u64::from(N)), "never saw the resync under way: {seen:?}");
    let done = ask(&ms);
    assert_eq!(num(&done, "walked"), u64::from(N));
    assert!(done.contains("\"state\":\"up\"") && done.contains("\"peer\":\"127.0.0.1:"), "{done}");
    assert_eq!(num(&done, "full_resyncs"), 1);
    let back = ask(&bs);
    assert!(back.contains("\"role\":\"backup\"") && back.contains("\"state\":\"up\""), "{back}");
    assert_eq!(num(&back, "walked"), u64::from(N));

    // Live traffic drains: the lag comes back to (about) nothing.
    let ids: Vec<u64> = (1..=1000).map(|k| m.put(k, k + 1, false)).collect();
    wait_for("acknowledged", 10, || m.stats().backlog_bytes == 0 && m.book().all_freed(&ids));
    assert_eq!(b.book().decoded[N as usize..], ids[..]);
    let calm = ask(&ms);
    assert_eq!((num(&calm, "lag_ms"), num(&calm, "unacked_entries")), (0, 0), "{calm}");
    let st = m.status();
    assert_eq!((st.state, st.is_master, st.keyed, st.port), (LinkState::Up, true, false, port));
    assert!(st.peer.is_some());

    b.exit();
    assert!(!bs.exists(), "the backup's socket outlived it");
    m.exit();
    assert!(!ms.exists(), "the master's socket outlived it");
    let _ = std::fs::remove_dir(&dir);
}
