//! `Wait`: the job's final status once it has ended (and `Hold` ends the
//! same way: `until_end`).

use super::{error_info, Outcome};
use crate::job::Job;
use crate::protocol::{Event, Identity, JobId};
use crate::server::authz;
use crate::server::outbox::Outbox;
use crate::server::stream::StreamState;

pub(super) async fn apply(
    conn: &Outbox,
    stream: &StreamState,
    identity: &Identity,
    job: JobId,
) -> Outcome {
    match conn.shared.manager.get(job, authz::job_scope(identity)) {
        Ok(job) => until_end(conn, stream, &job).await,
        Err(e) => Outcome::Failed(error_info(&e)),
    }
}

/// Answers `End` with the job's final status once it has ended, or stops
/// waiting when the stream is cancelled.
pub(super) async fn until_end(conn: &Outbox, stream: &StreamState, job: &Job) -> Outcome {
    let info = tokio::select! {
        info = job.wait() => info,
        _ = stream.cancelled() => return Outcome::Cancelled,
    };
    conn.emit(stream, Event::End(info));
    Outcome::Ok(None)
}
