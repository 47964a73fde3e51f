//! `Start` (and `StartWith`, with the job's input open, and `StartJob`,
//! with options too): the owner's turn, then the engine's start, which
//! runs to its end once begun (a half-made job is worse than an unwanted
//! one).

use super::{error_info, Outcome};
use crate::protocol::{self, ErrorCode, ErrorInfo, Event, Identity};
use crate::server::outbox::Outbox;
use crate::server::stream::StreamState;

pub(super) async fn apply(
    conn: &Outbox,
    stream: &StreamState,
    identity: &Identity,
    req: protocol::StartRequest,
    stdin: protocol::Stdin,
    options: protocol::StartOptions,
) -> Outcome {
    let manager = conn.shared.manager.clone();
    let owner = identity.user.clone();
    // Waiting for the owner's turn ends with the stream; once in its turn
    // the start runs to its end whatever the client does (a half-made job
    // is worse than an unwanted one, which `list` shows).
    let turn = tokio::select! {
        turn = manager.start_turn(&owner) => turn,
        _ = stream.cancelled() => return Outcome::Cancelled,
    };
    let turn = match turn {
        Ok(turn) => turn,
        Err(e) => return Outcome::Failed(error_info(&e)),
    };
    let task = tokio::spawn(async move {
        manager
            .start_in_turn(turn, &owner, &req, stdin, &options)
            .await
    });
    let result = tokio::select! {
        r = task => r,
        _ = stream.cancelled() => return Outcome::Cancelled,
    };
    match result {
        Ok(Ok(started)) => {
            conn.emit(stream, Event::Started { job: started.id });
            Outcome::Ok(Some(started.id))
        }
        Ok(Err(e)) => Outcome::Failed(error_info(&e)),
        Err(e) => Outcome::Failed(ErrorInfo::new(
            ErrorCode::INTERNAL,
            format!("the start task failed: {e}"),
        )),
    }
}
