//! `jw-load soak --restart-every SECS`: the soak mix while jwd is killed
//! with SIGKILL and started again every SECS seconds. Operations cut off by
//! a restart are retried on a new connection (bounded); a start whose reply
//! was lost is counted as ambiguous, not as an error, and whatever job it
//! made is cleaned up at the end. Ticker jobs run for the whole soak, each
//! followed across every restart. Errors: a job that ends lost, a wrong
//! exit code or output, an operation still failing after the bound, a
//! ticker line missing or repeated, and leaked job cgroups or processes
//! (the final jwd against the first; its fds are reported beside the
//! first's, not compared).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jw::client::ConnectOptions;
use jw::protocol::{ErrorCode, JobState};
use serde_json::json;
use tokio::sync::Mutex;

use super::soak_worker::{worker, Counts};
use super::ticker::{follow_ticker, read_stdout, ticker_job};
use crate::cgroups::job_cgroups;
use crate::restart_jwd::{loaded_field, Jwd};
use crate::retry::Retrying;
use crate::server::{children, count_dir};

/// What soak with restarts does.
pub(crate) struct SoakRestarts {
    pub(crate) seconds: u64,
    pub(crate) connections: usize,
    pub(crate) every: Duration,
    pub(crate) tickers: usize,
    pub(crate) log: PathBuf,
}

