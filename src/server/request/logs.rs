//! `Logs` and `Read`: a job's output served from any offset, from its last
//! lines or from a time (`Read`), dated when asked, live, as fast as the
//! stream's credit and the connection's budget allow (the engine's
//! `output::Serve` finds where to begin and picks the mapping or io_uring
//! reads).

use super::{error_info, Outcome};
use crate::job::output;
use crate::protocol::{self, ErrorCode, ErrorInfo, Event, Identity, LogsRequest, ReadRequest};
use crate::server::authz;
use crate::server::outbox::Outbox;
use crate::server::stream::StreamState;

/// Largest `Output` chunk the server sends: four TLS records.
const CHUNK: u64 = 64 * 1024;
/// Bytes an `Output` frame takes besides its data, at most (length prefix,
/// tags and varints), for the outgoing budget.
const OUTPUT_HEAD: usize = 32;

/// `Logs`: a `Read` from the request's offsets, undated.
pub(super) async fn apply(
    conn: &Outbox,
    stream: &StreamState,
    identity: &Identity,
    req: LogsRequest,
) -> Outcome {
    let read = ReadRequest {
        logs: req,
        tail_lines: None,
        since_us: None,
        timestamps: false,
    };
    apply_read(conn, stream, identity, read).await
}

/// Where the reader begins: the request's offsets, or the later of its
/// last lines and its time.
async fn place(serve: &mut output::Serve, read: &ReadRequest) -> std::io::Result<()> {
    if read.timestamps {
        serve.check_times().await?;
    }
    let tail = match read.tail_lines {
        Some(lines) => Some(serve.tail(lines).await?),
        None => None,
    };
    let since = match read.since_us {
        Some(t) => Some(serve.since(t).await?),
        None => None,
    };
    let begin = match (tail, since) {
        (Some(a), Some(b)) => Some(a.later(b)),
        (a, b) => a.or(b),
    };
    if let Some(begin) = begin {
        serve.begin(&begin);
    }
    if read.timestamps {
        serve.timestamps();
    }
    Ok(())
}

/// `Read` (and `Logs`).
pub(super) async fn apply_read(
    conn: &Outbox,
    stream: &StreamState,
    identity: &Identity,
    read: ReadRequest,
) -> Outcome {
    let req = read.logs;
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
    let placed = tokio::select! {
        placed = place(&mut serve, &read) => placed,
        _ = stream.cancelled() => return Outcome::Cancelled,
    };
    if let Err(e) = placed {
        if e.kind() == std::io::ErrorKind::Unsupported {
            return Outcome::Failed(ErrorInfo::new(
                ErrorCode::FAILED_PRECONDITION,
                e.to_string(),
            ));
        }
        return read_failed(e);
    }
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
        if let Some(time_us) = span.time_us {
            let dated = Event::OutputTime {
                stream: span.stream,
                offset: span.offset,
                time_us,
            };
            if !conn.emit_bounded(stream, dated).await {
                return Outcome::Cancelled;
            }
        }
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
