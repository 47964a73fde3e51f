//! `jw logs`: a job's output from an offset, followed to the job's end with
//! `-f`; read on from where it stopped if the connection to jwd is lost.

use jw::protocol::JobId;
use tokio::sync::watch;

use crate::args::Cli;
use crate::connect::connect;
use crate::failure::Failure;
use crate::follow::{follow, Follow};
use crate::output::Offsets;

/// `jw logs`: the selected streams from `from`, followed to the job's end
/// with `follow`.
pub(crate) async fn logs(
    cli: &Cli,
    follow_job: bool,
    stdout: bool,
    stderr: bool,
    from: u64,
    id: JobId,
) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    let (out, err) = match (stdout, stderr) {
        (true, _) => (Some(from), None),
        (_, true) => (None, Some(from)),
        _ => (Some(from), Some(from)),
    };
    let what = Follow {
        id,
        offsets: Offsets {
            stdout: out,
            stderr: err,
        },
        follow: follow_job,
    };
    let (current, _) = watch::channel(client);
    follow(cli, what, &current).await?;
    Ok(0)
}
