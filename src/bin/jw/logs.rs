//! `jw logs`: a job's output from an offset, its last lines (`--tail`) or
//! a time (`--since`), each line dated with `--timestamps`, followed to the
//! job's end with `-f`; read on from where it stopped if the connection to
//! jwd is lost.

use tokio::sync::watch;

use crate::args::Cli;
use crate::connect::connect;
use crate::failure::Failure;
use crate::follow::{follow_from, Follow, Seek};
use crate::output::Offsets;
use crate::resolve::resolve;
use crate::rfc3339::Since;

/// What `jw logs` reads.
pub(crate) struct LogsArgs {
    pub(crate) follow: bool,
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
    pub(crate) from: u64,
    pub(crate) tail: Option<u64>,
    pub(crate) since: Option<Since>,
    pub(crate) timestamps: bool,
}

/// The protocol version `Read` needs.
const READ_VERSION: u32 = 3;

/// `jw logs`: the selected streams from `from`, the last `tail` lines or
/// `since` a time, followed to the job's end with `follow`.
pub(crate) async fn logs(cli: &Cli, args: LogsArgs, given: &str) -> Result<u8, Failure> {
    let client = connect(cli).await?;
    let seek = Seek {
        tail_lines: args.tail,
        since_us: args.since.map(Since::unix_us),
        timestamps: args.timestamps,
    };
    let version = client.welcome().version;
    if seek.needs_read() && version < READ_VERSION {
        let flag = match (args.tail, args.since) {
            (Some(_), _) => "--tail",
            (_, Some(_)) => "--since",
            _ => "--timestamps",
        };
        return Err(Failure::new(format!(
            "jwd speaks protocol {version}; {flag} needs {READ_VERSION} \
             (upgrade jwd, or read by byte offset with --from)"
        )));
    }
    let id = resolve(&client, given).await?;
    let from = args.from;
    let (out, err) = match (args.stdout, args.stderr) {
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
        follow: args.follow,
    };
    let (current, _) = watch::channel(client);
    follow_from(cli, what, seek, &current).await?;
    Ok(0)
}
