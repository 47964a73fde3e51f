//! The command line of `jw`: the clap definitions of every command and flag,
//! and the checks of flag values clap cannot make itself.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use jw::protocol::JobId;
use jw::units::{parse_bytes, parse_duration};

use crate::detach::{parse_detach_keys, DetachKeys};
use crate::failure::Failure;
use crate::signame::parse_signal;

/// Run commands on a jw server, in their own cgroups and namespaces.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// jwd's address.
    #[arg(long, env = "JW_ADDR", default_value = "127.0.0.1:7443", global = true)]
    pub(crate) addr: String,
    /// The CA certificate that signed jwd's certificate.
    #[arg(long, env = "JW_CA", global = true)]
    pub(crate) ca: Option<PathBuf>,
    /// Your certificate (its CN is your user name).
    #[arg(long, env = "JW_CERT", global = true)]
    pub(crate) cert: Option<PathBuf>,
    /// Your private key.
    #[arg(long, env = "JW_KEY", global = true)]
    pub(crate) key: Option<PathBuf>,
    /// How long `logs`, `run` and `attach` try to reconnect when the
    /// connection to jwd is lost, each time it is (0: not at all).
    #[arg(
        long,
        env = "JW_RECONNECT_TIMEOUT",
        default_value = "60s",
        value_parser = parse_duration,
        global = true
    )]
    pub(crate) reconnect_timeout: Duration,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Start a job and print its id.
    Start(JobArgs),
    /// Start a job, stream its output, exit with its exit code.
    ///
    /// Signals: without -i/-t, Ctrl-C (SIGINT) stops the job with --grace
    /// and a second one kills it at once. With -i or -t, a SIGINT jw
    /// receives is sent to the job's command instead; in a raw terminal
    /// (-it) Ctrl-C is a byte typed into the job's terminal, as with ssh.
    /// SIGTERM, SIGHUP and SIGQUIT are always sent on to the job's
    /// command. jw runs on until the job ends.
    Run(RunArgs),
    /// Type into a job started with -i or -t, and follow its output.
    ///
    /// Forwards your input (its end too) and follows the job's output from
    /// where it is now; exits with the job's exit code when it ends. Detach (leave the job running) with the --detach-keys when your
    /// input is a terminal and the job has one. SIGINT, SIGTERM, SIGHUP and
    /// SIGQUIT jw receives are sent on to the job's command.
    Attach {
        #[command(flatten)]
        keys: DetachArgs,
        id: JobId,
    },
    /// Send a signal to a job's command (or, with --all, every process of the job).
    Kill {
        /// The signal: a name (TERM, SIGTERM, term) or a number from 1 to 31.
        #[arg(short = 's', long = "signal", default_value = "TERM", value_parser = parse_signal)]
        signal: i32,
        /// Every process of the job, not only its command.
        #[arg(long)]
        all: bool,
        id: JobId,
    },
    /// Print a job's output: all of it, from --from, its last lines
    /// (--tail) or since a time (--since), dated with --timestamps.
    ///
    /// stdout and stderr come in the order jwd captured them from the
    /// job's two pipes: writes to the two closer together than that
    /// capture may come out stream by stream (as with docker); `2>&1` in
    /// the command, or a terminal (`jw run -t`), keeps the exact order.
    Logs {
        /// Follow the output until the job ends.
        #[arg(short, long)]
        follow: bool,
        /// Only stdout.
        #[arg(long, conflicts_with = "stderr")]
        stdout: bool,
        /// Only stderr.
        #[arg(long)]
        stderr: bool,
        /// Start at this byte offset (of each selected stream).
        #[arg(long, default_value_t = 0, conflicts_with_all = ["tail", "since"])]
        from: u64,
        /// Begin at the last N lines (of the selected streams together, in
        /// the order captured).
        #[arg(short = 'n', long, value_name = "N")]
        tail: Option<u64>,
        /// Begin at the output captured since a time: a duration ago (10m,
        /// 2h, 90s) or an RFC 3339 time (2026-12-02T10:00:00Z). With
        /// --tail, the later of the two. Times are exact to 10 ms.
        #[arg(long, value_name = "DURATION|TIME", value_parser = crate::rfc3339::parse_since)]
        since: Option<crate::rfc3339::Since>,
        /// Begin each line with the time it was captured (RFC 3339, UTC).
        #[arg(short, long)]
        timestamps: bool,
        id: JobId,
    },
    /// Show a job's status.
    Status {
        #[arg(long)]
        json: bool,
        id: JobId,
    },
    /// List your jobs (admins: --all for everyone's).
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Stop a job: SIGTERM, then SIGKILL to all its processes after the grace period.
    Stop {
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        grace: Duration,
        id: JobId,
    },
    /// Wait for a job to end; exit with its exit code.
    Wait { id: JobId },
    /// Remove an ended job and its output.
    Rm { id: JobId },
    /// Certificates for a deployment.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
