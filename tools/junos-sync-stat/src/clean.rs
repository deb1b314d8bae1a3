//! What this program prints of a socket's answer or of a file name cannot act on the terminal:
//! anyone who can make a socket in the directory chooses those bytes, and an escape sequence
//! could clear the screen, set the window title or forge a line that looks like a context.

use std::borrow::Cow;
use std::fmt::Write;
use std::path::Path;

/// Characters a terminal acts on rather than shows: C0, DEL and C1 controls (an 8-bit CSI
/// starts a sequence too), and the Unicode marks that reorder or break lines.
fn acts(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` for people: those characters as `\x1b` (up to U+00FF) or `\u{202e}`, and `\` as `\\`
/// (so that an escape shown is never text that looks like one).
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || acts(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if acts(c) && u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if acts(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A path for people.
pub fn path(p: &Path) -> String {
    text(&p.to_string_lossy()).into_owned()
}

/// A JSON text with those characters as `\u` escapes. JSON admits them raw only inside
/// strings (C0 not even there), where an escape means the same; the whitespace between
/// tokens (tab, newline, return) is left.
pub fn json(s: &str) -> Cow<'_, str> {
    let escaped = |c: char| acts(c) && !matches!(c, '\t' | '\n' | '\r');
    if !s.chars().any(escaped) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if escaped(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(text("master"), "master");
        assert!(matches!(text("up 1.2.3.4:5"), Cow::Borrowed(_)));
        assert_eq!(text("\u{1b}[2J\n\u{7}\u{7f}\u{9b}\u{202e}\\x"), r"\x1b[2J\x0a\x07\x7f\x9b\u{202e}\\x");
        assert_eq!(json(r#"{"a":"b"}"#), r#"{"a":"b"}"#);
        let raw = "{\"a\":\"x\u{9b}y\u{202e}\u{7f}\"}";
        let escaped = json(raw);
        assert_eq!(escaped, r#"{"a":"x\u009by\u202e\u007f"}"#);
        let a: serde_json::Value = serde_json::from_str(raw).unwrap();
        let b: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(a, b, "the same JSON");
        assert_eq!(json("{\n\t\"a\": 1\r\n}"), "{\n\t\"a\": 1\r\n}");
    }
}
