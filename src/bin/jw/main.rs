//! `jw`: the jw command-line client. See README.md.
//!
//! Exit codes: `run`, `attach` and `wait` exit with the job's code (128+N
//! when it died of signal N, 124 when it timed out; `attach` 0 on detach);
//! every other command exits 0 on success; 1 on an error; 2 on a usage
//! error; 126/127 when the command cannot be executed / does not exist;
//! 255 when the connection to jwd failed or was lost (`failure.rs`).
//!
//! This file parses the command line and dispatches; each command group
//! lives in its own file.

mod args;
mod attach;
mod certs;
mod completions;
mod connect;
mod detach;
mod ending;
mod failure;
mod follow;
mod help;
mod hold;
mod input;
mod job_args;
mod jobs;
mod json;
mod local_input;
mod logs;
mod man;
mod output;
mod print;
mod prune;
mod relay;
mod resolve;
mod rfc3339;
mod run;
mod server_text;
mod session;
mod signame;
mod stdout_gone;
mod terminal;
mod text;
mod values;

use std::process::ExitCode;

use args::{Cli, Command};
use failure::Failure;

fn main() -> ExitCode {
    default_sigpipe();
    let cli = help::parse();
    terminal::restore_on_panic();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jw: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli));
    // A read of stdin may still be pending in its thread: not waited for.
    runtime.shutdown_background();
    terminal::restore();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure { message, code }) => {
            if !message.is_empty() {
                eprintln!("jw: {message}");
            }
            ExitCode::from(code)
        }
    }
}

/// Writing to a reader that went away ends jw as it ends cat (`jw list |
/// head`: 128+SIGPIPE, silently) instead of the panic of a failed print.
/// `run` and `attach` catch SIGPIPE themselves (`relay.rs`).
fn default_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_DFL is no handler: nothing of jw runs in signal context.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Runs the command; its exit code.
async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    match &cli.command {
        Command::Start(args) => run::start(&cli, args).await,
        Command::Run(args) => run::run(&cli, args).await,
        Command::Logs {
            follow,
            stdout,
            stderr,
            from,
            tail,
            since,
            timestamps,
            id,
        } => {
            let args = logs::LogsArgs {
                follow: *follow,
                stdout: *stdout,
                stderr: *stderr,
                from: *from,
                tail: *tail,
                since: *since,
                timestamps: *timestamps,
            };
            logs::logs(&cli, args, id).await
        }
        Command::Status { json, ids } => jobs::status(&cli, *json, ids).await,
        Command::List {
            all,
            state,
            quiet,
            json,
        } => jobs::list(&cli, *all, state, *quiet, *json).await,
        Command::Stop { grace, ids } => jobs::stop(&cli, *grace, ids).await,
        Command::Kill { signal, all, id } => jobs::kill(&cli, *signal, *all, id).await,
        Command::Attach { keys, id } => attach::attach(&cli, keys, id).await,
        Command::Wait { id } => jobs::wait(&cli, id).await,
        Command::Rm { ids } => jobs::remove(&cli, ids).await,
        Command::Prune { older_than, force } => prune::prune(&cli, *older_than, *force).await,
        Command::Certs { command } => certs::certs(command),
        Command::Completions { shell } => completions::completions(*shell),
        Command::Man { command } => man::man(command.as_deref()),
    }
}
