//! `jw-load restart`: N sleeping jobs, their keepers' memory, then jwd
//! killed with SIGKILL and started again with the same command: the time
//! until it accepts a client and until every job is running again
//! (re-adopted). Any job not running after the restart is lost: an error.
//! The new jwd is left running; its pid is in the report.

use std::path::Path;
use std::time::{Duration, Instant};

use jw::client::{Client, ConnectOptions};
use jw::protocol::{JobId, JobState};
use serde_json::json;

use crate::clients::{connect_all, share};
use crate::jobs::true_job;
use crate::keepers::keeper_memory;
use crate::restart_jwd::{loaded_field, Jwd};

/// How long jobs may take to be running (after start or restart).
const RUNNING_BOUND: Duration = Duration::from_secs(120);

/// Runs the scenario; the report, or an error carrying it if a job was lost
/// or did not end when stopped.
pub(crate) async fn restart(
    opts: &ConnectOptions,
    jobs: usize,
    concurrency: usize,
    server_pid: Option<u32>,
    log: &Path,
) -> Result<serde_json::Value, String> {
    let pid = server_pid.ok_or(
        "restart needs --server-pid PID (jwd's pid): it kills that jwd and starts it again",
    )?;
    let concurrency = concurrency.max(1);
    let mut jwd = Jwd::inspect(pid)?;
    let data_dir = jwd.data_dir();
    let clients = connect_all(opts, concurrency).await?;
    let began = Instant::now();
    let ids = start_sleepers(&clients, jobs).await?;
    let start_seconds = began.elapsed().as_secs_f64();
    let not_running = wait_running(&clients, &ids, Instant::now()).await;
    if !not_running.is_empty() {
        return Err(format!(
            "{} of {jobs} jobs were not running {RUNNING_BOUND:?} after they started (first: {})",
            not_running.len(),
            not_running[0]
        ));
    }
    eprintln!("restart: {jobs} jobs running ({start_seconds:.1} s to start)");
    let memory = keeper_memory(&data_dir, &ids);
    drop(clients);
    let restarted = jwd.restart(opts, log).await?;
    let restart_ms = restarted.ready.as_secs_f64() * 1000.0;
    let clients = connect_all(opts, concurrency).await?;
    let lost = wait_running(&clients, &ids, Instant::now()).await;
    let adopted_ms = restarted.spawned.elapsed().as_secs_f64() * 1000.0;
    let log_text = restarted.log();
    let logged_adopted = loaded_field(&log_text, "adopted");
    let logged_lost = loaded_field(&log_text, "lost");
    let not_ended = stop_all(&clients, &ids).await;
    let per_job_ms = adopted_ms / jobs.max(1) as f64;
    let new_pid = restarted.new_pid;
    eprintln!(
        "restart: jwd {} killed, new jwd {new_pid} ready in {restart_ms:.0} ms ({} start(s)); all {} jobs running after {adopted_ms:.0} ms ({per_job_ms:.2} ms per job); jwd logged adopted={} lost={}; {} lost, {} did not end when stopped",
        restarted.old_pid,
        restarted.attempts,
        jobs - lost.len(),
        show(logged_adopted),
        show(logged_lost),
        lost.len(),
        not_ended.len(),
    );
    for e in lost.iter().chain(&not_ended).take(10) {
        eprintln!("  error: {e}");
    }
    eprintln!("restart: NEW JWD PID {new_pid} (left running; stop it with: kill -TERM {new_pid})");
    let report = json!({
        "scenario": "restart",
        "jobs": jobs,
        "concurrency": concurrency,
        "start_seconds": start_seconds,
        "keeper_memory": memory,
        "old_jwd_pid": restarted.old_pid,
        "new_jwd_pid": new_pid,
        "restart_ms": restart_ms,
        "jwd_starts": restarted.attempts,
        "adopted_ms": adopted_ms,
        "adopted_ms_per_job": per_job_ms,
        "logged_adopted": logged_adopted,
        "logged_lost": logged_lost,
        "lost_jobs": lost.len(),
        "not_ended_after_stop": not_ended.len(),
    });
    if !lost.is_empty() || !not_ended.is_empty() {
        return Err(format!("restart failed: {report}"));
    }
    Ok(report)
}

