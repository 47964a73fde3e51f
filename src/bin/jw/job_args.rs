//! The flags of a new job (`jw start`, `jw run`) and of an interactive
//! session (`jw run -i`, `jw attach`).

use std::time::Duration;

use clap::Args as ClapArgs;
use jw::protocol::EnvVar;
use jw::units::parse_bytes;

use crate::detach::{parse_detach_keys, DetachKeys};
use crate::values::{parse_cores, parse_env, parse_grace, parse_name, parse_timeout};

#[derive(ClapArgs)]
pub(crate) struct JobArgs {
    /// A name for the job, unique among your jobs until `jw rm`: other
    /// commands take it instead of the id. 1 to 64 letters, digits, '_',
    /// '.' or '-'.
    #[arg(long, value_name = "NAME", value_parser = parse_name, help_heading = "Job")]
    pub(crate) name: Option<String>,
    /// Environment variable for the job (repeatable).
    #[arg(short = 'e', long = "env", value_name = "K=V", value_parser = parse_env, help_heading = "Job")]
    pub(crate) env: Vec<EnvVar>,
    /// Working directory inside the job (absolute).
    #[arg(
        short = 'w',
        long = "workdir",
        value_name = "DIR",
        help_heading = "Job"
    )]
    pub(crate) workdir: Option<String>,
    /// Network: none (own namespace with lo) or host.
    #[arg(long, default_value = "none", value_parser = ["none", "host"], help_heading = "Job")]
    pub(crate) net: String,
    /// How long a stop waits between SIGTERM and SIGKILL: when Ctrl-C,
    /// SIGTERM or SIGHUP stop a `jw run` job, when jw goes away, and when
    /// --timeout ends the job. At most 1h.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_grace, help_heading = "Job")]
    pub(crate) grace: Duration,
    /// Keep the job's stdin open: `run` forwards yours to it (its end
    /// too); after `start`, `jw attach` writes to it.
    #[arg(short = 'i', long, help_heading = "Job")]
    pub(crate) interactive: bool,
    /// Give the job a terminal of your terminal's size (24x80 if your
    /// stdin is not one), and your TERM; its stdout and stderr are one
    /// stream. With -i, `run` forwards your input into it, puts your
    /// terminal in raw mode (if stdin is one) and forwards window size
    /// changes; without -i nothing is typed into it but by `jw attach`.
    #[arg(short = 't', long, help_heading = "Job")]
    pub(crate) tty: bool,
    /// CPU limit in cores (e.g. 0.5; at most the host's cores).
    #[arg(long, value_name = "CORES", value_parser = parse_cores, help_heading = "Limits")]
    pub(crate) cpu: Option<u32>,
    /// Memory limit (e.g. 256M, 2G). Without it jwd's default applies.
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes, help_heading = "Limits")]
    pub(crate) memory: Option<u64>,
    /// Read bandwidth per block device, bytes/s (e.g. 10M).
    #[arg(long, value_name = "RATE", value_parser = parse_bytes, help_heading = "Limits")]
    pub(crate) io_read: Option<u64>,
    /// Write bandwidth per block device, bytes/s (e.g. 10M).
    #[arg(long, value_name = "RATE", value_parser = parse_bytes, help_heading = "Limits")]
    pub(crate) io_write: Option<u64>,
    /// Most processes and threads at once.
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub(crate) pids: Option<u32>,
    /// Most output bytes kept (e.g. 100M); what comes after is dropped,
    /// and `jw run`/`jw wait` say how much on stderr.
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes, help_heading = "Limits")]
    pub(crate) max_output: Option<u64>,
    /// Stop the job this long after it started (SIGTERM, then SIGKILL
    /// after --grace): e.g. 30s, 10m, 2h. `jw run` then exits 124.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, help_heading = "Limits")]
    pub(crate) timeout: Option<Duration>,
    /// The command and its arguments. Options before it are jw's; from
    /// the command on, every argument is the command's.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub(crate) command: Vec<String>,
}

#[derive(ClapArgs)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) job: JobArgs,
    /// Start the job and print its id, as `jw start`: it runs on without
    /// this jw.
    #[arg(short = 'd', long, help_heading = "Job")]
    pub(crate) detach: bool,
    /// Say the job's id on stderr (said anyway when stderr is a terminal).
    #[arg(short = 'v', long, help_heading = "Output")]
    pub(crate) verbose: bool,
    #[command(flatten)]
    pub(crate) keys: DetachArgs,
}

#[derive(ClapArgs)]
pub(crate) struct DetachArgs {
    /// The keys that detach from the job, leaving it running, when your
    /// stdin is a terminal in raw mode: comma-separated `ctrl-X` or single
    /// characters; empty: none.
    #[arg(
        long = "detach-keys",
        value_name = "KEYS",
        default_value = "ctrl-p,ctrl-q",
        value_parser = parse_detach_keys,
        help_heading = "Job"
    )]
    pub(crate) detach_keys: DetachKeys,
}
