//! The ticker jobs of soak with restarts: a job that prints `tick N` every
//! 100 ms for the whole soak, and a follower that reads its stdout across
//! every jwd restart, resuming from the first byte it has not received, and
//! checks each line comes once and in order.

use std::time::Duration;

use jw::client::{ClientError, ConnectOptions};
use jw::protocol::{Event, JobId, JobInfo, LogsRequest, OutputStream};

use crate::jobs::true_job;
use crate::retry::Retrying;

const SCRIPT: &str = "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done";

/// The ticker's start request, tagged with `tag` (its `$0`).
pub(crate) fn ticker_job(tag: &str) -> jw::protocol::StartRequest {
    let mut req = true_job();
    req.command = "sh".into();
    req.args = vec!["-c".into(), SCRIPT.into(), tag.into()];
    req
}

/// What a follower saw.
pub(crate) struct Followed {
    /// Every stdout byte received, each once.
    pub(crate) bytes: Vec<u8>,
    pub(crate) lines: u64,
    /// Lines out of order, repeated or missing, and stream failures.
    pub(crate) errors: Vec<String>,
    pub(crate) reconnects: u64,
    /// Logs requests sent again after a lost connection.
    pub(crate) resumes: u64,
    /// The status the stream ended with.
    pub(crate) end: Option<JobInfo>,
}

/// Follows `job`'s stdout to its end, resuming after lost connections.
pub(crate) async fn follow_ticker(opts: ConnectOptions, job: JobId) -> Followed {
    let mut conn = Retrying::new(&opts);
    let mut seen = Followed {
        bytes: Vec::new(),
        lines: 0,
        errors: Vec::new(),
        reconnects: 0,
        resumes: 0,
        end: None,
    };
    let mut partial = Vec::new();
    loop {
        let offset = seen.bytes.len() as u64;
        let req = LogsRequest {
            job,
            stdout: Some(offset),
            stderr: None,
            follow: true,
            credit: 65536,
        };
        let mut stream = match conn.call(|c| async move { c.logs(req).await }).await {
            Ok(s) => s,
            Err(e) => {
                seen.errors.push(format!("follow {job}: {e}"));
                break;
            }
        };
        let lost = loop {
            match stream.next().await {
                Ok(Some(Event::Output(chunk))) if chunk.stream == OutputStream::Stdout => {
                    let have = seen.bytes.len() as u64;
                    if chunk.offset > have {
                        seen.errors.push(format!(
                            "follow {job}: a chunk at byte {} but only {have} received (a gap)",
                            chunk.offset
                        ));
                        break false;
                    }
                    let skip = (have - chunk.offset).min(chunk.data.len() as u64) as usize;
                    let new = &chunk.data[skip..];
                    seen.bytes.extend_from_slice(new);
                    partial.extend_from_slice(new);
                    check_lines(&mut partial, &mut seen.lines, &mut seen.errors);
                }
                Ok(Some(Event::End(info))) => {
                    seen.end = Some(info);
                    break false;
                }
                Ok(Some(other)) => {
                    seen.errors
                        .push(format!("follow {job}: unexpected {other:?}"));
                    break false;
                }
                Ok(None) => break false,
                Err(e) if e.is_connection_lost() => break true,
                Err(e) => {
                    seen.errors.push(format!("follow {job}: {e}"));
                    break false;
                }
            }
        };
        drop(stream);
        if !lost {
            break;
        }
        seen.resumes += 1;
        conn.lost();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen.reconnects = conn.reconnects;
    seen
}

/// Takes the complete lines out of `partial`, each of which must be
/// `tick <lines>`.
fn check_lines(partial: &mut Vec<u8>, lines: &mut u64, errors: &mut Vec<String>) {
    while let Some(nl) = partial.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = partial.drain(..=nl).collect();
        let want = format!("tick {lines}\n");
        if line != want.as_bytes() && errors.len() < 20 {
            errors.push(format!(
                "ticker line {lines}: got {:?}, want {want:?}",
                String::from_utf8_lossy(&line)
            ));
        }
        *lines += 1;
    }
}

/// The job's whole stdout read afresh (not following), for comparison.
pub(crate) async fn read_stdout(conn: &mut Retrying, job: JobId) -> Result<Vec<u8>, String> {
    conn.call(|c| async move {
        let mut s = c
            .logs(LogsRequest {
                job,
                stdout: Some(0),
                stderr: None,
                follow: false,
                credit: 1 << 20,
            })
            .await?;
        let mut out = Vec::new();
        while let Some(ev) = s.next().await? {
            match ev {
                Event::Output(c) => out.extend_from_slice(&c.data),
                Event::End(_) => break,
                other => return Err(ClientError::Unexpected(format!("{other:?}"))),
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| format!("logs {job}: {e}"))
}
