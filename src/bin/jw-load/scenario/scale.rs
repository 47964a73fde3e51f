//! `jw-load scale`: K sleeping jobs and L idle followers; jwd's memory per
//! job and per follower, and the time to start them all.

use std::time::{Duration, Instant};

use jw::client::ConnectOptions;
use jw::protocol::LogsRequest;
use serde_json::json;

use crate::clients::{connect_all, share};
use crate::jobs::sleeper;
use crate::server::process_usage;

/// Runs the scenario and stops and removes its jobs; the report.
pub(crate) async fn scale(
    opts: &ConnectOptions,
    jobs: usize,
    followers: usize,
    connections: usize,
    server_pid: Option<u32>,
) -> Result<serde_json::Value, String> {
    let connections = connections.max(1).max(followers.div_ceil(1000));
    let clients = connect_all(opts, connections).await?;
    let rss = |pid: Option<u32>| pid.and_then(process_usage).map(|(_, r)| r);
    let rss0 = rss(server_pid);
    let began = Instant::now();
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let client = client.clone();
        let n = share(jobs, connections, i);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..n {
                ids.push(client.start(sleeper()).await.map_err(|e| e.to_string())?);
            }
            Ok::<_, String>(ids)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.map_err(|e| e.to_string())??);
    }
    let start_all = began.elapsed().as_secs_f64();
    let rss_jobs = rss(server_pid);
    let mut streams = Vec::new();
    for f in 0..followers {
        let client = &clients[f % connections];
        let job = ids[f % ids.len().max(1)];
        streams.push(
            client
                .logs(LogsRequest {
                    job,
                    stdout: Some(0),
                    stderr: Some(0),
                    follow: true,
                    credit: 65536,
                })
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    // Let the server register every stream before measuring.
    clients[0].list(false).await.map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_followers = rss(server_pid);
    drop(streams);
    for batch in ids.chunks(64) {
        let handles: Vec<_> = batch
            .iter()
            .map(|id| {
                let c = clients[0].clone();
                let id = *id;
                tokio::spawn(async move {
                    let _ = c.stop(id, 0).await;
                    let _ = c.remove(id).await;
                })
            })
            .collect();
        for h in handles {
            let _ = h.await;
        }
    }
    let per = |a: Option<u64>, b: Option<u64>, n: usize| match (a, b) {
        (Some(a), Some(b)) if n > 0 => Some(b.saturating_sub(a) as f64 / n as f64),
        _ => None,
    };
    let per_job = per(rss0, rss_jobs, jobs);
    let per_follower = per(rss_jobs, rss_followers, followers);
    eprintln!(
        "scale: {jobs} jobs started in {start_all:.1} s; {followers} followers; RssAnon per job {} B, per follower {} B",
        per_job.map(|v| format!("{v:.0}")).unwrap_or("?".into()),
        per_follower.map(|v| format!("{v:.0}")).unwrap_or("?".into()),
    );
    Ok(json!({
        "scenario": "scale",
        "jobs": jobs,
        "followers": followers,
        "connections": connections,
        "start_all_seconds": start_all,
        "rss_anon_per_job_bytes": per_job,
        "rss_anon_per_follower_bytes": per_follower,
    }))
}
