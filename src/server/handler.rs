//! Requests to engine calls, after authorization; one task per stream.
//!
//! Engine calls that must finish once begun (start, stop) run as detached
//! tasks: cancelling the stream stops waiting for them, not the work.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::authz;
use super::conn::{Conn, MappedSpan, StreamState};
use crate::job::output::{self, Span};
use crate::job::JobError;
use crate::protocol::{self, ErrorCode, ErrorInfo, Event, Identity, JobId, LogsRequest, Request};

/// Largest `Output` chunk the server sends: four TLS records.
const CHUNK: u64 = 64 * 1024;
/// How long a follower waits for more output before it closes its files.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(1);
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
    let mut reader = match job.output().reader(req.stdout, req.stderr, req.follow) {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Failed(ErrorInfo::new(
                ErrorCode::INTERNAL,
                format!("cannot open the job's output: {e}"),
            ))
        }
    };
    // Per stream: a mapping shared with the job's other readers, and an
    // io_uring handle for bytes not in the page cache. Both are taken when
    // there is something to read and dropped once the reader has waited
    // IDLE_RELEASE for more: a follower of a quiet job holds nothing.
    let mut maps: [Option<Arc<output::Mmap>>; 2] = [None, None];
    let mut files: [Option<tokio_uring::fs::File>; 2] = [None, None];
    let mut released = true;
    loop {
        if reader.is_done() {
            break;
        }
        let credit = stream.credit();
        if credit == 0 {
            // Nothing may be sent; but the end (which needs no credit)
            // may come, so wake on either (`changed` only returns when
            // the writer moved, so this waits, never spins).
            tokio::select! {
                _ = stream.credit_changed() => {}
                _ = reader.changed() => {}
            }
            if stream.is_cancelled() {
                return Outcome::Cancelled;
            }
            continue;
        }
        let max = credit.min(CHUNK);
        let next = tokio::select! {
            next = async {
                if released {
                    Ok(reader.next_span(max).await)
                } else {
                    tokio::time::timeout(IDLE_RELEASE, reader.next_span(max)).await
                }
            } => next,
            _ = stream.cancelled() => return Outcome::Cancelled,
        };
        let Ok(span) = next else {
            maps = [None, None];
            files = [None, None];
            reader.release();
            released = true;
            continue;
        };
        let span = match span {
            Ok(Some(span)) => span,
            Ok(None) => break,
            Err(e) => return read_failed(e),
        };
        released = false;
        let s = span.stream.index();
        let end = span.offset + span.len;
        if maps[s].as_ref().is_none_or(|m| (m.len() as u64) < end) {
            match job.output().mapping(span.stream, end) {
                Ok(m) => maps[s] = Some(m),
                Err(e) => return read_failed(e),
            }
        }
        let map = maps[s].as_ref().expect("mapped above");
        // Room in the connection's outgoing budget before any byte is read
        // (a client that stops reading stops this here).
        let Some(permit) = conn.reserve(stream, span.len as usize + OUTPUT_HEAD).await else {
            return Outcome::Cancelled;
        };
        // The frame header first; then the bytes, from the mapping when
        // they are in the page cache (rustls reads them there as it
        // encrypts: no copy on the way), else read with io_uring straight
        // into the frame (a fault on the mapping would stall this thread,
        // and every connection on it, on the disk).
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
        let body = if resident(map, span.offset, span.len) {
            Some(MappedSpan {
                map: map.clone(),
                start: span.offset as usize,
                len: span.len as usize,
            })
        } else {
            let file = match &mut files[s] {
                Some(f) => f,
                slot => {
                    let path = job.output().path(span.stream);
                    match tokio_uring::fs::File::open(&path).await {
                        Ok(f) => slot.insert(f),
                        Err(e) => return read_failed(e),
                    }
                }
            };
            match read_span_into(file, &span, frame).await {
                Ok(f) => frame = f,
                Err(e) => return read_failed(e),
            }
            None
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

/// Whether every page of `[offset, offset + len)` of a mapped output file
/// is in the page cache (mincore), so reading it through the mapping
/// cannot wait for the disk.
fn resident(map: &output::Mmap, offset: u64, len: u64) -> bool {
    // SAFETY: sysconf has no preconditions; glibc returns a cached value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let start = offset / page * page;
    let pages = (offset + len - start).div_ceil(page) as usize;
    let mut vec = [0u8; (CHUNK / 4096) as usize + 1];
    if len == 0 || pages > vec.len() || offset + len > map.len() as u64 {
        return false;
    }
    // SAFETY: `start` is a multiple of the page size and the range lies
    // inside the mapping; mincore writes one byte per page into `vec`,
    // which has room for `pages`.
    let rc = unsafe {
        libc::mincore(
            map.as_ptr().add(start as usize) as *mut libc::c_void,
            (offset + len - start) as usize,
            vec.as_mut_ptr(),
        )
    };
    rc == 0 && vec[..pages].iter().all(|b| b & 1 == 1)
}

/// Appends a whole span to `buf` with io_uring reads into its spare
/// capacity (short reads are continued).
async fn read_span_into(
    file: &tokio_uring::fs::File,
    span: &Span,
    mut buf: Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    let end = buf.len() + span.len as usize;
    buf.reserve_exact(end - buf.len());
    let mut pos = span.offset;
    while buf.len() < end {
        let before = buf.len();
        // tokio-uring reads into the vector's spare capacity, up to its
        // capacity: cap it at the span's end.
        let (result, slice) = file
            .read_at(tokio_uring::buf::BoundedBuf::slice(buf, before..end), pos)
            .await;
        buf = slice.into_inner();
        let n = result?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the output file is shorter than its committed length",
            ));
        }
        pos += n as u64;
    }
    Ok(buf)
}
