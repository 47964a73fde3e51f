//! `jw`: the jw command-line client. See README.md.
//!
//! Exit codes: `run`, `attach` and `wait` exit with the job's code (128+N
//! when it died of signal N; `attach` 0 on detach); every other command
//! exits 0 on success; 1 on any error; 2 on a usage error.
//!
//! This file parses the command line and dispatches; each command group
//! lives in its own file.

mod args;
mod attach;
mod certs;
mod completions;
mod connect;
mod detach;
mod failure;
mod follow;
mod input;
mod jobs;
mod json;
mod local_input;
mod logs;
mod output;
mod print;
mod relay;
mod rfc3339;
mod run;
mod session;
mod signame;
mod terminal;
mod text;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Err(Failure(message)) => {
            eprintln!("jw: {message}");
            ExitCode::FAILURE
        }
    }
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
            logs::logs(&cli, args, *id).await
        }
        Command::Status { json, id } => jobs::status(&cli, *json, *id).await,
        Command::List { all, json } => jobs::list(&cli, *all, *json).await,
        Command::Stop { grace, id } => jobs::stop(&cli, *grace, *id).await,
        Command::Kill { signal, all, id } => jobs::kill(&cli, *signal, *all, *id).await,
        Command::Attach { keys, id } => attach::attach(&cli, keys, *id).await,
        Command::Wait { id } => jobs::wait(&cli, *id).await,
        Command::Rm { id } => jobs::remove(&cli, *id).await,
        Command::Certs { command } => certs::certs(command),
        Command::Completions { shell } => Ok(completions::completions(*shell)),
    }
}
