//! `jw-load start`: N jobs of /bin/true over C connections; start latency
//! and rate beside the fork/exec and unshare baselines.

use std::time::Instant;

use hdrhistogram::Histogram;
use jw::client::ConnectOptions;
use jw::protocol::JobId;
use serde_json::json;

use crate::baseline::{local_spawn, unshare_rate};
use crate::clients::{connect_all, share};
use crate::jobs::true_job;
use crate::report::{fmt_us, percentiles};

/// Runs the scenario and the baselines; the report.
pub(crate) async fn start(
    opts: &ConnectOptions,
    jobs: usize,
    concurrency: usize,
) -> Result<serde_json::Value, String> {
    let concurrency = concurrency.max(1);
    let clients = connect_all(opts, concurrency).await?;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let client = client.clone();
        let n = share(jobs, concurrency, i);
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            let mut ids = Vec::new();
            for _ in 0..n {
                let t = Instant::now();
                let id = client.start(true_job()).await.map_err(|e| e.to_string())?;
                h.record(t.elapsed().as_micros() as u64).ok();
                ids.push(id);
            }
            Ok::<_, String>((h, ids))
        }));
    }
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let mut ids: Vec<JobId> = Vec::new();
    for t in tasks {
        let (part, part_ids) = t.await.map_err(|e| e.to_string())??;
        h.add(part).ok();
        ids.extend(part_ids);
    }
    let elapsed = began.elapsed().as_secs_f64();
    // Clean up: wait for each job and remove it.
    let c = &clients[0];
    for id in &ids {
        let _ = c.wait(*id).await;
        let _ = c.remove(*id).await;
    }
    let samples = 200.min(jobs).max(1);
    let plain = local_spawn(samples, false)?;
    let namespaced = local_spawn(samples, true)?;
    let rate_samples = (2 * samples).max(concurrency);
    let baseline_rate = unshare_rate(rate_samples, concurrency)?;
    let rate = jobs as f64 / elapsed;
    let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    let report = json!({
        "scenario": "start",
        "jobs": jobs,
        "concurrency": concurrency,
        "jobs_per_second": jobs as f64 / elapsed,
        "latency": percentiles(&h),
        "baseline_fork_exec": percentiles(&plain),
        "baseline_unshare": percentiles(&namespaced),
        "ratio_p50_vs_unshare": ratio(h.value_at_quantile(0.5), namespaced.value_at_quantile(0.5)),
        "ratio_p99_vs_unshare": ratio(h.value_at_quantile(0.99), namespaced.value_at_quantile(0.99)),
        "ratio_p50_vs_fork_exec": ratio(h.value_at_quantile(0.5), plain.value_at_quantile(0.5)),
        "baseline_unshare_jobs_per_second": baseline_rate,
        "ratio_rate_vs_unshare": rate / baseline_rate,
    });
    eprintln!(
        "start: {jobs} jobs over {concurrency} connections, {rate:.0} jobs/s (unshare at the same concurrency: {baseline_rate:.0}/s); p50 {} p99 {} (unshare baseline p50 {}, fork/exec {})",
        fmt_us(h.value_at_quantile(0.5)),
        fmt_us(h.value_at_quantile(0.99)),
        fmt_us(namespaced.value_at_quantile(0.5)),
        fmt_us(plain.value_at_quantile(0.5)),
    );
    Ok(report)
}
