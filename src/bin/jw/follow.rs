//! Reading a job's output across lost connections (`jw logs`, `jw run`):
//! when the connection to jwd breaks, jw connects again (backoff from
//! 100 ms to 2 s, for at most `--reconnect-timeout` per outage) and asks
//! for each output from the first byte it has not written out, so the user
//! sees every byte once. Error replies from jwd are never retried.
//!
//! `jw logs --tail/--since/--timestamps` ask with protocol 3's `Read`: the
//! first request begins where asked, the next ones (after a lost
//! connection) from the offsets reached.

use std::time::{Duration, Instant};

use jw::client::{Client, ClientError};
use jw::protocol::{JobId, JobInfo, LogsRequest, ReadRequest, Request};
use tokio::sync::watch;

use crate::args::Cli;
use crate::connect::connect_options;
use crate::failure::Failure;
use crate::output::{copy_output, Dates, Interrupted, Offsets, INITIAL_CREDIT};

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(2);

/// What to read: the job, from which offsets, whether to wait for its end.
pub(crate) struct Follow {
    pub(crate) id: JobId,
    pub(crate) offsets: Offsets,
    pub(crate) follow: bool,
}

/// Where a `jw logs` read begins (protocol 3), and whether it is dated.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Seek {
    pub(crate) tail_lines: Option<u64>,
    pub(crate) since_us: Option<u64>,
    pub(crate) timestamps: bool,
}

impl Seek {
    /// Whether this needs `Read` (protocol 3) rather than `Logs`.
    pub(crate) fn needs_read(&self) -> bool {
        self.tail_lines.is_some() || self.since_us.is_some() || self.timestamps
    }
}

/// Reads the job's output to its `End` on the connection in `current`,
/// replacing it with a new one each time it is lost; returns the status
/// carried by `End`.
pub(crate) async fn follow(
    cli: &Cli,
    what: Follow,
    current: &watch::Sender<Client>,
) -> Result<JobInfo, Failure> {
    follow_from(cli, what, Seek::default(), current).await
}

/// `follow`, beginning where `seek` says.
pub(crate) async fn follow_from(
    cli: &Cli,
    what: Follow,
    mut seek: Seek,
    current: &watch::Sender<Client>,
) -> Result<JobInfo, Failure> {
    let Follow {
        id,
        mut offsets,
        follow,
    } = what;
    let mut dates = seek.timestamps.then(Dates::default);
    let mut placed = seek.tail_lines.is_some() || seek.since_us.is_some();
    let first = offsets;
    // When the current outage began: reset once a stream makes progress.
    let mut outage: Option<Instant> = None;
    loop {
        let client = current.borrow().clone();
        let request = LogsRequest {
            job: id,
            stdout: offsets.stdout,
            stderr: offsets.stderr,
            follow,
            credit: INITIAL_CREDIT,
        };
        let opened = if seek.needs_read() {
            client
                .open(Request::Read(ReadRequest {
                    logs: request,
                    tail_lines: seek.tail_lines,
                    since_us: seek.since_us,
                    timestamps: seek.timestamps,
                }))
                .await
        } else {
            client.logs(request).await
        };
        let result = match opened {
            Ok(stream) => copy_output(stream, &mut offsets, dates.as_mut()).await,
            Err(e) => Err(Interrupted::from_client(e, false)),
        };
        drop(client);
        let (error, progressed) = match result {
            Ok(info) => return Ok(info),
            Err(Interrupted::Failed(failure)) => return Err(failure),
            Err(Interrupted::Lost { error, progressed }) => (error, progressed),
        };
        let began = match outage {
            Some(began) if !progressed => began,
            _ => Instant::now(),
        };
        outage = Some(began);
        let hint = resume_hint(id, follow, offsets);
        let client = reconnect(cli, id, error, began, &hint).await?;
        if placed && offsets != first {
            // Something was written out: read on from there. A stream
            // that had nothing yet reads on from its length now (its place
            // at the tail or time is not known here).
            seek.tail_lines = None;
            seek.since_us = None;
            placed = false;
            if offsets.stdout == first.stdout || offsets.stderr == first.stderr {
                if let Ok(info) = client.status(id).await {
                    if offsets.stdout == first.stdout && first.stdout.is_some() {
                        offsets.stdout = Some(info.output.stdout_bytes);
                    }
                    if offsets.stderr == first.stderr && first.stderr.is_some() {
                        offsets.stderr = Some(info.output.stderr_bytes);
                    }
                }
            }
        }
        current.send_replace(client);
    }
}

