//! The engine's one error type: what failed, in words a user can act on.
//! The server maps each kind to a protocol error code.

use std::path::PathBuf;
use std::time::Duration;

use super::cgroup::CgroupError;
use super::spawn::SpawnError;
use super::spec::SpecError;
use super::uids::{UidError, UidRange};
use crate::protocol::JobId;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    InvalidSpec(#[from] SpecError),
    #[error("invalid grace: {} is longer than one hour", super::spec::format_duration(*.0))]
    GraceTooLong(Duration),
    #[error("the {what} {path} is in use by {by}; stop that jwd first, or give this one its own --data-dir and --cgroup-name")]
    InUse {
        what: &'static str,
        path: PathBuf,
        by: String,
    },
    #[error("no such job {0}")]
    NotFound(JobId),
    #[error("job {0} is still running; stop it first")]
    StillRunning(JobId),
    #[error("job {0} has ended")]
    Ended(JobId),
    #[error("job {0} has no input to write to: it was started without one (jw run -i or -t), or jwd is still taking it over after a restart (try again in a moment)")]
    NoInput(JobId),
    #[error("job {0}'s input was closed (end of input was sent)")]
    InputClosed(JobId),
    #[error("another client is attached to job {0}'s input, and only one may write at a time; detach that one first")]
    InputBusy(JobId),
    #[error("cannot write to job {id}'s input: {source}")]
    Input { id: JobId, source: std::io::Error },
    #[error("invalid signal {0}: give a standard signal, 1 to 31 (e.g. 10, SIGUSR1)")]
    BadSignal(i32),
    #[error("{0}")]
    ExecFailed(String),
    /// No file of that name on any path tried (a shell's 127).
    #[error("{0}")]
    CommandNotFound(String),
    #[error("the name {name:?} is taken by your job {job}; choose another name, or remove that job first (jw rm {name})")]
    NameTaken { name: String, job: JobId },
    #[error("no job named {name:?} or with an id beginning with it{hint}")]
    NoSuchName { name: String, hint: &'static str },
    #[error("{prefix:?} begins the ids of {count} jobs: {}; type more of the id", list_matches(.listed, *.count))]
    Ambiguous {
        prefix: String,
        /// How many match.
        count: usize,
        /// The first few, with their names.
        listed: Vec<(JobId, Option<String>)>,
    },
    #[error("cannot create the job's cgroups: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("cannot start the job: {0}")]
    Spawn(#[from] SpawnError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Identity(#[from] UidError),
    #[error("{0}")]
    Filter(String),
    #[error("job {id} has not ended {waited:?} after SIGKILL to every process in it: a process is held by the kernel (a hung disk or network file system?); its SIGKILL stays pending and jwd records the end when it comes; see jwd's log")]
    StopTimeout { id: JobId, waited: Duration },
    #[error("jwd is shutting down and starts no more jobs; start it again once jwd is back")]
    ShuttingDown,
    #[error("{owner} already has {max} jobs starting or running, the most this server allows per user (jwd --max-jobs-per-user); wait for one to end or stop one")]
    TooManyJobs { owner: String, max: usize },
    #[error("{owner} keeps {} of job output on this server, the most it allows per user (jwd --max-output-per-user); remove ended jobs (jw rm) to make room", crate::units::format_bytes(*.cap))]
    OutputQuota { owner: String, cap: u64 },
    #[error("all {count} job uids ({range}) are in use by running jobs or their clean-up; try again when a job has ended, or give jwd a larger --job-uids range")]
    NoIdentity { range: UidRange, count: u64 },
    #[error("{what} {path:?} is not valid UTF-8; jobs need paths they can be told about")]
    NotUtf8 { what: &'static str, path: PathBuf },
    #[error("cannot use the job init program {path}: {source} (install jw-init beside jwd, or give its path with jwd --init)")]
    InitProgram {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl JobError {
    /// Whether the error is a resource running out (a per-user cap, the uid
    /// range, the host's processes or memory, the disk) rather than a bad
    /// request or a fault: the caller may try again later.
    pub fn is_resource_exhausted(&self) -> bool {
        let errno = |e: &std::io::Error| e.raw_os_error();
        match self {
            JobError::NoIdentity { .. }
            | JobError::TooManyJobs { .. }
            | JobError::OutputQuota { .. } => true,
            JobError::Spawn(SpawnError::Clone(e)) => {
                matches!(errno(e), Some(libc::EAGAIN | libc::ENOMEM))
            }
            JobError::Io { source, .. } => errno(source) == Some(libc::ENOSPC),
            _ => false,
        }
    }
}

/// `id (name), id, ... and N more`.
fn list_matches(listed: &[(JobId, Option<String>)], count: usize) -> String {
    let mut text = listed
        .iter()
        .map(|(id, name)| match name {
            Some(name) => format!("{id} ({name})"),
            None => id.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    if count > listed.len() {
        text.push_str(&format!(" and {} more", count - listed.len()));
    }
    text
}

pub(super) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> JobError {
    let what = what.into();
    move |source| JobError::Io { what, source }
}
