//! RFC 3339 times for `jw logs`: `--since` reads them (or a duration ago),
//! `--timestamps` writes them (UTC, microseconds, as docker does). Unix
//! microseconds in, Unix microseconds out; the calendar is the proleptic
//! Gregorian one (days from civil dates and back, after Howard Hinnant's
//! algorithms).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where `--since` begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Since {
    /// This long before now.
    Ago(Duration),
    /// At this Unix time, in microseconds.
    At(u64),
}

impl Since {
    /// The Unix time in microseconds it means now.
    pub(crate) fn unix_us(self) -> u64 {
        match self {
            Since::At(t) => t,
            Since::Ago(ago) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                now.saturating_sub(ago).as_micros() as u64
            }
        }
    }
}

/// Parses `--since`: a duration ago (`10m`, `2h`, `90s`, `1.5d`) or an RFC
/// 3339 time (`2026-12-02T10:00:00Z`, `2026-12-02T11:00:00.5+01:00`).
pub(crate) fn parse_since(text: &str) -> Result<Since, String> {
    if let Ok(ago) = jw::units::parse_duration(text) {
        return Ok(Since::Ago(ago));
    }
    parse(text).map(Since::At).map_err(|why| {
        format!(
            "{text:?} is neither a duration ago (10m, 2h) nor an RFC 3339 time \
             (2026-12-02T10:00:00Z): {why}"
        )
    })
}

/// Days from 1970-01-01 to a civil date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Unix microseconds as RFC 3339 in UTC with microseconds:
/// `2026-12-02T03:50:12.123456Z`.
pub(crate) fn format(unix_us: u64) -> String {
    let secs = unix_us / 1_000_000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        unix_us % 1_000_000
    )
}

/// Reads `n` ASCII digits at the start of `text`.
fn digits(text: &mut &[u8], n: usize, what: &str) -> Result<u32, String> {
    if text.len() < n || !text[..n].iter().all(u8::is_ascii_digit) {
        return Err(format!("expected {n} digits of the {what}"));
    }
    let value = text[..n]
        .iter()
        .fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
    *text = &text[n..];
    Ok(value)
}

/// Takes `c` (one of) at the start of `text`.
fn expect(text: &mut &[u8], one_of: &[u8], what: &str) -> Result<(), String> {
    match text.first() {
        Some(c) if one_of.contains(c) => {
            *text = &text[1..];
            Ok(())
        }
        _ => Err(format!("expected {what}")),
    }
}

/// Parses an RFC 3339 time (`T` or a space between date and time, any
/// fraction of a second, `Z` or `±HH:MM`) into Unix microseconds.
pub(crate) fn parse(text: &str) -> Result<u64, String> {
    let mut t = text.trim().as_bytes();
    let year = i64::from(digits(&mut t, 4, "year")?);
    expect(&mut t, b"-", "'-' after the year")?;
    let month = digits(&mut t, 2, "month")?;
    expect(&mut t, b"-", "'-' after the month")?;
    let day = digits(&mut t, 2, "day")?;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} is not 1 to 12"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(format!("{year:04}-{month:02} has no day {day}"));
    }
    expect(&mut t, b"Tt ", "'T' between the date and the time")?;
    let hour = digits(&mut t, 2, "hour")?;
    expect(&mut t, b":", "':' after the hour")?;
    let minute = digits(&mut t, 2, "minute")?;
    expect(&mut t, b":", "':' after the minutes")?;
    let second = digits(&mut t, 2, "second")?;
    if hour > 23 || minute > 59 || second > 60 {
        return Err(format!(
            "{hour:02}:{minute:02}:{second:02} is not a time of day"
        ));
    }
    let mut micros = 0u64;
    if t.first() == Some(&b'.') {
        t = &t[1..];
        let n = t.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err("expected digits after '.'".into());
        }
        for (i, d) in t[..n].iter().enumerate().take(6) {
            micros += u64::from(d - b'0') * 10u64.pow(5 - i as u32);
        }
        t = &t[n..];
    }
    let offset_secs: i64 = match t.first() {
        Some(b'Z' | b'z') => {
            t = &t[1..];
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            t = &t[1..];
            let h = digits(&mut t, 2, "offset's hours")?;
            expect(&mut t, b":", "':' in the offset")?;
            let m = digits(&mut t, 2, "offset's minutes")?;
            if h > 23 || m > 59 {
                return Err(format!("{h:02}:{m:02} is not an offset"));
            }
            let secs = i64::from(h * 3600 + m * 60);
            if sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return Err("expected 'Z' or an offset such as +01:00 after the time".into()),
    };
    if !t.is_empty() {
        return Err(format!(
            "unexpected {:?} at the end",
            String::from_utf8_lossy(t)
        ));
    }
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(hour * 3600 + minute * 60 + second)
        - offset_secs;
    let secs = u64::try_from(secs).map_err(|_| "the time is before 1970".to_string())?;
    Ok(secs * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_in_utc_and_with_offsets() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse("2000-03-01T00:00:00Z"), Ok(951_868_800_000_000));
        assert_eq!(
            parse("2026-12-02T03:50:12.123456Z"),
            Ok(1_796_183_412_123_456)
        );
        assert_eq!(
            parse("2026-12-02T04:50:12.1234569+01:00"),
            Ok(1_796_183_412_123_456),
            "digits past microseconds are cut"
        );
        assert_eq!(
            parse("2026-12-01t22:50:12.5-05:00"),
            Ok(1_796_183_412_500_000)
        );
        assert_eq!(parse("2024-02-29 12:00:00z"), Ok(1_709_208_000_000_000));
    }

    #[test]
    fn what_is_not_a_time_says_why() {
        for (text, why) in [
            ("2026-13-01T00:00:00Z", "month"),
            ("2025-02-29T00:00:00Z", "no day 29"),
            ("2026-12-02T24:00:00Z", "time of day"),
            ("2026-12-02T10:00:00", "'Z' or an offset"),
            ("2026-12-02", "'T'"),
            ("1969-12-31T23:59:59Z", "before 1970"),
            ("2026-12-02T10:00:00Zx", "at the end"),
            ("26-12-02T10:00:00Z", "year"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn times_are_written_as_they_are_read() {
        for t in [
            0,
            951_868_800_000_000,
            1_796_183_412_123_456,
            1_709_208_000_000_001,
            253_402_300_799_999_999,
        ] {
            assert_eq!(parse(&format(t)), Ok(t), "{}", format(t));
        }
        assert_eq!(format(1_796_183_412_000_007), "2026-12-02T03:50:12.000007Z");
    }

    #[test]
    fn since_takes_a_duration_ago_or_a_time() {
        assert_eq!(parse_since("10m"), Ok(Since::Ago(Duration::from_secs(600))));
        assert_eq!(
            parse_since("1970-01-01T00:00:01Z"),
            Ok(Since::At(1_000_000))
        );
        let err = parse_since("yesterday").unwrap_err();
        assert!(err.contains("10m") && err.contains("RFC 3339"), "{err}");
        let before = Since::Ago(Duration::from_secs(3600)).unix_us();
        let now = Since::Ago(Duration::ZERO).unix_us();
        assert!(before <= now - 3_600_000_000);
    }
}
