//! Signal names and numbers as users write them (`jw kill -s USR1`).

use nix::sys::signal::Signal;

/// The standard signal `text` names: `USR1`, `SIGUSR1`, `usr1` or `10`
/// (1 to 31, Linux numbering).
pub(crate) fn parse_signal(text: &str) -> Result<i32, String> {
    let invalid = || {
        format!("invalid signal {text:?}: give a name such as TERM, USR1 or SIGHUP, or a number from 1 to 31")
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<i32>() {
            Ok(n) if (1..=31).contains(&n) => Ok(n),
            _ => Err(invalid()),
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    Signal::iterator()
        .find(|s| s.as_str().strip_prefix("SIG") == Some(name))
        .map(|s| s as i32)
        .filter(|n| (1..=31).contains(n))
        .ok_or_else(invalid)
}

/// `SIGUSR1` for 10; `None` for a number without a name.
pub(crate) fn signal_name(number: i32) -> Option<&'static str> {
    Signal::try_from(number).ok().map(|s| s.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_any_spelling_and_numbers() {
        for text in ["USR1", "SIGUSR1", "usr1", "sigusr1", "10"] {
            assert_eq!(parse_signal(text), Ok(10), "{text}");
        }
        assert_eq!(parse_signal("TERM"), Ok(15));
        assert_eq!(parse_signal("kill"), Ok(9));
        assert_eq!(parse_signal("WINCH"), Ok(28));
        assert_eq!(parse_signal("1"), Ok(1));
        assert_eq!(parse_signal("31"), Ok(31));
    }

    #[test]
    fn unknown_names_and_numbers_out_of_range_are_refused() {
        for text in [
            "", "0", "32", "-1", "+9", "FOO", "SIG", "USR3", "SIGRTMIN", " TERM",
        ] {
            let e = parse_signal(text).unwrap_err();
            assert!(e.contains("invalid signal"), "{text}: {e}");
        }
    }

    #[test]
    fn names_for_messages() {
        assert_eq!(signal_name(15), Some("SIGTERM"));
        assert_eq!(signal_name(40), None);
    }
}
