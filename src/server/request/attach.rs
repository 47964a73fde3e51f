//! `Attach`: the stream becomes the writer of a job's input (the engine's
//! `Attachment`, one at a time, the owner only). The client's `Input`
//! waits in the stream (`stream.rs`) within the credit given here, is
//! written into the job as it takes it, and the credit goes back as
//! `InputCredit`; `Resize` reaches the job's terminal; `InputEnd` closes
//! the input and ends the stream with `Detached`. A cancel (or a lost
//! connection) detaches and leaves the input open.

use super::{error_info, Outcome};
use crate::job::{Attachment, JobError};
use crate::protocol::{Attached, ErrorCode, ErrorInfo, Event, Identity, JobId, WindowSize};
use crate::server::authz;
use crate::server::outbox::Outbox;
use crate::server::stream::StreamState;

/// The input a client may send ahead of what the job has taken, in bytes:
/// what one attached stream can hold in jwd's memory.
pub(crate) const INPUT_WINDOW: u32 = 256 * 1024;
/// Input taken off the stream's queue for one write into the job.
const WRITE_MAX: usize = 64 * 1024;

pub(super) async fn apply(
    conn: &Outbox,
    stream: &StreamState,
    identity: &Identity,
    id: JobId,
) -> Outcome {
    let manager = &conn.shared.manager;
    let owner = Some(authz::input_scope(identity));
    let (job, attachment) = match manager
        .get(id, owner)
        .and_then(|job| Ok((job, manager.attach(id, owner)?)))
    {
        Ok(attached) => attached,
        Err(e) => return Outcome::Failed(error_info(&e)),
    };
    let Some(input) = stream.input() else {
        return Outcome::Failed(ErrorInfo::new(
            ErrorCode::INTERNAL,
            "the attach stream has no input",
        ));
    };
    input.open(attachment.offset(), u64::from(INPUT_WINDOW));
    conn.emit(
        stream,
        Event::Attached(Attached {
            terminal: attachment.terminal(),
            input_offset: attachment.offset(),
            credit: INPUT_WINDOW,
            writer: attachment.writer(),
            previous_writer: attachment.previous_writer(),
        }),
    );
    // Taken by the job, not yet given back to the client.
    let mut taken: u64 = 0;
    'input: loop {
        resize(&attachment, input.take_resize());
        if let Some(data) = input.pop(WRITE_MAX) {
            let mut at = 0;
            while at < data.len() {
                // `write` returns right after the bytes went in, so it can
                // be dropped while it waits for room; a resize meanwhile
                // is applied at once (a job that does not read its input
                // still sees its terminal change).
                tokio::select! {
                    w = attachment.write(&data[at..]) => match w {
                        Ok(n) => at += n,
                        // Nobody reads the input any more (the job ended
                        // or closed it): the end, as when the job ends.
                        Err(JobError::InputClosed(_)) => break 'input,
                        Err(e) => return Outcome::Failed(error_info(&e)),
                    },
                    _ = input.arrived() => resize(&attachment, input.take_resize()),
                    _ = stream.cancelled() => return Outcome::Cancelled,
                    _ = job.wait() => break 'input,
                }
            }
            taken += data.len() as u64;
            // Given back in batches: a client sending bytes one by one
            // does not get an event per byte.
            if taken < u64::from(INPUT_WINDOW / 2) {
                continue;
            }
        }
        if taken > 0 {
            input.give_credit(taken);
            let bytes = u32::try_from(taken).unwrap_or(u32::MAX);
            taken = 0;
            if !conn
                .emit_bounded(stream, Event::InputCredit { bytes })
                .await
            {
                return Outcome::Cancelled;
            }
            continue;
        }
        if input.is_done() {
            // A terminal's end of input waits for room like any byte: a
            // job that reads nothing holds it until the client goes or
            // the job ends.
            let offset = attachment.offset();
            let closed = tokio::select! {
                c = attachment.close() => c,
                _ = stream.cancelled() => return Outcome::Cancelled,
                // The job ended: its input with it.
                _ = job.wait() => Ok(offset),
            };
            return match closed {
                Ok(input_offset) => {
                    conn.emit(stream, Event::Detached { input_offset });
                    Outcome::Ok(None)
                }
                Err(e) => Outcome::Failed(error_info(&e)),
            };
        }
        tokio::select! {
            _ = input.arrived() => {}
            _ = stream.cancelled() => return Outcome::Cancelled,
            _ = job.wait() => break,
        }
    }
    // The job ended, or no longer reads its input: it is gone.
    conn.emit(
        stream,
        Event::Detached {
            input_offset: attachment.offset(),
        },
    );
    Outcome::Ok(None)
}

/// Applies a terminal size the client sent, if it sent one.
fn resize(attachment: &Attachment, size: Option<WindowSize>) {
    if let Some(size) = size {
        if let Err(e) = attachment.resize(size) {
            tracing::debug!(error = %e, "cannot resize the job's terminal");
        }
    }
}
