//! The job registry and the job state machine: start, stop, status, list,
//! wait, remove.
//!
//! Each job's `JobInfo` lives in a `watch` channel: the one place its state
//! changes, and what `wait` and followers subscribe to. A supervisor task per
//! job owns the process: it appends the output the init relays over the
//! job's channel, learns the end from the init's report and the channel's
//! close, reaps the init through a pidfd (readiness, never SIGCHLD or
//! polling), reads the final figures from the cgroup, then removes the
//! cgroup.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::cgroup::{CgroupConfig, CgroupError, Cgroups, JobCgroup, LayoutKind};
use super::init::{self, Setup, Stage};
use super::output::{self, Output, OutputWriter, UserOutput};
use super::pool::Pool;
use super::record;
use super::spawn::{self, errno_text, SpawnConfig, SpawnError};
use super::spec::{JobSpec, SpecError, SpecPolicy};
use super::uids::{Identities, JobIds, UidError, UidPool, UidRange};
use crate::protocol::{JobId, JobInfo, JobState, Network, OutputStream, StartRequest, Usage};

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
    /// --max-output-per-user`); `None`: no cap.
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
            max_output_per_user: None,
            default_memory_bytes: Some(DEFAULT_MEMORY),
            default_pids: Some(DEFAULT_PIDS),
            seccomp: true,
            max_jobs_per_user: None,
            hidden: Vec::new(),
            init_program: None,
            kill_timeout: Duration::from_secs(10),
            blocking_threads: 8,
            max_starts_per_user: usize::MAX >> 4,
        }
    }
}

/// Tasks waiting for the blocking pool; a caller past it waits for room.
const BLOCKING_QUEUE: usize = 4096;
/// How long a start waits for the init's report that the command was
/// executed (or not).
const EXEC_BOUND: Duration = Duration::from_secs(60);
/// How often a stop repeats SIGKILL while the job has not ended.
const KILL_RETRY: Duration = Duration::from_secs(1);