pub(crate) enum CertsCommand {
    /// Make a server CA, a client CA, a server certificate and user certificates.
    Init {
        /// Directory to write into (created; existing files are never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// DNS name or IP address of the server (repeatable).
        #[arg(long = "server-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
        server_names: Vec<String>,
        /// A user to issue a certificate for (repeatable).
        #[arg(long = "user")]
        users: Vec<String>,
        /// An admin to issue a certificate for (repeatable): O=admin.
        #[arg(long = "admin")]
        admins: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: i64,
        /// Also write rogue.crt (untrusted CA) and expired.crt, for tests.
        #[arg(long, hide = true)]
        test_extras: bool,
    },
}

#[derive(ClapArgs)]
pub(crate) struct JobArgs {
    /// CPU limit in cores (e.g. 0.5).
    #[arg(long)]
    pub(crate) cpu: Option<f64>,
    /// Memory limit (e.g. 256M).
    #[arg(long, value_parser = parse_bytes)]
    pub(crate) memory: Option<u64>,
    /// Read bandwidth per block device, bytes/s (e.g. 10M).
    #[arg(long, value_parser = parse_bytes)]
    pub(crate) io_read: Option<u64>,
    /// Write bandwidth per block device, bytes/s (e.g. 10M).
    #[arg(long, value_parser = parse_bytes)]
    pub(crate) io_write: Option<u64>,
    /// Most processes and threads at once.
    #[arg(long)]
    pub(crate) pids: Option<u32>,
    /// Most output bytes kept (e.g. 100M).
    #[arg(long, value_parser = parse_bytes)]
    pub(crate) max_output: Option<u64>,
    /// Environment variable for the job (repeatable).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub(crate) env: Vec<String>,
    /// Working directory inside the job.
    #[arg(short = 'w', long = "workdir")]
    pub(crate) workdir: Option<String>,
    /// Network: none (own namespace with lo) or host.
    #[arg(long, default_value = "none", value_parser = ["none", "host"])]
    pub(crate) net: String,
    /// Grace period when Ctrl-C stops a `jw run` job (without -i/-t).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) grace: Duration,
    /// Keep the job's stdin open: `run` forwards yours to it (its end
    /// too); after `start`, `jw attach` writes to it.
    #[arg(short = 'i', long)]
    pub(crate) interactive: bool,
    /// Give the job a terminal of your terminal's size (24x80 if your
    /// stdin is not one), and your TERM; its stdout and stderr are one
    /// stream. With -i, `run` forwards your input into it, puts your
    /// terminal in raw mode (if stdin is one) and forwards window size
    /// changes; without -i nothing is typed into it but by `jw attach`.
    #[arg(short = 't', long)]
    pub(crate) tty: bool,
    /// The command and its arguments. Options before it are jw's; from
    /// the command on, every argument is the command's.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub(crate) command: Vec<String>,
}

#[derive(ClapArgs)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) job: JobArgs,
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
        value_parser = parse_detach_keys
    )]
    pub(crate) detach_keys: DetachKeys,
}

/// A `--grace` period in milliseconds, as the protocol carries it.
pub(crate) fn grace_ms(grace: Duration) -> Result<u32, Failure> {
    u32::try_from(grace.as_millis())
        .ok()
        .filter(|ms| *ms <= 3_600_000)
        .ok_or_else(|| Failure("invalid --grace: at most 1h".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let cli = Cli::try_parse_from(["jw", "run"].iter().chain(args))?;
        match cli.command {
            Command::Run(args) => Ok(args),
            _ => unreachable!("parsed jw run"),
        }
    }

    #[test]
    fn options_before_the_command_are_jws() {
        let it = run_args(&["-it", "--", "sh"]).unwrap();
        assert!(it.job.interactive && it.job.tty);
        assert_eq!(it.job.command, ["sh"]);
        let split = run_args(&["-i", "-t", "sh", "-c", "exit 3"]).unwrap();
        assert!(split.job.interactive && split.job.tty);
        assert_eq!(split.job.command, ["sh", "-c", "exit 3"]);
        // From the command on, arguments that look like options are its own.
        let echo = run_args(&["echo", "-n", "hi", "--memory", "1G", "-i"]).unwrap();
        assert_eq!(
            echo.job.command,
            ["echo", "-n", "hi", "--memory", "1G", "-i"]
        );
        assert!(!echo.job.interactive);
        assert_eq!(echo.job.memory, None);
        let dashed = run_args(&["--", "-it"]).unwrap();
        assert_eq!(dashed.job.command, ["-it"]);
    }

    #[test]
    fn an_unknown_option_before_the_command_is_a_usage_error() {
        for args in [&["--memroy", "1G", "--", "true"][..], &["-x", "true"]] {
            let Err(e) = run_args(args) else {
                panic!("{args:?} parsed");
            };
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{args:?}"
            );
        }
        let Err(e) = run_args(&["-it"]) else {
            panic!("-it alone parsed");
        };
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }
}
