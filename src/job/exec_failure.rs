//! What a start that did not run the command reports: "not found" (no
//! file of that name on any path tried, a shell's 127) apart from every
//! other reason (a shell's 126, or a set-up step that failed), from the
//! init's report (where set-up stopped, and the errno) in words the user
//! can act on.

use super::channel::{Report, Stage, EXIT_FDS};
use super::error::JobError;
use super::spawn::errno_text;
use super::spec::{JobSpec, JOB_PATH};

/// The error of a start whose init reported `report` (`None`: it reported
/// nothing, and exited with `init_status`).
pub(super) fn exec_error(
    spec: &JobSpec,
    report: Option<Report>,
    init_status: Option<(i32, i32)>,
) -> JobError {
    let text = describe(spec, report, init_status);
    match report {
        // The init tries every candidate path and reports ENOENT only if
        // none exists (a missing interpreter is `Stage::Interpreter`).
        Some(Report::Failed {
            stage: Stage::Exec,
            errno: libc::ENOENT | libc::ENOTDIR,
        }) => JobError::CommandNotFound(text),
        _ => JobError::ExecFailed(text),
    }
}

/// What the user sees when the command could not be executed.
fn describe(spec: &JobSpec, report: Option<Report>, init_status: Option<(i32, i32)>) -> String {
    let Some(Report::Failed { stage, errno }) = report else {
        // The init could not even report: its exit code says where it stopped.
        let why = match init_status {
            Some((libc::CLD_EXITED, EXIT_FDS)) => {
                "the job's init could not set up its file descriptors (is jwd out of file descriptors?)".to_string()
            }
            Some((libc::CLD_EXITED, code)) => format!("the job's init exited with status {code} before executing it"),
            Some((_, sig)) => format!("the job's init was killed by signal {sig} before executing it"),
            None => "the job's init exited before executing it".to_string(),
        };
        return format!("cannot start {:?}: {why}", spec.command);
    };
    let reason = errno_text(errno);
    match stage {
        Stage::Exec => {
            let is_dir = spec.command.starts_with('/')
                && std::fs::metadata(&spec.command).is_ok_and(|m| m.is_dir());
            if is_dir {
                format!("cannot execute {:?}: it is a directory", spec.command)
            } else if errno == libc::ENOENT && !spec.command.starts_with('/') {
                format!(
                    "cannot execute {:?}: not found on the job's PATH ({JOB_PATH})",
                    spec.command,
                )
            } else {
                format!("cannot execute {:?}: {reason}", spec.command)
            }
        }
        Stage::Interpreter => format!(
            "cannot execute {:?}: the interpreter its #! line names, or the dynamic loader it needs, is not in the job's filesystem ({reason})",
            spec.command
        ),
        Stage::Chdir => format!(
            "cannot change to working directory {:?}: {reason}",
            spec.workdir
        ),
        stage => format!(
            "cannot start {:?}: failed to {}: {reason}",
            spec.command,
            stage.describe()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Limits, Network, StartRequest};

    fn spec(command: &str) -> JobSpec {
        let req = StartRequest {
            command: command.into(),
            args: vec![],
            env: vec![],
            workdir: None,
            limits: Limits::default(),
            network: Network::None,
        };
        JobSpec::validate(
            &req,
            &super::super::spec::SpecPolicy::for_host(false, 1 << 20),
        )
        .unwrap()
    }

    fn failed(stage: Stage, errno: i32) -> Option<Report> {
        Some(Report::Failed { stage, errno })
    }

    #[test]
    fn only_a_missing_file_is_not_found() {
        let missing = exec_error(&spec("/no/such"), failed(Stage::Exec, libc::ENOENT), None);
        assert!(
            matches!(missing, JobError::CommandNotFound(_)),
            "{missing:?}"
        );
        let on_path = exec_error(&spec("nosuch"), failed(Stage::Exec, libc::ENOENT), None);
        assert!(
            on_path.to_string().contains("not found on the job's PATH"),
            "{on_path}"
        );
        for (stage, errno) in [
            (Stage::Exec, libc::EACCES),
            (Stage::Exec, libc::ENOEXEC),
            (Stage::Interpreter, libc::ENOENT),
            (Stage::Chdir, libc::ENOENT),
        ] {
            let e = exec_error(&spec("/bin/x"), failed(stage, errno), None);
            assert!(
                matches!(e, JobError::ExecFailed(_)),
                "{stage:?} {errno}: {e:?}"
            );
        }
        let silent = exec_error(&spec("/bin/x"), None, Some((libc::CLD_EXITED, EXIT_FDS)));
        assert!(matches!(silent, JobError::ExecFailed(_)));
    }
}
