//! Human units on the command line: sizes with K/M/G/T suffixes (powers of
//! 1024) and durations like `500ms`, `10s`, `5m`, `2h`, `7d`.

use std::time::Duration;

/// Parses `256M`, `1.5G`, `4096`, `10k` (suffixes are powers of 1024, case
/// insensitive, an optional trailing `B` or `iB` is accepted).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix("ib"))
        .or_else(|| t.strip_suffix(['B', 'b']))
        .unwrap_or(t);
    let (number, scale) = match t.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            if t[..t.len() - 1].parse::<f64>().is_err() {
                return Err(format!(
                    "{text:?} is not a size (examples: 4096, 64K, 256M, 1.5G)"
                ));
            }
            let scale: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => {
                    return Err(format!(
                        "{text:?}: unknown size suffix {c:?} (use K, M, G or T)"
                    ))
                }
            };
            (&t[..t.len() - 1], scale)
        }
        _ => (t, 1),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (examples: 4096, 64K, 256M, 1.5G)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{text:?} is not a size"));
    }
    let bytes = value * scale as f64;
    if bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

/// Parses `500ms`, `10s`, `1.5m`, `2h`, `7d`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (examples: 500ms, 10s, 5m, 2h, 7d)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
            ))
        }
    };
    if !seconds.is_finite() || !(0.0..=1e10).contains(&seconds) {
        return Err(format!("{text:?} is not a usable duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `1536` -> `1.5K`, for tables.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}")
    } else if value < 10.0 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64K"), Ok(65536));
        assert_eq!(parse_bytes("256M"), Ok(256 << 20));
        assert_eq!(parse_bytes("1.5g"), Ok(3 << 29));
        assert_eq!(parse_bytes("10MiB"), Ok(10 << 20));
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("5X").is_err());
        assert!(parse_bytes("-1").is_err());
        assert_eq!(format_bytes(1536), "1.5K");
        assert_eq!(format_bytes(100), "100");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
