//! One worker of soak with restarts: the soak mix (a short job started,
//! waited for, its output read and checked, its status asked, removed; a
//! sleeper started, stopped, removed) on a connection that comes back
//! after a jwd restart. Every job is tagged (its `$0`) so jobs made by
//! starts whose reply was lost can be found and cleaned up.

use std::sync::Arc;
use std::time::Instant;

use jw::client::ClientError;
use jw::protocol::{ErrorCode, Event, JobId, JobInfo, JobState, OutputStream};
use tokio::sync::Mutex;

use crate::jobs::{true_job, whole_output};
use crate::retry::{CallError, Retrying};

/// What the workers did, summed.
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) operations: u64,
    pub(crate) errors: Vec<String>,
    pub(crate) lost_jobs: u64,
    pub(crate) ambiguous_starts: u64,
    pub(crate) reconnects: u64,
    /// Operations that succeeded after a lost connection.
    pub(crate) retried: u64,
}

/// What one round ended with, beside its operations.
enum Failure {
    Error(String),
    Lost(String),
    Ambiguous,
}

struct Round {
    ops: u64,
    retried: u64,
}

impl Round {
    /// Counts an operation's success.
    fn ok<T>(&mut self, r: Result<T, CallError>, what: &str) -> Result<T, Failure> {
        match r {
            Ok(v) => {
                self.ops += 1;
                Ok(v)
            }
            Err(e) => Err(Failure::Error(format!("{what}: {e}"))),
        }
    }
}

/// Runs rounds until `deadline`; adds its counts to `counts`.
pub(crate) async fn worker(
    opts: jw::client::ConnectOptions,
    w: usize,
    tag: String,
    deadline: Instant,
    counts: Arc<Mutex<Counts>>,
) {
    let mut conn = Retrying::new(&opts);
    let mut mine = Counts::default();
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        // A fresh connection now and then, as real clients come and go.
        if round % 10 == 0 {
            conn.hang_up();
        }
        let mut r = Round { ops: 0, retried: 0 };
        let result = one_round(&mut conn, &mut r, w, round, &tag).await;
        mine.operations += r.ops;
        mine.retried += r.retried;
        match result {
            Ok(()) => {}
            Err(Failure::Error(e)) => mine.errors.push(e),
            Err(Failure::Lost(e)) => {
                mine.lost_jobs += 1;
                mine.errors.push(e);
            }
            Err(Failure::Ambiguous) => mine.ambiguous_starts += 1,
        }
    }
    mine.reconnects = conn.reconnects;
    let mut c = counts.lock().await;
    c.operations += mine.operations;
    c.errors.extend(mine.errors);
    c.lost_jobs += mine.lost_jobs;
    c.ambiguous_starts += mine.ambiguous_starts;
    c.reconnects += mine.reconnects;
    c.retried += mine.retried;
}

fn tagged(script: String, tag: &str) -> jw::protocol::StartRequest {
    let mut req = true_job();
    req.command = "sh".into();
    req.args = vec!["-c".into(), script, tag.into()];
    req
}

/// A start sent once: a lost reply makes the round ambiguous.
async fn start(
    conn: &mut Retrying,
    r: &mut Round,
    req: jw::protocol::StartRequest,
) -> Result<JobId, Failure> {
    match conn.once(|c| async move { c.start(req).await }).await {
        Ok(Some(id)) => {
            r.ops += 1;
            Ok(id)
        }
        Ok(None) => Err(Failure::Ambiguous),
        Err(e) => Err(Failure::Error(format!("start: {e}"))),
    }
}

/// A job that must not have been lost.
fn not_lost(info: &JobInfo, what: &str) -> Result<(), Failure> {
    if info.state == JobState::Lost {
        return Err(Failure::Lost(format!(
            "{what}: job {} was lost ({})",
            info.id,
            info.error.clone().unwrap_or_default()
        )));
    }
    Ok(())
}

/// Removes `id`; `not_found` after a lost connection means it was removed.
async fn remove(conn: &mut Retrying, r: &mut Round, id: JobId) -> Result<(), Failure> {
    match conn.call(|c| async move { c.remove(id).await }).await {
        Err(CallError::Answer {
            error,
            retried: true,
        }) if error.code() == Some(ErrorCode::NOT_FOUND) => {
            r.ops += 1;
            Ok(())
        }
        other => r.ok(other, "rm"),
    }
}

async fn one_round(
    conn: &mut Retrying,
    r: &mut Round,
    w: usize,
    round: u64,
    tag: &str,
) -> Result<(), Failure> {
    let before = conn.reconnects;
    let want_out = format!("worker {w} round {round}\n");
    let script = format!("echo worker {w} round {round}; echo err >&2");
    let id = start(conn, r, tagged(script, tag)).await?;
    let info = r.ok(conn.call(|c| async move { c.wait(id).await }).await, "wait")?;
    not_lost(&info, "wait")?;
    if info.exit_code != Some(0) {
        return Err(Failure::Error(format!(
            "job {id} exited with {:?} (signal {:?}), want 0",
            info.exit_code, info.signal
        )));
    }
    let (out, err) = r.ok(conn.call(|c| read_all(c, id)).await, "logs")?;
    if out != want_out.as_bytes() || err != b"err\n" {
        return Err(Failure::Error(format!(
            "job {id}: stdout {:?} stderr {:?}, want {want_out:?} and \"err\\n\"",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        )));
    }
    let info = r.ok(
        conn.call(|c| async move { c.status(id).await }).await,
        "status",
    )?;
    not_lost(&info, "status")?;
    remove(conn, r, id).await?;
    let long = start(conn, r, tagged("exec sleep 3600".into(), tag)).await?;
    let info = r.ok(
        conn.call(|c| async move { c.stop(long, 100).await }).await,
        "stop",
    )?;
    not_lost(&info, "stop")?;
    remove(conn, r, long).await?;
    if conn.reconnects > before {
        r.retried += 1;
    }
    Ok(())
}

/// The job's whole stdout and stderr (not following).
async fn read_all(c: jw::client::Client, id: JobId) -> Result<(Vec<u8>, Vec<u8>), ClientError> {
    let mut s = c.logs(whole_output(id)).await?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some(ev) = s.next().await? {
        match ev {
            Event::Output(chunk) => match chunk.stream {
                OutputStream::Stdout => out.extend_from_slice(&chunk.data),
                OutputStream::Stderr => err.extend_from_slice(&chunk.data),
            },
            Event::End(_) => break,
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
    Ok((out, err))
}
