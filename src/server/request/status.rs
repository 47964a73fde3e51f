//! `Status`: one job's status, for its owner or an admin.

use super::{error_info, Outcome};
use crate::protocol::{Event, Identity, JobId};
use crate::server::authz;
use crate::server::outbox::Outbox;
use crate::server::stream::StreamState;

pub(super) fn apply(
    conn: &Outbox,
    stream: &StreamState,
    identity: &Identity,
    job: JobId,
) -> Outcome {
    match conn.shared.manager.status(job, authz::job_scope(identity)) {
        Ok(info) => {
            conn.emit(stream, Event::Status(info));
            Outcome::Ok(None)
        }
        Err(e) => Outcome::Failed(error_info(&e)),
    }
}
