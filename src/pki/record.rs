//! The record of the client certificates a PKI issued (`issued.txt`): one
//! line a certificate, `SERIAL USER NOT-AFTER` (see the module doc of
//! `pki`), appended under the directory's lock.

use std::path::Path;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::files::{append_line, read_text};
use super::{record_path, PkiError, RECORD_FILE};

/// The first lines of a new record.
const HEADER: &str = "# Client certificates issued by this PKI (jw certs), one a line:\n\
                      # SERIAL (hex) USER (subject CN) NOT-AFTER (RFC 3339, UTC)";

/// One certificate the record lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Lowercase hex of its bytes, no leading zero byte.
    pub serial: String,
    pub user: String,
    pub not_after: OffsetDateTime,
}

/// Appends `entry` to the record in `dir` (made, with its header, if new).
pub(super) fn append(dir: &Path, entry: &Entry) -> Result<(), PkiError> {
    if !record_path(dir).exists() {
        append_line(dir, RECORD_FILE, HEADER)?;
    }
    let line = format!(
        "{} {} {}",
        entry.serial,
        entry.user,
        rfc3339(entry.not_after)
    );
    append_line(dir, RECORD_FILE, &line)?;
    Ok(())
}

/// Every certificate the record in `dir` lists (none if there is none).
pub fn entries(dir: &Path) -> Result<Vec<Entry>, PkiError> {
    let (entries, bad) = scan(dir)?;
    match bad.into_iter().next() {
        None => Ok(entries),
        Some(reason) => Err(PkiError::Invalid {
            path: record_path(dir),
            reason,
        }),
    }
}

/// What a revoke of `user` can take from the record even when some lines
/// are damaged (it must not fail in an incident): the readable entries,
/// plus the serial of each damaged line that still reads as `SERIAL USER
/// ...` (its end of validity taken as unknown: far ahead); and what was
/// skipped, in words.
pub fn entries_of(dir: &Path, user: &str) -> Result<(Vec<Entry>, Vec<String>), PkiError> {
    let (mut entries, bad) = scan(dir)?;
    entries.retain(|e| e.user == user);
    let mut skipped = Vec::new();
    for reason in bad {
        let line = reason
            .split_once(": ")
            .map_or("", |(_, l)| l)
            .trim_matches('"');
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next()) {
            (Some(serial), Some(u)) if u == user && valid_serial(serial) => entries.push(Entry {
                serial: serial.to_string(),
                user: user.to_string(),
                not_after: OffsetDateTime::now_utc() + time::Duration::days(365 * 200),
            }),
            _ => skipped.push(reason),
        }
    }
    Ok((entries, skipped))
}

/// The readable entries, and a description of each damaged line.
fn scan(dir: &Path) -> Result<(Vec<Entry>, Vec<String>), PkiError> {
    let path = record_path(dir);
    if !path.exists() {
        return Ok((vec![], vec![]));
    }
    let text = read_text(&path)?;
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Some(entry) => entries.push(entry),
            None => bad.push(format!(
                "line {} is not SERIAL USER NOT-AFTER (hex, a user name, 2027-12-02T06:00:00Z): {line:?}",
                n + 1
            )),
        }
    }
    Ok((entries, bad))
}

fn valid_serial(serial: &str) -> bool {
    !serial.is_empty()
        && serial.len() <= 40
        && serial
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn parse_line(line: &str) -> Option<Entry> {
    let mut fields = line.split_whitespace();
    let (serial, user, not_after) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() || !valid_serial(serial) || !crate::tls::valid_user_name(user) {
        return None;
    }
    Some(Entry {
        serial: serial.to_string(),
        user: user.to_string(),
        not_after: parse_rfc3339(not_after)?,
    })
}

/// `2027-12-02T06:00:00Z`.
pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The one form [`rfc3339`] writes.
fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = text.get(range)?;
        digits
            .bytes()
            .all(|d| d.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let date = Date::from_calendar_date(
        i32::try_from(num(0..4)?).ok()?,
        Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?,
        u8::try_from(num(8..10)?).ok()?,
    )
    .ok()?;
    let time = Time::from_hms(
        u8::try_from(num(11..13)?).ok()?,
        u8::try_from(num(14..16)?).ok()?,
        u8::try_from(num(17..19)?).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let t = OffsetDateTime::from_unix_timestamp(1_796_193_600).unwrap();
        assert_eq!(rfc3339(t), "2026-12-02T06:40:00Z");
        assert_eq!(parse_rfc3339("2026-12-02T06:40:00Z"), Some(t));
        for bad in [
            "2026-12-02 06:40:00Z",
            "2026-13-02T06:40:00Z",
            "2026-12-02T06:40:00+01:00",
            "+026-12-02T06:40:00Z",
            "2026-02-30T06:40:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn lines_are_checked() {
        let e = parse_line("1a2b alice 2027-01-01T00:00:00Z").unwrap();
        assert_eq!((e.serial.as_str(), e.user.as_str()), ("1a2b", "alice"));
        for bad in [
            "1a2b alice",
            "1A2B alice 2027-01-01T00:00:00Z",
            "1a2b a/b 2027-01-01T00:00:00Z",
            "1a2b alice 2027-01-01T00:00:00Z extra",
            "xyz alice 2027-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_line(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_record_appends_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(entries(dir.path()).unwrap(), vec![]);
        let t = OffsetDateTime::from_unix_timestamp(1_796_193_600).unwrap();
        for (serial, user) in [("1", "alice"), ("2", "bob")] {
            let entry = Entry {
                serial: serial.into(),
                user: user.into(),
                not_after: t,
            };
            append(dir.path(), &entry).unwrap();
        }
        let read = entries(dir.path()).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].user, "bob");
        let text = std::fs::read_to_string(record_path(dir.path())).unwrap();
        assert!(text.starts_with("# "), "{text}");
        std::fs::write(record_path(dir.path()), "garbage\n").unwrap();
        let err = entries(dir.path()).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
