//! `jw-load status`: status requests per second on C connections.

use std::time::Instant;

use hdrhistogram::Histogram;
use jw::client::{Client, ConnectOptions};
use serde_json::json;

use crate::clients::{connect_all, share};
use crate::jobs::true_job;
use crate::report::{fmt_us, percentiles};

/// Runs the scenario on one ended job; the report.
pub(crate) async fn status(
    opts: &ConnectOptions,
    requests: usize,
    connections: usize,
) -> Result<serde_json::Value, String> {
    let connections = connections.max(1);
    let setup = Client::connect(opts).await.map_err(|e| e.to_string())?;
    let id = setup.start(true_job()).await.map_err(|e| e.to_string())?;
    setup.wait(id).await.map_err(|e| e.to_string())?;
    let clients = connect_all(opts, connections).await?;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let n = share(requests, connections, i);
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            for _ in 0..n {
                let t = Instant::now();
                client.status(id).await.map_err(|e| e.to_string())?;
                h.record(t.elapsed().as_micros() as u64).ok();
            }
            Ok::<_, String>(h)
        }));
    }
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for t in tasks {
        h.add(t.await.map_err(|e| e.to_string())??).ok();
    }
    let elapsed = began.elapsed().as_secs_f64();
    setup.remove(id).await.map_err(|e| e.to_string())?;
    eprintln!(
        "status: {requests} requests on {connections} connections: {:.0} req/s, p50 {} p99 {}",
        requests as f64 / elapsed,
        fmt_us(h.value_at_quantile(0.5)),
        fmt_us(h.value_at_quantile(0.99))
    );
    Ok(json!({
        "scenario": "status",
        "requests": requests,
        "connections": connections,
        "requests_per_second": requests as f64 / elapsed,
        "latency": percentiles(&h),
    }))
}
