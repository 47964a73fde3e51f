//! Starting a job: the owner's turn, the spec, the owner's place and uid,
//! then on the blocking pool the job's directories, record, cgroups and the
//! clone of its init (`spawn.rs`); then the init's exec report, and the job
//! is registered and handed to its supervisor.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::cgroup::JobCgroup;
use super::channel::{Report, Setup};
use super::engine::{Inner, Manager};
use super::error::{io_err, JobError};
use super::exec_failure::exec_error;
use super::input::JobInput;
use super::keeper;
use super::lifetime::Lifetime;
use super::link::{InitChannel, Note};
use super::now_ms;
use super::output::{Grant, Output, Store, UserOutput};
use super::record::{self, StopTerms};
use super::registry::{Control, Job, NameClaim, Slot};
use super::restore::WORK_DIR;
use super::spawn::{self, SpawnConfig, SpawnError};
use super::spec::{JobSpec, Terms};
use super::supervise::{reap_pid, remove_cgroups, supervise, Keeper, Running, MAX_GRACE};
use super::uids::JobIds;
use crate::protocol::{JobId, JobInfo, Limits, Network, StartOptions, StartRequest, Stdin};

/// How long a start waits for the init's report that the command was
/// executed (or not).
pub(super) const EXEC_BOUND: Duration = Duration::from_secs(60);

/// One of an owner's turns to start a job; the next waiting start goes
/// when it is dropped.
#[derive(Debug)]
pub struct StartTurn {
    pub(super) _permit: tokio::sync::OwnedSemaphorePermit,
}

/// A started job, with how long the start took.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub id: JobId,
    /// From just before clone3 to the init's report that execve succeeded.
    pub exec_latency: Duration,
}

impl Manager {
    /// Validates and starts a job for `owner`. Returns once the command was
    /// executed, or with the reason it could not be.
    pub async fn start(&self, owner: &str, request: &StartRequest) -> Result<Started, JobError> {
        self.start_with(owner, request, Stdin::Null).await
    }

    /// `start`, with the job's input open as `stdin` asks (a pipe or a
    /// terminal the owner writes to with `attach`).
    pub async fn start_with(
        &self,
        owner: &str,
        request: &StartRequest,
        stdin: Stdin,
    ) -> Result<Started, JobError> {
        self.start_job(owner, request, stdin, &StartOptions::default())
            .await
    }

    /// `start_with`, with a name, a timeout, a tie to the clients that
    /// hold the job, and the grace of those stops.
    pub async fn start_job(
        &self,
        owner: &str,
        request: &StartRequest,
        stdin: Stdin,
        options: &StartOptions,
    ) -> Result<Started, JobError> {
        let turn = self.start_turn(owner).await?;
        self.start_in_turn(turn, owner, request, stdin, options)
            .await
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
        stdin: Stdin,
        options: &StartOptions,
    ) -> Result<Started, JobError> {
        let _turn = turn;
        if self.inner.draining.load(Ordering::Acquire) {
            return Err(JobError::ShuttingDown);
        }
        let mut spec = JobSpec::validate(request, &self.inner.policy)?;
        spec.stdin = stdin;
        let terms = Terms::validate(options, &self.inner.policy)?;
        if let Some(grace) = terms.grace.filter(|g| *g > MAX_GRACE) {
            return Err(JobError::GraceTooLong(grace));
        }
        let user_output = self.inner.registry.user_output(owner);
        if let Some(u) = user_output.as_ref().filter(|u| u.is_full()) {
            return Err(JobError::OutputQuota {
                owner: owner.to_string(),
                cap: u.cap(),
            });
        }
        let slot = self.inner.registry.reserve(owner)?;
        let identities = &self.inner.identities;
        let ids = identities.take().ok_or(JobError::NoIdentity {
            range: self.inner.config.job_uids,
            count: identities.capacity().unwrap_or(0),
        })?;
        let claimed = new_job_id().and_then(|id| {
            let claim = match &terms.name {
                Some(name) => Some(self.inner.registry.claim_name(owner, name, id)?),
                None => None,
            };
            Ok((id, claim))
        });
        let (id, name) = match claimed {
            Ok(claimed) => claimed,
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
            terms,
            dir: self.job_dir(id),
            home: self.work_dir(id, ids),
            ids,
        };
        // Directories, cgroups (their files take the cgroup mutex) and the
        // clone (CLONE_VFORK waits for the init's exec) on the pool.
        let inner = self.inner.clone();
        let prepared = self.inner.pool.run(move || prepare(&inner, new)).await;
        match prepared {
            Ok(prepared) => self.start_in(prepared, slot, name).await,
            Err(e) => {
                // Nothing of the job ran: its uid goes back at once.
                identities.give_back(ids);
                Err(e)
            }
        }
    }

