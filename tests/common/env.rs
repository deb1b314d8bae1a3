//! The process's environment and working directory are shared by every test of a binary. A
//! context reads them at init (`JUNOS_SYNC_STATUS_DIR`, `JUNOS_SYNC_AUTH_KEY_FILE`,
//! `JUNOS_SYNC_BACKLOG_LIMIT`): every node is made holding this lock, and a test that changes
//! either holds it for as long as its change is in place, so that no other test's context sees
//! it. (Reentrant: the test makes its own nodes while holding it.)

#![allow(dead_code)]

use parking_lot::{ReentrantMutex, ReentrantMutexGuard};

static ENV: ReentrantMutex<()> = ReentrantMutex::new(());

pub fn env_lock() -> ReentrantMutexGuard<'static, ()> {
    ENV.lock()
}
