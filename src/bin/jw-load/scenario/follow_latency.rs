//! `jw-load follow-latency`: a job (jw-load itself, `emit`) writes a
//! timestamped line every millisecond; a follower measures the delay from
//! write to receipt.

use std::io::Write;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use jw::client::{Client, ConnectOptions};
use jw::protocol::{Event, LogsRequest};
use serde_json::json;

use crate::jobs::true_job;
use crate::report::{fmt_us, percentiles};

/// Wall-clock time in nanoseconds since the epoch (0 before it).
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The job side of follow-latency: one line per interval, each carrying the
/// wall-clock time it was written.
pub(crate) fn emit(lines: usize, interval_us: u64) {
    let mut out = std::io::stdout().lock();
    let start = Instant::now();
    for i in 0..lines {
        let due = start + Duration::from_micros(interval_us * i as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let _ = writeln!(out, "{}", now_ns());
        let _ = out.flush();
    }
}

/// Runs the scenario (the job is jw-load itself); the report.
pub(crate) async fn follow_latency(
    opts: &ConnectOptions,
    writes: usize,
) -> Result<serde_json::Value, String> {
    let client = Client::connect(opts).await.map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find jw-load itself: {e}"))?;
    let mut req = true_job();
    req.command = exe.display().to_string();
    req.args = vec![
        "emit".into(),
        "--lines".into(),
        writes.to_string(),
        "--interval-us".into(),
        "1000".into(),
    ];
    let job = client.start(req).await.map_err(|e| {
        format!(
            "{e} (the job runs jw-load itself: is {} readable by the job user?)",
            exe.display()
        )
    })?;
    let mut stream = client
        .logs(LogsRequest {
            job,
            stdout: Some(0),
            stderr: Some(0),
            follow: true,
            credit: 64 << 20,
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let mut partial = Vec::new();
    loop {
        match stream.next().await.map_err(|e| e.to_string())? {
            Some(Event::Output(c)) => {
                let received = now_ns();
                partial.extend_from_slice(&c.data);
                while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = partial.drain(..=pos).collect();
                    if let Some(sent) = std::str::from_utf8(&line)
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                    {
                        h.record(received.saturating_sub(sent) / 1000).ok();
                    }
                }
            }
            Some(Event::End(_)) => break,
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    let _ = client.remove(job).await;
    eprintln!(
        "follow-latency: {} writes at 1000/s: p50 {} p99 {} max {}",
        h.len(),
        fmt_us(h.value_at_quantile(0.5)),
        fmt_us(h.value_at_quantile(0.99)),
        fmt_us(h.max())
    );
    Ok(json!({
        "scenario": "follow-latency",
        "writes": h.len(),
        "delay": percentiles(&h),
    }))
}