    /// The job's work directory on the host (its /home/job): one per pool
    /// uid, made once and emptied after each job (see `UidPool`), or one
    /// per job for a fixed job user.
    pub(super) fn work_dir(&self, id: JobId, ids: JobIds) -> PathBuf {
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
    pub(super) async fn start_in(
        &self,
        prepared: Prepared,
        slot: Slot,
        name: Option<NameClaim>,
    ) -> Result<Started, JobError> {
        let Prepared {
            new,
            cgroup,
            cloned:
                Cloned {
                    output,
                    grant,
                    child,
                    began,
                    info,
                },
        } = prepared;
        let inner = &self.inner;
        let pid = child.pid;
        let mut input = JobInput::default();
        let first = match InitChannel::new(Arc::new(child.channel)) {
            // The first message is the exec report: no output can come
            // before. An init that never sends it (held by the kernel in its
            // setup) is given up on.
            Ok(mut channel) => {
                // The job's input comes just before the report.
                let on_note = |note| {
                    if let Note::Input(kind, fd) = note {
                        input.state = JobInput::from_keeper(kind, fd);
                    }
                };
                match tokio::time::timeout(EXEC_BOUND, channel.next_report(on_note)).await {
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
            Ok((Some(Report::ExecOk), channel)) => Ok(channel),
            Ok((other, channel)) => {
                drop(channel);
                let init_status = reap_pid(pid).await.ok();
                Err(exec_error(&new.spec, other, init_status))
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
        let seq = inner.registry.next_seq();
        let lifetime = Lifetime::new(info.started_at_ms, info.timeout_ms, stop_terms(&new.terms));
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
            input: Mutex::new(input),
            dir: new.dir,
            home: new.home.clone(),
            lifetime,
        });
        inner.registry.insert(job.clone());
        if let Some(name) = name {
            name.keep();
        }
        self.watch_lifetime(&job);
        if inner.draining.load(Ordering::Acquire) && !inner.config.keep_jobs_on_exit {
            // Started while jwd began to shut down, after `drain` took its
            // list: stopped like the others (or, with --keep-jobs-on-exit,
            // left to its keeper like them).
            let this = self.clone();
            let grace = inner.config.shutdown_grace;
            tokio::spawn(async move {
                let _ = this.end(id, None, grace).await;
            });
        }

        inner.active.send_modify(|n| *n += 1);
        let this = self.clone();
        let (home, ids) = (new.home, new.ids);
        tokio::spawn(async move {
            let work = (home.as_path(), ids);
            let running = Running {
                job,
                keeper: Keeper::Child(pid),
                cgroup,
                channel,
                grant,
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
}

/// A job about to be made: what `start` decided before anything exists.
pub(super) struct NewJob {
    pub(super) id: JobId,
    pub(super) owner: String,
    /// The owner's output over all their jobs, if capped.
    pub(super) user_output: Option<Arc<UserOutput>>,
    pub(super) spec: JobSpec,
    /// Its name, timeout, tie and grace.
    pub(super) terms: Terms,
    /// Its directory (output, record) and work directory on the host.
    pub(super) dir: PathBuf,
    pub(super) home: PathBuf,
    pub(super) ids: JobIds,
}

/// A job whose init was cloned, waiting for the init's exec report.
pub(super) struct Prepared {
    pub(super) new: NewJob,
    pub(super) cgroup: Arc<JobCgroup>,
    pub(super) cloned: Cloned,
}

/// What `clone_init` made.
pub(super) struct Cloned {
    pub(super) output: Arc<Output>,
    /// What its keeper may write of its owner's room.
    pub(super) grant: Grant,
    pub(super) child: spawn::Child,
    /// Just before the clone.
    pub(super) began: Instant,
    /// Its status as recorded on disk before the clone.
    pub(super) info: JobInfo,
}

/// The blocking part of a start, run on the engine's pool: the job's
/// directories, its status record, its cgroups, and the clone of its init.
/// Whatever it made is removed again when it fails.
pub(super) fn prepare(inner: &Inner, new: NewJob) -> Result<Prepared, JobError> {
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
pub(super) fn clone_init(
    inner: &Inner,
    new: &NewJob,
    cgroup: &JobCgroup,
) -> Result<Cloned, JobError> {
    let spec = &new.spec;
    let id_text = new.id.to_string();
    let output = Output::live(&new.dir);
    let mut grant = Grant::new(spec.output_cap, new.user_output.clone(), 0);
    // Its set-up carries the first grant.
    grant.told(grant.granted());
    // The job's directory, where its keeper writes, and the keeper's
    // listening socket in it (for a restarted jwd to reconnect).
    let dir_fd = Store::open_dir(&new.dir).map_err(io_err(format!(
        "cannot open the job directory {}",
        new.dir.display()
    )))?;
    let listener = keeper::listen(&dir_fd).map_err(io_err(format!(
        "cannot make the keeper's socket in {}",
        new.dir.display()
    )))?;
    let info = JobInfo {
        started_at_ms: now_ms(),
        name: new.terms.name.clone(),
        limits: Limits {
            output_bytes: Some(spec.output_cap),
            ..spec.limits
        },
        timeout_ms: new.terms.timeout.map(|t| t.as_millis() as u64),
        ..JobInfo::running(new.id, &new.owner, &spec.command, spec.args.clone())
    };
    // Before the clone: a jwd that dies from here on finds the job and
    // marks it lost. No fsync (see record.rs).
    if let Err(e) = record::write(&new.dir, &info, stop_terms(&new.terms)) {
        tracing::warn!(job = %new.id, error = %e, "cannot write the job's status record");
    }
    let leaf_fd = cgroup.open_leaf()?;
    let mut setup = Setup {
        uid: new.ids.uid,
        gid: new.ids.gid,
        pooled: new.ids.pooled,
        new_net: spec.network == Network::None,
        hostname: format!("jw-{}", &id_text[..8]),
        // jwd made it, under a data directory Manager::new checked.
        home: new.home.to_string_lossy().into_owned(),
        workdir: spec.workdir.clone(),
        hide: inner.hidden.clone(),
        join: Vec::new(),
        keeper_cgroup: cgroup
            .keeper_memory_dir()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        seccomp: inner.filter.clone(),
        candidates: spec.exec_candidates(),
        argv: std::iter::once(spec.command.clone())
            .chain(spec.args.iter().cloned())
            .collect(),
        env: spec.env.clone(),
        output_cap: spec.output_cap,
        granted: grant.granted(),
        stdin: spec.stdin,
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
            listener: listener.as_fd(),
            dir: dir_fd.as_fd(),
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
        grant,
        child,
        began,
        info,
    })
}

/// What the status record keeps of a job's terms (its name and timeout
/// are in its `JobInfo`).
fn stop_terms(terms: &Terms) -> StopTerms {
    let ms = |d: std::time::Duration| d.as_millis().min(u128::from(u32::MAX)) as u32;
    StopTerms {
        tie_ms: terms.tie.map(ms),
        grace_ms: terms.grace.map(ms),
    }
}

pub(super) fn new_job_id() -> Result<JobId, JobError> {
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

/// A new job's directory (output, record: 0700, jwd's) and work directory
/// (0700, the job's uid's; a pool uid's is kept empty between jobs and
/// only made the first time).
pub(super) fn create_job_dirs(
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