/// The memory limit of a job that gives none.
pub const DEFAULT_MEMORY: u64 = 1 << 30;
/// The pids limit of a job that gives none.
pub const DEFAULT_PIDS: u32 = 1024;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    InvalidSpec(#[from] SpecError),
    #[error("no such job {0}")]
    NotFound(JobId),
    #[error("job {0} is still running; stop it first")]
    StillRunning(JobId),
    #[error("{0}")]
    ExecFailed(String),
    #[error("cannot create the job's cgroups: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("cannot start the job: {0}")]
    Spawn(#[from] SpawnError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Identity(#[from] UidError),
    #[error("{0}")]
    Filter(String),
    #[error("job {id} has not ended {waited:?} after SIGKILL to every process in it: a process is held by the kernel (a hung disk or network file system?); its SIGKILL stays pending and jwd records the end when it comes; see jwd's log")]
    StopTimeout { id: JobId, waited: Duration },
    #[error("jwd is shutting down and starts no more jobs; start it again once jwd is back")]
    ShuttingDown,
    #[error("{owner} already has {max} jobs starting or running, the most this server allows per user (jwd --max-jobs-per-user); wait for one to end or stop one")]
    TooManyJobs { owner: String, max: usize },
    #[error("{owner} keeps {} of job output on this server, the most it allows per user (jwd --max-output-per-user); remove ended jobs (jw rm) to make room", crate::units::format_bytes(*.cap))]
    OutputQuota { owner: String, cap: u64 },
    #[error("all {count} job uids ({range}) are in use by running jobs or their clean-up; try again when a job has ended, or give jwd a larger --job-uids range")]
    NoIdentity { range: UidRange, count: u64 },
    #[error("{what} {path:?} is not valid UTF-8; jobs need paths they can be told about")]
    NotUtf8 { what: &'static str, path: PathBuf },
    #[error("cannot use the job init program {path}: {source} (install jw-init beside jwd, or give its path with jwd --init)")]
    InitProgram {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> JobError {
    let what = what.into();
    move |source| JobError::Io { what, source }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One job.
#[derive(Debug)]
pub struct Job {
    pub id: JobId,
    pub owner: String,
    /// Start order, for listings.
    seq: u64,
    info: watch::Sender<JobInfo>,
    /// While the process may be alive: what is needed to signal and kill it.
    control: Mutex<Option<Control>>,
    output: Arc<Output>,
    /// The job's directory: output and status record.
    dir: PathBuf,
    /// Its work directory on the host (`/home/job` inside); empty for jobs
    /// a restarted jwd loaded.
    home: PathBuf,
}

#[derive(Debug, Clone)]
struct Control {
    /// jwd's end of the job's channel, to ask the init to forward signals.
    channel: Arc<OwnedFd>,
    cgroup: Arc<JobCgroup>,
}

impl Job {
    /// The job's status now, with live figures while it runs.
    pub fn info(&self) -> JobInfo {
        let mut info = self.info.borrow().clone();
        if info.state.is_active() {
            if let Some(c) = self.control.lock().expect("control lock").as_ref() {
                info.usage = c.cgroup.usage();
                info.oom_killed |= c.cgroup.oom_killed();
            }
            info.output = self.output.info();
        }
        info
    }

    /// The job's output, for readers.
    pub fn output(&self) -> &Arc<Output> {
        &self.output
    }

    /// A receiver that sees every change of the job's recorded state.
    pub fn subscribe(&self) -> watch::Receiver<JobInfo> {
        self.info.subscribe()
    }

    /// Persists the current status; failures are logged, not fatal: the
    /// job goes on and the in-memory status stays right.
    fn persist(&self) {
        let info = self.info();
        if let Err(e) = record::write(&self.dir, &info) {
            tracing::warn!(job = %self.id, error = %e, "cannot write the job's status record");
        }
    }

    /// Waits until the job has ended and returns its final status.
    pub async fn wait(&self) -> JobInfo {
        let mut rx = self.info.subscribe();
        let _ = rx.wait_for(|i| !i.state.is_active()).await;
        self.info()
    }
}

struct Inner {
    config: EngineConfig,
    cgroups: Cgroups,
    policy: SpecPolicy,
    identities: Identities,
    /// Paths every job's view covers: the data directory and `hidden`.
    hidden: Vec<String>,
    /// The jobs' seccomp filter (BPF), compiled once; empty: none.
    filter: Vec<u8>,
    /// Jobs starting or running per owner, counted from before the clone
    /// until the job's end is published (see `Slot`).
    slots: Mutex<HashMap<String, usize>>,
    /// Set by `drain`: no new starts, and a start that was already under
    /// way when it began stops its job as soon as the job is registered.
    draining: AtomicBool,
    /// The grace period `drain` stops jobs with, in milliseconds.
    drain_grace_ms: AtomicU64,
    jobs: Mutex<HashMap<JobId, Arc<Job>>>,
    next_seq: AtomicU64,
    /// False once the kernel refused CLONE_INTO_CGROUP: clone, then the
    /// init joins its cgroups itself.
    clone_into_cgroup: AtomicBool,
    /// Clone with CLONE_VM | CLONE_VFORK (false: fork-style, for tests).
    share_memory: AtomicBool,
    /// The job init program, opened O_PATH once: a jw-init replaced on
    /// disk later does not change what runs.
    init_program: OwnedFd,
    /// /dev/null, every job's stdin.
    devnull: OwnedFd,
    /// How many jobs are supervised now.
    active: watch::Sender<usize>,
    /// Output kept per owner, with `max_output_per_user` set.
    outputs: Mutex<HashMap<String, Arc<UserOutput>>>,
    /// Turns to start a job, per owner (`max_starts_per_user` each).
    turns: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// Where blocking work runs.
    pool: Pool,
}

/// The engine: cheap to clone, shareable across threads.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

/// One of an owner's turns to start a job; the next waiting start goes
/// when it is dropped.
#[derive(Debug)]
pub struct StartTurn {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// A started job, with how long the start took.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub id: JobId,
    /// From just before clone3 to the init's report that execve succeeded.
    pub exec_latency: Duration,
}

impl Manager {
    /// Detects the cgroup layout, prepares jw's cgroup subtree and data
    /// directory, and removes whatever a crashed predecessor left in them.
    pub fn new(mut config: EngineConfig) -> Result<Manager, JobError> {
        if !config.seccomp && config.job_user.is_none() {
            return Err(JobError::Filter("jobs without the system call filter could keep kernel keys in their uid's keyring, which outlives them and would reach the next tenant given that uid: use --no-seccomp only with a fixed --job-user".into()));
        }
        let identities = match &config.job_user {
            Some(user) => Identities::fixed(user)?,
            None => {
                config.job_uids.check_host()?;
                Identities::Pool(UidPool::new(config.job_uids))
            }
        };
        let filter = if config.seccomp {
            super::sandbox::default_filter().map_err(JobError::Filter)?
        } else {
            Vec::new()
        };
        let init_program = open_init_program(config.init_program.as_deref())?;
        let devnull = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| io_err("cannot open /dev/null")(e.into()))?;
        let cgroups = Cgroups::detect(&config.cgroup)?;
        let stale = cgroups.cleanup_stale()?;
        tracing::info!(
            layout = %cgroups.kind(),
            subtree = %cgroups.v2_subtree().display(),
            devices = ?cgroups.devices().iter().map(|d| format!("{}={}", d.name, d.majmin)).collect::<Vec<_>>(),
            stale_removed = stale,
            "cgroup layout detected"
        );
        prepare_data_dir(&config.data_dir)?;
        // Absolute and free of symlinks: the init resolves these paths in
        // its own mount namespace and working directory.
        config.data_dir = std::fs::canonicalize(&config.data_dir).map_err(io_err(format!(
            "cannot resolve the data directory {}",
            config.data_dir.display()
        )))?;
        let mut hidden = Vec::new();
        for path in std::iter::once(&config.data_dir).chain(&config.hidden) {
            // Resolved once here: the init refuses to mount over a symlink.
            let real = std::fs::canonicalize(path)
                .map_err(io_err(format!("cannot resolve {}", path.display())))?;
            let text = real.to_str().ok_or_else(|| JobError::NotUtf8 {
                what: "path to hide from jobs",
                path: real.clone(),
            })?;
            hidden.push(text.to_string());
        }
        let mut policy = SpecPolicy::for_host(config.allow_host_network, config.max_output_bytes);
        policy.default_memory_bytes = config
            .default_memory_bytes
            .map(|m| m.min(policy.host_memory));
        policy.default_pids = config.default_pids;
        let jobs = load_jobs(&config.data_dir.join("jobs"));
        let mut outputs: HashMap<String, Arc<UserOutput>> = HashMap::new();
        if let Some(cap) = config.max_output_per_user {
            let mut kept: HashMap<&str, u64> = HashMap::new();
            for job in jobs.values() {
                let o = job.output.info();
                *kept.entry(&job.owner).or_default() += o.stdout_bytes + o.stderr_bytes;
            }
            for (owner, bytes) in kept {
                outputs.insert(owner.to_string(), UserOutput::new(cap, bytes));
            }
        }
        let pool = Pool::new("jwd-blocking", config.blocking_threads, BLOCKING_QUEUE)
            .map_err(io_err("cannot start the blocking pool's threads"))?;
        let next_seq = AtomicU64::new(jobs.len() as u64);
        Ok(Manager {
            inner: Arc::new(Inner {
                identities,
                hidden,
                filter,
                slots: Mutex::new(HashMap::new()),
                draining: AtomicBool::new(false),
                drain_grace_ms: AtomicU64::new(0),
                config,
                cgroups,
                policy,
                jobs: Mutex::new(jobs),
                next_seq,
                clone_into_cgroup: AtomicBool::new(true),
                share_memory: AtomicBool::new(spawn::CAN_SHARE_MEMORY),
                init_program,
                devnull,
                active: watch::Sender::new(0),
                outputs: Mutex::new(outputs),
                turns: Mutex::new(HashMap::new()),
                pool,
            }),
        })
    }

    pub fn layout(&self) -> LayoutKind {
        self.inner.cgroups.kind()
    }

    /// The engine's cgroups, for leak checks.
    pub fn cgroups(&self) -> &Cgroups {
        &self.inner.cgroups
    }

    /// Forces the clone-then-place path, as on kernels that refuse
    /// CLONE_INTO_CGROUP (for tests of that path).
    pub fn force_placement_fallback(&self) {
        self.inner.clone_into_cgroup.store(false, Ordering::Release);
    }

    /// Forces fork-style clones, as on architectures without the CLONE_VM
    /// trampoline (for tests of that path).
    pub fn force_fork_clone(&self) {
        self.inner.share_memory.store(false, Ordering::Release);
    }

    fn job_dir(&self, id: JobId) -> PathBuf {
        self.inner.config.data_dir.join("jobs").join(id.to_string())
    }

    /// Validates and starts a job for `owner`. Returns once the command was
    /// executed, or with the reason it could not be.
    pub async fn start(&self, owner: &str, request: &StartRequest) -> Result<Started, JobError> {
        let turn = self.start_turn(owner).await?;
        self.start_in_turn(turn, owner, request).await
    }

    /// Waits for one of `owner`'s turns to start a job (FIFO; at most
    /// `max_starts_per_user` starts of one owner are under way at once).
    /// A caller that stops waiting holds nothing.
    pub async fn start_turn(&self, owner: &str) -> Result<StartTurn, JobError> {
        if self.inner.draining.load(Ordering::Acquire) {
            return Err(JobError::ShuttingDown);
        }
        let turns = self
            .inner
            .turns
            .lock()
            .expect("turns lock")
            .entry(owner.to_string())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    self.inner
                        .config
                        .max_starts_per_user
                        .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
                ))
            })
            .clone();
        let turn = turns
            .acquire_owned()
            .await
            .map_err(|_| JobError::ShuttingDown)?;
        Ok(StartTurn { _permit: turn })
    }

    /// `start`, in a turn `start_turn` gave.
    pub async fn start_in_turn(
        &self,
        turn: StartTurn,
        owner: &str,
        request: &StartRequest,
    ) -> Result<Started, JobError> {
        let _turn = turn;
        if self.inner.draining.load(Ordering::Acquire) {
            return Err(JobError::ShuttingDown);
        }
        let spec = JobSpec::validate(request, &self.inner.policy)?;
        let user_output = self.user_output(owner);
        if let Some(u) = user_output.as_ref().filter(|u| u.is_full()) {
            return Err(JobError::OutputQuota {
                owner: owner.to_string(),
                cap: u.cap(),
            });
        }
        let slot = Slot::reserve(&self.inner, owner)?;
        let identities = &self.inner.identities;
        let ids = identities.take().ok_or(JobError::NoIdentity {
            range: self.inner.config.job_uids,
            count: identities.capacity().unwrap_or(0),
        })?;
        let id = match new_job_id() {
            Ok(id) => id,
            Err(e) => {
                identities.give_back(ids);
                return Err(e);
            }
        };
        let new = NewJob {
            id,
            owner: owner.to_string(),
            user_output,
            spec,
            dir: self.job_dir(id),
            home: self.work_dir(id, ids),
            ids,
        };
        // Directories, cgroups (their files take the cgroup mutex) and the
        // clone (CLONE_VFORK waits for the init's exec) on the pool.
        let inner = self.inner.clone();
        let prepared = self.inner.pool.run(move || prepare(&inner, new)).await;
        match prepared {
            Ok(prepared) => self.start_in(prepared, slot).await,
            Err(e) => {
                // Nothing of the job ran: its uid goes back at once.
                identities.give_back(ids);
                Err(e)
            }
        }
    }

    /// `owner`'s output over all their jobs, if the server caps it.
    fn user_output(&self, owner: &str) -> Option<Arc<UserOutput>> {
        let cap = self.inner.config.max_output_per_user?;
        let mut outputs = self.inner.outputs.lock().expect("outputs lock");
        Some(
            outputs
                .entry(owner.to_string())
                .or_insert_with(|| UserOutput::new(cap, 0))
                .clone(),
        )
    }

    /// The job's work directory on the host (its /home/job): one per pool
    /// uid, made once and emptied after each job (see `UidPool`), or one
    /// per job for a fixed job user.
    fn work_dir(&self, id: JobId, ids: JobIds) -> PathBuf {
        let name = if ids.pooled {
            ids.uid.to_string()
        } else {
            id.to_string()
        };
        self.inner.config.data_dir.join(WORK_DIR).join(name)
    }

    /// Where a running job's work directory is on the host (for tests and
    /// operators; jobs see it at /home/job).
    pub fn work_path(&self, id: JobId) -> Result<PathBuf, JobError> {
        Ok(self.get(id, None)?.home.clone())
    }

    /// Waits for the cloned init's exec report, then registers and
    /// supervises the job; or collects the init and says why not.
    async fn start_in(&self, prepared: Prepared, slot: Slot) -> Result<Started, JobError> {
        let Prepared {
            new,
            cgroup,
            cloned:
                Cloned {
                    output,
                    writer,
                    child,
                    began,
                    info,
                },
        } = prepared;
        let inner = &self.inner;
        let pid = child.pid;
        let first = match InitChannel::new(child.channel) {
            // The first message is the exec report: no output can come
            // before. An init that never sends it (held by the kernel in its
            // setup) is given up on.
            Ok(mut channel) => {
                match tokio::time::timeout(EXEC_BOUND, channel.next_report(None, &inner.pool)).await
                {
                    Ok(report) => Ok((report, channel)),
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no report of the command's execution within {EXEC_BOUND:?}"),
                    )),
                }
            }
            Err(e) => Err(e),
        };
        let exec_latency = began.elapsed();
        let failure = match first {
            Ok((Some(rec), channel)) if rec.kind == init::REPORT_EXEC_OK => Ok(channel),
            Ok((other, channel)) => {
                drop(channel);
                let init_status = reap_pid(pid).await.ok();
                Err(JobError::ExecFailed(describe_failure(
                    &new.spec,
                    other,
                    init_status,
                )))
            }
            Err(e) => {
                // Without the channel the init cannot be watched: end it.
                let cg = cgroup.clone();
                let _ = inner.pool.run(move || cg.kill()).await;
                let _ = tokio::time::timeout(inner.config.kill_timeout, reap_pid(pid)).await;
                Err(io_err("the job's init failed before running the command")(
                    e,
                ))
            }
        };
        let channel = match failure {
            Ok(channel) => channel,
            Err(e) => {
                // Not executed; its init is collected. Its cgroups, files
                // and uid go now (the uid only once the cgroups are gone).
                let removed = remove_cgroups(&inner.pool, &cgroup).await;
                let (dir, home) = (new.dir.clone(), new.home.clone());
                inner
                    .pool
                    .run(move || {
                        let _ = std::fs::remove_dir_all(&dir);
                        let _ = super::tree::remove(&home);
                    })
                    .await;
                match removed {
                    Ok(()) => inner.identities.give_back(new.ids),
                    Err(err) => {
                        tracing::warn!(uid = new.ids.uid, error = %err, "the failed job's cgroups could not be removed: its uid stays reserved")
                    }
                }
                return Err(e);
            }
        };

        let id = new.id;
        let seq = inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let job = Arc::new(Job {
            id,
            owner: new.owner,
            seq,
            info: watch::Sender::new(info),
            control: Mutex::new(Some(Control {
                channel: channel.fd.get_ref().clone(),
                cgroup: cgroup.clone(),
            })),
            output,
            dir: new.dir,
            home: new.home.clone(),
        });
        inner
            .jobs
            .lock()
            .expect("jobs lock")
            .insert(id, job.clone());
        if inner.draining.load(Ordering::Acquire) {
            // Started while jwd began to shut down, after `drain` took its
            // list: stopped like the others.
            let this = self.clone();
            let grace = Duration::from_millis(inner.drain_grace_ms.load(Ordering::Acquire));
            tokio::spawn(async move {
                let _ = this.stop(id, None, grace).await;
            });
        }

        inner.active.send_modify(|n| *n += 1);
        let this = self.clone();
        let (home, ids) = (new.home, new.ids);
        tokio::spawn(async move {
            let work = (home.as_path(), ids);
            let running = Running {
                job,
                pid,
                cgroup,
                channel,
                writer,
                slot,
            };
            let (cgroups_removed, tidied) = supervise(&this.inner.pool, running, work).await;
            match tidied {
                Some(result) => this.tidied(result, &home, ids),
                None => this.clean_up(cgroups_removed, home, ids).await,
            }
            this.inner.active.send_modify(|n| *n -= 1);
        });
        Ok(Started { id, exec_latency })
    }

    /// Removes an ended job's work directory and gives its uid back, once
    /// its cgroups are gone (no process of it is left). A job whose
    /// processes could not be shown gone keeps its uid reserved.
    async fn clean_up(&self, cgroups_removed: bool, home: PathBuf, ids: JobIds) {
        if !cgroups_removed {
            tracing::warn!(uid = ids.uid, home = %home.display(), "the job's cgroups could not be removed: its uid stays reserved and its work directory stays");
            return;
        }
        let path = home.clone();
        let tidied = self.inner.pool.run(move || tidy_work_dir(&path, ids)).await;
        self.tidied(tidied, &home, ids);
    }

    /// Gives the uid back once its work directory was emptied or removed.
    fn tidied(&self, result: std::io::Result<()>, home: &std::path::Path, ids: JobIds) {
        match result {
            Ok(()) => self.inner.identities.give_back(ids),
            Err(e) => {
                tracing::warn!(uid = ids.uid, home = %home.display(), error = %e, "cannot remove the job's work directory: its uid stays reserved")
            }
        }
    }

    /// Shuts the engine down: refuses new starts, stops every job that is
    /// running or still starting with `grace` (then SIGKILL), and waits
    /// until they have ended and their statuses are recorded, for at most
    /// `grace` plus `bound`. Returns whether every job ended in that time.
    pub async fn drain(&self, grace: Duration, bound: Duration) -> bool {
        let inner = &self.inner;
        let active: Vec<JobId> = {
            let jobs = inner.jobs.lock().expect("jobs lock");
            inner
                .drain_grace_ms
                .store(grace.as_millis() as u64, Ordering::Release);
            inner.draining.store(true, Ordering::Release);
            jobs.values()
                .filter(|j| j.info.borrow().state.is_active())
                .map(|j| j.id)
                .collect()
        };
        for id in active {
            let this = self.clone();
            tokio::spawn(async move {
                let _ = this.stop(id, None, grace).await;
            });
        }
        let ended = tokio::time::timeout(grace + bound, self.idle())
            .await
            .is_ok();
        if !ended {
            tracing::warn!(
                running = *inner.active.borrow(),
                "jobs still running {:?} after they were asked to stop; shutting down without them",
                grace + bound
            );
        }
        ended
    }

    /// Resolves once no job is running (at once if none is).
    pub async fn idle(&self) {
        let mut rx = self.inner.active.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// The job `id`, if it exists and `owner` may see it (`None` = anyone).
    pub fn get(&self, id: JobId, owner: Option<&str>) -> Result<Arc<Job>, JobError> {
        let jobs = self.inner.jobs.lock().expect("jobs lock");
        match jobs.get(&id) {
            Some(job) if owner.is_none_or(|o| o == job.owner) => Ok(job.clone()),
            _ => Err(JobError::NotFound(id)),
        }
    }

    /// Status of one job.
    pub fn status(&self, id: JobId, owner: Option<&str>) -> Result<JobInfo, JobError> {
        Ok(self.get(id, owner)?.info())
    }

    /// Jobs of `owner` (or all with `None`), oldest first.
    pub fn jobs(&self, owner: Option<&str>) -> Vec<Arc<Job>> {
        let mut jobs: Vec<Arc<Job>> = self
            .inner
            .jobs
            .lock()
            .expect("jobs lock")
            .values()
            .filter(|j| owner.is_none_or(|o| o == j.owner))
            .cloned()
            .collect();
        jobs.sort_by_key(|j| j.seq);
        jobs
    }

    /// Statuses of `owner`'s jobs (or all with `None`), oldest first. The
    /// live figures of running jobs are read on the pool (many cgroup
    /// files for a long list).
    pub async fn list(&self, owner: Option<&str>) -> Vec<JobInfo> {
        let jobs = self.jobs(owner);
        self.inner
            .pool
            .run(move || jobs.iter().map(|j| j.info()).collect())
            .await
    }

    /// Waits for a job to end.
    pub async fn wait(&self, id: JobId, owner: Option<&str>) -> Result<JobInfo, JobError> {
        Ok(self.get(id, owner)?.wait().await)
    }

    /// Stops a job: SIGTERM to its command, then, after `grace`, SIGKILL to
    /// every process in its cgroup, repeated until the job has ended.
    /// Returns the final status, or `StopTimeout` if the job has not ended
    /// `kill_timeout` after the first SIGKILL (a process the kernel does
    /// not let go: its SIGKILL stays pending).
    pub async fn stop(
        &self,
        id: JobId,
        owner: Option<&str>,
        grace: Duration,
    ) -> Result<JobInfo, JobError> {
        let job = self.get(id, owner)?;
        let bound = self.inner.config.kill_timeout;
        let control = job.control.lock().expect("control lock").clone();
        let Some(control) = control else {
            // Ended, or ending right now (its end is being recorded).
            return tokio::time::timeout(bound, job.wait())
                .await
                .map_err(|_| JobError::StopTimeout { id, waited: bound });
        };
        job.info.send_modify(|i| {
            if i.state.is_active() {
                i.stopped = true;
            }
        });
        if !grace.is_zero() {
            // To the init, which forwards it to the command. A closed
            // channel means the init has already exited.
            let mut message = [0u8; init::CONTROL_LEN];
            message[..4].copy_from_slice(&init::CONTROL_SIGNAL.to_le_bytes());
            message[4..].copy_from_slice(&libc::SIGTERM.to_le_bytes());
            if let Err(e) = rustix::net::send(
                control.channel.as_fd(),
                &message,
                rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL,
            ) {
                if e != rustix::io::Errno::PIPE && e != rustix::io::Errno::CONNRESET {
                    tracing::warn!(job = %id, error = %e, "cannot ask the job's init to forward SIGTERM; killing the job at the end of its grace period");
                }
            }
            if let Ok(info) = tokio::time::timeout(grace, job.wait()).await {
                return Ok(info);
            }
        }
        let deadline = tokio::time::Instant::now() + bound;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let cg = control.cgroup.clone();
            // The first time cgroup.kill; then also each listed process on
            // its own, in case cgroup.kill cannot be written.
            let killed = self
                .inner
                .pool
                .run(move || {
                    let result = cg.kill();
                    if attempt > 1 || result.is_err() {
                        cg.kill_listed();
                    }
                    result
                })
                .await;
            if let Err(e) = killed {
                tracing::warn!(job = %id, attempt, error = %e, "cannot kill the job's processes with cgroup.kill; sent SIGKILL to each of them");
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                tracing::warn!(job = %id, "the job has not ended {bound:?} after SIGKILL");
                return Err(JobError::StopTimeout { id, waited: bound });
            }
            let wait = KILL_RETRY.min(deadline - now);
            if let Ok(info) = tokio::time::timeout(wait, job.wait()).await {
                return Ok(info);
            }
        }
    }

    /// Forgets an ended job and deletes its directory.
    pub async fn remove(&self, id: JobId, owner: Option<&str>) -> Result<(), JobError> {
        let job = self.get(id, owner)?;
        if job.info.borrow().state.is_active() {
            return Err(JobError::StillRunning(id));
        }
        let removed = self.inner.jobs.lock().expect("jobs lock").remove(&id);
        if removed.is_none() {
            // Another remove of the same job got there first.
            return Ok(());
        }
        if let Some(u) = self.user_output(&job.owner) {
            let o = job.output.info();
            u.give_back(o.stdout_bytes + o.stderr_bytes);
        }
        let dir = self.job_dir(id);
        self.inner
            .pool
            .run(move || match std::fs::remove_dir_all(&dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err(format!("cannot remove {}", dir.display()))(e)),
            })
            .await
    }

    /// Removes ended jobs that ended longer than `age` ago (`jwd --retain`).
    /// Returns how many were removed.
    pub async fn prune(&self, age: Duration) -> usize {
        let cutoff = now_ms().saturating_sub(age.as_millis() as u64);
        let expired: Vec<JobId> = self
            .jobs(None)
            .iter()
            .map(|j| j.info.borrow().clone())
            .filter(|j| !j.state.is_active() && j.ended_at_ms.is_some_and(|t| t < cutoff))
            .map(|j| j.id)
            .collect();
        let mut removed = 0;
        for id in expired {
            if self.remove(id, None).await.is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Where a job's output files are.
    pub fn output_path(&self, id: JobId, which: OutputStream) -> PathBuf {
        output::output_path(&self.job_dir(id), which)
    }
}

/// A job about to be made: what `start` decided before anything exists.
struct NewJob {
    id: JobId,
    owner: String,
    /// The owner's output over all their jobs, if capped.
    user_output: Option<Arc<UserOutput>>,
    spec: JobSpec,
    /// Its directory (output, record) and work directory on the host.
    dir: PathBuf,
    home: PathBuf,
    ids: JobIds,
}

/// A job whose init was cloned, waiting for the init's exec report.
struct Prepared {
    new: NewJob,
    cgroup: Arc<JobCgroup>,
    cloned: Cloned,
}

/// What `clone_init` made.
struct Cloned {
    output: Arc<Output>,
    writer: Arc<OutputWriter>,
    child: spawn::Child,
    /// Just before the clone.
    began: Instant,
    /// Its status as recorded on disk before the clone.
    info: JobInfo,
}

/// The blocking part of a start, run on the engine's pool: the job's
/// directories, its status record, its cgroups, and the clone of its init.
/// Whatever it made is removed again when it fails.
fn prepare(inner: &Inner, new: NewJob) -> Result<Prepared, JobError> {
    let made = create_job_dirs(&new.dir, &new.home, new.ids).and_then(|()| {
        let cgroup = Arc::new(
            inner
                .cgroups
                .create(&new.id.to_string(), &new.spec.limits)?,
        );
        match clone_init(inner, &new, &cgroup) {
            Ok(cloned) => Ok((cgroup, cloned)),
            Err(e) => {
                let _ = cgroup.remove();
                Err(e)
            }
        }
    });
    match made {
        Ok((cgroup, cloned)) => Ok(Prepared {
            new,
            cgroup,
            cloned,
        }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&new.dir);
            let _ = super::tree::remove(&new.home);
            Err(e)
        }
    }
}

