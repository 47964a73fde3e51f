//! Requests: one file per request, each authorising and applying itself;
//! here the dispatch, the audit line and how an engine error is told to
//! the client. One task per stream.
//!
//! Engine calls that must finish once begun (start, stop) run as detached
//! tasks: cancelling the stream stops waiting for them, not the work.

use std::rc::Rc;

mod attach;
mod hold;
mod list;
mod logs;
mod remove;
mod resolve;
mod signal;
mod start;
mod status;
mod stop;
mod wait;

use super::outbox::Outbox;
use super::stream::StreamState;
use crate::job::JobError;
use crate::protocol::{ErrorCode, ErrorInfo, Event, JobId, Request, StartOptions, Stdin};

/// How an engine error is told to the client.
pub(super) fn error_info(e: &JobError) -> ErrorInfo {
    let code = match e {
        JobError::InvalidSpec(s) if s.forbidden => ErrorCode::PERMISSION_DENIED,
        JobError::InvalidSpec(_) | JobError::GraceTooLong(_) => ErrorCode::BAD_REQUEST,
        JobError::NotFound(_) | JobError::NoSuchName { .. } => ErrorCode::NOT_FOUND,
        JobError::NameTaken { .. } => ErrorCode::ALREADY_EXISTS,
        JobError::Ambiguous { .. } => ErrorCode::AMBIGUOUS,
        JobError::CommandNotFound(_) => ErrorCode::COMMAND_NOT_FOUND,
        JobError::BadSignal(_) => ErrorCode::BAD_REQUEST,
        JobError::StillRunning(_)
        | JobError::ShuttingDown
        | JobError::Ended(_)
        | JobError::NoInput(_)
        | JobError::InputClosed(_)
        | JobError::InputBusy(_)
        | JobError::Input { .. } => ErrorCode::FAILED_PRECONDITION,
        JobError::ExecFailed(_) => ErrorCode::EXEC_FAILED,
        e if e.is_resource_exhausted() => ErrorCode::RESOURCE_EXHAUSTED,
        _ => ErrorCode::INTERNAL,
    };
    ErrorInfo::new(code, e.to_string())
}

fn action(request: &Request) -> (&'static str, Option<JobId>) {
    match request {
        Request::Start(_) => ("start", None),
        Request::Stop { job, .. } => ("stop", Some(*job)),
        Request::Status { job } => ("status", Some(*job)),
        Request::List { .. } => ("list", None),
        Request::Logs(l) => ("logs", Some(l.job)),
        Request::Wait { job } => ("wait", Some(*job)),
        Request::Remove { job } => ("remove", Some(*job)),
        Request::StartWith { .. } => ("start", None),
        Request::Attach { job } => ("attach", Some(*job)),
        Request::Signal { job, .. } => ("signal", Some(*job)),
        Request::StartJob(_) => ("start", None),
        Request::Read(r) => ("logs", Some(r.logs.job)),
        Request::Resolve { .. } => ("resolve", None),
        Request::Hold { job } => ("hold", Some(*job)),
    }
}

/// What happened, for the audit line.
pub(super) enum Outcome {
    Ok(Option<JobId>),
    Failed(ErrorInfo),
    Cancelled,
}

/// Runs one request to its terminal event and writes the audit line.
pub(crate) async fn run(conn: Rc<Outbox>, stream: Rc<StreamState>, request: Request) {
    let identity = conn.identity();
    let (name, job) = action(&request);
    let plain = StartOptions::default;
    let outcome = match request {
        Request::Start(req) => {
            start::apply(&conn, &stream, &identity, req, Stdin::Null, plain()).await
        }
        Request::Stop { job, grace_ms } => {
            stop::apply(&conn, &stream, &identity, job, grace_ms).await
        }
        Request::Status { job } => status::apply(&conn, &stream, &identity, job),
        Request::List { all } => list::apply(&conn, &stream, &identity, all).await,
        Request::Logs(req) => logs::apply(&conn, &stream, &identity, req).await,
        Request::Wait { job } => wait::apply(&conn, &stream, &identity, job).await,
        Request::Remove { job } => remove::apply(&conn, &stream, &identity, job).await,
        Request::StartWith { spec, stdin } => {
            start::apply(&conn, &stream, &identity, spec, stdin, plain()).await
        }
        Request::StartJob(start) => {
            let start = *start;
            start::apply(
                &conn,
                &stream,
                &identity,
                start.spec,
                start.stdin,
                start.options,
            )
            .await
        }
        Request::Hold { job } => hold::apply(&conn, &stream, &identity, job).await,
        Request::Resolve { name } => resolve::apply(&conn, &stream, &identity, &name),
        Request::Attach { job } => attach::apply(&conn, &stream, &identity, job).await,
        Request::Signal { job, signal, all } => {
            signal::apply(&conn, &stream, &identity, job, signal, all)
        }
        Request::Read(req) => logs::apply_read(&conn, &stream, &identity, req).await,
    };
    let job_text = |j: Option<JobId>| j.map(|j| j.to_string()).unwrap_or_else(|| "-".into());
    match outcome {
        Outcome::Ok(started) => {
            tracing::info!(target: "audit", user = ?identity.user, action = name, job = %job_text(started.or(job)), outcome = "ok");
        }
        Outcome::Failed(mut err) => {
            tracing::info!(target: "audit", user = ?identity.user, action = name, job = %job_text(job), outcome = %err.code, error = ?err.message);
            if err.code == ErrorCode::COMMAND_NOT_FOUND && conn.version.get() < 3 {
                // Older clients know only exec_failed for it.
                err.code = ErrorCode::EXEC_FAILED;
            }
            conn.emit(&stream, Event::Error(err));
        }
        Outcome::Cancelled => {
            tracing::info!(target: "audit", user = ?identity.user, action = name, job = %job_text(job), outcome = "cancelled");
        }
    }
}
