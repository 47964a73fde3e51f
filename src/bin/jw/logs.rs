//! `jw logs`, and the copy of a logs stream to stdout/stderr that `jw run`
//! uses too, returning credit to jwd as chunks are written out.

use std::io::Write;

use jw::client::Stream;
use jw::protocol::{Event, JobId, JobInfo, LogsRequest, OutputStream};

use crate::args::Cli;
use crate::connect::connect;
use crate::failure::Failure;

/// Credit the CLI grants at first, and returns as it writes chunks out.
pub(crate) const INITIAL_CREDIT: u32 = 4 << 20;
const REGRANT_AT: u32 = 1 << 20;

/// `jw logs`: the selected streams from `from`, followed to the job's end
/// with `follow`.
pub(crate) async fn logs(
    cli: &Cli,
    follow: bool,
    stdout: bool,
    stderr: bool,
    from: u64,
    id: JobId,
) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    let (out, err) = match (stdout, stderr) {
        (true, _) => (Some(from), None),
        (_, true) => (None, Some(from)),
        _ => (Some(from), Some(from)),
    };
    let stream = client
        .logs(LogsRequest {
            job: id,
            stdout: out,
            stderr: err,
            follow,
            credit: INITIAL_CREDIT,
        })
        .await?;
    copy_output(stream).await?;
    Ok(0)
}

/// Writes a logs stream to stdout/stderr until its end; returns the status
/// carried by `End`.
pub(crate) async fn copy_output(mut stream: Stream) -> Result<JobInfo, Failure> {
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    let mut owed: u32 = 0;
    loop {
        match stream.next().await? {
            Some(Event::Output(chunk)) => {
                let result = match chunk.stream {
                    OutputStream::Stdout => {
                        stdout.write_all(&chunk.data).and_then(|()| stdout.flush())
                    }
                    OutputStream::Stderr => stderr.write_all(&chunk.data),
                };
                if let Err(e) = result {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        // `jw logs ID | head`: the reader has what it wanted.
                        let _ = stream.cancel().await;
                        std::process::exit(0);
                    }
                    return Err(Failure(format!("cannot write output: {e}")));
                }
                owed += chunk.data.len() as u32;
                if owed >= REGRANT_AT {
                    stream.grant(owed).await?;
                    owed = 0;
                }
            }
            Some(Event::End(info)) => return Ok(info),
            Some(other) => {
                return Err(Failure(format!(
                    "unexpected reply from the server: {other:?}"
                )))
            }
            None => {
                return Err(Failure(
                    "the server ended the stream without the job's status".into(),
                ))
            }
        }
    }
}
