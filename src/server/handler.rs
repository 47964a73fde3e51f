//! Requests to engine calls, after authorization; one task per stream.
//!
//! Engine calls that must finish once begun (start, stop) run as detached
//! tasks: cancelling the stream stops waiting for them, not the work.

use std::rc::Rc;
use std::time::Duration;

use super::authz;
use super::conn::{Conn, StreamState};
use crate::job::output;
use crate::job::JobError;
use crate::protocol::{self, ErrorCode, ErrorInfo, Event, Identity, JobId, LogsRequest, Request};

/// Largest `Output` chunk the server sends: four TLS records.
const CHUNK: u64 = 64 * 1024;
/// Bytes an `Output` frame takes besides its data, at most (length prefix,
/// tags and varints), for the outgoing budget.
const OUTPUT_HEAD: usize = 32;

/// How an engine error is told to the client.
fn error_info(e: &JobError) -> ErrorInfo {
    let code = match e {
        JobError::InvalidSpec(s) if s.forbidden => ErrorCode::PERMISSION_DENIED,
        JobError::InvalidSpec(_) | JobError::GraceTooLong(_) => ErrorCode::BAD_REQUEST,
        JobError::NotFound(_) => ErrorCode::NOT_FOUND,
        JobError::StillRunning(_) | JobError::ShuttingDown => ErrorCode::FAILED_PRECONDITION,
        JobError::ExecFailed(_) => ErrorCode::EXEC_FAILED,
        JobError::NoIdentity { .. }
        | JobError::TooManyJobs { .. }
        | JobError::OutputQuota { .. } => ErrorCode::RESOURCE_EXHAUSTED,
        JobError::Spawn(crate::job::spawn::SpawnError::Clone(io))
            if io.raw_os_error() == Some(libc::EAGAIN)
                || io.raw_os_error() == Some(libc::ENOMEM) =>
        {
            ErrorCode::RESOURCE_EXHAUSTED
        }
        JobError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
            ErrorCode::RESOURCE_EXHAUSTED
        }
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
    }
}

/// What happened, for the audit line.
enum Outcome {
    Ok(Option<JobId>),
    Failed(ErrorInfo),
    Cancelled,
}

/// Runs one request to its terminal event and writes the audit line.
pub(crate) async fn run(conn: Rc<Conn>, stream: Rc<StreamState>, request: Request) {
    let identity = conn.identity();
    let (name, job) = action(&request);
    let outcome = match request {
        Request::Start(req) => start(&conn, &stream, &identity, req).await,
        Request::Stop { job, grace_ms } => stop(&conn, &stream, &identity, job, grace_ms).await,
        Request::Status { job } => status(&conn, &stream, &identity, job),
        Request::List { all } => list(&conn, &stream, &identity, all).await,
        Request::Logs(req) => logs(&conn, &stream, &identity, req).await,
        Request::Wait { job } => wait(&conn, &stream, &identity, job).await,
        Request::Remove { job } => remove(&conn, &stream, &identity, job).await,
    };
    let job_text = |j: Option<JobId>| j.map(|j| j.to_string()).unwrap_or_else(|| "-".into());
    match outcome {
        Outcome::Ok(started) => {
            tracing::info!(target: "audit", user = ?identity.user, action = name, job = %job_text(started.or(job)), outcome = "ok");
        }
        Outcome::Failed(err) => {
            tracing::info!(target: "audit", user = ?identity.user, action = name, job = %job_text(job), outcome = %err.code, error = ?err.message);
            conn.emit(&stream, Event::Error(err));
        }
        Outcome::Cancelled => {
            tracing::info!(target: "audit", user = ?identity.user, action = name, job = %job_text(job), outcome = "cancelled");
        }
    }
}

async fn start(
    conn: &Conn,
    stream: &StreamState,
    identity: &Identity,
    req: protocol::StartRequest,
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
    let task = tokio::spawn(async move { manager.start_in_turn(turn, &owner, &req).await });
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

async fn stop(
    conn: &Conn,
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

fn status(conn: &Conn, stream: &StreamState, identity: &Identity, job: JobId) -> Outcome {
    match conn.shared.manager.status(job, authz::job_scope(identity)) {
        Ok(info) => {
            conn.emit(stream, Event::Status(info));
            Outcome::Ok(None)
        }
        Err(e) => Outcome::Failed(error_info(&e)),
    }
}

async fn list(conn: &Conn, stream: &StreamState, identity: &Identity, all: bool) -> Outcome {
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

async fn wait(conn: &Conn, stream: &StreamState, identity: &Identity, job: JobId) -> Outcome {
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

async fn remove(conn: &Conn, stream: &StreamState, identity: &Identity, job: JobId) -> Outcome {
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

async fn logs(conn: &Conn, stream: &StreamState, identity: &Identity, req: LogsRequest) -> Outcome {
    if req.stdout.is_none() && req.stderr.is_none() {
        return Outcome::Failed(ErrorInfo::new(
            ErrorCode::BAD_REQUEST,
            "invalid logs request: select stdout, stderr or both",
        ));
    }
    let job = match conn.shared.manager.get(req.job, authz::job_scope(identity)) {
        Ok(j) => j,
        Err(e) => return Outcome::Failed(error_info(&e)),
    };
    let mut serve = match output::Serve::new(job.output(), req.stdout, req.stderr, req.follow) {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Failed(ErrorInfo::new(
                ErrorCode::INTERNAL,
                format!("cannot open the job's output: {e}"),
            ))
        }
    };
    while !serve.is_done() {
        let credit = stream.credit();
        if credit == 0 {
            // Nothing may be sent; but the end (which needs no credit)
            // may come, so wake on either (`changed` only returns when
            // the writer moved, so this waits, never spins).
            tokio::select! {
                _ = stream.credit_changed() => {}
                _ = serve.changed() => {}
            }
            if stream.is_cancelled() {
                return Outcome::Cancelled;
            }
            continue;
        }
        let next = tokio::select! {
            next = serve.next_span(credit.min(CHUNK)) => next,
            _ = stream.cancelled() => return Outcome::Cancelled,
        };
        let span = match next {
            Ok(Some(span)) => span,
            Ok(None) => break,
            Err(e) => return read_failed(e),
        };
        // Room in the connection's outgoing budget before any byte is read
        // (a client that stops reading stops this here).
        let Some(permit) = conn.reserve(stream, span.len as usize + OUTPUT_HEAD).await else {
            return Outcome::Cancelled;
        };
        // The frame header, then the bytes: mapped, or read into the frame.
        let mut frame = Vec::with_capacity(OUTPUT_HEAD);
        if let Err(e) = protocol::encode_output_header(
            stream.id,
            span.stream,
            span.offset,
            span.len as usize,
            &mut frame,
        ) {
            return Outcome::Failed(ErrorInfo::new(ErrorCode::INTERNAL, e.to_string()));
        }
        let (frame, body) = match serve.fill(&span, frame).await {
            Ok(filled) => filled,
            Err(e) => return read_failed(e),
        };
        stream.spend(span.len);
        if !conn.send_output(stream, frame, body, permit) {
            return Outcome::Cancelled;
        }
    }
    let info = if req.follow {
        tokio::select! {
            info = job.wait() => info,
            _ = stream.cancelled() => return Outcome::Cancelled,
        }
    } else {
        job.info()
    };
    conn.emit(stream, Event::End(info));
    Outcome::Ok(None)
}

fn read_failed(e: std::io::Error) -> Outcome {
    Outcome::Failed(ErrorInfo::new(
        ErrorCode::INTERNAL,
        format!("cannot read the job's output: {e}"),
    ))
}
