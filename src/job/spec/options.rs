//! The rules for how a job lives (`StartOptions`, protocol version 3): its
//! name, its timeout (and the server's `--max-timeout`), its tie to the
//! clients that hold it, and the grace of the engine's own stops of it.

use std::time::Duration;

use super::{invalid, SpecError, SpecPolicy};
use crate::protocol::StartOptions;

/// The longest name, in characters.
pub const MAX_NAME: usize = 64;
/// The grace of the engine's own stops (timeout, tie) when the start gives
/// none, as `jw stop`'s default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// The longest timeout a job may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 86400);

/// A job's validated options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Terms {
    pub name: Option<String>,
    /// Stopped this long after its start.
    pub timeout: Option<Duration>,
    /// Stopped once no client has held it for this long.
    pub tie: Option<Duration>,
    /// The grace of those stops, as asked (`None`: `DEFAULT_GRACE`); the
    /// engine checks it against the ceiling of every stop.
    pub grace: Option<Duration>,
}

impl Terms {
    /// Checks `options` against the rules and the server's policy; a job
    /// without a timeout gets the server's `--max-timeout`.
    pub fn validate(options: &StartOptions, policy: &SpecPolicy) -> Result<Terms, SpecError> {
        if let Some(name) = &options.name {
            check_name(name)?;
        }
        let asked = options.timeout_ms.map(Duration::from_millis);
        if asked.is_some_and(|t| t.is_zero()) {
            return Err(invalid(
                "timeout",
                "is zero; give a timeout above zero, or none",
            ));
        }
        let timeout = match (asked, policy.max_timeout) {
            (Some(t), Some(max)) if t > max => {
                return Err(invalid(
                    "timeout",
                    format!(
                        "{} is longer than this server allows ({}, jwd --max-timeout)",
                        format_duration(t),
                        format_duration(max)
                    ),
                ))
            }
            (Some(t), _) if t > MAX_TIMEOUT => {
                return Err(invalid(
                    "timeout",
                    format!(
                        "{} is longer than {}",
                        format_duration(t),
                        format_duration(MAX_TIMEOUT)
                    ),
                ))
            }
            (Some(t), _) => Some(t),
            (None, max) => max,
        };
        Ok(Terms {
            name: options.name.clone(),
            timeout,
            tie: options.tie_ms.map(|t| Duration::from_millis(u64::from(t))),
            grace: options
                .grace_ms
                .map(|g| Duration::from_millis(u64::from(g))),
        })
    }
}

/// Whether `name` may name a job: 1 to `MAX_NAME` characters of `A-Z a-z
/// 0-9 _ . -`, the first a letter or digit, and not something that reads
/// as an id prefix (4 to 36 characters of only hex digits and dashes).
pub fn check_name(name: &str) -> Result<(), SpecError> {
    if name.is_empty() {
        return Err(invalid("name", "is empty; give a name, or none"));
    }
    if name.len() > MAX_NAME {
        return Err(invalid(
            "name",
            format!("is longer than {MAX_NAME} characters"),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(invalid(
            "name",
            format!("{name:?} contains {bad:?}; use letters, digits, '_', '.' and '-'"),
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(invalid(
            "name",
            format!("{name:?} does not start with a letter or digit"),
        ));
    }
    if looks_like_id(name) {
        return Err(invalid(
            "name",
            format!("{name:?} would read as a job id prefix (only hex digits and dashes); add another letter"),
        ));
    }
    Ok(())
}

/// Whether `text` could be taken for (a prefix of) a job id.
fn looks_like_id(text: &str) -> bool {
    (4..=36).contains(&text.len()) && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// A duration in the largest unit that keeps it readable: `1.5 s`,
/// `90 s`, `10 min`, `2 h`, `3 d`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    let (value, unit) = if secs < 1.0 {
        return format!("{} ms", d.as_millis());
    } else if secs < 120.0 {
        (secs, "s")
    } else if secs < 2.0 * 3600.0 {
        (secs / 60.0, "min")
    } else if secs < 2.0 * 86400.0 {
        (secs / 3600.0, "h")
    } else {
        (secs / 86400.0, "d")
    };
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: Option<Duration>) -> SpecPolicy {
        let mut p = super::super::tests::policy();
        p.max_timeout = max;
        p
    }

    #[test]
    fn names_follow_the_rules() {
        for good in [
            "web",
            "a",
            "build-42",
            "x.y_z",
            "9lives",
            "abc",
            "deadbeefX",
            "a-b-c-x",
        ] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        let long = "a".repeat(MAX_NAME + 1);
        for bad in [
            "",
            "-web",
            ".hidden",
            "_x",
            "a b",
            "a/b",
            "é",
            "dead",
            "a-b-c-d",
            "0123-4567",
            "abcdef0123",
            &long,
        ] {
            assert_eq!(check_name(bad).unwrap_err().field, "name", "{bad:?}");
        }
        // Only hex and dashes, but longer than any id: no confusion.
        assert_eq!(check_name(&"a".repeat(37)), Ok(()));
        assert_eq!(check_name(&"a".repeat(MAX_NAME)), Ok(()));
    }

    #[test]
    fn timeouts_are_checked_and_capped() {
        let opts = |t: Option<u64>| StartOptions {
            timeout_ms: t,
            ..StartOptions::default()
        };
        let none = policy(None);
        assert_eq!(Terms::validate(&opts(None), &none).unwrap().timeout, None);
        assert_eq!(
            Terms::validate(&opts(Some(1500)), &none).unwrap().timeout,
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            Terms::validate(&opts(Some(0)), &none).unwrap_err().field,
            "timeout"
        );
        assert!(Terms::validate(&opts(Some(u64::MAX)), &none).is_err());
        let capped = policy(Some(Duration::from_secs(60)));
        assert_eq!(
            Terms::validate(&opts(None), &capped).unwrap().timeout,
            Some(Duration::from_secs(60))
        );
        let err = Terms::validate(&opts(Some(120_000)), &capped).unwrap_err();
        assert!(
            err.reason.contains("2 min") && err.reason.contains("60 s"),
            "{err}"
        );
        assert!(!err.forbidden);
    }

    #[test]
    fn durations_read_in_the_users_units() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(format_duration(Duration::from_secs(60)), "60 s");
        assert_eq!(format_duration(Duration::from_secs(600)), "10 min");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2 h");
        assert_eq!(format_duration(Duration::from_secs(3 * 86400)), "3 d");
    }
}
