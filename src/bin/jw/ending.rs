//! A job's end as `jw run`, `jw wait` and `jw attach` report it: the exit
//! code (124 if it ran past its --timeout, else the shell's convention),
//! and on stderr what the code alone does not say: out of memory, timed
//! out, output dropped past --max-output.

use jw::protocol::JobInfo;

use crate::failure::TIMED_OUT;
use crate::server_text::size_text;
use crate::text::span_text;

/// Says what the exit code does not, on stderr; the exit code.
pub(crate) fn report_end(info: &JobInfo) -> u8 {
    for note in notes(info) {
        eprintln!("jw: {note}");
    }
    if info.timed_out {
        TIMED_OUT
    } else {
        info.shell_code()
    }
}

/// The notes about the job's end, one a line.
fn notes(info: &JobInfo) -> Vec<String> {
    let id = info.id;
    let mut notes = Vec::new();
    if info.oom_killed {
        notes.push(format!(
            "job {id} was killed: out of memory (its --memory limit)"
        ));
    }
    if info.timed_out {
        let after = info
            .timeout_ms
            .map(|ms| format!(" after {}", span_text(ms)))
            .unwrap_or_default();
        notes.push(format!(
            "job {id} timed out{after} and was stopped (its --timeout)"
        ));
    }
    let dropped = info.output.dropped_bytes;
    if dropped > 0 {
        let amount = if dropped < 1024 {
            format!("{dropped} bytes")
        } else {
            format!("{dropped} bytes ({})", size_text(dropped))
        };
        notes.push(match info.limits.output_bytes {
            Some(cap) => format!(
                "output truncated: {amount} dropped (the job's --max-output is {}; raise it \
                 with --max-output)",
                size_text(cap)
            ),
            None => format!("output truncated: {amount} dropped (jwd's output disk is full?)"),
        });
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use jw::protocol::{JobId, JobState};

    fn ended() -> JobInfo {
        JobInfo {
            state: JobState::Exited,
            exit_code: Some(0),
            ended_at_ms: Some(1),
            ..JobInfo::running(JobId([7; 16]), "alice", "sh", vec![])
        }
    }

    #[test]
    fn truncation_and_timeout_are_reported_in_user_units() {
        let mut info = ended();
        assert!(notes(&info).is_empty());
        info.output.dropped_bytes = 9216;
        info.limits.output_bytes = Some(1024);
        assert_eq!(
            notes(&info),
            [
                "output truncated: 9216 bytes (9.0K) dropped (the job's --max-output is 1.0K; \
              raise it with --max-output)"
            ]
        );
        info.timed_out = true;
        info.timeout_ms = Some(2000);
        info.signal = Some(15);
        info.exit_code = None;
        assert_eq!(report_end(&info), 124);
        assert!(notes(&info)[0].contains("timed out after 2s"));
    }
}
