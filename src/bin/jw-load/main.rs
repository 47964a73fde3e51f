//! `jw-load`: load generator and benchmark for a running jwd. Every figure
//! comes with a baseline measured in the same run, and the ratio: this
//! machine is shared and noisy, so only ratios from one run mean anything.
//!
//! This file parses the command line and dispatches; each scenario lives in
//! its own file under `scenario/`.

mod args;
mod baseline;
mod cgroups;
mod clients;
mod digest;
mod jobs;
mod keepers;
mod pty_child;
mod report;
mod restart_jwd;
mod retry;
mod scenario;
mod server;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use jw::client::ConnectOptions;

use args::{Cli, Scenario};
use scenario::abuse::{abuse, AbusePlan};
use scenario::fanout::fanout;
use scenario::follow_latency::{emit, follow_latency};
use scenario::pty::{pty, PtyPlan};
use scenario::restart::restart;
use scenario::scale::scale;
use scenario::soak::soak;
use scenario::soak_restarts::{soak_restarts, SoakRestarts};
use scenario::start::start;
use scenario::status::status;
use server::ServerMeter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Scenario::Emit { lines, interval_us } = cli.scenario {
        emit(lines, interval_us);
        return ExitCode::SUCCESS;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jw-load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn options(cli: &Cli) -> ConnectOptions {
    ConnectOptions {
        addr: cli.addr.clone(),
        ca: cli.ca.clone(),
        cert: cli.cert.clone(),
        key: cli.key.clone(),
    }
}

/// Runs the scenario and prints its report, with jwd's CPU and memory when
/// `--server-pid` is given.
async fn run(cli: Cli) -> Result<(), String> {
    let opts = options(&cli);
    let meter = ServerMeter::new(cli.server_pid);
    let mut report = match &cli.scenario {
        Scenario::Start { jobs, concurrency } => start(&opts, *jobs, *concurrency).await?,
        Scenario::Status {
            requests,
            connections,
        } => status(&opts, *requests, *connections).await?,
        Scenario::Fanout {
            bytes,
            readers,
            connections,
            server_cert,
            server_key,
            client_ca,
        } => {
            fanout(
                &opts,
                *bytes,
                *readers,
                *connections,
                (server_cert, server_key, client_ca),
            )
            .await?
        }
        Scenario::FollowLatency { writes } => follow_latency(&opts, *writes).await?,
        Scenario::Scale {
            jobs,
            followers,
            connections,
        } => scale(&opts, *jobs, *followers, *connections, cli.server_pid).await?,
        Scenario::Soak {
            seconds,
            connections,
            cgroup_name,
            restart_every: None,
            ..
        } => soak(&opts, *seconds, *connections, cgroup_name, cli.server_pid).await?,
        Scenario::Soak {
            seconds,
            connections,
            cgroup_name,
            restart_every: Some(every),
            tickers,
            jwd_log,
        } => {
            let plan = SoakRestarts {
                seconds: *seconds,
                connections: (*connections).max(1),
                every: Duration::from_secs((*every).max(1)),
                tickers: *tickers,
                log: jwd_log.clone(),
            };
            soak_restarts(&opts, &plan, cgroup_name, cli.server_pid).await?
        }
        Scenario::Restart {
            jobs,
            concurrency,
            jwd_log,
        } => restart(&opts, *jobs, *concurrency, cli.server_pid, jwd_log).await?,
        Scenario::Abuse {
            seconds,
            connections,
            abuser_cert,
            abuser_key,
            slow_readers,
            abuser_connections,
            hangups,
            half_open,
            storm,
            abuser_output,
        } => {
            let abuser = ConnectOptions {
                cert: abuser_cert.clone(),
                key: abuser_key.clone(),
                ..opts.clone()
            };
            let plan = AbusePlan {
                seconds: *seconds,
                connections: (*connections).max(1),
                slow_readers: *slow_readers,
                abuser_connections: (*abuser_connections).max(1),
                hangups: *hangups,
                half_open: *half_open,
                storm: *storm,
                output: (*abuser_output).max(1),
            };
            abuse(&opts, &abuser, &plan, cli.server_pid).await?
        }
        Scenario::Pty {
            count,
            warmup,
            raw,
            command,
        } => {
            let plan = PtyPlan {
                count: *count,
                warmup: *warmup,
                raw: *raw,
                command: command.clone(),
            };
            tokio::task::spawn_blocking(move || pty(&plan))
                .await
                .map_err(|e| format!("the pty scenario failed: {e}"))??
        }
        Scenario::Emit { .. } => unreachable!("handled in main"),
    };
    meter.add_to(&mut report);
    report::print(&report, cli.json);
    Ok(())
}
