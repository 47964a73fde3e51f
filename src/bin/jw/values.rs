//! The checks of flag values clap makes through these parsers, so that a
//! bad value is a usage error (exit 2) naming the flag, before anything is
//! sent to jwd.

use std::time::Duration;

use jw::protocol::{EnvVar, JobState};
use jw::units::parse_duration;

/// The longest `--grace` jwd accepts.
const MAX_GRACE: Duration = Duration::from_secs(3600);

/// `--grace`: a duration of at most an hour.
pub(crate) fn parse_grace(text: &str) -> Result<Duration, String> {
    let grace = parse_duration(text)?;
    if grace > MAX_GRACE {
        return Err(format!("{text:?} is longer than the most, 1h"));
    }
    Ok(grace)
}

/// A grace period in milliseconds, as the protocol carries it (at most an
/// hour: `parse_grace` checked it).
pub(crate) fn grace_ms(grace: Duration) -> u32 {
    u32::try_from(grace.min(MAX_GRACE).as_millis()).unwrap_or(u32::MAX)
}

/// `--timeout`: a positive duration.
pub(crate) fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text)?;
    if timeout.is_zero() {
        return Err("give a positive duration, e.g. 30s or 2h".into());
    }
    Ok(timeout)
}

/// `--connect-timeout`: a positive duration.
pub(crate) fn parse_connect_timeout(text: &str) -> Result<Duration, String> {
    let bound = parse_duration(text)?;
    if bound.is_zero() {
        return Err("give a positive duration, e.g. 10s".into());
    }
    Ok(bound)
}

/// `--cpu`: cores, a positive number (`0.5`), in thousandths of a core.
pub(crate) fn parse_cores(text: &str) -> Result<u32, String> {
    let cores: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of cores; e.g. 0.5 or 2"))?;
    if !cores.is_finite() || cores <= 0.0 || cores * 1000.0 > f64::from(u32::MAX) {
        return Err(format!(
            "{text:?}: give cores as a positive number, e.g. 0.5"
        ));
    }
    Ok((cores * 1000.0).round().max(1.0) as u32)
}

/// `-e NAME=VALUE`.
pub(crate) fn parse_env(text: &str) -> Result<EnvVar, String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} has no '=': use NAME=VALUE"))?;
    if name.is_empty() {
        return Err(format!("{text:?} has no name before '=': use NAME=VALUE"));
    }
    Ok(EnvVar {
        name: name.to_string(),
        value: value.to_string(),
    })
}

/// `--name`: what jwd accepts as a job's name (protocol.md), checked here
/// to say so before connecting.
pub(crate) fn parse_name(text: &str) -> Result<String, String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if text.is_empty() || text.len() > 64 || !text.chars().all(fine) {
        return Err(format!(
            "{text:?}: a name is 1 to 64 letters, digits, '_', '.' or '-'"
        ));
    }
    if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("{text:?}: a name begins with a letter or a digit"));
    }
    let id_like = text.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if id_like && (4..=36).contains(&text.len()) {
        return Err(format!(
            "{text:?} would read as the start of a job id: use a letter from g to z, or '_' or '.'"
        ));
    }
    Ok(text.to_string())
}

/// A state `jw list --state` selects; `Ended` is every state but the
/// active ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateFilter {
    Is(JobState),
    Ended,
}

impl StateFilter {
    /// Whether a job in `state` is selected.
    pub(crate) fn matches(self, state: JobState) -> bool {
        match self {
            StateFilter::Is(s) => s == state,
            StateFilter::Ended => !state.is_active(),
        }
    }
}

/// `--state`: one name of running, exited, failed, lost, starting, ended.
pub(crate) fn parse_state(text: &str) -> Result<StateFilter, String> {
    Ok(match text.trim().to_ascii_lowercase().as_str() {
        "running" => StateFilter::Is(JobState::Running),
        "exited" => StateFilter::Is(JobState::Exited),
        "failed" => StateFilter::Is(JobState::Failed),
        "lost" => StateFilter::Is(JobState::Lost),
        "starting" => StateFilter::Is(JobState::Starting),
        "ended" => StateFilter::Ended,
        _ => {
            return Err(format!(
                "{text:?} is not a state: give running, exited, failed, lost, starting or ended"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_read_as_ids_are_refused() {
        assert!(parse_name("build-7").is_ok());
        assert!(parse_name("abc").is_ok());
        assert!(parse_name("abcd").is_err());
        assert!(parse_name("dead-beef").is_err());
        assert!(parse_name("-x").is_err());
        assert!(parse_name("a b").is_err());
        assert!(parse_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn cores_and_grace_are_checked() {
        assert_eq!(parse_cores("0.5"), Ok(500));
        assert_eq!(parse_cores("1000"), Ok(1_000_000));
        assert!(parse_cores("0").is_err());
        assert!(parse_cores("-1").is_err());
        assert!(parse_cores("nan").is_err());
        assert!(parse_grace("2h").is_err());
        assert_eq!(grace_ms(parse_grace("1.5s").unwrap()), 1500);
        assert!(parse_env("A=b=c").is_ok_and(|v| v.name == "A" && v.value == "b=c"));
        assert!(parse_env("novalue").is_err());
    }

    #[test]
    fn states_parse_and_ended_means_not_active() {
        assert_eq!(
            parse_state("Running"),
            Ok(StateFilter::Is(JobState::Running))
        );
        assert!(parse_state("ended").unwrap().matches(JobState::Failed));
        assert!(!parse_state("ended").unwrap().matches(JobState::Running));
        assert!(parse_state("done").is_err());
    }
}
