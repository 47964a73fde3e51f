//! The copy of a logs stream to stdout/stderr (`jw logs`, `jw run`): each
//! byte of a job's output is written out once, however often it arrives,
//! and credit goes back to jwd as chunks are written out.

use std::io::Write;

use jw::client::{ClientError, Stream};
use jw::protocol::{Event, JobInfo, OutputChunk, OutputStream};

use crate::failure::Failure;

/// Credit the CLI grants at first, and returns as it writes chunks out.
pub(crate) const INITIAL_CREDIT: u32 = 4 << 20;
const REGRANT_AT: u32 = 1 << 20;

/// Per output, the offset of the first byte not yet written out; `None`
/// for an output that is not read. A new `Logs` from these offsets resumes
/// exactly where the user's terminal stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offsets {
    pub(crate) stdout: Option<u64>,
    pub(crate) stderr: Option<u64>,
}

impl Offsets {
    fn next_mut(&mut self, stream: OutputStream) -> &mut Option<u64> {
        match stream {
            OutputStream::Stdout => &mut self.stdout,
            OutputStream::Stderr => &mut self.stderr,
        }
    }

    /// The part of `chunk` not written out yet (empty for a chunk wholly
    /// written before, or of an output that is not read), and records it
    /// as written.
    fn take_unseen<'c>(&mut self, chunk: &'c OutputChunk) -> &'c [u8] {
        let Some(next) = self.next_mut(chunk.stream) else {
            return &[];
        };
        let end = chunk.offset.saturating_add(chunk.data.len() as u64);
        let skip = next
            .saturating_sub(chunk.offset)
            .min(chunk.data.len() as u64) as usize;
        *next = (*next).max(end);
        &chunk.data[skip..]
    }
}

/// Why a copy stopped before the job's `End`.
pub(crate) enum Interrupted {
    /// The connection to jwd broke; `progressed` if an event came on this
    /// stream first.
    Lost {
        error: ClientError,
        progressed: bool,
    },
    /// Anything else: an error reply, output that cannot be written.
    Failed(Failure),
}

impl Interrupted {
    pub(crate) fn from_client(error: ClientError, progressed: bool) -> Interrupted {
        if error.is_connection_lost() {
            Interrupted::Lost { error, progressed }
        } else {
            Interrupted::Failed(error.into())
        }
    }
}

/// Writes a logs stream to stdout/stderr until its end, advancing `offsets`
/// past every byte written; returns the status carried by `End`.
pub(crate) async fn copy_output(
    mut stream: Stream,
    offsets: &mut Offsets,
) -> Result<JobInfo, Interrupted> {
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    let mut owed: u32 = 0;
    let mut progressed = false;
    loop {
        let event = stream
            .next()
            .await
            .map_err(|e| Interrupted::from_client(e, progressed))?;
        progressed = true;
        match event {
            Some(Event::Output(chunk)) => {
                // What is written before an error stays counted as written:
                // write_all fails only on a broken stdout, which ends jw.
                let data = offsets.take_unseen(&chunk);
                let result = match chunk.stream {
                    OutputStream::Stdout => stdout.write_all(data).and_then(|()| stdout.flush()),
                    OutputStream::Stderr => stderr.write_all(data),
                };
                if let Err(e) = result {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        // `jw ... | head`: the reader has what it wanted
                        // and went away; jw ends as SIGPIPE would end it.
                        let _ = stream.cancel().await;
                        return Err(Interrupted::Failed(Failure::output_closed()));
                    }
                    return Err(Interrupted::Failed(Failure::new(format!(
                        "cannot write output: {e}"
                    ))));
                }
                owed += chunk.data.len() as u32;
                if owed >= REGRANT_AT {
                    stream
                        .grant(owed)
                        .await
                        .map_err(|e| Interrupted::from_client(e, progressed))?;
                    owed = 0;
                }
            }
            Some(Event::End(info)) => return Ok(info),
            Some(other) => {
                return Err(Interrupted::Failed(Failure::new(format!(
                    "unexpected reply from the server: {other:?}"
                ))))
            }
            None => {
                return Err(Interrupted::Failed(Failure::new(
                    "the server ended the stream without the job's status",
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(stream: OutputStream, offset: u64, data: &[u8]) -> OutputChunk {
        OutputChunk {
            stream,
            offset,
            data: data.to_vec(),
        }
    }

    #[test]
    fn each_byte_is_taken_once() {
        let mut at = Offsets {
            stdout: Some(0),
            stderr: Some(3),
        };
        let out = OutputStream::Stdout;
        assert_eq!(at.take_unseen(&chunk(out, 0, b"abcd")), b"abcd");
        // Resent from an earlier offset: only the new tail.
        assert_eq!(at.take_unseen(&chunk(out, 2, b"cdef")), b"ef");
        // Wholly written before.
        assert_eq!(at.take_unseen(&chunk(out, 1, b"bcd")), b"");
        assert_eq!(at.stdout, Some(6));
        // The other output keeps its own offset.
        let err = OutputStream::Stderr;
        assert_eq!(at.take_unseen(&chunk(err, 0, b"xyzw")), b"w");
        assert_eq!(at.stderr, Some(4));
        assert_eq!(at.stdout, Some(6));
    }

    #[test]
    fn an_output_not_read_is_not_written() {
        let mut at = Offsets {
            stdout: None,
            stderr: Some(0),
        };
        assert_eq!(at.take_unseen(&chunk(OutputStream::Stdout, 0, b"abc")), b"");
        assert_eq!(at.stdout, None);
    }
}
