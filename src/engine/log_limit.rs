//! The one rate limiter for log lines a peer can cause (a refused or evicted handshake, a lost
//! connection, a failed authentication): each kind of line is said the first time, then at
//! most once a minute, that line saying how many of its kind were not logged meanwhile; a kind
//! that went quiet with occurrences unsaid gets a summary line with the count (`due`), at
//! most a minute after its last line. Whatever a peer does, a kind costs at most one line a
//! minute, and the kinds are a fixed few.
//!
//! Lines an operator needs for every event of a real peer (a backup connected, resumed, was
//! dropped) take `note_up_to`: the first few of a kind in a minute are said, the rest counted
//! the same way, so a peer cycling sessions costs a bounded number of lines a minute while a
//! few reconnects of the real backup are each logged.
//!
//! An outage of a kind can end (`clear`): the next occurrence is then said at once.

use std::time::{Duration, Instant};

/// At most one line per kind this often.
pub(crate) const REMIND: Duration = Duration::from_secs(60);

struct Kind {
    name: &'static str,
    /// When its last line was said, or when its window of `note_up_to` lines began.
    said: Instant,
    /// Lines said since `said`.
    lines: u32,
    /// Occurrences since that line, not logged.
    unsaid: u64,
}

#[derive(Default)]
pub(crate) struct LogLimit {
    kinds: Vec<Kind>,
}

impl LogLimit {
    /// An occurrence of `kind`: `Some(n)` if it is to be logged now (`n` occurrences of its
    /// kind were not logged since its last line), `None` to stay quiet.
    pub(crate) fn note(&mut self, kind: &'static str, now: Instant) -> Option<u64> {
        self.note_up_to(kind, now, 1)
    }

    /// As `note`, but up to `lines` lines of `kind` are said in a minute before it goes quiet.
    pub(crate) fn note_up_to(&mut self, kind: &'static str, now: Instant, lines: u32) -> Option<u64> {
        match self.kinds.iter_mut().find(|k| k.name == kind) {
            Some(k) if now.saturating_duration_since(k.said) < REMIND && k.lines >= lines => {
                k.unsaid += 1;
                None
            }
            Some(k) if now.saturating_duration_since(k.said) < REMIND => {
                k.lines += 1;
                Some(std::mem::take(&mut k.unsaid))
            }
            Some(k) => {
                k.said = now;
                k.lines = 1;
                Some(std::mem::take(&mut k.unsaid))
            }
            None => {
                self.kinds.push(Kind { name: kind, said: now, lines: 1, unsaid: 0 });
                Some(0)
            }
        }
    }

    /// The kinds whose last line is a minute old and that had occurrences since, with their
    /// number: each is to be said now as a summary (and counts as that kind's line).
    pub(crate) fn due(&mut self, now: Instant) -> Vec<(&'static str, u64)> {
        let mut out = Vec::new();
        for k in &mut self.kinds {
            if k.unsaid > 0 && now.saturating_duration_since(k.said) >= REMIND {
                k.said = now;
                k.lines = 1;
                out.push((k.name, std::mem::take(&mut k.unsaid)));
            }
        }
        out
    }

    /// When the next summary may be due, if any is pending.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.kinds.iter().filter(|k| k.unsaid > 0).map(|k| k.said + REMIND).min()
    }

    /// The outage of `kind` is over; the number of its occurrences never logged, if any.
    pub(crate) fn clear_kind(&mut self, kind: &str) -> Option<u64> {
        let i = self.kinds.iter().position(|k| k.name == kind)?;
        Some(self.kinds.swap_remove(i).unsaid).filter(|&n| n > 0)
    }

    /// Every outage is over; the number of occurrences never logged, if any.
    pub(crate) fn clear(&mut self) -> Option<u64> {
        Some(self.kinds.drain(..).map(|k| k.unsaid).sum()).filter(|&n| n > 0)
    }
}

/// " (N more since the last such line)" for a line that follows quiet occurrences.
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
    fn each_kind_once_then_once_a_minute_with_its_count() {
        let t = Instant::now();
        let s = Duration::from_secs;
        let mut q = LogLimit::default();
        assert_eq!(q.note("auth", t), Some(0));
        assert_eq!(q.note("auth", t + s(1)), None);
        assert_eq!(q.note("auth", t + s(2)), None);
        assert_eq!(q.note("refused", t + s(3)), Some(0), "a new kind is said");
        assert_eq!(q.note("auth", t + s(4)), None, "kinds taking turns are not said again");
        assert_eq!(q.next_due(), Some(t + REMIND));
        assert!(q.due(t + s(59)).is_empty());
        assert_eq!(q.due(t + s(60)), vec![("auth", 3)], "the summary of a kind gone quiet");
        assert!(q.due(t + s(61)).is_empty(), "said once");
        assert_eq!(q.next_due(), None);
        assert_eq!(q.note("refused", t + s(64)), Some(0), "reminded after a minute");
        assert_eq!(q.note("refused", t + s(65)), None);
        assert_eq!(q.note("refused", t + s(125)), Some(1), "with the count");
        assert_eq!(q.note("auth", t + s(100)), None, "within a minute of its summary");
        assert_eq!(q.clear_kind("auth"), Some(1));
        assert_eq!(q.note("auth", t + s(127)), Some(0), "a new outage is said");
        assert_eq!(q.clear_kind("auth"), None);
        assert_eq!(q.note("refused", t + s(128)), None);
        assert_eq!(q.clear(), Some(1));
        assert_eq!(q.note("refused", t + s(129)), Some(0));
    }

    #[test]
    fn a_flood_costs_one_line_per_kind_and_minute() {
        let t = Instant::now();
        let mut q = LogLimit::default();
        let kinds = ["a", "b", "c"];
        let mut lines = 0;
        for i in 0..100_000u64 {
            let now = t + Duration::from_millis(i * 3); // 300 s
            lines += usize::from(q.note(kinds[(i % 3) as usize], now).is_some());
            lines += q.due(now).len();
        }
        assert!(lines <= 3 * 6, "{lines} lines");
    }

    #[test]
    fn up_to_n_lines_a_minute_then_quiet_with_the_count() {
        let t = Instant::now();
        let s = Duration::from_secs;
        let mut q = LogLimit::default();
        for i in 0..3 {
            assert_eq!(q.note_up_to("up", t + s(i), 3), Some(0), "line {i} of 3 is said");
        }
        assert_eq!(q.note_up_to("up", t + s(4), 3), None);
        assert_eq!(q.note_up_to("up", t + s(5), 3), None);
        assert!(q.due(t + s(59)).is_empty());
        assert_eq!(q.due(t + s(60)), vec![("up", 2)], "the summary counts as the window's first line");
        assert_eq!(q.note_up_to("up", t + s(61), 3), Some(0));
        assert_eq!(q.note_up_to("up", t + s(62), 3), Some(0));
        assert_eq!(q.note_up_to("up", t + s(63), 3), None, "three lines in this window");
        assert_eq!(q.note_up_to("up", t + s(121), 3), Some(1), "a new window, with the count");
    }
}