fn show(v: Option<u64>) -> String {
    v.map_or("?".into(), |n| n.to_string())
}

/// `jobs` jobs that print a line and sleep, started over `clients`.
async fn start_sleepers(clients: &[Client], jobs: usize) -> Result<Vec<JobId>, String> {
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let client = client.clone();
        let n = share(jobs, clients.len(), i);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                let mut req = true_job();
                req.command = "sh".into();
                req.args = vec!["-c".into(), "echo ready; exec sleep 100000".into()];
                let id = client.start(req).await.map_err(|e| format!("start: {e}"))?;
                ids.push(id);
            }
            Ok::<_, String>(ids)
        }));
    }
    let mut ids = Vec::with_capacity(jobs);
    for t in tasks {
        ids.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok(ids)
}

/// Asks for each job's status until all are running; the jobs that ended
/// instead (or did not answer, or were not running by `since` +
/// `RUNNING_BOUND`), described.
async fn wait_running(clients: &[Client], ids: &[JobId], since: Instant) -> Vec<String> {
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let client = client.clone();
        let mine = dealt(ids, i, clients.len());
        tasks.push(tokio::spawn(async move {
            let mut bad = Vec::new();
            let mut pending = mine;
            while !pending.is_empty() {
                let mut next = Vec::new();
                for id in pending {
                    match client.status(id).await {
                        Ok(info) if info.state == JobState::Running => {}
                        Ok(info) if info.state.is_active() => next.push(id),
                        Ok(info) => bad.push(format!(
                            "job {id} is {} ({})",
                            info.state.as_str(),
                            info.error.unwrap_or_default()
                        )),
                        Err(e) => bad.push(format!("status of job {id}: {e}")),
                    }
                }
                if !next.is_empty() && since.elapsed() > RUNNING_BOUND {
                    bad.extend(
                        next.iter()
                            .map(|id| format!("job {id} still starting after {RUNNING_BOUND:?}")),
                    );
                    next.clear();
                }
                pending = next;
                if !pending.is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            bad
        }));
    }
    joined(tasks, "status").await
}

/// The ids connection `i` of `n` handles (every `n`th, from the `i`th).
fn dealt(ids: &[JobId], i: usize, n: usize) -> Vec<JobId> {
    ids.iter().skip(i).step_by(n).copied().collect()
}

/// Stops every job (no grace), checks it ended, removes it; the jobs that
/// could not be stopped or did not end, described.
async fn stop_all(clients: &[Client], ids: &[JobId]) -> Vec<String> {
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let client = client.clone();
        let mine = dealt(ids, i, clients.len());
        tasks.push(tokio::spawn(async move {
            let mut bad = Vec::new();
            for id in mine {
                let ended = async {
                    client
                        .stop(id, 0)
                        .await
                        .map_err(|e| format!("stop {id}: {e}"))?;
                    let info = client
                        .wait(id)
                        .await
                        .map_err(|e| format!("wait {id}: {e}"))?;
                    if info.state.is_active() {
                        return Err(format!("job {id} still {} after stop", info.state.as_str()));
                    }
                    client.remove(id).await.map_err(|e| format!("rm {id}: {e}"))
                }
                .await;
                if let Err(e) = ended {
                    bad.push(e);
                }
            }
            bad
        }));
    }
    joined(tasks, "stop").await
}

/// What the tasks found wrong, together, and any task that failed.
async fn joined(tasks: Vec<tokio::task::JoinHandle<Vec<String>>>, what: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for t in tasks {
        match t.await {
            Ok(b) => bad.extend(b),
            Err(e) => bad.push(format!("a {what} task failed: {e}")),
        }
    }
    bad
}
