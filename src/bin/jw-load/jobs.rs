//! The job requests the scenarios start: `/bin/true` (and variations of
//! it) and a long sleeper.

use jw::protocol::{Network, StartRequest};

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
