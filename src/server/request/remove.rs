//! `Remove`: an ended job and its output.

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
    match conn
        .shared
        .manager
        .remove(job, authz::job_scope(identity))
        .await
    {
        Ok(()) => {
            conn.emit(stream, Event::Removed);
            Outcome::Ok(None)
        }
        Err(e) => Outcome::Failed(error_info(&e)),
    }
}
