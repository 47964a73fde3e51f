//! Text a user chose, made safe to print on another user's terminal (jwd's
//! log writes such fields with Rust's `Debug`, quoted and escaped the same
//! way): a client name, a certificate's user name, a command
//! line or an error quoting one must not start a new line (a forged log
//! entry), carry terminal escape sequences, or reorder what follows with
//! Unicode bidirectional controls.

use std::borrow::Cow;

/// Whether `c` is printed escaped: C0 and C1 controls, DEL, the line and
/// paragraph separators, and the invisible format characters (Unicode
/// category Cf: bidirectional marks, embeddings, overrides and isolates,
/// zero-width characters, the soft hyphen, the byte-order mark, ...).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{0600}'..='\u{0605}'
                | '\u{06dd}'
                | '\u{070f}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{e0001}'
                | '\u{e0020}'..='\u{e007f}'
        )
}

/// One argument of a command line as a POSIX shell would need it to read
/// it back as one word: as it is when plain, else in single quotes; then
/// made [`printable`]. So `a b` (one argument) and `a` `b` (two) differ.
pub fn shell_word(arg: &str) -> Cow<'_, str> {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_alphanumeric() || "-_./=:,+@%^".contains(c));
    if plain {
        return printable(arg);
    }
    let quoted = format!("'{}'", arg.replace('\'', "'\\''"));
    Cow::Owned(printable(&quoted).into_owned())
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
    fn invisible_format_characters_are_escaped() {
        for c in [
            '\u{2028}', '\u{2029}', '\u{200b}', '\u{200f}', '\u{061c}', '\u{00ad}', '\u{feff}',
        ] {
            let s = format!("a{c}b");
            assert!(!printable(&s).contains(c), "{:?}", c);
        }
    }

    #[test]
    fn shell_words_read_back_as_one_argument() {
        assert_eq!(shell_word("make"), "make");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word("x\ny"), "'x\\ny'");
    }

    #[test]
    fn shorten_cuts_on_characters() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("ééééééé", 5), "éé...");
        assert_eq!(shorten("0123456789", 6), "012...");
    }
}
