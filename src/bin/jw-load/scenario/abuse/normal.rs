//! The normal user's workload the abuse scenario measures: a start, wait,
//! logs, rm loop on a few connections, run alone and beside the abusers.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use jw::client::{Client, ConnectOptions};
use jw::protocol::{Event, JobId};
use serde_json::json;

use super::bounds::{within, ANSWER_TIMEOUT};
use crate::jobs::{true_job, whole_output};
use crate::report::{fmt_us, percentiles};
use crate::server::process_usage;

/// One run of the normal workload.
pub(crate) struct NormalRun {
    pub(crate) seconds: f64,
    pub(crate) iteration: Histogram<u64>,
    pub(crate) start: Histogram<u64>,
    pub(crate) errors: Vec<String>,
    pub(crate) cpu_seconds: Option<f64>,
    /// Jobs an iteration started but could not remove.
    pub(crate) leftovers: Vec<JobId>,
}

impl NormalRun {
    pub(crate) fn rate(&self) -> f64 {
        self.iteration.len() as f64 / self.seconds.max(1e-9)
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        json!({
            "iterations": self.iteration.len(),
            "seconds": self.seconds,
            "iterations_per_second": self.rate(),
            "errors": self.errors.len(),
            "first_errors": self.errors.iter().take(5).collect::<Vec<_>>(),
            "iteration": percentiles(&self.iteration),
            "start": percentiles(&self.start),
            "server_cpu_seconds": self.cpu_seconds,
        })
    }

    pub(crate) fn summary(&self) -> String {
        let p = |h: &Histogram<u64>| {
            format!(
                "p50 {} p99 {} max {}",
                fmt_us(h.value_at_quantile(0.5)),
                fmt_us(h.value_at_quantile(0.99)),
                fmt_us(h.max())
            )
        };
        format!(
            "{} iterations, {:.0}/s; iteration {}; start {}; jwd CPU {}; {} errors",
            self.iteration.len(),
            self.rate(),
            p(&self.iteration),
            p(&self.start),
            self.cpu_seconds.map_or("?".into(), |c| format!("{c:.2} s")),
            self.errors.len()
        )
    }
}

/// One iteration: start `sh -c 'echo hi'`, wait, read its logs to the end,
/// remove it. Returns the start latency (µs); `job` holds the job until
/// it is removed.
pub(crate) async fn normal_iteration(
    client: &Client,
    job: &mut Option<JobId>,
) -> Result<u64, String> {
    let mut req = true_job();
    req.command = "sh".into();
    req.args = vec!["-c".into(), "echo hi".into()];
    let t = Instant::now();
    let id = within(ANSWER_TIMEOUT, client.start(req))
        .await
        .map_err(|e| format!("start: {e}"))?;
    let start_us = t.elapsed().as_micros() as u64;
    *job = Some(id);
    let info = within(ANSWER_TIMEOUT, client.wait(id))
        .await
        .map_err(|e| format!("wait: {e}"))?;
    if info.exit_code != Some(0) {
        return Err(format!("job exited with {:?}", info.exit_code));
    }
    let logs = client.logs(whole_output(id));
    let mut s = within(ANSWER_TIMEOUT, logs)
        .await
        .map_err(|e| format!("logs: {e}"))?;
    let mut bytes = 0;
    loop {
        match within(ANSWER_TIMEOUT, s.next())
            .await
            .map_err(|e| format!("logs: {e}"))?
        {
            Some(Event::Output(c)) => bytes += c.data.len(),
            Some(Event::End(_)) | None => break,
            Some(other) => return Err(format!("logs: unexpected {other:?}")),
        }
    }
    if bytes == 0 {
        return Err("logs: no output".into());
    }
    within(ANSWER_TIMEOUT, client.remove(id))
        .await
        .map_err(|e| format!("rm: {e}"))?;
    *job = None;
    Ok(start_us)
}

/// `connections` loops of [`normal_iteration`] for `seconds`, each on its
/// own connection (a new one after an error).
pub(crate) async fn normal_workload(
    opts: &ConnectOptions,
    seconds: u64,
    connections: usize,
    server_pid: Option<u32>,
) -> NormalRun {
    let cpu0 = server_pid.and_then(process_usage).map(|(c, _)| c);
    let began = Instant::now();
    let deadline = began + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            let mut iteration = Histogram::<u64>::new(3).expect("histogram");
            let mut start = Histogram::<u64>::new(3).expect("histogram");
            let mut errors = Vec::new();
            let mut leftovers = Vec::new();
            let mut client: Option<Client> = None;
            while Instant::now() < deadline {
                let c = match &client {
                    Some(c) => c.clone(),
                    None => match within(ANSWER_TIMEOUT, Client::connect(&opts)).await {
                        Ok(c) => {
                            client = Some(c.clone());
                            c
                        }
                        Err(e) => {
                            errors.push(format!("connect: {e}"));
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let t = Instant::now();
                let mut job = None;
                match normal_iteration(&c, &mut job).await {
                    Ok(start_us) => {
                        iteration.record(t.elapsed().as_micros() as u64).ok();
                        start.record(start_us).ok();
                    }
                    Err(e) => {
                        errors.push(e);
                        leftovers.extend(job);
                        client = None;
                    }
                }
            }
            (iteration, start, errors, leftovers)
        }));
    }
    let mut run = NormalRun {
        seconds: 0.0,
        iteration: Histogram::<u64>::new(3).expect("histogram"),
        start: Histogram::<u64>::new(3).expect("histogram"),
        errors: Vec::new(),
        cpu_seconds: None,
        leftovers: Vec::new(),
    };
    for t in tasks {
        match t.await {
            Ok((iteration, start, errors, leftovers)) => {
                run.iteration.add(iteration).ok();
                run.start.add(start).ok();
                run.errors.extend(errors);
                run.leftovers.extend(leftovers);
            }
            Err(e) => run.errors.push(format!("a worker failed: {e}")),
        }
    }
    run.seconds = began.elapsed().as_secs_f64();
    let cpu1 = server_pid.and_then(process_usage).map(|(c, _)| c);
    run.cpu_seconds = cpu0.zip(cpu1).map(|(a, b)| b - a);
    run
}
