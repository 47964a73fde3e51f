//! `jw-load abuse`: hostile clients of one user (slow readers, hang-ups,
//! half-open handshakes, a start storm) beside a normal user's workload,
//! which runs once alone and once with them. This file runs the scenario
//! and reports; each attack has its own file.

mod bounds;
mod cleanup;
mod counters;
mod half_open;
mod hang_ups;
mod normal;
mod raw;
mod slow_readers;
mod storm;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use jw::client::{Client, ConnectOptions};
use serde_json::json;
use tokio::sync::watch;

use crate::clients::share;
use crate::jobs::true_job;
use crate::server::{count_dir, process_usage};
use bounds::{pause, within, ABUSER_TIMEOUT, ANSWER_TIMEOUT};
use cleanup::stop_and_remove;
use counters::AbuseCounters;
use half_open::half_open;
use hang_ups::{hang_ups, HANGUP_WORKERS};
use normal::normal_workload;
use raw::ABUSE_CREDIT;
use slow_readers::{open_slow_readers, SLOW_RCVBUF};
use storm::start_storm;

/// What `jw-load abuse` runs.
pub(crate) struct AbusePlan {
    pub(crate) seconds: u64,
    pub(crate) connections: usize,
    pub(crate) slow_readers: usize,
    pub(crate) abuser_connections: usize,
    pub(crate) hangups: usize,
    pub(crate) half_open: usize,
    pub(crate) storm: usize,
    pub(crate) output: u64,
}

/// How long stopping the abusers may take before their tasks are aborted.
const ABUSER_JOIN: Duration = Duration::from_secs(30);

/// How long the clean-up of the abusers' jobs may take in all.
const CLEANUP_BOUND: Duration = Duration::from_secs(180);