/// Records the job as running and clones its init into its cgroup.
fn clone_init(inner: &Inner, new: &NewJob, cgroup: &JobCgroup) -> Result<Cloned, JobError> {
    let spec = &new.spec;
    let id_text = new.id.to_string();
    let (output, writer) =
        Output::create(&new.dir, spec.output_cap, new.user_output.clone()).map_err(io_err(
            format!("cannot create output files in {}", new.dir.display()),
        ))?;
    let info = JobInfo {
        id: new.id,
        owner: new.owner.clone(),
        command: spec.command.clone(),
        args: spec.args.clone(),
        state: JobState::Running,
        exit_code: None,
        signal: None,
        oom_killed: false,
        stopped: false,
        started_at_ms: now_ms(),
        ended_at_ms: None,
        usage: Usage::default(),
        output: Default::default(),
        error: None,
    };
    // Before the clone: a jwd that dies from here on finds the job and
    // marks it lost. No fsync (see record.rs).
    if let Err(e) = record::write(&new.dir, &info) {
        tracing::warn!(job = %new.id, error = %e, "cannot write the job's status record");
    }
    let leaf_fd = cgroup.open_leaf()?;
    let mut setup = Setup {
        uid: new.ids.uid,
        gid: new.ids.gid,
        new_net: spec.network == Network::None,
        hostname: format!("jw-{}", &id_text[..8]),
        // jwd made it, under a data directory Manager::new checked.
        home: new.home.to_string_lossy().into_owned(),
        workdir: spec.workdir.clone(),
        hide: inner.hidden.clone(),
        join: Vec::new(),
        seccomp: inner.filter.clone(),
        candidates: spec.exec_candidates(),
        argv: std::iter::once(spec.command.clone())
            .chain(spec.args.iter().cloned())
            .collect(),
        env: spec.env.clone(),
    };
    let began = Instant::now();
    let child = loop {
        let into = inner.clone_into_cgroup.load(Ordering::Acquire);
        setup.join = cgroup
            .join_dirs(into)
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let encoded = setup.encode();
        let config = SpawnConfig {
            init: inner.init_program.as_fd(),
            setup: &encoded,
            cgroup: into.then(|| leaf_fd.as_fd()),
            devnull: inner.devnull.as_fd(),
            share_memory: inner.share_memory.load(Ordering::Acquire),
        };
        match spawn::spawn(config) {
            Ok(child) => break child,
            Err(SpawnError::IntoCgroupRefused(e)) => {
                if inner.clone_into_cgroup.swap(false, Ordering::AcqRel) {
                    tracing::warn!(error = %e, "the kernel refused CLONE_INTO_CGROUP; falling back to clone, then each job's init joins its cgroups before it executes anything of the job");
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok(Cloned {
        output,
        writer,
        child,
        began,
        info,
    })
}

/// Removes an ended job's cgroups: at once if they are free, else retried
/// with a growing pause (the kernel answers EBUSY while it tears the last
/// task down) for up to `CGROUP_REMOVE_BOUND`, each attempt on the pool
/// and every pause on the runtime's timer, so no thread sleeps.
async fn remove_cgroups(pool: &Pool, cgroup: &Arc<JobCgroup>) -> Result<(), CgroupError> {
    let deadline = Instant::now() + CGROUP_REMOVE_BOUND;
    let mut pause = Duration::from_millis(1);
    loop {
        let cg = cgroup.clone();
        let attempt = pool
            .run(move || {
                if cg.populated() {
                    let _ = cg.kill();
                }
                cg.remove_now()
            })
            .await;
        match attempt {
            Ok(true) => return Ok(()),
            Ok(false) if Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            // Still busy at the bound: one last attempt that says why.
            Ok(false) => {
                let cg = cgroup.clone();
                return pool.run(move || cg.remove()).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long an ended job's cgroups are retried before giving up on them.
const CGROUP_REMOVE_BOUND: Duration = Duration::from_secs(10);

/// One of an owner's `--max-jobs-per-user` places, taken under one lock
/// before anything of the job exists (so concurrent starts cannot all see
/// room) and given back when dropped: at a failed start, or just before
/// the job's end is published.
struct Slot {
    inner: Option<(Arc<Inner>, String)>,
}

impl Slot {
    fn reserve(inner: &Arc<Inner>, owner: &str) -> Result<Slot, JobError> {
        let Some(max) = inner.config.max_jobs_per_user else {
            return Ok(Slot { inner: None });
        };
        let mut slots = inner.slots.lock().expect("slots lock");
        let taken = slots.entry(owner.to_string()).or_insert(0);
        if *taken >= max {
            return Err(JobError::TooManyJobs {
                owner: owner.to_string(),
                max,
            });
        }
        *taken += 1;
        Ok(Slot {
            inner: Some((inner.clone(), owner.to_string())),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((inner, owner)) = self.inner.take() {
            let mut slots = inner.slots.lock().expect("slots lock");
            if let Some(taken) = slots.get_mut(&owner) {
                *taken -= 1;
                if *taken == 0 {
                    slots.remove(&owner);
                }
            }
        }
    }
}

/// Empties an ended job's work directory for its uid's next job (a pool
/// uid's), or removes it (a fixed job user's, one per job).
fn tidy_work_dir(home: &std::path::Path, ids: JobIds) -> std::io::Result<()> {
    let result = if ids.pooled {
        super::tree::empty(home).and_then(|()| {
            // An inode the job marked (extended attributes, default ACLs,
            // inode flags, a grown directory) is not handed to the next
            // tenant: the next start makes a fresh one.
            if reusable(home) {
                Ok(())
            } else {
                std::fs::remove_dir(home)
            }
        })
    } else {
        super::tree::remove(home)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Where jobs' work directories live, under the data directory.
const WORK_DIR: &str = "work";
/// Work directories a previous jwd left, being removed.
const STALE_PREFIX: &str = "work.stale-";

/// Creates (or makes owner-only) the data directory and its `jobs` and
/// `work` directories: 0700, so no job and no other host user can reach
/// output, records or another job's files. Work directories a crashed jwd
/// left go (their jobs were killed with the stale cgroups).
fn prepare_data_dir(data_dir: &std::path::Path) -> Result<(), JobError> {
    use std::os::unix::fs::PermissionsExt;
    let work = data_dir.join(WORK_DIR);
    if work.exists() {
        // Renamed aside at once and removed in the background: a job may
        // have left a tree that takes long to remove, and jwd must start.
        let stale = data_dir.join(format!("{STALE_PREFIX}{}-{}", std::process::id(), now_ms()));
        std::fs::rename(&work, &stale).map_err(io_err(format!(
            "cannot move stale work directories {} aside",
            work.display()
        )))?;
    }
    let stale: Vec<PathBuf> = std::fs::read_dir(data_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(STALE_PREFIX))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    if !stale.is_empty() {
        std::thread::Builder::new()
            .name("jwd-stale-work".into())
            .spawn(move || {
                for dir in stale {
                    if let Err(e) = super::tree::remove(&dir) {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove stale work directories");
                    }
                }
            })
            .map_err(io_err("cannot start the stale work directory clean-up"))?;
    }
    for dir in [data_dir.to_path_buf(), data_dir.join("jobs"), work] {
        std::fs::create_dir_all(&dir).map_err(io_err(format!(
            "cannot create data directory {}",
            dir.display()
        )))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(
            format!("cannot make {} owner-only (0700)", dir.display()),
        ))?;
    }
    Ok(())
}

/// Whether an emptied work directory may serve the next job of its uid as
/// it is: no extended attributes (default ACLs, user data), the inode
/// flags of a directory jwd just made (those of its parent), one block.
fn reusable(home: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let flags = |path: &std::path::Path| {
        let dir = rustix::fs::open(
            path,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .ok()?;
        rustix::fs::ioctl_getflags(&dir).ok()
    };
    let Some(parent) = home.parent() else {
        return false;
    };
    rustix::fs::llistxattr_query(home) == Ok(0)
        && std::fs::symlink_metadata(home).is_ok_and(|m| m.size() <= 4096)
        && flags(home) == flags(parent)
}

/// A new job's directory (output, record: 0700, jwd's) and work directory
/// (0700, the job's uid's; a pool uid's is kept empty between jobs and
/// only made the first time).
fn create_job_dirs(
    dir: &std::path::Path,
    home: &std::path::Path,
    ids: JobIds,
) -> Result<(), JobError> {
    use std::os::unix::fs::DirBuilderExt;
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    builder
        .create(dir)
        .map_err(io_err(format!("cannot create {}", dir.display())))?;
    match builder.create(home) {
        Ok(()) => {}
        // Kept from this uid's last job (emptied then). jwd made it, in a
        // directory only root can enter; a job cannot have replaced it.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && ids.pooled => {
            let meta = std::fs::symlink_metadata(home)
                .map_err(io_err(format!("cannot inspect {}", home.display())))?;
            use std::os::unix::fs::MetadataExt;
            if !meta.is_dir() {
                return Err(io_err(format!("{} is not a directory", home.display()))(e));
            }
            if meta.uid() == ids.uid && meta.mode() & 0o7777 == 0o700 {
                return Ok(());
            }
        }
        Err(e) => return Err(io_err(format!("cannot create {}", home.display()))(e)),
    }
    std::os::unix::fs::lchown(home, Some(ids.uid), Some(ids.gid)).map_err(io_err(format!(
        "cannot give the work directory {} to uid {}",
        home.display(),
        ids.uid
    )))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))
        .map_err(io_err(format!("cannot make {} 0700", home.display())))
}

/// Loads every job a previous server recorded. Jobs that were starting or
/// running are marked lost: their processes were killed and their cgroups
/// removed by the cgroup clean-up that ran just before, and their output
/// up to that moment stays readable.
///
/// Why not re-adopt them: the job's stdout and stderr are pipes drained by
/// the server (that is what keeps the capture order of both streams, the
/// output cap and the full-disk accounting in one place), so a job that
/// outlived its server has already lost output to a dead pipe.
fn load_jobs(jobs_dir: &std::path::Path) -> HashMap<JobId, Arc<Job>> {
    let mut loaded: Vec<(JobInfo, PathBuf)> = Vec::new();
    let Ok(entries) = std::fs::read_dir(jobs_dir) else {
        return HashMap::new();
    };
    for entry in entries.filter_map(Result::ok) {
        let dir = entry.path();
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<JobId>().ok())
        else {
            continue;
        };
        match record::read(&dir) {
            Ok(info) if info.id == id => loaded.push((info, dir)),
            Ok(_) => {
                tracing::warn!(dir = %dir.display(), "status record names another job; ignored")
            }
            // A job directory without a record is a start that never
            // completed (the server died between mkdir and the first record).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "unreadable status record; job ignored")
            }
        }
    }
    loaded.sort_by_key(|(info, _)| (info.started_at_ms, info.id));
    let mut jobs = HashMap::new();
    let mut lost = 0;
    for (seq, (mut info, dir)) in loaded.into_iter().enumerate() {
        let output = match Output::open_closed(&dir, info.output.dropped_bytes) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot open the job's output; job ignored");
                continue;
            }
        };
        let was_active = info.state.is_active();
        if was_active {
            lost += 1;
            info.state = JobState::Lost;
            info.ended_at_ms = Some(now_ms());
            info.error = Some(
                "jwd stopped while the job was running; the job was killed when jwd restarted"
                    .into(),
            );
        }
        info.output = output.info();
        info.usage.pids_current = 0;
        let job = Arc::new(Job {
            id: info.id,
            owner: info.owner.clone(),
            seq: seq as u64,
            info: watch::Sender::new(info),
            control: Mutex::new(None),
            output,
            dir,
            home: PathBuf::new(),
        });
        if was_active {
            job.persist();
        }
        jobs.insert(job.id, job);
    }
    tracing::info!(jobs = jobs.len(), lost, "job records loaded");
    jobs
}

fn new_job_id() -> Result<JobId, JobError> {
    let mut bytes = [0u8; 16];
    // getrandom(2) without flags blocks only before the pool is seeded at
    // boot, and never fails for 16 bytes after that.
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io_err("cannot draw a random job id")(e.into())),
        }
    }
    Ok(JobId::from_random(bytes))
}

/// Opens the init program O_PATH after checking it is an executable file.
fn open_init_program(configured: Option<&std::path::Path>) -> Result<OwnedFd, JobError> {
    let path = match configured {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|source| JobError::InitProgram {
                path: "jw-init".into(),
                source,
            })?
            .with_file_name("jw-init"),
    };
    let fail = |source: std::io::Error| JobError::InitProgram {
        path: path.clone(),
        source,
    };
    let meta = std::fs::metadata(&path).map_err(fail)?;
    if !meta.is_file() || nix::unistd::access(&path, nix::unistd::AccessFlags::X_OK).is_err() {
        return Err(fail(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "not an executable file",
        )));
    }
    rustix::fs::open(
        &path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| fail(e.into()))
}

