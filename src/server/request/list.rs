//! `List`: the caller's jobs (or every user's, for an admin), one item
//! at a time within the connection's outgoing budget.

use super::Outcome;
use crate::protocol::{ErrorCode, ErrorInfo, Event, Identity};
use crate::server::authz;
use crate::server::outbox::Outbox;
use crate::server::stream::StreamState;

pub(super) async fn apply(
    conn: &Outbox,
    stream: &StreamState,
    identity: &Identity,
    all: bool,
) -> Outcome {
    let scope = if all {
        if !authz::may_list_all(identity) {
            return Outcome::Failed(ErrorInfo::new(
                ErrorCode::PERMISSION_DENIED,
                format!(
                    "listing every user's jobs needs the admin role (group {:?})",
                    conn.shared.config.admin_group
                ),
            ));
        }
        None
    } else {
        Some(identity.user.as_str())
    };
    // One list at a time on a connection; each job's status is made only
    // when the outgoing budget has room for it.
    let _turn = tokio::select! {
        turn = conn.list_turn.acquire() => turn,
        _ = stream.cancelled() => return Outcome::Cancelled,
    };
    let jobs = conn.shared.manager.jobs(scope);
    let count = jobs.len() as u32;
    for job in jobs {
        if !conn.emit_bounded(stream, Event::ListItem(job.info())).await {
            return Outcome::Cancelled;
        }
    }
    conn.emit(stream, Event::ListEnd { count });
    Outcome::Ok(None)
}
