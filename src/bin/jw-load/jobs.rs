//! The job requests the scenarios start: `/bin/true` (and variations of
//! it) and a long sleeper; and the one way they read a job's whole output.

use jw::protocol::{JobId, LogsRequest, Network, StartRequest};

/// A request for all of a job's output (stdout and stderr), not following.
pub(crate) fn whole_output(job: JobId) -> LogsRequest {
    LogsRequest {
        job,
        stdout: Some(0),
        stderr: Some(0),
        follow: false,
        credit: 65536,
    }
}

/// `/bin/true`, no limits, no network: the base every scenario's job is made from.
pub(crate) fn true_job() -> StartRequest {
    StartRequest {
        command: "/bin/true".into(),
        args: vec![],
        env: vec![],
        workdir: None,
        limits: Default::default(),
        network: Network::None,
    }
}

/// `sleep 3600`: a job that stays running until stopped.
pub(crate) fn sleeper() -> StartRequest {
    let mut req = true_job();
    req.command = "sleep".into();
    req.args = vec!["3600".into()];
    req
}