/// A new connection, tried with backoff until `--reconnect-timeout` after
/// `began`; a failure that names the job and how to go on otherwise.
async fn reconnect(
    cli: &Cli,
    id: JobId,
    lost: ClientError,
    began: Instant,
    hint: &str,
) -> Result<Client, Failure> {
    let limit = cli.reconnect_timeout;
    if limit.is_zero() {
        return Err(Failure::connection(format!(
            "lost the connection to jwd ({lost}) and --reconnect-timeout is 0; {hint}"
        )));
    }
    eprintln!("jw: connection to jwd lost; reconnecting (job {id}) ...");
    let options = connect_options(cli)?;
    let deadline = began + limit;
    let mut delay = FIRST_DELAY;
    let mut last = lost;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::connection(format!(
                "lost the connection to jwd and could not reconnect within {limit:?} \
                 (last: {last}); {hint}"
            )));
        }
        tokio::time::sleep(jittered(delay).min(left)).await;
        delay = (delay * 2).min(MAX_DELAY);
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, Client::connect_within(&options, cli.connect_timeout))
            .await
        {
            Ok(Ok(client)) => {
                eprintln!("jw: reconnected to jwd; resuming job {id}");
                return Ok(client);
            }
            Ok(Err(e)) if e.is_connection_lost() => last = e,
            Ok(Err(e)) => {
                return Err(Failure::connection(format!(
                    "lost the connection to jwd and cannot reconnect: {e}; {hint}"
                )))
            }
            Err(_) => {}
        }
    }
}

/// Between half and all of `delay`, so that many clients cut off at once
/// do not all come back at the same instant.
fn jittered(delay: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let random = match rustix::rand::getrandom(&mut byte, rustix::rand::GetRandomFlags::empty()) {
        Ok(1) => byte[0],
        _ => 255,
    };
    delay / 2 + delay / 2 * u32::from(random) / 255
}

/// What the user can do once jw gives up: the job may still run, and the
/// command that reads on from where the terminal stopped.
fn resume_hint(id: JobId, follow: bool, offsets: Offsets) -> String {
    let f = if follow { " -f" } else { "" };
    let (command, note) = match (offsets.stdout, offsets.stderr) {
        (Some(out), None) => (
            format!("jw logs{f} --stdout --from {out} {id}"),
            String::new(),
        ),
        (None, Some(err)) => (
            format!("jw logs{f} --stderr --from {err} {id}"),
            String::new(),
        ),
        (Some(out), Some(err)) if out == err && out > 0 => {
            (format!("jw logs{f} --from {out} {id}"), String::new())
        }
        (Some(out), Some(err)) if out > 0 || err > 0 => (
            format!("jw logs{f} {id}"),
            format!(" (from byte 0; stdout was shown up to byte {out}, stderr up to byte {err})"),
        ),
        _ => (format!("jw logs{f} {id}"), String::new()),
    };
    format!("job {id} may still be running (see `jw status {id}`): read on with `{command}`{note}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_reads_on_from_the_offsets_shown() {
        let id: JobId = "6f1c2a9e-3b4d-4f0a-8c11-5e7d2093b401".parse().unwrap();
        let one = resume_hint(
            id,
            true,
            Offsets {
                stdout: None,
                stderr: Some(42),
            },
        );
        assert!(
            one.contains(&format!("`jw logs -f --stderr --from 42 {id}`")),
            "{one}"
        );
        let both = resume_hint(
            id,
            false,
            Offsets {
                stdout: Some(0),
                stderr: Some(0),
            },
        );
        assert!(both.contains(&format!("`jw logs {id}`")), "{both}");
    }

    #[test]
    fn jitter_stays_within_half_and_all_of_the_delay() {
        for _ in 0..100 {
            let d = jittered(MAX_DELAY);
            assert!(d >= MAX_DELAY / 2 && d <= MAX_DELAY, "{d:?}");
        }
    }
}
