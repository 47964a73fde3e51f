//! `Signal`: a signal to a job's command, or to every process of it, for
//! its owner or an admin.

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
    signal: i32,
    all: bool,
) -> Outcome {
    let scope = authz::job_scope(identity);
    match conn.shared.manager.signal(job, scope, signal, all) {
        Ok(info) => {
            conn.emit(stream, Event::Status(info));
            Outcome::Ok(None)
        }
        Err(e) => Outcome::Failed(error_info(&e)),
    }
}
