//! Says a recurring problem once per outage: its first occurrence, then again only when its
//! kind changes or a minute has passed (with the number not said), until the outage ends.
//! Retries every few hundred milliseconds must not flood the application's log.

use std::time::{Duration, Instant};

const REMIND: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(crate) struct LogLimit {
    /// The kind of the problem last said, and when.
    said: Option<(&'static str, Instant)>,
    unsaid: u64,
}

impl LogLimit {
    /// An occurrence of problem `kind`: `Some(n)` if it is to be logged now (`n` occurrences
    /// were not logged since the last line), `None` to stay quiet.
    pub(crate) fn note(&mut self, kind: &'static str, now: Instant) -> Option<u64> {
        match self.said {
            Some((k, at)) if k == kind && now.duration_since(at) < REMIND => {
                self.unsaid += 1;
                None
            }
            _ => {
                self.said = Some((kind, now));
                Some(std::mem::take(&mut self.unsaid))
            }
        }
    }

    /// The outage is over; the number of occurrences never logged, if any.
    pub(crate) fn clear(&mut self) -> Option<u64> {
        self.said = None;
        Some(std::mem::take(&mut self.unsaid)).filter(|&n| n > 0)
    }
}

/// " (N more not logged)" for a line that follows quiet occurrences.
pub(crate) fn more(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more since the last such line)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_outage_and_kind() {
        let t = Instant::now();
        let mut q = LogLimit::default();
        assert_eq!(q.note("auth", t), Some(0));
        assert_eq!(q.note("auth", t + Duration::from_secs(1)), None);
        assert_eq!(q.note("auth", t + Duration::from_secs(2)), None);
        assert_eq!(q.note("refused", t + Duration::from_secs(3)), Some(2), "a new kind is said");
        assert_eq!(q.note("refused", t + Duration::from_secs(64)), Some(0), "reminded after a minute");
        assert_eq!(q.note("refused", t + Duration::from_secs(65)), None);
        assert_eq!(q.clear(), Some(1));
        assert_eq!(q.note("refused", t + Duration::from_secs(66)), Some(0), "a new outage is said");
        assert_eq!(q.clear(), None);
    }
}
