//! `jw prune`: removes the caller's ended jobs (all, or those that ended at
//! least `--older-than` ago) and their output; a job that runs is never
//! removed (jwd refuses it too). Asks first when stdin is a terminal,
//! unless -f.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jw::protocol::JobInfo;

use crate::args::Cli;
use crate::connect::connect;
use crate::failure::{Failure, CONNECTION};
use crate::server_text::size_text;

/// `jw prune [--older-than DURATION] [-f]`.
pub(crate) async fn prune(
    cli: &Cli,
    older_than: Option<Duration>,
    force: bool,
) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    let user = client.welcome().identity.user.clone();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let jobs: Vec<JobInfo> = client
        .list(false)
        .await?
        .into_iter()
        .filter(|j| j.owner == user && prunable(j, older_than, now_ms))
        .collect();
    if jobs.is_empty() {
        eprintln!("jw: no ended jobs to remove");
        return Ok(0);
    }
    if !force && !confirmed(jobs.len())? {
        eprintln!("jw: nothing removed");
        return Ok(0);
    }
    let (mut removed, mut freed, mut failed) = (0usize, 0u64, 0usize);
    for job in &jobs {
        match client.remove(job.id).await {
            Ok(()) => {
                removed += 1;
                freed += output_bytes(job);
                println!("{}", job.id);
            }
            Err(e) => {
                let failure = Failure::from(e);
                if failure.code == CONNECTION {
                    return Err(failure);
                }
                eprintln!("jw: cannot remove {}: {}", job.id, failure.message);
                failed += 1;
            }
        }
    }
    eprintln!(
        "jw: removed {removed} job{}, freed {} of output",
        if removed == 1 { "" } else { "s" },
        size_text(freed)
    );
    if failed > 0 {
        return Err(Failure::new(format!("{failed} could not be removed")));
    }
    Ok(0)
}

/// Whether `job` has ended, and (with `older_than`) ended at least that
/// long before `now_ms`.
fn prunable(job: &JobInfo, older_than: Option<Duration>, now_ms: u64) -> bool {
    if job.state.is_active() {
        return false;
    }
    match (older_than, job.ended_at_ms) {
        (None, _) => true,
        (Some(age), Some(ended)) => {
            now_ms.saturating_sub(ended) >= u64::try_from(age.as_millis()).unwrap_or(u64::MAX)
        }
        // Ended at an unknown time (lost): by its start.
        (Some(age), None) => {
            now_ms.saturating_sub(job.started_at_ms)
                >= u64::try_from(age.as_millis()).unwrap_or(u64::MAX)
        }
    }
}

/// The output a job keeps, freed when it is removed.
fn output_bytes(job: &JobInfo) -> u64 {
    job.output
        .stdout_bytes
        .saturating_add(job.output.stderr_bytes)
}

/// Asks on stderr, reads the answer from stdin; without a terminal there
/// is no one to ask: -f is needed.
fn confirmed(count: usize) -> Result<bool, Failure> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::usage(
            "jw prune asks before removing, and stdin is not a terminal: pass -f to remove \
             without asking",
        ));
    }
    eprint!("Remove {count} ended job(s) and their output? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::new(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jw::protocol::{JobId, JobState};

    fn job(state: JobState, ended_at_ms: Option<u64>) -> JobInfo {
        JobInfo {
            state,
            started_at_ms: 1_000,
            ended_at_ms,
            ..JobInfo::running(JobId([1; 16]), "alice", "true", vec![])
        }
    }

    #[test]
    fn only_ended_jobs_old_enough_are_pruned() {
        let hour = Duration::from_secs(3600);
        let now = 10 * 3_600_000;
        assert!(!prunable(&job(JobState::Running, None), None, now));
        assert!(!prunable(&job(JobState::Starting, None), None, now));
        assert!(prunable(&job(JobState::Exited, Some(now)), None, now));
        assert!(!prunable(
            &job(JobState::Exited, Some(now - 1000)),
            Some(hour),
            now
        ));
        assert!(prunable(
            &job(JobState::Failed, Some(now - 3_600_000)),
            Some(hour),
            now
        ));
        assert!(prunable(&job(JobState::Lost, None), Some(hour), now));
    }
}
