//! Text a user chose, made safe to print: in jwd's log and on another
//! user's terminal, a client name, a certificate's user name, a command
//! line or an error quoting one must not start a new line (a forged log
//! entry), carry terminal escape sequences, or reorder what follows with
//! Unicode bidirectional controls.

use std::borrow::Cow;

/// Whether `c` is printed escaped: C0 and C1 controls, DEL, and the
/// bidirectional embedding, override and isolate characters.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every character [`needs_escape`] names written as Rust writes
/// it in a string (`\n`, `\t`, `\u{1b}`); borrowed when nothing changes.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// At most `max` characters of `s` (a char boundary, never a panic on
/// multi-byte text), with `...` when it was cut.
pub fn shorten(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max {
        return Cow::Borrowed(s);
    }
    let kept: String = s.chars().take(max.saturating_sub(3)).collect();
    Cow::Owned(kept + "...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(printable("make -j4 été"), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_and_bidi_are_escaped() {
        assert_eq!(
            printable("a\nINFO forged\r\u{1b}[31mred\u{7f}\u{9b}"),
            "a\\nINFO forged\\r\\u{1b}[31mred\\u{7f}\\u{9b}"
        );
        assert_eq!(printable("x\u{202e}gnp.exe"), "x\\u{202e}gnp.exe");
        assert!(!printable("\u{2066}\t").contains(['\u{2066}', '\t']));
    }

    #[test]
    fn shorten_cuts_on_characters() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("ééééééé", 5), "éé...");
        assert_eq!(shorten("0123456789", 6), "012...");
    }
}
