//! `jw-load soak`: a mix of run/logs/status/stop/rm from several
//! connections for S seconds; fails on any error and on leaked fds,
//! processes or job cgroup directories of jwd.

use std::time::{Duration, Instant};

use jw::client::{Client, ConnectOptions};
use jw::protocol::Event;
use serde_json::json;

use crate::cgroups::job_cgroups;
use crate::jobs::{sleeper, true_job, whole_output};
use crate::server::{children, count_dir};

/// Runs the scenario; the report, or an error carrying it on any error or
/// leak.
pub(crate) async fn soak(
    opts: &ConnectOptions,
    seconds: u64,
    connections: usize,
    cgroup_name: &str,
    server_pid: Option<u32>,
) -> Result<serde_json::Value, String> {
    let fds = |pid: Option<u32>| pid.and_then(|p| count_dir(&format!("/proc/{p}/fd")));
    let kids = |pid: Option<u32>| pid.and_then(children);
    let cgroups = |pid: Option<u32>| pid.and_then(|p| job_cgroups(p, cgroup_name));
    let (fd0, kids0, cg0) = (fds(server_pid), kids(server_pid), cgroups(server_pid));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..connections.max(1) {
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            let mut ops = 0u64;
            let mut errors = Vec::new();
            let mut round = 0u64;
            while Instant::now() < deadline {
                round += 1;
                // A fresh connection now and then, as real clients come and go.
                let client = match Client::connect(&opts).await {
                    Ok(c) => c,
                    Err(e) => {
                        errors.push(format!("connect: {e}"));
                        continue;
                    }
                };
                for _ in 0..10 {
                    let result: Result<u64, String> = async {
                        let mut n = 0;
                        let mut req = true_job();
                        req.command = "sh".into();
                        req.args = vec![
                            "-c".into(),
                            format!("echo worker {worker} round {round}; echo err >&2"),
                        ];
                        let id = client.start(req).await.map_err(|e| format!("start: {e}"))?;
                        let info = client.wait(id).await.map_err(|e| format!("wait: {e}"))?;
                        if info.exit_code != Some(0) {
                            return Err(format!("job exited with {:?}", info.exit_code));
                        }
                        let mut s = client
                            .logs(whole_output(id))
                            .await
                            .map_err(|e| format!("logs: {e}"))?;
                        let mut bytes = 0;
                        while let Some(ev) = s.next().await.map_err(|e| format!("logs: {e}"))? {
                            match ev {
                                Event::Output(c) => bytes += c.data.len(),
                                Event::End(_) => break,
                                other => return Err(format!("logs: unexpected {other:?}")),
                            }
                        }
                        if bytes == 0 {
                            return Err("logs: no output".into());
                        }
                        client
                            .status(id)
                            .await
                            .map_err(|e| format!("status: {e}"))?;
                        client.remove(id).await.map_err(|e| format!("rm: {e}"))?;
                        let long = client
                            .start(sleeper())
                            .await
                            .map_err(|e| format!("start: {e}"))?;
                        client
                            .stop(long, 100)
                            .await
                            .map_err(|e| format!("stop: {e}"))?;
                        client.remove(long).await.map_err(|e| format!("rm: {e}"))?;
                        n += 9;
                        Ok(n)
                    }
                    .await;
                    match result {
                        Ok(n) => ops += n,
                        Err(e) => errors.push(e),
                    }
                }
            }
            (ops, errors)
        }));
    }
    let mut ops = 0;
    let mut errors = Vec::new();
    for t in tasks {
        let (n, e) = t.await.map_err(|e| e.to_string())?;
        ops += n;
        errors.extend(e);
    }
    // Give the server a moment to close the last connections.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fd1, kids1, cg1) = (fds(server_pid), kids(server_pid), cgroups(server_pid));
    let fd_leak = matches!((fd0, fd1), (Some(a), Some(b)) if b > a);
    let proc_leak = matches!((kids0, kids1), (Some(a), Some(b)) if b > a);
    let cgroup_leak = matches!((cg0, cg1), (Some(a), Some(b)) if b > a);
    let show = |v: Option<usize>| v.map_or("?".to_string(), |n| n.to_string());
    eprintln!(
        "soak: {seconds} s, {ops} operations, {} errors; server fds {} -> {}, child processes {} -> {}, job cgroup directories {} -> {}",
        errors.len(),
        show(fd0),
        show(fd1),
        show(kids0),
        show(kids1),
        show(cg0),
        show(cg1),
    );
    for e in errors.iter().take(10) {
        eprintln!("  error: {e}");
    }
    let report = json!({
        "scenario": "soak",
        "seconds": seconds,
        "operations": ops,
        "errors": errors.len(),
        "server_fds_before": fd0,
        "server_fds_after": fd1,
        "server_children_before": kids0,
        "server_children_after": kids1,
        "job_cgroups_before": cg0,
        "job_cgroups_after": cg1,
    });
    if !errors.is_empty() || fd_leak || proc_leak || cgroup_leak {
        return Err(format!("soak failed: {report}"));
    }
    Ok(report)
}
