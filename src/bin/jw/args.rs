//! The command line of `jw`: the clap definitions of every command and
//! its flags (the flags of a new job are in `job_args.rs`, the checks of
//! their values in `values.rs`, the examples in `help.rs`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use jw::units::parse_duration;

use crate::job_args::{DetachArgs, JobArgs, RunArgs};
use crate::signame::parse_signal;
use crate::values::{parse_connect_timeout, parse_grace, parse_state, StateFilter};

/// Run commands on a jw server, in their own cgroups and namespaces.
///
/// A job is a command jwd runs for you with its own limits, output and
/// life; jw starts it, follows it, stops it. Commands that take an ID take
/// the full id, any unique start of it of at least 4 characters, or the
/// job's --name.
#[derive(Parser)]
#[command(version = env!("JW_VERSION"), about, propagate_version = true)]
pub(crate) struct Cli {
    /// jwd's address, HOST:PORT.
    #[arg(
        long,
        env = "JW_ADDR",
        default_value = "127.0.0.1:7443",
        global = true,
        help_heading = "Connection"
    )]
    pub(crate) addr: String,
    /// The CA certificate that signed jwd's certificate (PEM).
    #[arg(
        long,
        env = "JW_CA",
        value_name = "FILE",
        global = true,
        help_heading = "Connection"
    )]
    pub(crate) ca: Option<PathBuf>,
    /// Your certificate (PEM; its CN is your user name).
    #[arg(
        long,
        env = "JW_CERT",
        value_name = "FILE",
        global = true,
        help_heading = "Connection"
    )]
    pub(crate) cert: Option<PathBuf>,
    /// Your private key (PEM, readable only by you).
    #[arg(
        long,
        env = "JW_KEY",
        value_name = "FILE",
        global = true,
        help_heading = "Connection"
    )]
    pub(crate) key: Option<PathBuf>,
    /// How long connecting may take, twice: once for the TCP connect, once
    /// for the TLS handshake and jwd's greeting.
    #[arg(
        long,
        env = "JW_CONNECT_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_connect_timeout,
        global = true,
        help_heading = "Connection"
    )]
    pub(crate) connect_timeout: Duration,
    /// How long `logs`, `run` and `attach` try to reconnect when the
    /// connection to jwd is lost, each time it is (0: not at all). A `jw
    /// run` job is stopped when no jw has held it for this long.
    #[arg(
        long,
        env = "JW_RECONNECT_TIMEOUT",
        value_name = "DURATION",
        default_value = "60s",
        value_parser = parse_duration,
        global = true,
        help_heading = "Connection"
    )]
    pub(crate) reconnect_timeout: Duration,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Start a job and print its id; it runs on without jw.
    ///
    /// The job runs until it ends, `jw stop` stops it, or --timeout passes;
    /// follow it with `jw logs -f`, wait for it with `jw wait`.
    Start(JobArgs),
    /// Start a job, stream its output, exit with its exit code.
    ///
    /// The job lives as long as this jw: when jw goes away (SIGTERM,
    /// SIGHUP, a closed stdout as in `jw run ... | head`, a lost connection
    /// not regained within --reconnect-timeout) the job is stopped with
    /// --grace. -d/--detach starts it as `jw start` instead.
    ///
    /// Signals: without -i/-t, Ctrl-C (SIGINT) stops the job with --grace
    /// and a second one kills it at once; SIGTERM, SIGHUP and SIGPIPE stop
    /// it with --grace and jw exits 128+N. With -i or -t, SIGINT, SIGTERM,
    /// SIGHUP and SIGQUIT are sent on to the job's command; in a raw
    /// terminal (-it) Ctrl-C is a byte typed into the job's terminal, as
    /// with ssh.
    ///
    /// Exit code: the job's; 128+N if it died of signal N; 124 if it ran
    /// past --timeout; 126 if the command cannot be executed, 127 if it
    /// does not exist; 255 if the connection to jwd failed or was lost.
    Run(RunArgs),
    /// Type into a job started with -i or -t, and follow its output.
    ///
    /// Forwards your input (its end too) and follows the job's output from
    /// where it is now; exits with the job's exit code when it ends.
    /// Detach (leave the job running) with the --detach-keys when your
    /// input is a terminal and the job has one. SIGINT, SIGTERM, SIGHUP
    /// and SIGQUIT jw receives are sent on to the job's command.
    Attach {
        #[command(flatten)]
        keys: DetachArgs,
        /// The job: its id, a unique start of it (4 characters or more) or its name.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Send a signal to a job's command (or, with --all, every process of the job).
    Kill {
        /// The signal: a name (TERM, SIGTERM, term) or a number from 1 to 31.
        #[arg(short = 's', long = "signal", default_value = "TERM", value_parser = parse_signal)]
        signal: i32,
        /// Every process of the job, not only its command.
        #[arg(long)]
        all: bool,
        /// The job: its id, a unique start of it (4 characters or more) or its name.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Print a job's output: all, the last lines, or since a time.
    ///
    /// All of it, from byte --from, its last lines (--tail) or what came
    /// since a time (--since); each line dated with --timestamps.
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
        /// The job: its id, a unique start of it (4 characters or more) or its name.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Show jobs' status: name, state, limits, timeout, usage, output.
    Status {
        /// One JSON object a job (one a line), for scripts.
        #[arg(long, help_heading = "Output")]
        json: bool,
        /// The jobs: ids, unique starts of ids (4 characters or more) or names.
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
    },
    /// List your jobs (admins: --all for everyone's).
    #[command(alias = "ls")]
    List {
        /// Everyone's jobs (admins only).
        #[arg(long)]
        all: bool,
        /// Only jobs in these states: running, exited, failed, lost,
        /// starting, ended (every state but running and starting).
        /// Repeatable or comma-separated.
        #[arg(long, value_name = "STATE", value_delimiter = ',', value_parser = parse_state)]
        state: Vec<StateFilter>,
        /// Only the ids, one a line.
        #[arg(short, long, conflicts_with = "json", help_heading = "Output")]
        quiet: bool,
        /// A JSON array of the jobs, for scripts.
        #[arg(long, help_heading = "Output")]
        json: bool,
    },
    /// Stop jobs: SIGTERM, then SIGKILL to all their processes after the grace period.
    ///
    /// Says on stderr how each job ended; exits 1 if any could not be
    /// stopped, after trying every one.
    Stop {
        /// How long to wait between SIGTERM and SIGKILL (at most 1h).
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_grace)]
        grace: Duration,
        /// The jobs: ids, unique starts of ids (4 characters or more) or names.
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
    },
    /// Wait for a job to end; exit with its exit code.
    ///
    /// 128+N if it died of signal N, 124 if it ran past its --timeout.
    Wait {
        /// The job: its id, a unique start of it (4 characters or more) or its name.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Remove ended jobs and their output.
    ///
    /// Prints the id of each job removed; exits 1 if any could not be
    /// removed (a job that still runs: `jw stop` it first), after trying
    /// every one.
    Rm {
        /// The jobs: ids, unique starts of ids (4 characters or more) or names.
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
    },
    /// Remove your ended jobs and their output (never one that runs).
    ///
    /// Prints each job removed and the output bytes freed. Asks first when
    /// stdin is a terminal, unless -f.
    Prune {
        /// Only jobs that ended at least this long ago (e.g. 7d, 12h).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        older_than: Option<Duration>,
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
    /// Certificates for a deployment.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print jw's manual page, or a command's, in roff (pipe it to `man -l -`).
    Man {
        /// The command whose page to print (e.g. run); none: jw's own.
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum CertsCommand {
    /// Make a server CA, a client CA, a server certificate, user certificates and an empty CRL.
    ///
    /// Also writes crl.pem (the client CA's revocation list: jwd --crl) and
    /// issued.txt (the record of the client certificates issued: SERIAL
    /// USER NOT-AFTER, one a line). Keys are written 0600.
    Init {
        /// Directory to write into (created; existing files are never overwritten).
        #[arg(long, value_name = "DIR")]
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
        #[arg(long, default_value_t = 3650, value_parser = days())]
        days: i64,
        /// Also write rogue.crt (untrusted CA) and expired.crt, for tests.
        #[arg(long, hide = true)]
        test_extras: bool,
    },
    /// Issue a certificate for a new user: DIR/NAME.crt and DIR/NAME.key.
    ///
    /// Signed by DIR/client-ca.crt and .key; subject CN = NAME, one O a
    /// group. Recorded in DIR/issued.txt. A user who has a certificate is
    /// refused: renew it instead.
    AddUser {
        /// The user name (1-64 of A-Z a-z 0-9 . _ @ -).
        #[arg(value_name = "NAME")]
        name: String,
        /// Also the admin role: O=admin (jwd --admin-group).
        #[arg(long)]
        admin: bool,
        /// A group of the user (repeatable): one subject O each.
        #[arg(long = "group", value_name = "G")]
        groups: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = jw::pki::USER_DAYS, value_parser = days())]
        days: i64,
        /// The PKI directory (made by jw certs init).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Replace a user's (or, as NAME server, jwd's) key and certificate.
    ///
    /// A new key and a new certificate with the same subject (and for the
    /// server the same DNS names and IP addresses), replacing both files
    /// at once. The old certificate stays valid until it expires or is
    /// revoked: to replace a leaked key, revoke NAME, then renew it. jwd
    /// uses a renewed server certificate after SIGHUP (systemctl reload jwd).
    Renew {
        /// The user name, or server.
        #[arg(value_name = "NAME")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = jw::pki::USER_DAYS, value_parser = days())]
        days: i64,
        /// The PKI directory (made by jw certs init).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Revoke every unexpired certificate of a user: add them to DIR/crl.pem.
    ///
    /// The certificates DIR/issued.txt lists for NAME and DIR/NAME.crt;
    /// the CRL keeps its entries, its number grows by one. jwd refuses
    /// them after SIGHUP (systemctl reload jwd) when started with --crl
    /// DIR/crl.pem. Revoking twice changes nothing.
    Revoke {
        /// The user name.
        #[arg(value_name = "NAME")]
        name: String,
        /// The PKI directory (made by jw certs init).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// A certificate's validity in days: 1 to `jw::pki::MAX_DAYS`.
fn days() -> clap::builder::RangedI64ValueParser<i64> {
    clap::value_parser!(i64).range(1..=jw::pki::MAX_DAYS)
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