/// What the user sees when the command could not be executed.
fn describe_failure(
    spec: &JobSpec,
    record: Option<Report>,
    init_status: Option<(i32, i32)>,
) -> String {
    let Some(rec) = record.filter(|r| r.kind == init::REPORT_FAILED) else {
        // The init could not even report: its exit code says where it stopped.
        let why = match init_status {
            Some((libc::CLD_EXITED, init::EXIT_FDS)) => {
                "the job's init could not set up its file descriptors (is jwd out of file descriptors?)".to_string()
            }
            Some((libc::CLD_EXITED, code)) => format!("the job's init exited with status {code} before executing it"),
            Some((_, sig)) => format!("the job's init was killed by signal {sig} before executing it"),
            None => "the job's init exited before executing it".to_string(),
        };
        return format!("cannot start {:?}: {why}", spec.command);
    };
    let reason = errno_text(rec.value);
    match Stage::from_u32(rec.stage) {
        Some(Stage::Exec) => {
            let is_dir = spec.command.starts_with('/')
                && std::fs::metadata(&spec.command).is_ok_and(|m| m.is_dir());
            if is_dir {
                format!("cannot execute {:?}: it is a directory", spec.command)
            } else if rec.value == libc::ENOENT && !spec.command.starts_with('/') {
                format!(
                    "cannot execute {:?}: not found on the job's PATH ({})",
                    spec.command,
                    super::spec::JOB_PATH
                )
            } else {
                format!("cannot execute {:?}: {reason}", spec.command)
            }
        }
        Some(Stage::Chdir) => format!(
            "cannot change to working directory {:?}: {reason}",
            spec.workdir
        ),
        Some(stage) => format!(
            "cannot start {:?}: failed to {}: {reason}",
            spec.command,
            stage.describe()
        ),
        None => format!("cannot start {:?}: {reason}", spec.command),
    }
}

