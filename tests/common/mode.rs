//! Both modes without a list: `engine_tests!(a, b)` turns each test function into two tests,
//! `a::thread` and `a::dispatch`, which run it with the mode set on the test's thread. Every
//! node the function makes takes its mode from there, and a node made anywhere else (a plain
//! `#[test]`, another thread) fails loudly: a new engine test cannot run in one mode only. A
//! function left out of the list is never called, which rustc reports as dead code (an error
//! under `clippy -D warnings`).
//!
//! `isolated` runs a test in a process of its own, for a measurement of the whole process.

#![allow(dead_code)]

use std::cell::RefCell;

/// How a node's callbacks reach the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// On the context's loop thread.
    Thread,
    /// On an application thread of the node's own that polls the context's descriptor and
    /// dispatches (`Context::enable_dispatch`, `Context::dispatch`).
    Dispatch,
}

/// The running test: its mode and its name as the test harness knows it.
#[derive(Clone, Copy, Debug)]
pub struct Running {
    pub mode: Mode,
    pub name: &'static str,
}

thread_local! {
    static RUNNING: RefCell<Option<Running>> = const { RefCell::new(None) };
}

/// Runs `body` as test `name` in `mode` (what `engine_tests!` expands to).
pub fn run(mode: Mode, name: &'static str, body: fn()) {
    RUNNING.with(|r| *r.borrow_mut() = Some(Running { mode, name }));
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            RUNNING.with(|r| *r.borrow_mut() = None);
        }
    }
    let _reset = Reset;
    body();
}

/// The test running on this thread; fails if none (a node outside `engine_tests!`).
pub fn running() -> Running {
    RUNNING.with(|r| *r.borrow()).unwrap_or_else(|| {
        panic!(
            "no test mode on this thread: make engine tests with engine_tests! (tests/common/mode.rs) so that \
             they run in both modes, and make their nodes on the test's own thread"
        )
    })
}

/// Two tests per function: `name::thread` and `name::dispatch`. `#[dispatch_bug("why")]`
/// before a name marks its dispatch test ignored for a library bug that makes it fail (run it
/// with `cargo test -- --ignored`); the reason says which.
#[allow(unused_macros)]
macro_rules! engine_tests {
    ($($(#[dispatch_bug($why:literal)])? $name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn thread() {
                    $crate::common::mode::run(
                        $crate::common::mode::Mode::Thread,
                        concat!(stringify!($name), "::thread"),
                        super::$name,
                    )
                }
                #[test]
                $(#[ignore = $why])?
                fn dispatch() {
                    $crate::common::mode::run(
                        $crate::common::mode::Mode::Dispatch,
                        concat!(stringify!($name), "::dispatch"),
                        super::$name,
                    )
                }
            }
        )*
    };
}
pub(crate) use engine_tests;

/// Set in the child process `isolated` starts: the test it is to run.
const CHILD_VAR: &str = "JUNOS_SYNC_TEST_ISOLATED";

/// Runs `body` in a process of its own: this test binary again, told to run only the current
/// test (`--exact`, one test thread), with nothing else in it. The parent passes if the child
/// does, and shows its output. For measurements of the whole process (its memory), which
/// other tests running in the same process would disturb.
pub fn isolated(body: impl FnOnce()) {
    let name = running().name;
    if std::env::var(CHILD_VAR).is_ok_and(|v| v == name) {
        return body();
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, name)
        .output()
        .expect("start the test's own process");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    eprintln!("--- {name} in a process of its own:\n{stdout}{stderr}---");
    assert!(out.status.success(), "{name} failed in its own process ({})", out.status);
    // The child ran exactly this test: a filter that matched nothing would pass too.
    assert!(stdout.contains("1 passed"), "the child process did not run {name}");
}
