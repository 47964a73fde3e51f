//! A job's fields as text for a terminal: its end, times, duration and
//! command line (another user chose it: escaped, see `jw::text`).

use jw::protocol::{JobInfo, JobState};
use jw::text::{printable, shell_word};

use crate::signame::signal_name;

/// How the job ended (or its state), with OOM, stop and error notes.
pub(crate) fn describe_end(info: &JobInfo) -> String {
    let mut s = match (info.state, info.exit_code, info.signal) {
        (JobState::Exited, Some(code), _) => format!("exited with code {code}"),
        (JobState::Exited, None, Some(sig)) => {
            format!(
                "killed by signal {sig} ({})",
                signal_name(sig).unwrap_or("?")
            )
        }
        (state, _, _) => state.as_str().to_string(),
    };
    if info.oom_killed {
        s.push_str(", out of memory");
    }
    if info.timed_out {
        s.push_str(", timed out");
    } else if info.stopped {
        s.push_str(", stopped");
    }
    if let Some(e) = &info.error {
        s.push_str(&format!(": {}", printable(e)));
    }
    s
}

/// Milliseconds since the epoch as RFC 3339 (the number if out of range).
pub(crate) fn time_text(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// How long the job ran (or has run so far).
pub(crate) fn duration_text(info: &JobInfo) -> String {
    let end = info.ended_at_ms.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(info.started_at_ms)
    });
    let secs = end.saturating_sub(info.started_at_ms) as f64 / 1000.0;
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, secs as u64 % 60)
    } else {
        format!(
            "{}h{:02}m",
            (secs / 3600.0) as u64,
            (secs as u64 % 3600) / 60
        )
    }
}

/// The command line for a terminal: another user chose it, so control
/// characters are escaped and arguments quoted as a shell reads them
/// (`jw::text`).
pub(crate) fn command_text(info: &JobInfo) -> String {
    std::iter::once(info.command.as_str())
        .chain(info.args.iter().map(String::as_str))
        .map(shell_word)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The EXIT column: the code, the signal's name, or `-`.
pub(crate) fn exit_text(info: &JobInfo) -> String {
    match (info.exit_code, info.signal) {
        (Some(c), _) => c.to_string(),
        (None, Some(s)) => signal_name(s).unwrap_or("?").to_string(),
        _ => "-".into(),
    }
}

/// Milliseconds as the user writes a duration: `2s`, `1.5s`, `1m30s`,
/// `2h`, `1h05m`.
pub(crate) fn span_text(ms: u64) -> String {
    let secs = ms / 1000;
    if ms < 60_000 {
        let text = format!("{:.3}", ms as f64 / 1000.0);
        return format!("{}s", text.trim_end_matches('0').trim_end_matches('.'));
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m, s) {
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_typed() {
        assert_eq!(span_text(2000), "2s");
        assert_eq!(span_text(1500), "1.5s");
        assert_eq!(span_text(90_000), "1m30s");
        assert_eq!(span_text(600_000), "10m");
        assert_eq!(span_text(7_200_000), "2h");
        assert_eq!(span_text(3_900_000), "1h05m");
    }
}