/// One report from the init, from the job's channel.
#[derive(Debug, Clone, Copy)]
struct Report {
    kind: u32,
    stage: u32,
    value: i32,
}

/// jwd's end of a job's channel: reports and relayed output from the init.
struct InitChannel {
    fd: AsyncFd<Arc<OwnedFd>>,
}

/// Output received from a job's init and not yet written: the messages as
/// received (each a 4-byte kind, then the bytes) back to back, and where
/// each one's bytes are.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    spans: Vec<(OutputStream, std::ops::Range<usize>)>,
}

/// Output collected before it goes to the pool to be written: a few
/// messages' worth, so a job writing fast costs one thread hop per batch.
const BATCH: usize = 4 * init::MAX_MESSAGE;

/// Output batches of all jobs received and not yet written, in bytes: what
/// jobs writing at once can hold of jwd's memory. A job past it waits (its
/// init, then the job, block on their full channel and pipes).
const BATCHES_IN_FLIGHT: usize = 64 << 20;

static WRITE_BUDGET: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(BATCHES_IN_FLIGHT / (BATCH + init::MAX_MESSAGE));

/// One message received off the channel.
enum Received {
    Output,
    Report(Report),
    Eof,
}

impl InitChannel {
    fn new(fd: OwnedFd) -> std::io::Result<Self> {
        rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK)?;
        Ok(InitChannel {
            fd: super::async_readable(Arc::new(fd))?,
        })
    }

    /// Receives one message: output is appended to `batch`.
    fn receive(fd: &OwnedFd, batch: &mut Batch) -> std::io::Result<Received> {
        let start = batch.buf.len();
        batch.buf.reserve(init::MAX_MESSAGE);
        let (_, n) = rustix::net::recv(
            fd,
            rustix::buffer::spare_capacity(&mut batch.buf),
            rustix::net::RecvFlags::empty(),
        )?;
        if n == 0 {
            return Ok(Received::Eof);
        }
        let msg = &batch.buf[start..];
        let word = |i: usize| {
            msg.get(i..i + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let kind = word(0).unwrap_or(0);
        let stream = match kind {
            init::MSG_STDOUT => Some(OutputStream::Stdout),
            init::MSG_STDERR => Some(OutputStream::Stderr),
            _ => None,
        };
        if let Some(stream) = stream {
            let end = batch.buf.len();
            batch.spans.push((stream, start + 4..end));
            return Ok(Received::Output);
        }
        let report = Report {
            kind,
            stage: word(4).unwrap_or(0),
            value: word(8).unwrap_or(0) as i32,
        };
        batch.buf.truncate(start);
        Ok(Received::Report(report))
    }

    /// The next report, with the output before it written through `writer`
    /// (on `pool`; dropped with no writer); `None` once the init has
    /// exited (EOF).
    async fn next_report(
        &mut self,
        writer: Option<&Arc<OutputWriter>>,
        pool: &Pool,
    ) -> Option<Report> {
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return None;
            };
            // Room for one batch in jwd's memory before reading any.
            let Ok(_budget) = WRITE_BUDGET.acquire().await else {
                return None;
            };
            let mut batch = Batch::default();
            let outcome = loop {
                match guard.try_io(|fd| Self::receive(fd.get_ref(), &mut batch)) {
                    Ok(Ok(Received::Output)) if batch.buf.len() < BATCH => {}
                    Ok(Ok(Received::Output)) => break None,
                    Ok(Ok(Received::Report(r))) => break Some(Some(r)),
                    Ok(Ok(Received::Eof)) => break Some(None),
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Ok(Err(_)) => break Some(None),
                    Err(_would_block) => break None,
                }
            };
            drop(guard);
            if let (Some(writer), false) = (writer, batch.spans.is_empty()) {
                let writer = writer.clone();
                pool.run(move || {
                    for (stream, range) in &batch.spans {
                        writer.append(*stream, &batch.buf[range.clone()]);
                    }
                })
                .await;
            }
            if let Some(end) = outcome {
                return end;
            }
        }
    }
}

