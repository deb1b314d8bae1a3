//! Status bugs found while building junos-sync-stat (issue 10 part 4), fixed: an interrupted
//! walk said it was running, a backup's status went dark while a slow application applied a
//! resync, and a relative status directory was taken relative to wherever the daemon was.

mod common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use common::*;
use junos_sync::LinkState;

engine_tests!(
    a_backups_walk_interrupted_by_the_master_is_not_running,
    a_backups_status_shows_its_resync_under_way,
    a_relative_status_dir_is_taken_from_the_directory_at_init,
);

/// A master with `n` entries and a backup that takes `delay_us` to apply each, both started.
fn pair(n: u32, delay_us: usize) -> (Node, Node) {
    let m = Node::new(master_cfg(false));
    m.fill_db(n, OP_LEN);
    m.start();
    let b = Node::new(backup_cfg(m.port(), false));
    b.decode_delay_us.store(delay_us, Ordering::SeqCst);
    b.start();
    (m, b)
}

fn a_backups_walk_interrupted_by_the_master_is_not_running() {
    const N: u32 = 20_000;
    let (mut m, mut b) = pair(N, 50); // a walk of a second or more
                                      // The master's status, not the backup's: see the next test.
    wait_for("the walk under way", 10, || {
        m.status().resync.is_some_and(|r| r.running && r.acked > 0 && r.acked < u64::from(N) / 2)
    });
    m.exit(); // the master goes away mid-walk
    wait_for("the backup to see it", 10, || b.status().state != LinkState::Up);
    // What was delivered before is still applied (in dispatch mode, after the connection went):
    // then the status must say whether the walk completed, and never that it still runs.
    wait_for("the resync to stop running", 30, || b.status().resync.is_some_and(|r| !r.running));
    let st = b.status();
    let r = st.resync.expect("the walk's progress");
    assert_eq!(r.complete, r.walked == u64::from(N), "{r:?}");
    let decoded = b.book().decoded.clone();
    assert_eq!(r.walked, decoded.len() as u64, "walked counts what was applied: {r:?}");
    let walked = m.book().made.clone();
    assert_eq!(decoded, walked[..decoded.len()], "the backup applied the walk's entries, in order");
    b.exit();
}

fn a_backups_status_shows_its_resync_under_way() {
    const N: u32 = 20_000;
    let (mut m, mut b) = pair(N, 50);
    let mut seen = Vec::new();
    wait_for("the resync to complete on the backup", 30, || {
        let r = b.status().resync;
        if seen.last() != Some(&r) {
            seen.push(r);
        }
        r.is_some_and(|r| !r.running)
    });
    assert!(
        seen.iter().flatten().any(|r| r.running && r.walked > 0),
        "the backup's status never showed its resync under way: {seen:?}"
    );
    assert_eq!(b.book().decoded, m.book().made, "the whole walk, in order");
    b.exit();
    m.exit();
}

fn a_relative_status_dir_is_taken_from_the_directory_at_init() {
    // The working directory and the environment are the process's: held for the whole test.
    let _env = env_lock();
    let which = common::mode::running().mode;
    let base = std::env::temp_dir().join(format!("jsync-status-rel-{}-{which:?}", std::process::id()));
    let (first, second) = (base.join("first"), base.join("second"));
    std::fs::create_dir_all(first.join("status")).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    let cwd = std::env::current_dir().unwrap();
    std::env::set_current_dir(&first).unwrap();
    std::env::set_var("JUNOS_SYNC_STATUS_DIR", "status");
    let mut m = Node::new(master_cfg(false));
    std::env::remove_var("JUNOS_SYNC_STATUS_DIR");
    m.start();
    let port = m.port();
    let opened = |b: &common::book::Book| {
        b.logs.iter().find_map(|l| l.strip_prefix("junos-sync: status on ").map(PathBuf::from))
    };
    wait_for("the master's socket", 10, || opened(&m.book()).is_some());
    let sock = opened(&m.book()).expect("opened");
    assert!(sock.starts_with(first.join("status")) && sock.to_string_lossy().contains(&format!(".master.{port}.")));
    // The daemon moves on (as a daemon changing to its working directory does).
    std::env::set_current_dir(&second).unwrap();
    m.exit();
    std::env::set_current_dir(cwd).unwrap();
    let left = sock.exists();
    let _ = std::fs::remove_dir_all(&base);
    assert!(!left, "the socket outlived its context: {}", sock.display());
}
