//! Every deadline of the engine tests, through one factor: `JUNOS_SYNC_TEST_TIME_SCALE`
//! (default 1; 3 gives a loaded or instrumented machine three times as long). A deadline is an
//! upper bound on how long something may take; the tests' own pacing (an attacker's byte every
//! 100 ms, a keepalive time to let pass) is the shape of the test and is not scaled.

#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The factor every deadline is multiplied by.
pub fn scale() -> f64 {
    static SCALE: OnceLock<f64> = OnceLock::new();
    *SCALE.get_or_init(|| {
        let v = std::env::var("JUNOS_SYNC_TEST_TIME_SCALE").ok();
        let s = v.as_deref().map_or(Ok(1.0), str::parse::<f64>);
        match s {
            Ok(s) if s >= 1.0 && s.is_finite() => s,
            _ => panic!("JUNOS_SYNC_TEST_TIME_SCALE={v:?}: a number, at least 1"),
        }
    })
}

/// `d`, scaled.
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(scale())
}

/// `secs` seconds, scaled.
pub fn secs(secs: u64) -> Duration {
    scaled(Duration::from_secs(secs))
}

/// The instant `d` (scaled) from now.
pub fn deadline(d: Duration) -> Instant {
    Instant::now() + scaled(d)
}

/// Waits until `cond` holds, failing the test after `secs` seconds (scaled).
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let end = deadline(Duration::from_secs(secs));
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what} ({secs} s, time scale {})", scale());
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Takes `measure` every 20 ms until it gives the same value 10 times in a row (a writer that
/// stalled), and returns it; fails after `secs` seconds (scaled). `measure` may also keep a
/// connection alive (a keepalive) each time.
pub fn wait_steady<T: PartialEq + Copy + std::fmt::Debug>(what: &str, secs: u64, mut measure: impl FnMut() -> T) -> T {
    let end = deadline(Duration::from_secs(secs));
    let (mut last, mut steady) = (None, 0);
    loop {
        let now = measure();
        (last, steady) = if last == Some(now) { (last, steady + 1) } else { (Some(now), 0) };
        if steady >= 10 {
            return now;
        }
        assert!(Instant::now() < end, "{what} never stood still (last {now:?})");
        std::thread::sleep(Duration::from_millis(20));
    }
}
