//! `jw status`, `list`, `stop`, `kill`, `wait` and `rm`: one request each
//! about jobs that exist, and their answer printed.

use std::time::Duration;

use jw::protocol::JobId;

use crate::args::{grace_ms, Cli};
use crate::connect::connect;
use crate::failure::Failure;
use crate::json::job_json;
use crate::print::{print_status, print_table};
use crate::text::describe_end;

/// `jw status`: the job's status as text or JSON.
pub(crate) async fn status(cli: &Cli, json: bool, id: JobId) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    let info = client.status(id).await?;
    if json {
        println!("{}", job_json(&info));
    } else {
        print_status(&info);
    }
    Ok(0)
}

/// `jw list`: a table, or a JSON array.
pub(crate) async fn list(cli: &Cli, all: bool, json: bool) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    let jobs = client.list(all).await?;
    if json {
        let list: Vec<serde_json::Value> = jobs.iter().map(job_json).collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        print_table(&jobs);
    }
    Ok(0)
}

/// `jw stop`: says on stderr how the job ended.
pub(crate) async fn stop(cli: &Cli, grace: Duration, id: JobId) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    let info = client.stop(id, grace_ms(grace)?).await?;
    eprintln!("{}: {}", info.id, describe_end(&info));
    Ok(0)
}

/// `jw kill`: sends the signal; prints nothing.
pub(crate) async fn kill(cli: &Cli, signal: i32, all: bool, id: JobId) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    client.signal(id, signal, all).await?;
    Ok(0)
}

/// `jw wait`: exits with the job's exit code.
pub(crate) async fn wait(cli: &Cli, id: JobId) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    let info = client.wait(id).await?;
    Ok(info.shell_code())
}

/// `jw rm`.
pub(crate) async fn remove(cli: &Cli, id: JobId) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    client.remove(id).await?;
    Ok(0)
}
