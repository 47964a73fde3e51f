//! `jw status`, `list`, `stop`, `kill`, `wait` and `rm`: requests about
//! jobs that exist, and their answers printed. `status`, `stop` and `rm`
//! take several jobs: each is tried, each result said, and jw exits 1
//! naming those that failed.

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use jw::client::Client;
use jw::protocol::JobId;

use crate::args::Cli;
use crate::connect::connect;
use crate::ending::report_end;
use crate::failure::{Failure, CONNECTION};
use crate::json::job_json;
use crate::print::{print_status, print_table};
use crate::resolve::resolve;
use crate::text::describe_end;
use crate::values::{grace_ms, StateFilter};

/// `op` on the job each of `given` names, in turn; each failure said on
/// stderr as it happens. A lost connection ends the whole (255); else 1
/// if any failed, naming them.
async fn each<F, Fut>(client: &Client, given: &[String], mut op: F) -> Result<u8, Failure>
where
    F: FnMut(JobId) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let mut failed = Vec::new();
    for name in given {
        let result = match resolve(client, name).await {
            Ok(id) => op(id).await,
            Err(e) => Err(e),
        };
        if let Err(failure) = result {
            if failure.code == CONNECTION || given.len() == 1 {
                return Err(failure);
            }
            let _ = writeln!(std::io::stderr(), "jw: {name}: {}", failure.message);
            failed.push(name.as_str());
        }
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        Err(Failure::new(format!(
            "{} of {} failed: {}",
            failed.len(),
            given.len(),
            failed.join(", ")
        )))
    }
}

/// `jw status`: each job's status as text (a blank line between jobs) or
/// as JSON (one object a line).
pub(crate) async fn status(cli: &Cli, json: bool, given: &[String]) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    let mut first = true;
    each(&client, given, |id| {
        let client = &client;
        let separate = !std::mem::replace(&mut first, false) && !json;
        async move {
            let info = client.status(id).await?;
            if json {
                println!("{}", job_json(&info));
            } else {
                if separate {
                    println!();
                }
                print_status(&info);
            }
            Ok(())
        }
    })
    .await
}

/// `jw list`: a table, the ids (-q), or a JSON array; with --state only
/// the jobs in those states.
pub(crate) async fn list(
    cli: &Cli,
    all: bool,
    states: &[StateFilter],
    quiet: bool,
    json: bool,
) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    let mut jobs = client.list(all).await?;
    if !states.is_empty() {
        jobs.retain(|j| states.iter().any(|s| s.matches(j.state)));
    }
    if json {
        let list: Vec<serde_json::Value> = jobs.iter().map(job_json).collect();
        println!("{}", serde_json::Value::Array(list));
    } else if quiet {
        for job in &jobs {
            println!("{}", job.id);
        }
    } else {
        print_table(&jobs);
    }
    Ok(0)
}

/// `jw stop`: says on stderr how each job ended.
pub(crate) async fn stop(cli: &Cli, grace: Duration, given: &[String]) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    let ms = grace_ms(grace);
    each(&client, given, |id| {
        let client = &client;
        async move {
            let info = client.stop(id, ms).await?;
            eprintln!("{}: {}", info.id, describe_end(&info));
            Ok(())
        }
    })
    .await
}

/// `jw kill`: sends the signal; prints nothing.
pub(crate) async fn kill(cli: &Cli, signal: i32, all: bool, given: &str) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    let id = resolve(&client, given).await?;
    client.signal(id, signal, all).await?;
    Ok(0)
}

/// `jw wait`: exits with the job's exit code (124 if it timed out).
pub(crate) async fn wait(cli: &Cli, given: &str) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    let id = resolve(&client, given).await?;
    let info = client
        .wait(id)
        .await
        .map_err(|e| Failure::from(e).about_job(id))?;
    Ok(report_end(&info))
}

/// `jw rm`: prints the id of each job removed.
pub(crate) async fn remove(cli: &Cli, given: &[String]) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    each(&client, given, |id| {
        let client = &client;
        async move {
            client.remove(id).await?;
            println!("{id}");
            Ok(())
        }
    })
    .await
}
