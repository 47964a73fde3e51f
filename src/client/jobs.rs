//! The requests of protocol version 3 about jobs: `StartJob` (a name, a
//! timeout, a tie to the clients that hold the job), `Hold` and `Resolve`.

use super::{Client, ClientError};
use crate::protocol::{Event, JobId, JobInfo, Request, StartJob};

/// What a request that needs a newer jwd is for, in the user's words.
pub(super) fn needs(request: &Request) -> &'static str {
    match request {
        Request::StartWith { .. } | Request::Attach { .. } | Request::Signal { .. } => {
            "-i/-t/attach/kill"
        }
        Request::StartJob(_) => "starting a job (--name, --timeout, `jw run`'s tie to its job)",
        Request::Hold { .. } => "`jw run` holding its job",
        Request::Resolve { .. } => "a short id or a job name",
        Request::Read(_) => "--tail/--since/--timestamps",
        _ => "this request",
    }
}

impl Client {
    /// Starts a job with the options of protocol version 3.
    pub async fn start_job(&self, start: StartJob) -> Result<JobId, ClientError> {
        match self.one(Request::StartJob(Box::new(start))).await? {
            Event::Started { job } => Ok(job),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Holds job `job` until it ends (a tied job lives while a hold is
    /// open): its status at the end.
    pub async fn hold(&self, job: JobId) -> Result<JobInfo, ClientError> {
        match self.one(Request::Hold { job }).await? {
            Event::End(info) => Ok(info),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The job a name or an id prefix stands for.
    pub async fn resolve(&self, name: &str) -> Result<JobId, ClientError> {
        let request = Request::Resolve {
            name: name.to_string(),
        };
        match self.one(request).await? {
            Event::Resolved { job } => Ok(job),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The protocol version the server chose.
    pub fn version(&self) -> u32 {
        self.inner.welcome.version
    }
}
