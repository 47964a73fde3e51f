//! `Resolve`: the job a name or an id prefix means for the caller: their
//! own job of that name, else the one job whose id begins with it among
//! the jobs they may see (every job for admins).

use super::{error_info, Outcome};
use crate::protocol::{Event, Identity};
use crate::server::authz;
use crate::server::outbox::Outbox;
use crate::server::stream::StreamState;

pub(super) fn apply(
    conn: &Outbox,
    stream: &StreamState,
    identity: &Identity,
    name: &str,
) -> Outcome {
    let manager = &conn.shared.manager;
    match manager.resolve(name, &identity.user, authz::job_scope(identity)) {
        Ok(job) => {
            conn.emit(stream, Event::Resolved { job });
            Outcome::Ok(Some(job))
        }
        Err(e) => Outcome::Failed(error_info(&e)),
    }
}
