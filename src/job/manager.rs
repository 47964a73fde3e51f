//! The engine as a whole: `Manager::new` (set-up from an `EngineConfig`),
//! shutdown (`drain`), retention (`--retain`), and the requests on the
//! registry (get, status, list, wait, remove, prune). `start` lives in
//! `start.rs`, `stop` in `supervise.rs`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::cgroup::{Cgroups, LayoutKind};
use super::config::EngineConfig;
use super::engine::{Inner, Manager};
use super::error::{io_err, JobError};
use super::lock::InstanceLock;
use super::now_ms;
use super::output;
use super::pool::Pool;
use super::registry::{Job, Registry};
use super::restore::{load_jobs, prepare_data_dir};
use super::spawn;
use super::spec::SpecPolicy;
use super::uids::{Identities, UidPool};
use crate::protocol::{JobId, JobInfo, OutputStream};

/// Tasks waiting for the blocking pool; a caller past it waits for room.
pub(super) const BLOCKING_QUEUE: usize = 4096;
/// How long `drain` waits for jobs past their grace period (stop escalates
/// to SIGKILL of the whole cgroup at the end of the grace).
const DRAIN_BOUND: Duration = Duration::from_secs(30);

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
        // Before anything of a running jwd's could be touched: its work
        // directories (prepare_data_dir) and its jobs (cleanup_stale).
        let mut lock = InstanceLock::default();
        lock.data_dir(&config.data_dir)?;
        let cgroups = Cgroups::detect(&config.cgroup)?;
        lock.cgroup_subtree(cgroups.v2_subtree(), &config.cgroup.name)?;
        // Jobs a previous jwd left: those whose keeper lives are adopted;
        // the cgroups of every other job go.
        let work = config.data_dir.join(super::restore::WORK_DIR);
        let restored = load_jobs(&config.data_dir.join("jobs"), &work, &cgroups);
        let kept: HashSet<String> = restored
            .adopted
            .iter()
            .map(|a| a.job.id.to_string())
            .collect();
        let stale = cgroups.cleanup_stale(&|name| kept.contains(name))?;
        tracing::info!(
            layout = %cgroups.kind(),
            subtree = %cgroups.v2_subtree().display(),
            devices = ?cgroups.devices().iter().map(|d| format!("{}={}", d.name, d.majmin)).collect::<Vec<_>>(),
            stale_removed = stale,
            "cgroup layout detected"
        );
        let in_use: HashSet<OsString> = restored
            .adopted
            .iter()
            .filter_map(|a| a.job.home.file_name().map(|n| n.to_os_string()))
            .collect();
        prepare_data_dir(&config.data_dir, &in_use)?;
        for a in &restored.adopted {
            if !identities.claim(a.ids) {
                tracing::warn!(job = %a.job.id, uid = a.ids.uid, "the adopted job's uid is outside --job-uids or taken twice; it is not handed to another job while this one runs");
            }
        }
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
        policy.max_timeout = config.max_timeout;
        let registry = Registry::new(
            restored.jobs,
            config.max_jobs_per_user,
            config.max_output_per_user,
        );
        let pool = Pool::new("jwd-blocking", config.blocking_threads, BLOCKING_QUEUE)
            .map_err(io_err("cannot start the blocking pool's threads"))?;
        let manager = Manager {
            inner: Arc::new(Inner {
                identities,
                hidden,
                filter,
                draining: AtomicBool::new(false),
                config,
                cgroups,
                policy,
                registry,
                clone_into_cgroup: AtomicBool::new(true),
                share_memory: AtomicBool::new(spawn::CAN_SHARE_MEMORY),
                init_program,
                devnull,
                active: watch::Sender::new(0),
                turns: Mutex::new(HashMap::new()),
                pool,
                lock: Mutex::new(Some(lock)),
                adopted: Mutex::new(restored.adopted),
            }),
        };
        if let Some(retain) = manager.inner.config.retain {
            start_retention(&manager.inner, retain)?;
        }
        Ok(manager)
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

    /// Lets go of the data directory and cgroup subtree as a crashed jwd's
    /// death does, leaving its jobs as they are: for tests of what the next
    /// engine makes of them. This engine must not be used afterwards.
    pub fn release_as_if_crashed(&self) {
        self.inner.lock.lock().expect("instance lock").take();
    }

    pub(super) fn job_dir(&self, id: JobId) -> PathBuf {
        self.inner.config.data_dir.join("jobs").join(id.to_string())
    }

    /// Shuts the engine down: refuses new starts, stops every job that is
    /// running or still starting with the shutdown grace period (then
    /// SIGKILL), and waits until they have ended and their statuses are
    /// recorded, for at most the grace period plus `DRAIN_BOUND`. Returns
    /// whether every job ended in that time.
    pub async fn drain(&self) -> bool {
        let inner = &self.inner;
        let (grace, bound) = (inner.config.shutdown_grace, DRAIN_BOUND);
        let active = inner
            .registry
            .active_after(|| inner.draining.store(true, Ordering::Release));
        if inner.config.keep_jobs_on_exit {
            // Their keepers keep them; the next jwd adopts them.
            tracing::info!(
                running = active.len(),
                "leaving running jobs to their keepers (--keep-jobs-on-exit)"
            );
            return true;
        }
        for id in active {
            let this = self.clone();
            tokio::spawn(async move {
                let _ = this.end(id, None, grace).await;
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

    /// Resolves once no job is running, or once a `drain` would have
    /// given up on them (at once when jobs are left to their keepers). For
    /// runtimes other than the one that drains.
    pub async fn drained(&self) {
        if self.inner.config.keep_jobs_on_exit {
            return;
        }
        let bound = self.inner.config.shutdown_grace + DRAIN_BOUND;
        let _ = tokio::time::timeout(bound, self.idle()).await;
    }

    /// Resolves once no job is running (at once if none is).
    pub async fn idle(&self) {
        let mut rx = self.inner.active.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Where a job's output files are.
    pub fn output_path(&self, id: JobId, which: OutputStream) -> PathBuf {
        output::output_path(&self.job_dir(id), which)
    }
}

/// Removes ended jobs older than `retain` (`jwd --retain`), checking every
/// tenth of it (between a second and an hour), on a thread of its own for
/// as long as the engine lives.
fn start_retention(inner: &Arc<Inner>, retain: Duration) -> Result<(), JobError> {
    let engine = Arc::downgrade(inner);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(io_err("cannot start the retention thread"))?;
    let pause = (retain / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    std::thread::Builder::new()
        .name("jwd-retain".into())
        .spawn(move || {
            while let Some(inner) = engine.upgrade() {
                let manager = Manager { inner };
                let removed = runtime.block_on(manager.prune(retain));
                drop(manager);
                if removed > 0 {
                    tracing::info!(removed, "removed jobs past the retention period");
                }
                std::thread::sleep(pause);
            }
        })
        .map_err(io_err("cannot start the retention thread"))?;
    Ok(())
}

/// The registry's requests.
impl Manager {
    /// The job `id`, if it exists and `owner` may see it (`None` = anyone).
    pub fn get(&self, id: JobId, owner: Option<&str>) -> Result<Arc<Job>, JobError> {
        self.inner.registry.get(id, owner)
    }

    /// Status of one job.
    pub fn status(&self, id: JobId, owner: Option<&str>) -> Result<JobInfo, JobError> {
        Ok(self.get(id, owner)?.info())
    }

    /// Jobs of `owner` (or all with `None`), oldest first.
    pub fn jobs(&self, owner: Option<&str>) -> Vec<Arc<Job>> {
        self.inner.registry.jobs(owner)
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

    /// Forgets an ended job and deletes its directory.
    pub async fn remove(&self, id: JobId, owner: Option<&str>) -> Result<(), JobError> {
        let job = self.get(id, owner)?;
        if job.info.borrow().state.is_active() {
            return Err(JobError::StillRunning(id));
        }
        let removed = self.inner.registry.take(id);
        if removed.is_none() {
            // Another remove of the same job got there first.
            return Ok(());
        }
        if let Some(u) = self.inner.registry.user_output(&job.owner) {
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
}

/// Opens the init program O_PATH after checking it is an executable file.
pub(super) fn open_init_program(
    configured: Option<&std::path::Path>,
) -> Result<std::os::fd::OwnedFd, JobError> {
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
