//! `jw start` and `jw run`: a job request from the flags; `run` follows the
//! job's output to its end, across lost connections, passing on the
//! signals it receives (Ctrl-C stops a plain `jw run` job), and with -i
//! runs an interactive session (`session.rs`).

use jw::client::Client;
use jw::protocol::{EnvVar, JobId, Limits, Network, StartRequest, Stdin};
use tokio::sync::watch;

use crate::args::{grace_ms, Cli, JobArgs, RunArgs};
use crate::connect::connect;
use crate::failure::Failure;
use crate::follow::{follow, Follow};
use crate::output::Offsets;
use crate::relay::{Interrupt, Signals};
use crate::session::{run_session, Session};
use crate::terminal;

/// `jw start`: prints the new job's id.
pub(crate) async fn start(cli: &Cli, args: &JobArgs) -> Result<u8, Failure> {
    let req = start_request(args)?;
    let client = connect(cli).await?;
    let id = start_job(&client, req, stdin_mode(args)).await?;
    println!("{id}");
    Ok(0)
}

/// `jw run`: starts the job and exits with its exit code.
pub(crate) async fn run(cli: &Cli, args: &RunArgs) -> Result<u8, Failure> {
    let job = &args.job;
    let req = start_request(job)?;
    let interrupt = if job.interactive || job.tty {
        Interrupt::Forward
    } else {
        Interrupt::Stop {
            grace_ms: grace_ms(job.grace)?,
        }
    };
    let mut signals = Signals::catch()?;
    let interactive = job.interactive;
    let (client, id, attachment) = signals
        .unless_interrupted(async {
            let client = connect(cli).await?;
            let id = start_job(&client, req, stdin_mode(job)).await?;
            let attachment = if interactive {
                Some(client.attach(id).await.map_err(|e| {
                    Failure(format!(
                        "job {id} started, but jw cannot write to its input: {e}; it runs \
                         on: `jw attach {id}` to type into it, `jw stop {id}` to stop it"
                    ))
                })?)
            } else {
                None
            };
            Ok::<_, Failure>((client, id, attachment))
        })
        .await?;
    let from = Offsets {
        stdout: Some(0),
        stderr: Some(0),
    };
    let Some(attachment) = attachment else {
        return follow_job(cli, client, id, from, signals, interrupt).await;
    };
    let session = Session {
        id,
        attachment,
        from,
        keys: args.keys.detach_keys.clone(),
        signals,
    };
    let (current, _) = watch::channel(client);
    run_session(cli, session, current).await
}

/// The job's input from -i and -t: `None` (no input) for neither.
fn stdin_mode(args: &JobArgs) -> Option<Stdin> {
    if args.tty {
        Some(Stdin::Terminal(terminal::window_size()))
    } else if args.interactive {
        Some(Stdin::Pipe)
    } else {
        None
    }
}

/// Starts the job: with `Start` when it has no input (any jwd), with
/// `StartWith` otherwise (a jwd that speaks protocol 2).
async fn start_job(
    client: &Client,
    req: StartRequest,
    stdin: Option<Stdin>,
) -> Result<JobId, Failure> {
    Ok(match stdin {
        None => client.start(req).await?,
        Some(stdin) => client.start_with(req, stdin).await?,
    })
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
    let env = with_term(env, args.tty, std::env::var("TERM").ok());
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

/// A job with a terminal gets the caller's TERM, unless -e gave one.
fn with_term(mut env: Vec<EnvVar>, tty: bool, term: Option<String>) -> Vec<EnvVar> {
    match term {
        Some(value) if tty && !value.is_empty() && !env.iter().any(|v| v.name == "TERM") => {
            env.push(EnvVar {
                name: "TERM".into(),
                value,
            });
            env
        }
        _ => env,
    }
}

/// `jw run` without -i: follow both outputs, on a new connection whenever
/// the one in use is lost (the job is never started again), passing on the
/// signals caught.
async fn follow_job(
    cli: &Cli,
    client: Client,
    id: JobId,
    from: Offsets,
    signals: Signals,
    interrupt: Interrupt,
) -> Result<u8, Failure> {
    let (current, connection) = watch::channel(client);
    let relay = signals.relay(id, connection, interrupt);
    let what = Follow {
        id,
        offsets: from,
        follow: true,
    };
    let result = follow(cli, what, &current).await;
    relay.abort();
    let info = result?;
    if info.oom_killed {
        eprintln!("jw: job {id} was killed: out of memory (its --memory limit)");
    }
    Ok(info.shell_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn a_terminal_gets_the_callers_term_unless_given() {
        let term = || Some("xterm-256color".to_string());
        assert_eq!(
            with_term(vec![], true, term()),
            [var("TERM", "xterm-256color")]
        );
        let given = vec![var("TERM", "vt100")];
        assert_eq!(with_term(given.clone(), true, term()), given);
        assert!(with_term(vec![], false, term()).is_empty());
        assert!(with_term(vec![], true, None).is_empty());
        assert!(with_term(vec![], true, Some(String::new())).is_empty());
    }
}
