//! `Logs`: a job's output served from any offset, live, as fast as the
//! stream's credit and the connection's budget allow (the engine's
//! `output::Serve` picks the mapping or io_uring reads).

use super::{error_info, Outcome};
use crate::job::output;
use crate::protocol::{self, ErrorCode, ErrorInfo, Event, Identity, LogsRequest};
use crate::server::authz;
use crate::server::outbox::Outbox;
use crate::server::stream::StreamState;

/// Largest `Output` chunk the server sends: four TLS records.
const CHUNK: u64 = 64 * 1024;
/// Bytes an `Output` frame takes besides its data, at most (length prefix,
/// tags and varints), for the outgoing budget.
const OUTPUT_HEAD: usize = 32;

pub(super) async fn apply(
    conn: &Outbox,
    stream: &StreamState,
    identity: &Identity,
    req: LogsRequest,
) -> Outcome {
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
