//! `jwd`: the jw server. See README.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use jw::job::cgroup::CgroupConfig;
use jw::job::uids::UidRange;
use jw::job::{EngineConfig, Manager};
use jw::server::{Server, ServerConfig, UserLimits};
use jw::units::{parse_bytes, parse_duration};
use nix::sys::signal::{SigSet, Signal};

/// jwd runs Linux jobs for remote users, each in its own cgroup and
/// namespaces, over TLS 1.3 with mutual authentication.
#[derive(Parser, Debug)]
#[command(name = "jwd", version = env!("JW_VERSION"), about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7443")]
    listen: SocketAddr,
    /// The server's certificate chain (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// The server's private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The CA that signs client certificates (PEM).
    #[arg(long)]
    client_ca: PathBuf,
    /// Where job output and status records are kept.
    #[arg(long, default_value = "/var/lib/jw")]
    data_dir: PathBuf,
    /// Run every job as this one account instead of a uid of its own
    /// (`root` only when given explicitly; jobs never keep a capability).
    #[arg(long, conflicts_with = "job_uids")]
    job_user: Option<String>,
    /// The uids (and gids) jobs run as, one per running job, FIRST-LAST;
    /// must not hold any account, group or subordinate id of the host.
    #[arg(long, default_value = jw::job::uids::DEFAULT_RANGE)]
    job_uids: UidRange,
    /// Memory limit of a job that gives none (`none`: no limit).
    #[arg(long, default_value = "1G", value_parser = parse_optional_bytes)]
    default_memory: OrNone<u64>,
    /// Pids limit of a job that gives none (`none`: no limit).
    #[arg(long, default_value = "1024", value_parser = parse_optional_count)]
    default_pids: OrNone<u32>,
    /// Do not install the default seccomp filter in jobs (it refuses new
    /// namespaces, mounts, keyrings, bpf, io_uring and other kernel
    /// surface jobs do not need).
    #[arg(long)]
    no_seccomp: bool,
    /// The certificate subject O value that makes a user admin.
    #[arg(long, default_value = "admin")]
    admin_group: String,
    /// Connections past this number are refused at once (default: a quarter
    /// of the file descriptor limit jwd runs with, so accepting never fails
    /// for lack of descriptors: jobs and followers need theirs).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Connections still in their TLS handshake and Hello, past which new
    /// ones are refused (so clients without a certificate cannot take
    /// every connection).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    max_handshakes: u32,
    /// Connections one user may have open at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_user: u32,
    /// Streams (requests in progress: logs, waits, starts...) one user may
    /// have open at once, over all their connections.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    max_streams_per_user: u32,
    /// Jobs one user may have starting or running at once (`none`: no
    /// limit).
    #[arg(long, default_value = "1024", value_parser = parse_optional_jobs)]
    max_jobs_per_user: OrNone<usize>,
    /// Let jobs ask for the host's network (`--net host`).
    #[arg(long)]
    allow_host_network: bool,
    /// Output kept per job (stdout + stderr); the rest is dropped and counted.
    #[arg(long, default_value = "1G", value_parser = parse_bytes)]
    max_output: u64,
    /// Output one user may keep over all their jobs (running and ended);
    /// past it their jobs' output is dropped and counted and new starts
    /// are refused until they remove jobs (`none`: no cap).
    #[arg(long, default_value = "10G", value_parser = parse_optional_bytes)]
    max_output_per_user: OrNone<u64>,
    /// The longest timeout a job may ask for (e.g. 12h), and the timeout
    /// of a job that asks for none; default: no ceiling.
    #[arg(long, value_parser = parse_positive_duration)]
    max_timeout: Option<Duration>,
    /// Remove ended jobs this long after they ended (e.g. 7d); default: keep.
    #[arg(long, value_parser = parse_duration)]
    retain: Option<Duration>,
    /// Name of jw's cgroup subtree under jwd's own cgroups. One per server
    /// instance on a host; a restarted jwd cleans up what the last one with
    /// the same name left.
    #[arg(long, default_value = "jw")]
    cgroup_name: String,
    /// io_uring runtimes (threads), each with its own listener.
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    /// Grace period for running jobs when jwd is asked to stop.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// On SIGTERM/SIGINT, leave running jobs to their keepers instead of
    /// stopping them: the next jwd on the same data dir and cgroup name
    /// adopts them (restarts, upgrades: `systemctl restart jwd`).
    #[arg(long)]
    keep_jobs_on_exit: bool,
    /// Close connections that have not finished TLS and Hello in this time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    handshake_timeout: Duration,
    /// The job init program, executed as each job's PID 1 (default:
    /// jw-init beside jwd).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Close connections without open streams after this time.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Close a connection whose client takes nothing of a pending write for
    /// this long (a client that stopped reading).
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
    write_timeout: Duration,
    /// How long a stop waits for a job to end after SIGKILL (repeated each
    /// second) before it tells the client it failed.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    kill_timeout: Duration,
    /// Job starts one user may have in progress at once (default: the
    /// number of CPUs); more wait their turn, so one user's start storm
    /// takes no more than a fair share of the host.
    #[arg(long, default_value_t = default_threads() as u32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_starts_per_user: u32,
    /// Threads for blocking work (cgroups, clone, output and record
    /// writes, directory removal), kept off the threads serving clients.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    blocking_threads: u16,
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: give a duration above zero, e.g. 60s")),
        d => Ok(d),
    }
}