/// jwd's RssAnon every 100 ms until `stop`: (peak, samples).
fn sample_rss(pid: u32, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<(u64, u64)> {
    tokio::spawn(async move {
        let (mut peak, mut samples) = (0, 0);
        loop {
            if let Some((_, rss)) = process_usage(pid) {
                peak = rss.max(peak);
                samples += 1;
            }
            if !pause(&mut stop, Duration::from_millis(100)).await {
                return (peak, samples);
            }
        }
    })
}

/// Runs the normal workload alone, then beside the abusers; the report, or
/// an error carrying it if the workload met errors or jwd's fds did not
/// come back.
pub(crate) async fn abuse(
    opts: &ConnectOptions,
    abuser: &ConnectOptions,
    plan: &AbusePlan,
    server_pid: Option<u32>,
) -> Result<serde_json::Value, String> {
    let fds = || server_pid.and_then(|p| count_dir(&format!("/proc/{p}/fd")));
    let rss = || server_pid.and_then(process_usage).map(|(_, r)| r);
    let abuser_config = jw::tls::client_config(&abuser.ca, &abuser.cert, &abuser.key)
        .map_err(|e| format!("the abuser's certificate: {e}"))?;
    let fds_start = fds();

    eprintln!(
        "abuse: normal workload alone, {} connections for {} s",
        plan.connections, plan.seconds
    );
    let alone = normal_workload(opts, plan.seconds, plan.connections, server_pid).await;
    // jwd closes the run's connections in its own time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds_before = fds();
    let rss_before = rss();

    let (sampler_stop, sampler_rx) = watch::channel(false);
    let sampler = server_pid.map(|pid| sample_rss(pid, sampler_rx));
    let counters = Arc::new(AbuseCounters::default());
    let control = within(ANSWER_TIMEOUT, Client::connect(abuser))
        .await
        .map_err(|e| format!("the abuser cannot connect: {e}"))?;
    let big = if plan.slow_readers > 0 || plan.hangups > 0 {
        let mut req = true_job();
        req.command = "sh".into();
        req.args = vec!["-c".into(), format!("head -c {} /dev/zero", plan.output)];
        req.limits.output_bytes = Some(plan.output);
        let id = within(ANSWER_TIMEOUT, control.start(req))
            .await
            .map_err(|e| format!("the abuser's big job: start: {e}"))?;
        let waited = within(Duration::from_secs(120), control.wait(id)).await;
        let code = waited.as_ref().ok().and_then(|i| i.exit_code);
        if code != Some(0) {
            let _ = within(ABUSER_TIMEOUT, control.stop(id, 0)).await;
            let _ = within(ABUSER_TIMEOUT, control.remove(id)).await;
            return Err(format!(
                "the abuser's big job did not end well: {}",
                waited.map_or_else(|e| e, |i| format!("exit code {:?}", i.exit_code))
            ));
        }
        Some(id)
    } else {
        None
    };

    eprintln!(
        "abuse: abusers starting ({} slow readers, {} hang-ups, {} half-open, {} storm loops)",
        plan.slow_readers, plan.hangups, plan.half_open, plan.storm
    );
    let abuse_began = Instant::now();
    let (stop, stop_rx) = watch::channel(false);
    let held = match big {
        Some(job) if plan.slow_readers > 0 => {
            open_slow_readers(
                &abuser.addr,
                &abuser_config,
                job,
                plan.slow_readers,
                plan.abuser_connections,
                &counters,
            )
            .await
        }
        _ => Vec::new(),
    };
    let mut tasks = Vec::new();
    for i in 0..plan.half_open {
        tasks.push(tokio::spawn(half_open(
            abuser.addr.clone(),
            i,
            stop_rx.clone(),
            counters.clone(),
        )));
    }
    if let Some(job) = big {
        let workers = plan.hangups.min(HANGUP_WORKERS);
        for w in 0..workers {
            let count = share(plan.hangups, workers, w);
            // Spread over the abused run.
            let period = Duration::from_secs(plan.seconds) / count.max(1) as u32;
            tasks.push(tokio::spawn(hang_ups(
                abuser.addr.clone(),
                abuser_config.clone(),
                job,
                count,
                period,
                stop_rx.clone(),
                counters.clone(),
            )));
        }
    }
    let storms: Vec<_> = (0..plan.storm)
        .map(|_| {
            tokio::spawn(start_storm(
                abuser.clone(),
                stop_rx.clone(),
                counters.clone(),
            ))
        })
        .collect();
    // Let the abusers get going.
    tokio::time::sleep(Duration::from_secs(1)).await;

    eprintln!(
        "abuse: normal workload beside the abusers for {} s",
        plan.seconds
    );
    let abused = normal_workload(opts, plan.seconds, plan.connections, server_pid).await;
    let rss_end_of_run = rss();

    // Stop the abusers; the slow readers' connections are reset (their
    // receive buffers hold unread data).
    let _ = stop.send(true);
    drop(held);
    let join_deadline = tokio::time::Instant::now() + ABUSER_JOIN;
    let mut aborted = 0;
    for mut t in tasks {
        if tokio::time::timeout_at(join_deadline, &mut t)
            .await
            .is_err()
        {
            t.abort();
            aborted += 1;
        }
    }
    let mut storm_ids = Vec::new();
    for mut s in storms {
        match tokio::time::timeout_at(join_deadline, &mut s).await {
            Ok(Ok(ids)) => storm_ids.extend(ids),
            _ => {
                s.abort();
                aborted += 1;
            }
        }
    }
    let cleanup_began = Instant::now();
    let cleaner = match within(ABUSER_TIMEOUT, Client::connect(abuser)).await {
        Ok(c) => c,
        Err(_) => control.clone(),
    };
    let deadline = cleanup_began + CLEANUP_BOUND;
    let mut left_behind = stop_and_remove(&cleaner, &storm_ids, deadline).await;
    if let Some(id) = big {
        left_behind += stop_and_remove(&cleaner, &[id], deadline).await;
    }
    drop(cleaner);
    drop(control);
    let mut normal_leftovers = alone.leftovers.clone();
    normal_leftovers.extend(&abused.leftovers);
    if !normal_leftovers.is_empty() {
        match within(ANSWER_TIMEOUT, Client::connect(opts)).await {
            Ok(c) => left_behind += stop_and_remove(&c, &normal_leftovers, deadline).await,
            Err(_) => left_behind += normal_leftovers.len(),
        }
    }
    let cleanup_seconds = cleanup_began.elapsed().as_secs_f64();
    let abuse_seconds = abuse_began.elapsed().as_secs_f64();
    let _ = sampler_stop.send(true);
    let (rss_peak, rss_samples) = match sampler {
        Some(s) => s.await.map_or((None, 0), |(p, n)| (Some(p), n)),
        None => (None, 0),
    };
    let rss_after = rss();

    // jwd's fds back where they were before the abusers, within 10 s.
    let poll_began = Instant::now();
    let mut fds_after = fds();
    while let (Some(before), Some(after)) = (fds_before, fds_after) {
        if after <= before || poll_began.elapsed() >= Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds_after = fds();
    }
    let fds_returned = match (fds_before, fds_after) {
        (Some(b), Some(a)) => Some(a <= b),
        _ => None,
    };
    let fds_return_seconds = fds_returned
        .filter(|r| *r)
        .map(|_| poll_began.elapsed().as_secs_f64());

    let c = &counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut lifetimes = c
        .half_open_lifetimes
        .lock()
        .expect("lifetimes lock")
        .clone();
    lifetimes.sort_unstable();
    let lifetime_at = |q: f64| {
        (!lifetimes.is_empty()).then(|| lifetimes[((lifetimes.len() - 1) as f64 * q) as usize])
    };
    let errors = c.errors.lock().expect("errors lock").clone();
    let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    let q99 = |h: &Histogram<u64>| h.value_at_quantile(0.99);
    let ratio_iteration = ratio(q99(&abused.iteration), q99(&alone.iteration));
    let ratio_start = ratio(q99(&abused.start), q99(&alone.start));
    let ratio_rate = abused.rate() / alone.rate().max(1e-9);
    let mb = |b: Option<u64>| b.map_or("?".into(), |b| format!("{:.2} MB", b as f64 / 1e6));
    let show = |v: Option<usize>| v.map_or("?".to_string(), |n| n.to_string());

    eprintln!(
        "abuse: normal workload ({} connections, {} s per run)",
        plan.connections, plan.seconds
    );
    eprintln!("  alone:  {}", alone.summary());
    eprintln!("  abused: {}", abused.summary());
    eprintln!(
        "  abused/alone: p99 iteration {ratio_iteration:.2}x, p99 start {ratio_start:.2}x, rate {ratio_rate:.2}x"
    );
    eprintln!(
        "  abusers: {} slow-reader streams on {} connections; {} hang-ups ({} read); {} half-open connections, {} closed by jwd (p50 after {} ms); storm {} admitted, {} refused; {} connections refused; {} tasks aborted; {} jobs left behind",
        load(&c.slow_streams),
        load(&c.slow_connections),
        load(&c.hangups),
        jw::units::format_bytes(load(&c.hangup_bytes)),
        load(&c.half_open_connections),
        load(&c.half_open_closed),
        lifetime_at(0.5).map_or("?".into(), |v| v.to_string()),
        load(&c.storm_admitted),
        load(&c.storm_refused),
        load(&c.connections_refused),
        aborted,
        left_behind,
    );
    if !errors.is_empty() {
        eprintln!("  abuser errors: {}", json!(errors));
    }
    eprintln!(
        "  jwd: RssAnon {} before the abusers, peak {} ({rss_samples} samples over {abuse_seconds:.1} s), {} at the end of the run, {} after; fds {} before, {} after ({}); clean-up {cleanup_seconds:.1} s",
        mb(rss_before),
        mb(rss_peak),
        mb(rss_end_of_run),
        mb(rss_after),
        show(fds_before),
        show(fds_after),
        match fds_returned {
            Some(true) => "back to baseline",
            Some(false) => "NOT back to baseline within 10 s",
            None => "not measured",
        },
    );
    for e in alone.errors.iter().chain(&abused.errors).take(10) {
        eprintln!("  normal workload error: {e}");
    }

    let report = json!({
        "scenario": "abuse",
        "seconds": plan.seconds,
        "connections": plan.connections,
        "alone": alone.json(),
        "abused": abused.json(),
        "ratio_p99_iteration": ratio_iteration,
        "ratio_p99_start": ratio_start,
        "ratio_rate": ratio_rate,
        "abusers": {
            "seconds": abuse_seconds,
            "slow_readers": {
                "requested": plan.slow_readers,
                "connections": load(&c.slow_connections),
                "streams_opened": load(&c.slow_streams),
                "credit_per_stream": ABUSE_CREDIT,
                "receive_buffer": SLOW_RCVBUF,
            },
            "hangups": {
                "requested": plan.hangups,
                "done": load(&c.hangups),
                "bytes_read": load(&c.hangup_bytes),
            },
            "half_open": {
                "requested": plan.half_open,
                "connections": load(&c.half_open_connections),
                "closed_by_server": load(&c.half_open_closed),
                "closed_after_ms_p50": lifetime_at(0.5),
                "closed_after_ms_max": lifetimes.last(),
            },
            "storm": {
                "loops": plan.storm,
                "admitted": load(&c.storm_admitted),
                "refused_resource_exhausted": load(&c.storm_refused),
            },
            "connections_refused": load(&c.connections_refused),
            "errors": errors,
            "tasks_aborted": aborted,
            "big_job_bytes": big.map(|_| plan.output),
        },
        "jobs_left_behind": left_behind,
        "cleanup_seconds": cleanup_seconds,
        "server_rss_anon_before_abuse": rss_before,
        "server_rss_anon_peak": rss_peak,
        "server_rss_anon_end_of_abused_run": rss_end_of_run,
        "server_rss_anon_after_abuse": rss_after,
        "server_fds_start": fds_start,
        "server_fds_before_abuse": fds_before,
        "server_fds_after_abuse": fds_after,
        "server_fds_returned": fds_returned,
        "server_fds_return_seconds": fds_return_seconds,
    });
    if !alone.errors.is_empty() || !abused.errors.is_empty() || fds_returned == Some(false) {
        return Err(format!("abuse failed: {report}"));
    }
    Ok(report)
}
