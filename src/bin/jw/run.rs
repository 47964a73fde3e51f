//! `jw start` and `jw run`: a job request from the flags; `run` ties the
//! job to itself (jwd stops it when no `jw run` has held it for
//! `--reconnect-timeout`), holds it (`hold.rs`), follows its output to its
//! end across lost connections, and stops it when jw is asked to go away
//! (signals, a closed stdout); with -i it runs an interactive session
//! (`session.rs`).

use std::io::IsTerminal;
use std::time::Duration;

use jw::client::{Attachment, Client};
use jw::protocol::{
    EnvVar, ErrorCode, JobId, Limits, Network, StartJob, StartOptions, StartRequest, Stdin,
};
use tokio::sync::watch;

use crate::args::Cli;
use crate::connect::connect;
use crate::ending::report_end;
use crate::failure::Failure;
use crate::follow::{follow, Follow};
use crate::hold::hold;
use crate::job_args::{JobArgs, RunArgs};
use crate::output::Offsets;
use crate::relay::{self, Interrupt, Signals};
use crate::session::{run_session, Session};
use crate::stdout_gone::stdout_gone;
use crate::terminal;
use crate::values::grace_ms;

/// How long `jw run` waits, past the grace, for jwd to answer the stop of
/// a job whose reader went away.
const STOP_ANSWER_MARGIN: Duration = Duration::from_secs(30);

/// `jw start`: prints the new job's id.
pub(crate) async fn start(cli: &Cli, args: &JobArgs) -> Result<u8, Failure> {
    let req = start_request(args);
    let client = connect(cli).await?;
    let id = start_job(&client, req, args, None).await?;
    println!("{id}");
    Ok(0)
}

/// `jw run`: starts the job and exits with its exit code.
pub(crate) async fn run(cli: &Cli, args: &RunArgs) -> Result<u8, Failure> {
    let job = &args.job;
    if args.detach {
        return start(cli, job).await;
    }
    let req = start_request(job);
    let grace = grace_ms(job.grace);
    let interrupt = if job.interactive || job.tty {
        Interrupt::Forward
    } else {
        Interrupt::Stop { grace_ms: grace }
    };
    let tie_ms = u32::try_from(cli.reconnect_timeout.as_millis()).unwrap_or(u32::MAX);
    let mut signals = Signals::catch()?;
    let interactive = job.interactive;
    let (client, id, attachment) = signals
        .unless_interrupted(async {
            let client = connect(cli).await?;
            let id = start_job(&client, req, job, Some(tie_ms)).await?;
            if args.verbose || std::io::stderr().is_terminal() {
                eprintln!("jw: job {id}");
            }
            let attachment = if interactive {
                attach_started(&client, id).await?
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
    let (current, _) = watch::channel(client);
    let holding = hold(id, current.subscribe());
    let result = match attachment {
        None => follow_job(cli, &current, id, from, signals, interrupt, grace).await,
        Some(attachment) => {
            let session = Session {
                id,
                attachment,
                from,
                keys: args.keys.detach_keys.clone(),
                signals,
            };
            run_session(cli, session, &current).await
        }
    };
    holding.abort();
    result.map_err(|f| f.about_job(id))
}

/// Attaches to the input of a job this `jw run` just started. A job that
/// has already ended, or closed its input, takes no input: its output is
/// followed all the same (as a shell pipeline's reader that exits early).
async fn attach_started(client: &Client, id: JobId) -> Result<Option<Attachment>, Failure> {
    let refused = match client.attach(id).await {
        Ok(attachment) => return Ok(Some(attachment)),
        Err(e) if e.code() == Some(ErrorCode::FAILED_PRECONDITION) => e,
        Err(e) => {
            let mut failure = Failure::from(e);
            failure.message = format!(
                "job {id} started, but jw cannot write to its input: {}; jwd stops it \
                 --reconnect-timeout after its start, as no jw holds it; `jw stop {id}` \
                 stops it now",
                failure.message
            );
            return Err(failure);
        }
    };
    let info = client.status(id).await?;
    if info.state.is_active() {
        eprintln!("jw: job {id} takes no more input ({refused}); following its output");
    }
    Ok(None)
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

/// Starts the job: with `StartJob` on a jwd that speaks protocol 3 (a
/// name, a timeout, tied to this jw with `tie_ms`); on an older one with
/// `Start` or `StartWith` (then untied), if no option needs protocol 3.
async fn start_job(
    client: &Client,
    spec: StartRequest,
    args: &JobArgs,
    tie_ms: Option<u32>,
) -> Result<JobId, Failure> {
    let stdin = stdin_mode(args);
    if client.version() >= 3 {
        let options = StartOptions {
            name: args.name.clone(),
            timeout_ms: args
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            tie_ms,
            grace_ms: Some(grace_ms(args.grace)),
        };
        let start = StartJob {
            spec,
            stdin: stdin.unwrap_or(Stdin::Null),
            options,
        };
        return client
            .start_job(start)
            .await
            .map_err(|e| start_failure(e, args));
    }
    if args.name.is_some() || args.timeout.is_some() {
        return Err(Failure::new(format!(
            "jwd speaks protocol {}; --name and --timeout need a jwd that speaks 3 (upgrade jwd)",
            client.version()
        )));
    }
    Ok(match stdin {
        None => client.start(spec).await?,
        Some(stdin) => client.start_with(spec, stdin).await?,
    })
}

/// A refused start, naming the job that has the name already (jwd's
/// message says what to do).
fn start_failure(e: jw::client::ClientError, args: &JobArgs) -> Failure {
    let taken = e.code() == Some(ErrorCode::ALREADY_EXISTS);
    let mut failure = Failure::from(e);
    if taken {
        failure.message = format!(
            "--name {}: {}",
            args.name.as_deref().unwrap_or_default(),
            failure.message
        );
    }
    failure
}

/// The job's command and limits from the flags (clap checked the values).
fn start_request(args: &JobArgs) -> StartRequest {
    let env = with_term(args.env.clone(), args.tty, std::env::var("TERM").ok());
    let (command, rest) = args.command.split_first().expect("clap requires a command");
    StartRequest {
        command: command.clone(),
        args: rest.to_vec(),
        env,
        workdir: args.workdir.clone(),
        limits: Limits {
            cpu_millicores: args.cpu,
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
    }
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
/// signals caught. When jw is asked to go away (SIGTERM, SIGHUP, SIGPIPE,
/// a reader of its stdout that left) the job is stopped with its grace
/// and jw exits 128+N.
async fn follow_job(
    cli: &Cli,
    current: &watch::Sender<Client>,
    id: JobId,
    from: Offsets,
    signals: Signals,
    interrupt: Interrupt,
    grace_ms: u32,
) -> Result<u8, Failure> {
    let relay = signals.relay(id, current.subscribe(), interrupt);
    let what = Follow {
        id,
        offsets: from,
        follow: true,
    };
    let result = tokio::select! {
        result = follow(cli, what, current) => result,
        () = stdout_gone() => Err(Failure::output_closed()),
    };
    relay.abort();
    match result {
        Err(failure) if failure.is_output_closed() => {
            // The reader went away: the job's output has nowhere to go.
            let bound = Duration::from_millis(u64::from(grace_ms)) + STOP_ANSWER_MARGIN;
            let stopping = relay::stop(current.subscribe(), id, grace_ms);
            let _ = tokio::time::timeout(bound, stopping).await;
            Err(failure)
        }
        Err(failure) => Err(failure),
        Ok(info) => {
            let code = report_end(&info);
            Ok(match relay.leaving() {
                Some(number) => 128 + number as u8,
                None => code,
            })
        }
    }
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
