//! The exit code `jw run` and `jw wait` give back for a job's end.

use jw::protocol::JobInfo;

/// The shell convention: the exit code, or 128 + the signal number.
pub(crate) fn exit_code(info: &JobInfo) -> u8 {
    match (info.exit_code, info.signal) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jw::protocol::{JobId, JobState};

    #[test]
    fn exit_codes_follow_the_shell() {
        let mut info = JobInfo {
            id: JobId([0; 16]),
            owner: String::new(),
            command: String::new(),
            args: vec![],
            state: JobState::Exited,
            exit_code: Some(3),
            signal: None,
            oom_killed: false,
            stopped: false,
            started_at_ms: 0,
            ended_at_ms: None,
            usage: Default::default(),
            output: Default::default(),
            error: None,
        };
        assert_eq!(exit_code(&info), 3);
        info.exit_code = None;
        info.signal = Some(9);
        assert_eq!(exit_code(&info), 137);
    }
}
