//! jwd's flags: every setting, its default and its parser. The config file
//! (`--config`, `file.rs`) takes the same names.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueHint};
use jw::job::cgroup::CgroupConfig;
use jw::job::uids::UidRange;
use jw::job::EngineConfig;
use jw::units::{parse_bytes, parse_duration};

/// jwd runs Linux jobs for remote users, each in its own cgroup and
/// namespaces, over TLS 1.3 with mutual authentication.
#[derive(Parser, Debug)]
#[command(name = "jwd", version = env!("JW_VERSION"), about)]
pub(crate) struct Args {
    /// Read settings from this TOML file: each key is one of these flags'
    /// long name without the dashes (`data-dir = "/var/lib/jw"`, `crl =
    /// ["/etc/jw/pki/crl.pem"]`, `keep-jobs-on-exit = true`); a flag given
    /// on the command line overrides the file's value.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub(crate) config: Option<PathBuf>,
    /// Check the settings, certificates, key modes, data directory and
    /// cgroup layout, print what was found, and exit: 0 when jwd could
    /// start with them, 1 when not (like `sshd -t`). Starts nothing.
    #[arg(long)]
    pub(crate) check_config: bool,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub(crate) listen: SocketAddr,
    /// The server's certificate chain (PEM).
    #[arg(long, value_hint = ValueHint::FilePath)]
    pub(crate) cert: PathBuf,
    /// The server's private key (PEM; owner-only).
    #[arg(long, value_hint = ValueHint::FilePath)]
    pub(crate) key: PathBuf,
    /// The CA that signs client certificates (PEM).
    #[arg(long, value_hint = ValueHint::FilePath)]
    pub(crate) client_ca: PathBuf,
    /// A certificate revocation list of the client CA (PEM; `jw certs
    /// revoke` writes one); repeatable. Reloaded on SIGHUP.
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub(crate) crl: Vec<PathBuf>,
    /// Where job output and status records are kept.
    #[arg(long, default_value = "/var/lib/jw", value_hint = ValueHint::DirPath)]
    pub(crate) data_dir: PathBuf,
    /// Run every job as this one account instead of a uid of its own
    /// (`root` only when given explicitly; jobs never keep a capability).
    #[arg(long, conflicts_with = "job_uids")]
    pub(crate) job_user: Option<String>,
    /// The uids (and gids) jobs run as, one per running job, FIRST-LAST;
    /// must not hold any account, group or subordinate id of the host.
    #[arg(long, default_value = jw::job::uids::DEFAULT_RANGE)]
    pub(crate) job_uids: UidRange,
    /// Memory limit of a job that gives none (`none`: no limit).
    #[arg(long, default_value = "1G", value_parser = parse_optional_bytes)]
    pub(crate) default_memory: OrNone<u64>,
    /// Pids limit of a job that gives none (`none`: no limit).
    #[arg(long, default_value = "1024", value_parser = parse_optional_count)]
    pub(crate) default_pids: OrNone<u32>,
    /// Do not install the default seccomp filter in jobs (it refuses new
    /// namespaces, mounts, keyrings, bpf, io_uring and other kernel
    /// surface jobs do not need).
    #[arg(long)]
    pub(crate) no_seccomp: bool,
    /// The certificate subject O value that makes a user admin.
    #[arg(long, default_value = "admin")]
    pub(crate) admin_group: String,
    /// Connections past this number are refused at once (default: a quarter
    /// of the file descriptor limit jwd runs with, so accepting never fails
    /// for lack of descriptors: jobs and followers need theirs).
    #[arg(long)]
    pub(crate) max_connections: Option<usize>,
    /// Connections still in their TLS handshake and Hello, past which new
    /// ones are refused (so clients without a certificate cannot take
    /// every connection).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_handshakes: u32,
    /// Connections one user may have open at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_connections_per_user: u32,
    /// Streams (requests in progress: logs, waits, starts...) one user may
    /// have open at once, over all their connections.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_streams_per_user: u32,
    /// Jobs one user may have starting or running at once (`none`: no
    /// limit).
    #[arg(long, default_value = "1024", value_parser = parse_optional_jobs)]
    pub(crate) max_jobs_per_user: OrNone<usize>,
    /// Let jobs ask for the host's network (`--net host`).
    #[arg(long)]
    pub(crate) allow_host_network: bool,
    /// Output kept per job (stdout + stderr); the rest is dropped and counted.
    #[arg(long, default_value = "1G", value_parser = parse_bytes)]
    pub(crate) max_output: u64,
    /// Output one user may keep over all their jobs (running and ended);
    /// past it their jobs' output is dropped and counted and new starts
    /// are refused until they remove jobs (`none`: no cap).
    #[arg(
        long,
        alias = "max-output-per-user",
        default_value = "10G",
        value_parser = parse_optional_bytes
    )]
    pub(crate) max_output_total: OrNone<u64>,
    /// The longest timeout a job may ask for (e.g. 12h), and the timeout
    /// of a job that asks for none; default: no ceiling.
    #[arg(long, value_parser = parse_positive_duration)]
    pub(crate) max_timeout: Option<Duration>,
    /// Remove ended jobs, their output with them, this long after they
    /// ended (e.g. 30d, 12h; `none`: keep them until removed).
    #[arg(long, default_value = "7d", value_parser = parse_optional_duration)]
    pub(crate) retain: OrNone<Duration>,
    /// Name of jw's cgroup subtree under jwd's own cgroups. One per server
    /// instance on a host; a restarted jwd cleans up what the last one with
    /// the same name left.
    #[arg(long, default_value = "jw", value_parser = parse_cgroup_name)]
    pub(crate) cgroup_name: String,
    /// io_uring runtimes (threads), each accepting on the one listening
    /// socket.
    #[arg(long, default_value_t = default_threads())]
    pub(crate) threads: usize,
    /// Grace period for running jobs when jwd is asked to stop.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) shutdown_grace: Duration,
    /// On SIGTERM/SIGINT, leave running jobs to their keepers instead of
    /// stopping them: the next jwd on the same data dir and cgroup name
    /// adopts them (restarts, upgrades: `systemctl restart jwd`).
    #[arg(long)]
    pub(crate) keep_jobs_on_exit: bool,
    /// Close connections that have not finished TLS and Hello in this time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) handshake_timeout: Duration,
    /// The job init program, executed as each job's PID 1 (default:
    /// jw-init beside jwd).
    #[arg(long, value_hint = ValueHint::FilePath)]
    pub(crate) init: Option<PathBuf>,
    /// Close connections without open streams after this time.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub(crate) idle_timeout: Duration,
    /// Close a connection whose client takes nothing of a pending write for
    /// this long (a client that stopped reading).
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
    pub(crate) write_timeout: Duration,
    /// How long a stop waits for a job to end after SIGKILL (repeated each
    /// second) before it tells the client it failed.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub(crate) kill_timeout: Duration,
    /// Job starts one user may have in progress at once (default: the
    /// number of CPUs); more wait their turn, so one user's start storm
    /// takes no more than a fair share of the host.
    #[arg(long, default_value_t = default_threads() as u32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub(crate) max_starts_per_user: u32,
    /// Threads for blocking work (cgroups, clone, output and record
    /// writes, directory removal), kept off the threads serving clients.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) blocking_threads: u16,
}

