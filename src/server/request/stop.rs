//! `Stop`: the engine stops the job (SIGTERM, grace, then SIGKILL); the
//! stop runs to its end even if the client goes.

use std::time::Duration;

use super::{error_info, Outcome};
use crate::protocol::{ErrorCode, ErrorInfo, Event, Identity, JobId};
use crate::server::authz;
use crate::server::outbox::Outbox;
use crate::server::stream::StreamState;

pub(super) async fn apply(
    conn: &Outbox,
    stream: &StreamState,
    identity: &Identity,
    job: JobId,
    grace_ms: u32,
) -> Outcome {
    let manager = conn.shared.manager.clone();
    let scope = authz::job_scope(identity).map(String::from);
    let task = tokio::spawn(async move {
        manager
            .stop(
                job,
                scope.as_deref(),
                Duration::from_millis(u64::from(grace_ms)),
            )
            .await
    });
    let result = tokio::select! {
        r = task => r,
        _ = stream.cancelled() => return Outcome::Cancelled,
    };
    match result {
        Ok(Ok(info)) => {
            conn.emit(stream, Event::Status(info));
            Outcome::Ok(None)
        }
        Ok(Err(e)) => Outcome::Failed(error_info(&e)),
        Err(e) => Outcome::Failed(ErrorInfo::new(
            ErrorCode::INTERNAL,
            format!("the stop task failed: {e}"),
        )),
    }
}