/// Runs the scenario; the report, or an error carrying it.
pub(crate) async fn soak_restarts(
    opts: &ConnectOptions,
    plan: &SoakRestarts,
    cgroup_name: &str,
    server_pid: Option<u32>,
) -> Result<serde_json::Value, String> {
    let pid = server_pid.ok_or(
        "soak --restart-every needs --server-pid PID (jwd's pid): it kills that jwd and starts it again",
    )?;
    let jwd = Jwd::inspect(pid)?;
    let leaks = |pid: u32| {
        (
            count_dir(&format!("/proc/{pid}/fd")),
            children(pid),
            job_cgroups(pid, cgroup_name),
        )
    };
    let before = leaks(pid);
    let tag = format!(
        "jw-load-soak-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let mut errors: Vec<String> = Vec::new();
    let mut control = Retrying::new(opts);
    let mut tickers = Vec::new();
    for _ in 0..plan.tickers {
        let req = ticker_job(&tag);
        let id = control
            .call(|c| {
                let req = req.clone();
                async move { c.start(req).await }
            })
            .await
            .map_err(|e| format!("cannot start a ticker job: {e}"))?;
        tickers.push((id, tokio::spawn(follow_ticker(opts.clone(), id))));
    }
    let began = Instant::now();
    let deadline = began + Duration::from_secs(plan.seconds);
    let counts = Arc::new(Mutex::new(Counts::default()));
    let mut workers = Vec::new();
    for w in 0..plan.connections {
        let (opts, tag, counts) = (opts.clone(), tag.clone(), counts.clone());
        workers.push(tokio::spawn(async move {
            worker(opts, w, tag, deadline, counts).await
        }));
    }
    // The restarts, in this task, while the workers and followers go on.
    let mut jwd = jwd;
    let mut restarts = Vec::new();
    loop {
        let next = began + plan.every * (restarts.len() as u32 + 1);
        if next + Duration::from_secs(5) > deadline {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        match jwd.restart(opts, &plan.log).await {
            Ok(r) => {
                let ms = r.ready.as_secs_f64() * 1000.0;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let log = r.log();
                let (adopted, lost) = (loaded_field(&log, "adopted"), loaded_field(&log, "lost"));
                eprintln!(
                    "soak: restart {}: jwd {} killed, jwd {} ready in {ms:.0} ms after {} start(s) (logged adopted={adopted:?} lost={lost:?})",
                    restarts.len() + 1,
                    r.old_pid,
                    r.new_pid,
                    r.attempts,
                );
                restarts.push(json!({"old_pid": r.old_pid, "new_pid": r.new_pid, "restart_ms": ms, "starts": r.attempts, "logged_adopted": adopted, "logged_lost": lost}));
            }
            Err(e) => {
                // No jwd to go on with: the workers would only time out.
                return Err(format!(
                    "soak stopped: restart {} failed: {e}; the soak's jobs may still run under their keepers",
                    restarts.len() + 1
                ));
            }
        }
    }
    for w in workers {
        if let Err(e) = w.await {
            errors.push(format!("a worker failed: {e}"));
        }
    }
    // The tickers must still be running; stop them, which ends the follows.
    let mut ticker_report = Vec::new();
    let mut lost_jobs = 0u64;
    for (id, follower) in tickers {
        match control.call(|c| async move { c.status(id).await }).await {
            Ok(info) if info.state == JobState::Running => {}
            Ok(info) => {
                lost_jobs += u64::from(info.state == JobState::Lost);
                errors.push(format!(
                    "ticker {id} is {} at the end ({})",
                    info.state.as_str(),
                    info.error.unwrap_or_default()
                ));
            }
            Err(e) => errors.push(format!("status of ticker {id}: {e}")),
        }
        if let Err(e) = control.call(|c| async move { c.stop(id, 0).await }).await {
            errors.push(format!("stop ticker {id}: {e}"));
        }
        let seen = follower.await.map_err(|e| e.to_string())?;
        errors.extend(seen.errors.iter().cloned());
        match &seen.end {
            Some(info) if info.state == JobState::Lost => {
                lost_jobs += 1;
                errors.push(format!("ticker {id} ended lost"));
            }
            Some(_) => {}
            None => errors.push(format!("the follower of ticker {id} got no end")),
        }
        match read_stdout(&mut control, id).await {
            Ok(all) if all == seen.bytes => {}
            Ok(all) => errors.push(format!(
                "ticker {id}: the follower received {} bytes, jwd has {} (they differ)",
                seen.bytes.len(),
                all.len()
            )),
            Err(e) => errors.push(e),
        }
        ticker_report.push(
            json!({"lines": seen.lines, "resumes": seen.resumes, "reconnects": seen.reconnects}),
        );
        if let Err(e) = control.call(|c| async move { c.remove(id).await }).await {
            errors.push(format!("rm ticker {id}: {e}"));
        }
    }
    let leftovers = clean_up(&mut control, &tag, &mut errors).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = leaks(jwd.pid);
    let grew = |a: Option<usize>, b: Option<usize>| matches!((a, b), (Some(a), Some(b)) if b > a);
    let c = counts.lock().await;
    errors.extend(c.errors.iter().cloned());
    lost_jobs += c.lost_jobs;
    let show = |v: Option<usize>| v.map_or("?".to_string(), |n| n.to_string());
    eprintln!(
        "soak: {} s, {} restarts, {} operations, {} errors, {lost_jobs} lost jobs, {} ambiguous starts ({leftovers} made a job), {} reconnects; ticker lines {:?}; fds {} -> {}, child processes {} -> {}, job cgroup directories {} -> {}",
        plan.seconds,
        restarts.len(),
        c.operations,
        errors.len(),
        c.ambiguous_starts,
        c.reconnects + control.reconnects,
        ticker_report.iter().map(|t| t["lines"].as_u64().unwrap_or(0)).collect::<Vec<_>>(),
        show(before.0),
        show(after.0),
        show(before.1),
        show(after.1),
        show(before.2),
        show(after.2),
    );
    for e in errors.iter().take(10) {
        eprintln!("  error: {e}");
    }
    eprintln!(
        "soak: JWD PID NOW {} (left running; stop it with: kill -TERM {})",
        jwd.pid, jwd.pid
    );
    let report = json!({
        "scenario": "soak",
        "seconds": plan.seconds,
        "restart_every_seconds": plan.every.as_secs(),
        "restarts": restarts,
        "operations": c.operations,
        "errors": errors.len(),
        "lost_jobs": lost_jobs,
        "ambiguous_starts": c.ambiguous_starts,
        "ambiguous_jobs_cleaned_up": leftovers,
        "reconnects": c.reconnects + control.reconnects,
        "rounds_with_reconnects": c.retried,
        "tickers": ticker_report,
        "jwd_pid": jwd.pid,
        "server_fds_before": before.0,
        "server_fds_after": after.0,
        "server_children_before": before.1,
        "server_children_after": after.1,
        "job_cgroups_before": before.2,
        "job_cgroups_after": after.2,
    });
    // The fds are reported only: the final jwd is another process than the
    // first. Job cgroups and child processes must be back where they were.
    let leaked = grew(before.1, after.1) || grew(before.2, after.2);
    if !errors.is_empty() || lost_jobs > 0 || leaked {
        return Err(format!("soak failed: {report}"));
    }
    Ok(report)
}

/// Stops and removes the jobs of this soak still listed (made by starts
/// whose reply was lost); how many there were.
async fn clean_up(control: &mut Retrying, tag: &str, errors: &mut Vec<String>) -> u64 {
    let jobs = match control.call(|c| async move { c.list(false).await }).await {
        Ok(j) => j,
        Err(e) => {
            errors.push(format!("list: {e}"));
            return 0;
        }
    };
    let mut n = 0;
    for info in jobs.into_iter().filter(|j| j.args.iter().any(|a| a == tag)) {
        n += 1;
        let id = info.id;
        if info.state.is_active() {
            if let Err(e) = control.call(|c| async move { c.stop(id, 0).await }).await {
                errors.push(format!("stop leftover {id}: {e}"));
            }
        }
        match control.call(|c| async move { c.remove(id).await }).await {
            Ok(()) => {}
            Err(crate::retry::CallError::Answer {
                error,
                retried: true,
            }) if error.code() == Some(ErrorCode::NOT_FOUND) => {}
            Err(e) => errors.push(format!("rm leftover {id}: {e}")),
        }
    }
    n
}
