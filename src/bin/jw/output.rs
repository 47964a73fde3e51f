//! The copy of a logs stream to stdout/stderr (`jw logs`, `jw run`): each
//! byte of a job's output is written out once, however often it arrives,
//! in the order jwd sends it (stdout is flushed at each chunk, stderr is
//! not buffered: both on one pipe keep the job's capture order), each
//! line dated with `--timestamps`, and credit goes back to jwd as chunks
//! are written out.

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

/// `--timestamps`: each line written out begins with the time its run was
/// captured (RFC 3339, UTC, microseconds) and a space, as docker does.
#[derive(Debug, Default)]
pub(crate) struct Dates {
    /// Each stream's time from its last `OutputTime` on.
    time: [Option<u64>; 2],
    /// Each stream's next byte continues a line already dated.
    mid_line: [bool; 2],
}

impl Dates {
    /// `data` of `stream`, each line's beginning dated.
    fn stamp(&mut self, stream: OutputStream, data: &[u8]) -> Result<Vec<u8>, Failure> {
        let s = stream.index();
        let mut out = Vec::with_capacity(data.len() + 32);
        let mut rest = data;
        while !rest.is_empty() {
            if !self.mid_line[s] {
                let Some(time) = self.time[s] else {
                    return Err(Failure::new(
                        "jwd sent output without its time (the job's keeper predates \
                         times); read it without --timestamps",
                    ));
                };
                out.extend_from_slice(crate::rfc3339::format(time).as_bytes());
                out.push(b' ');
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    out.extend_from_slice(&rest[..=nl]);
                    self.mid_line[s] = false;
                    rest = &rest[nl + 1..];
                }
                None => {
                    out.extend_from_slice(rest);
                    self.mid_line[s] = true;
                    rest = &[];
                }
            }
        }
        Ok(out)
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
/// past every byte written, each line dated when `dates` is given; returns
/// the status carried by `End`.
pub(crate) async fn copy_output(
    mut stream: Stream,
    offsets: &mut Offsets,
    mut dates: Option<&mut Dates>,
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
                let stamped;
                let data = match dates.as_deref_mut() {
                    Some(dates) => {
                        stamped = dates
                            .stamp(chunk.stream, data)
                            .map_err(Interrupted::Failed)?;
                        &stamped[..]
                    }
                    None => data,
                };
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
            Some(Event::OutputTime {
                stream: which,
                time_us,
                ..
            }) => {
                if let Some(dates) = dates.as_deref_mut() {
                    dates.time[which.index()] = Some(time_us);
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
    fn each_line_is_dated_once_per_stream() {
        let mut dates = Dates::default();
        assert!(
            dates.stamp(OutputStream::Stdout, b"x\n").is_err(),
            "no time yet"
        );
        dates.time[0] = Some(1_000_000);
        dates.time[1] = Some(2_000_000);
        let stamp = |d: &mut Dates, s, b: &[u8]| d.stamp(s, b).ok().unwrap();
        let out = stamp(&mut dates, OutputStream::Stdout, b"a\nb");
        let t1 = "1970-01-01T00:00:01.000000Z";
        let t2 = "1970-01-01T00:00:02.000000Z";
        assert_eq!(String::from_utf8(out).unwrap(), format!("{t1} a\n{t1} b"));
        // The other stream's lines are its own.
        let out = stamp(&mut dates, OutputStream::Stderr, b"e\n");
        assert_eq!(String::from_utf8(out).unwrap(), format!("{t2} e\n"));
        // The rest of stdout's line is not dated again.
        let out = stamp(&mut dates, OutputStream::Stdout, b"c\nd\n");
        assert_eq!(String::from_utf8(out).unwrap(), format!("c\n{t1} d\n"));
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
