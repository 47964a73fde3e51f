//! `jw start` and `jw run`: a job request from the flags; `run` follows the
//! job's output to its end, across lost connections, and stops the job on
//! Ctrl-C.

use std::time::Duration;

use jw::client::Client;
use jw::protocol::{EnvVar, JobId, Limits, Network, StartRequest};
use tokio::sync::watch;

use crate::args::{grace_ms, Cli, JobArgs};
use crate::connect::connect;
use crate::failure::Failure;
use crate::follow::{follow, Follow};
use crate::output::Offsets;

/// `jw start`: prints the new job's id.
pub(crate) async fn start(cli: &Cli, args: &JobArgs) -> Result<u8, Failure> {
    let req = start_request(args)?;
    let client = connect(cli).await?;
    let id = client.start(req).await?;
    println!("{id}");
    Ok(0)
}

/// `jw run`: starts the job and exits with its exit code.
pub(crate) async fn run(cli: &Cli, args: &JobArgs) -> Result<u8, Failure> {
    let req = start_request(args)?;
    let client = connect(cli).await?;
    let id = client.start(req).await?;
    run_job(cli, client, id, args.grace).await
}

fn start_request(args: &JobArgs) -> Result<StartRequest, Failure> {
    let cpu_millicores = match args.cpu {
        None => None,
        Some(c) if c.is_finite() && c > 0.0 && c * 1000.0 <= u32::MAX as f64 => {
            Some((c * 1000.0).round() as u32)
        }
        Some(c) => {
            return Err(Failure(format!(
                "invalid --cpu {c}: give cores as a positive number, e.g. 0.5"
            )))
        }
    };
    let env = args
        .env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| EnvVar {
                    name: k.to_string(),
                    value: v.to_string(),
                })
                .ok_or_else(|| Failure(format!("invalid -e {kv:?}: use NAME=VALUE")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (command, rest) = args.command.split_first().expect("clap requires a command");
    Ok(StartRequest {
        command: command.clone(),
        args: rest.to_vec(),
        env,
        workdir: args.workdir.clone(),
        limits: Limits {
            cpu_millicores,
            memory_bytes: args.memory,
            io_read_bps: args.io_read,
            io_write_bps: args.io_write,
            pids: args.pids,
            output_bytes: args.max_output,
        },
        network: if args.net == "host" {
            Network::Host
        } else {
            Network::None
        },
    })
}

/// `jw run`: follow both outputs, on a new connection whenever the one in
/// use is lost (the job is never started again); Ctrl-C stops the job with
/// its grace period, a second Ctrl-C kills it at once.
async fn run_job(cli: &Cli, client: Client, id: JobId, grace: Duration) -> Result<u8, Failure> {
    let grace = grace_ms(grace)?;
    let (current, connection) = watch::channel(client);
    let interrupts = tokio::spawn(async move {
        let mut count = 0;
        while tokio::signal::ctrl_c().await.is_ok() {
            count += 1;
            let (what, ms) = if count == 1 {
                ("stopping", grace)
            } else {
                ("killing", 0)
            };
            eprintln!("jw: {what} job {id}");
            tokio::spawn(stop(connection.clone(), id, ms));
        }
    });
    let what = Follow {
        id,
        offsets: Offsets {
            stdout: Some(0),
            stderr: Some(0),
        },
        follow: true,
    };
    let result = follow(cli, what, &current).await;
    interrupts.abort();
    let info = result?;
    if info.oom_killed {
        eprintln!("jw: job {id} was killed: out of memory (its --memory limit)");
    }
    Ok(info.shell_code())
}

/// Stops the job through the current connection; if that one is lost, on
/// the next one, until the follow ends.
async fn stop(mut connection: watch::Receiver<Client>, id: JobId, grace_ms: u32) {
    loop {
        let client = connection.borrow_and_update().clone();
        match client.stop(id, grace_ms).await {
            Ok(_) => return,
            Err(e) if e.is_connection_lost() => {
                if connection.changed().await.is_err() {
                    eprintln!("jw: cannot stop job {id}: {e}; stop it with `jw stop {id}`");
                    return;
                }
            }
            Err(e) => {
                eprintln!("jw: cannot stop job {id}: {e}");
                return;
            }
        }
    }
}
