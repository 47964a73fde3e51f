//! The detach key sequence (`--detach-keys`, docker's syntax: `ctrl-p,ctrl-q`)
//! and spotting it in what the user types, across reads.

use std::fmt;

/// The bytes of a detach sequence; empty: detaching by keys is off.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DetachKeys(Vec<u8>);

impl fmt::Debug for DetachKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DetachKeys({:?})", self.0)
    }
}

/// Parses `ctrl-p,ctrl-q`: comma-separated keys, each `ctrl-X` (X a
/// letter or one of `@ [ \ ] ^ _`) or a single character. Empty: none.
pub(crate) fn parse_detach_keys(text: &str) -> Result<DetachKeys, String> {
    if text.is_empty() {
        return Ok(DetachKeys(Vec::new()));
    }
    let mut bytes = Vec::new();
    for key in text.split(',') {
        let mut chars = key.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            (None, _) => return Err(invalid(key)),
            _ => {}
        }
        let control = key
            .get(..5)
            .filter(|prefix| prefix.eq_ignore_ascii_case("ctrl-"))
            .and_then(|_| control_byte(&key[5..]))
            .ok_or_else(|| invalid(key))?;
        bytes.push(control);
    }
    Ok(DetachKeys(bytes))
}

fn invalid(key: &str) -> String {
    format!(
        "invalid detach key {key:?}: give comma-separated keys, each `ctrl-X` (X a letter, \
         @, [, \\, ], ^ or _) or a single character, e.g. ctrl-p,ctrl-q"
    )
}

/// The byte of Ctrl + `name` (`p` or `P`: 0x10).
fn control_byte(name: &str) -> Option<u8> {
    let &[c] = name.as_bytes() else {
        return None;
    };
    match c.to_ascii_uppercase() {
        c @ (b'@'..=b'_') => Some(c & 0x1f),
        _ => None,
    }
}

/// Finds the detach sequence in the bytes typed, however they are split
/// into reads: a byte that may start the sequence is held back until the
/// next one says whether it does.
pub(crate) struct Matcher {
    keys: Vec<u8>,
    /// How many bytes of the sequence the latest typed bytes match (they
    /// are held back).
    held: usize,
}

impl Matcher {
    pub(crate) fn new(keys: &DetachKeys) -> Matcher {
        Matcher {
            keys: keys.0.clone(),
            held: 0,
        }
    }

    /// Feeds bytes read; appends to `out` those that go to the job. True
    /// when the sequence is complete: the bytes after it are not looked at.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return false;
        }
        for &b in input {
            if self.keys[self.held] == b {
                self.held += 1;
                if self.held == self.keys.len() {
                    self.held = 0;
                    return true;
                }
                continue;
            }
            // The held bytes and `b` do not continue the sequence: let go
            // of bytes from the front until what is left starts it again.
            let mut tail: Vec<u8> = self.keys[..self.held].to_vec();
            tail.push(b);
            let mut from = 0;
            while !self.keys.starts_with(&tail[from..]) {
                out.push(tail[from]);
                from += 1;
            }
            self.held = tail.len() - from;
        }
        false
    }

    /// The input ended: the bytes held back go to the job.
    pub(crate) fn flush(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.keys[..self.held]);
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_syntax() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap().0, [0x10, 0x11]);
        assert_eq!(parse_detach_keys("CTRL-P,Ctrl-q").unwrap().0, [0x10, 0x11]);
        assert_eq!(
            parse_detach_keys("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_")
                .unwrap()
                .0,
            [0, 27, 28, 29, 30, 31]
        );
        assert_eq!(parse_detach_keys("~,.").unwrap().0, b"~.");
        assert_eq!(parse_detach_keys("é").unwrap().0, "é".as_bytes());
        assert!(parse_detach_keys("").unwrap().0.is_empty());
        for bad in ["ctrl-", "ctrl-1", "ctrl-pq", "ab", "a,,b", "alt-x", ","] {
            let e = parse_detach_keys(bad).unwrap_err();
            assert!(e.contains("invalid detach key"), "{bad}: {e}");
        }
    }

    fn feed_all(keys: &str, reads: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut m = Matcher::new(&parse_detach_keys(keys).unwrap());
        let mut out = Vec::new();
        for read in reads {
            if m.feed(read, &mut out) {
                return (out, true);
            }
        }
        m.flush(&mut out);
        (out, false)
    }

    #[test]
    fn the_sequence_is_found_across_reads_and_not_forwarded() {
        let seq: &[&[u8]] = &[b"ls\r\x10", b"\x11after"];
        assert_eq!(feed_all("ctrl-p,ctrl-q", seq), (b"ls\r".to_vec(), true));
        let one: &[&[u8]] = &[b"ab\x10\x11cd"];
        assert_eq!(feed_all("ctrl-p,ctrl-q", one), (b"ab".to_vec(), true));
    }

    #[test]
    fn a_broken_sequence_is_forwarded_whole_and_in_order() {
        let reads: &[&[u8]] = &[b"x\x10", b"y\x10", b"\x10\x11"];
        assert_eq!(
            feed_all("ctrl-p,ctrl-q", reads),
            (b"x\x10y\x10".to_vec(), true)
        );
        let held_at_end: &[&[u8]] = &[b"a\x10"];
        assert_eq!(
            feed_all("ctrl-p,ctrl-q", held_at_end),
            (b"a\x10".to_vec(), false)
        );
    }

    #[test]
    fn overlapping_starts_are_found() {
        let reads: &[&[u8]] = &[b"a", b"a", b"a", b"b"];
        assert_eq!(feed_all("a,a,b", reads), (b"a".to_vec(), true));
        let reads: &[&[u8]] = &[b"~~."];
        assert_eq!(feed_all("~,.", reads), (b"~".to_vec(), true));
    }

    #[test]
    fn no_keys_forward_everything() {
        let reads: &[&[u8]] = &[b"\x10\x11"];
        assert_eq!(feed_all("", reads), (b"\x10\x11".to_vec(), false));
    }
}