/// A flag value that may be `none`.
#[derive(Debug, Clone, Copy)]
struct OrNone<T>(Option<T>);

fn parse_optional_bytes(s: &str) -> Result<OrNone<u64>, String> {
    if s == "none" {
        return Ok(OrNone(None));
    }
    parse_bytes(s).map(|n| OrNone(Some(n)))
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

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Raises the fd limit as far as this host allows (every connection,
/// follower and job costs descriptors) and returns the limit in force.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    let want = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard)
        .min(1 << 20)
        .max(hard);
    if setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return want;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// The default connection cap: a quarter of the descriptors, the rest for
/// running jobs (one each), followers' files and the blocking pool.
fn connection_cap(fd_limit: u64) -> usize {
    (fd_limit / 4).max(16) as usize
}

/// Takes jwd out of the OOM killer's choice (its own jobs are limited by
/// their memory cgroups; jw-init puts each job back to the default score).
fn protect_from_oom_killer() {
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", b"-1000") {
        tracing::warn!(error = %e, "cannot set jwd's oom_score_adj to -1000: the OOM killer may choose jwd over a job");
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jwd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    // Block the stop signals before any thread exists, so every thread
    // inherits the mask and only the main thread's sigwait sees them.
    let mut stop_signals = SigSet::empty();
    stop_signals.add(Signal::SIGTERM);
    stop_signals.add(Signal::SIGINT);
    stop_signals
        .thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;
    let fd_limit = raise_fd_limit();
    // Everything jwd creates (data directory, output, records) is
    // owner-only, whatever the code path.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    protect_from_oom_killer();
    if args.job_user.as_deref() == Some("root") {
        tracing::warn!("--job-user root: jobs hold no capability, but as uid 0 they own, and can read, every root-owned file of the host they can see (/etc/shadow, other services' keys); use it only for tenants you trust with that");
    }

    let tls = jw::tls::server_config(&args.cert, &args.key, &args.client_ca)
        .map_err(|e| e.to_string())?;
    let manager = Manager::new(EngineConfig {
        data_dir: args.data_dir.clone(),
        cgroup: CgroupConfig {
            name: args.cgroup_name.clone(),
            ..CgroupConfig::default()
        },
        job_user: args.job_user.clone(),
        job_uids: args.job_uids,
        allow_host_network: args.allow_host_network,
        max_output_bytes: args.max_output,
        max_output_per_user: args.max_output_per_user.0,
        default_memory_bytes: args.default_memory.0,
        default_pids: args.default_pids.0,
        seccomp: !args.no_seccomp,
        max_jobs_per_user: args.max_jobs_per_user.0,
        // The key is the secret (the certificates are public); each
        // hidden path costs every job start a mount.
        hidden: vec![args.key.clone()],
        init_program: args.init.clone(),
        kill_timeout: args.kill_timeout,
        blocking_threads: usize::from(args.blocking_threads),
        max_starts_per_user: args.max_starts_per_user as usize,
        shutdown_grace: args.shutdown_grace,
        retain: args.retain,
        keep_jobs_on_exit: args.keep_jobs_on_exit,
        max_timeout: args.max_timeout,
    })
    .map_err(|e| e.to_string())?;
    let probe = args.data_dir.join("jobs").join(".write-test");
    std::fs::write(&probe, b"").map_err(|e| {
        format!(
            "cannot write to the data directory {}: {e}",
            args.data_dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);

    let server = Server::start(
        ServerConfig {
            listen: args.listen,
            tls,
            admin_group: args.admin_group.clone(),
            max_connections: args
                .max_connections
                .unwrap_or_else(|| connection_cap(fd_limit)),
            max_handshakes: args.max_handshakes as usize,
            user_limits: UserLimits {
                connections: args.max_connections_per_user as usize,
                streams: args.max_streams_per_user as usize,
            },
            handshake_timeout: args.handshake_timeout,
            idle_timeout: args.idle_timeout,
            write_timeout: args.write_timeout,
            threads: args.threads.max(1),
        },
        manager.clone(),
    )
    .map_err(|e| e.to_string())?;
    tracing::info!(
        listen = %server.local_addr(),
        layout = %manager.layout(),
        data_dir = %args.data_dir.display(),
        job_user = args.job_user.as_deref().unwrap_or("-"),
        job_uids = %args.job_uids,
        default_memory = ?args.default_memory.0,
        default_pids = ?args.default_pids.0,
        seccomp = !args.no_seccomp,
        threads = args.threads.max(1),
        host_network = args.allow_host_network,
        fd_limit,
        max_handshakes = args.max_handshakes,
        max_connections_per_user = args.max_connections_per_user,
        max_streams_per_user = args.max_streams_per_user,
        max_jobs_per_user = ?args.max_jobs_per_user.0,
        max_output_per_user = ?args.max_output_per_user.0,
        max_starts_per_user = args.max_starts_per_user,
        max_timeout = ?args.max_timeout,
        "jwd ready"
    );

    let signal = stop_signals
        .wait()
        .map_err(|e| format!("cannot wait for signals: {e}"))?;
    if args.keep_jobs_on_exit {
        tracing::info!(%signal, "shutting down: closing connections; running jobs stay with their keepers for the next jwd");
    } else {
        tracing::info!(%signal, grace = ?args.shutdown_grace, "shutting down: closing connections and stopping running jobs");
    }
    server.shutdown();
    manager.cgroups().remove_subtree();
    tracing::info!("jwd stopped");
    Ok(())
}