/// Waits for the init (pid `pid`, jwd's unreaped child) to exit and reaps
/// it. Returns its `(si_code, si_status)`. The pidfd lives only for this
/// wait: the pid cannot have been reused, since only this reaps it.
async fn reap_pid(pid: i32) -> std::io::Result<(i32, i32)> {
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("pid 0"))?,
        rustix::process::PidfdFlags::empty(),
    )?;
    reap(&Arc::new(pidfd)).await
}

/// Waits for the pidfd's process to exit and reaps it. Returns its
/// `(si_code, si_status)`.
async fn reap(pidfd: &Arc<OwnedFd>) -> std::io::Result<(i32, i32)> {
    let raw = pidfd.as_raw_fd();
    let async_fd = super::async_readable(pidfd.clone())?;
    drop(async_fd.readable().await?);
    drop(async_fd);
    loop {
        // SAFETY: siginfo_t is plain data; waitid writes it for P_PIDFD.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: raw is a valid pidfd for our own child; WEXITED reaps it.
        let rc = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                raw as libc::id_t,
                &mut info,
                libc::WEXITED | libc::__WALL,
            )
        };
        if rc == 0 {
            // SAFETY: for a CLD_* siginfo these fields are initialised.
            let status = unsafe { info.si_status() };
            return Ok((info.si_code, status));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// How the job ended, from the command's wait status as the init reported
/// it and the init's own.
fn settle(
    info: &mut JobInfo,
    command_status: Option<i32>,
    init_status: std::io::Result<(i32, i32)>,
) {
    info.state = JobState::Exited;
    match (command_status, init_status) {
        (Some(st), _) if libc::WIFEXITED(st) => info.exit_code = Some(libc::WEXITSTATUS(st)),
        (Some(st), _) if libc::WIFSIGNALED(st) => info.signal = Some(libc::WTERMSIG(st)),
        // The init itself was killed (cgroup.kill, OOM): the command died
        // with it, of the same signal.
        (_, Ok((code, sig))) if code == libc::CLD_KILLED || code == libc::CLD_DUMPED => {
            info.signal = Some(sig)
        }
        (_, Ok((_, code))) => {
            info.state = JobState::Failed;
            info.error = Some(format!(
                "the job's init exited with status {code} without reporting the command's end"
            ));
        }
        (_, Err(e)) => {
            info.state = JobState::Failed;
            info.error = Some(format!("cannot collect the job's init: {e}"));
        }
    }
}

/// A job whose command runs, and what its supervisor owns of it.
struct Running {
    job: Arc<Job>,
    /// Its init: jwd's child, reaped by the supervisor.
    pid: i32,
    cgroup: Arc<JobCgroup>,
    channel: InitChannel,
    writer: Arc<OutputWriter>,
    slot: Slot,
}

/// Owns a running job until its end, then records the final status.
/// Returns whether the job's cgroups are gone and, if its work directory
/// (`work`: where, and its uid) was already tidied because the job left
/// nothing in it, how that went.
async fn supervise(
    pool: &Pool,
    running: Running,
    work: (&std::path::Path, JobIds),
) -> (bool, Option<std::io::Result<()>>) {
    let Running {
        job,
        pid,
        cgroup,
        mut channel,
        writer,
        slot,
    } = running;
    // The init relays output, reports the command's wait status, then
    // exits (EOF).
    let mut command_status = None;
    while let Some(rec) = channel.next_report(Some(&writer), pool).await {
        if rec.kind == init::REPORT_EXITED {
            command_status = Some(rec.value);
        }
    }
    // No more signals for this init: its pid is about to be released.
    *job.control.lock().expect("control lock") = None;
    drop(channel);
    let init_status = reap_pid(pid).await;
    writer.close();

    // One trip to the pool: the init's exit tore the PID namespace down;
    // make sure nothing is left, read the final figures, record the final
    // status on disk before anyone can see it (a client that saw the end
    // may remove the job at once; no fsync, see record.rs), remove the
    // cgroups, which usually go at once, and then tidy the work directory
    // if the job left nothing in it (else that waits for after the end is
    // published).
    let cg = cgroup.clone();
    let (dir, id) = (job.dir.clone(), job.id);
    let (home, ids) = (work.0.to_path_buf(), work.1);
    let mut info = job.info.borrow().clone();
    info.output = job.output.info();
    let (info, removed_now, tidied) = pool
        .run(move || {
            if cg.populated() {
                let _ = cg.kill();
            }
            info.usage = Usage {
                pids_current: 0,
                ..cg.usage()
            };
            info.oom_killed = cg.oom_killed();
            info.ended_at_ms = Some(now_ms());
            settle(&mut info, command_status, init_status);
            if let Err(e) = record::write(&dir, &info) {
                tracing::warn!(job = %id, error = %e, "cannot write the job's final status record")
            }
            let removed_now = cg.remove_now();
            let empty = || std::fs::read_dir(&home).is_ok_and(|mut d| d.next().is_none());
            let tidied = matches!(removed_now, Ok(true))
                .then(empty)
                .filter(|e| *e)
                .map(|_| tidy_work_dir(&home, ids));
            (info, removed_now, tidied)
        })
        .await;
    let removed = match removed_now {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => remove_cgroups(pool, &cgroup).await,
    };
    if let Err(e) = &removed {
        tracing::warn!(job = %job.id, error = %e, "cannot remove the job's cgroups");
    }
    // The owner's place is free from the moment anyone can see the end.
    drop(slot);
    // `stopped` may have been set by a Stop while the record was written.
    job.info.send_modify(|current| {
        let stopped = current.stopped;
        *current = info;
        current.stopped |= stopped;
    });
    tracing::debug!(job = %job.id, "job ended");
    (removed.is_ok(), tidied)
}
