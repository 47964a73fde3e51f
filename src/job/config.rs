//! How the engine is set up: `EngineConfig` (every `jwd` flag that is a
//! job rule) and the defaults jobs get when they ask for nothing.

use std::path::PathBuf;
use std::time::Duration;

use super::cgroup::CgroupConfig;
use super::uids::UidRange;

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where job directories (output, status) live.
    pub data_dir: PathBuf,
    pub cgroup: CgroupConfig,
    /// One fixed account every job runs as (`jwd --job-user`); `None`: a
    /// uid and gid of its own per job from `job_uids`.
    pub job_user: Option<String>,
    /// The range per-job uids come from (`jwd --job-uids`).
    pub job_uids: UidRange,
    pub allow_host_network: bool,
    /// Output cap per job, and the default.
    pub max_output_bytes: u64,
    /// Output kept per user over all their jobs (`jwd
    /// --max-output-total`); `None`: no cap.
    pub max_output_per_user: Option<u64>,
    /// Limits for jobs that give none (`jwd --default-memory`,
    /// `--default-pids`).
    pub default_memory_bytes: Option<u64>,
    pub default_pids: Option<u32>,
    /// Install the default seccomp filter in every job (`jwd --no-seccomp`
    /// turns it off).
    pub seccomp: bool,
    /// Jobs one owner may have starting or running at once
    /// (`jwd --max-jobs-per-user`); `None`: no limit.
    pub max_jobs_per_user: Option<usize>,
    /// Host files and directories jobs may not see besides the data
    /// directory (jwd's private key).
    pub hidden: Vec<PathBuf>,
    /// The job init program (`jwd --init`); `None`: `jw-init` beside the
    /// running executable.
    pub init_program: Option<PathBuf>,
    /// How long a stop waits for a job to end after SIGKILL before it
    /// reports failure (`jwd --kill-timeout`).
    pub kill_timeout: Duration,
    /// Threads for the engine's blocking work (`jwd --blocking-threads`).
    pub blocking_threads: usize,
    /// Starts one owner may have in progress at once; more wait their
    /// turn, so one user's start storm takes no more than its share of
    /// the host (`jwd --max-starts-per-user`).
    pub max_starts_per_user: usize,
    /// The grace period `drain` stops running jobs with at shutdown
    /// (`jwd --shutdown-grace`).
    pub shutdown_grace: Duration,
    /// Ended jobs older than this are removed with their output (`jwd
    /// --retain`); `None`: kept until removed.
    pub retain: Option<Duration>,
    /// At shutdown, leave running jobs to their keepers instead of
    /// stopping them, for the next jwd to adopt (`jwd
    /// --keep-jobs-on-exit`: restarts and upgrades).
    pub keep_jobs_on_exit: bool,
    /// The longest timeout a job may ask for, and the timeout of one that
    /// asks for none (`jwd --max-timeout`); `None`: no ceiling.
    pub max_timeout: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            data_dir: "/var/lib/jw".into(),
            cgroup: CgroupConfig::default(),
            job_user: None,
            job_uids: super::uids::DEFAULT_RANGE
                .parse()
                .expect("the default range parses"),
            allow_host_network: false,
            max_output_bytes: 1 << 30,
            // jwd sets its own (`--max-output-total`, DEFAULT_MAX_OUTPUT_TOTAL);
            // the library's engine keeps no per-user cap unless given one.
            max_output_per_user: None,
            keep_jobs_on_exit: false,
            default_memory_bytes: Some(DEFAULT_MEMORY),
            default_pids: Some(DEFAULT_PIDS),
            seccomp: true,
            max_jobs_per_user: None,
            hidden: Vec::new(),
            init_program: None,
            kill_timeout: Duration::from_secs(10),
            blocking_threads: 8,
            // As jwd: as many starts under way at once per owner as CPUs.
            max_starts_per_user: std::thread::available_parallelism().map_or(2, |n| n.get()),
            shutdown_grace: Duration::from_secs(10),
            retain: Some(DEFAULT_RETAIN),
            max_timeout: None,
        }
    }
}

/// How long ended jobs are kept with their output (`jwd --retain`).
pub const DEFAULT_RETAIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Output one user may keep over all their jobs (`jwd --max-output-total`).
pub const DEFAULT_MAX_OUTPUT_TOTAL: u64 = 10 << 30;

/// The memory limit of a job that gives none.
pub const DEFAULT_MEMORY: u64 = 1 << 30;

/// The pids limit of a job that gives none.
pub const DEFAULT_PIDS: u32 = 1024;
