//! `Wait`: the job's final status once it has ended.

use super::{error_info, Outcome};
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
    let job = match conn.shared.manager.get(job, authz::job_scope(identity)) {
        Ok(j) => j,
        Err(e) => return Outcome::Failed(error_info(&e)),
    };
    let info = tokio::select! {
        info = job.wait() => info,
        _ = stream.cancelled() => return Outcome::Cancelled,
    };
    conn.emit(stream, Event::End(info));
    Outcome::Ok(None)
}