impl Args {
    /// The engine's part of the settings.
    pub(crate) fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            data_dir: self.data_dir.clone(),
            cgroup: CgroupConfig {
                name: self.cgroup_name.clone(),
                ..CgroupConfig::default()
            },
            job_user: self.job_user.clone(),
            job_uids: self.job_uids,
            allow_host_network: self.allow_host_network,
            max_output_bytes: self.max_output,
            max_output_per_user: self.max_output_total.0,
            default_memory_bytes: self.default_memory.0,
            default_pids: self.default_pids.0,
            seccomp: !self.no_seccomp,
            max_jobs_per_user: self.max_jobs_per_user.0,
            // The key is the secret (the certificates are public); each
            // hidden path costs every job start a mount.
            hidden: vec![self.key.clone()],
            init_program: self.init.clone(),
            kill_timeout: self.kill_timeout,
            blocking_threads: usize::from(self.blocking_threads),
            max_starts_per_user: self.max_starts_per_user as usize,
            shutdown_grace: self.shutdown_grace,
            retain: self.retain.0,
            keep_jobs_on_exit: self.keep_jobs_on_exit,
            max_timeout: self.max_timeout,
        }
    }
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: give a duration above zero, e.g. 60s")),
        d => Ok(d),
    }
}

/// A flag value that may be `none`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OrNone<T>(pub(crate) Option<T>);

fn parse_optional_bytes(s: &str) -> Result<OrNone<u64>, String> {
    if s == "none" {
        return Ok(OrNone(None));
    }
    parse_bytes(s).map(|n| OrNone(Some(n)))
}

fn parse_optional_duration(s: &str) -> Result<OrNone<Duration>, String> {
    if s == "none" {
        return Ok(OrNone(None));
    }
    parse_positive_duration(s).map(|d| OrNone(Some(d)))
}

fn parse_optional_count(s: &str) -> Result<OrNone<u32>, String> {
    if s == "none" {
        return Ok(OrNone(None));
    }
    match s.parse::<u32>() {
        Ok(n) if n >= 2 => Ok(OrNone(Some(n))),
        _ => Err(format!(
            "{s:?} is not a pids limit: give a number of at least 2, or none"
        )),
    }
}

fn parse_optional_jobs(s: &str) -> Result<OrNone<usize>, String> {
    if s == "none" {
        return Ok(OrNone(None));
    }
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(OrNone(Some(n))),
        _ => Err(format!(
            "{s:?} is not a number of jobs: give a number of at least 1, or none"
        )),
    }
}

/// A cgroup name: one directory name, never a path (`/`, `..` or `a/b`
/// would put jw's subtree, and the job cgroups jwd makes and removes, in
/// a directory of someone else's or outside the cgroup filesystem).
fn parse_cgroup_name(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(format!(
            "{s:?} is not a cgroup name: give 1-64 of A-Z a-z 0-9 . _ - not starting with a dot (one directory name, not a path)"
        ));
    }
    Ok(s.to_string())
}

pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
