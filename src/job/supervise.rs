//! Supervision: a task per job owns it from its start (or its adoption by
//! a restarted jwd) to its end. It publishes what the job's keeper says it
//! has written (`link.rs`) and tops up its output grant, learns the
//! command's end from the keeper's report (or its exit record) and the
//! keeper's own through a pidfd (readiness, never SIGCHLD or polling),
//! reads the final figures from the cgroup, records them, removes the
//! cgroups and tidies the work directory. And `stop`: SIGTERM through the
//! keeper, then cgroup.kill, repeated, bounded.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cgroup::{CgroupError, JobCgroup};
use super::channel::{ExitRecord, Report, ToInit};
use super::engine::Manager;
use super::error::JobError;
use super::input::JobInput;
use super::link::{self, InitChannel, Note};
use super::now_ms;
use super::output::Grant;
use super::pool::Pool;
use super::record;
use super::registry::{Job, Slot};
use super::uids::JobIds;
use crate::protocol::{JobId, JobInfo, JobState, Usage};

/// The longest grace period a stop may ask for.
pub const MAX_GRACE: Duration = Duration::from_secs(3600);
/// How often a stop repeats SIGKILL while the job has not ended.
pub(super) const KILL_RETRY: Duration = Duration::from_secs(1);

impl Manager {
    /// Stops a job for a user: SIGTERM to its command, then, after `grace`
    /// (at most `MAX_GRACE`), SIGKILL to every process in its cgroup,
    /// repeated until the job has ended. Returns the final status, or
    /// `StopTimeout` if the job has not ended `kill_timeout` after the
    /// first SIGKILL (a process the kernel does not let go: its SIGKILL
    /// stays pending).
    pub async fn stop(
        &self,
        id: JobId,
        owner: Option<&str>,
        grace: Duration,
    ) -> Result<JobInfo, JobError> {
        if grace > MAX_GRACE {
            return Err(JobError::GraceTooLong(grace));
        }
        self.end(id, owner, grace).await
    }

    /// `stop` without the ceiling on the grace period: for the engine's
    /// own stops (shutdown, with the operator's `--shutdown-grace`).
    pub(super) async fn end(
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
            if let Err(e) = link::send(control.channel.as_fd(), ToInit::Signal(libc::SIGTERM)) {
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

    /// Removes an ended job's work directory and gives its uid back, once
    /// its cgroups are gone (no process of it is left). A job whose
    /// processes could not be shown gone keeps its uid reserved.
    pub(super) async fn clean_up(&self, cgroups_removed: bool, home: PathBuf, ids: JobIds) {
        if !cgroups_removed {
            tracing::warn!(uid = ids.uid, home = %home.display(), "the job's cgroups could not be removed: its uid stays reserved and its work directory stays");
            return;
        }
        let path = home.clone();
        let tidied = self.inner.pool.run(move || tidy_work_dir(&path, ids)).await;
        self.tidied(tidied, &home, ids);
    }

    /// Gives the uid back once its work directory was emptied or removed.
    pub(super) fn tidied(&self, result: std::io::Result<()>, home: &std::path::Path, ids: JobIds) {
        match result {
            Ok(()) => self.inner.identities.give_back(ids),
            Err(e) => {
                tracing::warn!(uid = ids.uid, home = %home.display(), error = %e, "cannot remove the job's work directory: its uid stays reserved")
            }
        }
    }
}

/// The process that keeps a job (its init).
pub(super) enum Keeper {
    /// This jwd's child (it started the job), reaped by its pid.
    Child(i32),
    /// Adopted by a restarted jwd (its parent was the jwd that died): a
    /// pidfd says when it has exited.
    Adopted(Arc<OwnedFd>),
}

/// A job whose command runs, and what its supervisor owns of it.
pub(super) struct Running {
    pub(super) job: Arc<Job>,
    pub(super) keeper: Keeper,
    pub(super) cgroup: Arc<JobCgroup>,
    pub(super) channel: InitChannel,
    /// What the keeper may write of its owner's room.
    pub(super) grant: Grant,
    pub(super) slot: Slot,
}

/// Owns a running job until its end, then records the final status.
/// Returns whether the job's cgroups are gone and, if its work directory
/// (`work`: where, and its uid) was already tidied because the job left
/// nothing in it, how that went.
pub(super) async fn supervise(
    pool: &Pool,
    running: Running,
    work: (&std::path::Path, JobIds),
) -> (bool, Option<std::io::Result<()>>) {
    let Running {
        job,
        keeper,
        cgroup,
        mut channel,
        mut grant,
        slot,
    } = running;
    // The keeper reports progress as it writes, the command's wait status
    // once it has ended, then exits (EOF).
    let fd = channel.fd.get_ref().clone();
    let output = job.output.clone();
    let mut command_status = None;
    let mut on_note = |note: Note| match note {
        Note::Progress(p) => {
            output.publish(p);
            tell_grant(&mut grant, fd.as_fd(), p.lens[0] + p.lens[1]);
        }
        Note::Input(kind, input) => {
            job.input.lock().expect("input lock").state = JobInput::from_keeper(kind, input)
        }
    };
    while let Some(rec) = channel.next_report(&mut on_note).await {
        if let Report::Exited { wait_status } = rec {
            command_status = Some(wait_status);
        }
    }
    // No more signals for this keeper: its pid is about to be released;
    // and no more input.
    *job.control.lock().expect("control lock") = None;
    job.input.lock().expect("input lock").end();
    drop(channel);
    drop(fd);
    let init_status = match keeper {
        Keeper::Child(pid) => Some(reap_pid(pid).await),
        Keeper::Adopted(pidfd) => {
            // Its channel closes as it exits; the pidfd says it is gone.
            if let Ok(fd) = super::async_readable(pidfd) {
                let _ = fd.readable().await;
            }
            None
        }
    };

    // One trip to the pool: the keeper's exit tore the PID namespace down;
    // make sure nothing is left, read the final figures (the exit record
    // has what the keeper wrote last, and the command's status if its
    // report did not come through), record the final status on disk before
    // anyone can see it (a client that saw the end may remove the job at
    // once; no fsync, see record.rs), remove the cgroups, which usually go
    // at once, and then tidy the work directory if the job left nothing in
    // it (else that waits for after the end is published).
    let cg = cgroup.clone();
    let (dir, id) = (job.dir.clone(), job.id);
    let (home, ids) = (work.0.to_path_buf(), work.1);
    let mut info = job.info.borrow().clone();
    let output = job.output.clone();
    let terms = job.lifetime.terms();
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
            let exit = ExitRecord::read(&dir);
            match exit {
                Some(exit) => output.publish(exit.written),
                // A keeper killed before its last report: what it wrote
                // and indexed is on disk, and final.
                None => {
                    if let Ok(found) = output.on_disk() {
                        output.publish(found);
                    }
                }
            }
            let command_status = command_status.or(exit.map(|e| e.wait_status));
            info.output = output.info();
            settle(&mut info, command_status, init_status);
            if let Err(e) = record::write(&dir, &info, terms) {
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
    job.output.close();
    let o = info.output;
    grant.settle(o.stdout_bytes + o.stderr_bytes);
    let removed = match removed_now {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => remove_cgroups(pool, &cgroup).await,
    };
    if let Err(e) = &removed {
        tracing::warn!(job = %job.id, error = %e, "cannot remove the job's cgroups");
    }
    // The owner's place is free from the moment anyone can see the end.
    drop(slot);
    // `stopped` (and `timed_out`) may have been set by a stop while the
    // record was written.
    job.info.send_modify(|current| {
        let (stopped, timed_out) = (current.stopped, current.timed_out);
        *current = info;
        current.stopped |= stopped;
        current.timed_out |= timed_out;
    });
    tracing::debug!(job = %job.id, "job ended");
    (removed.is_ok(), tidied)
}

/// Tells the keeper its grant after it reported `kept` bytes, if there is
/// something to tell; one that cannot be sent now is sent at the next
/// report.
pub(super) fn tell_grant(grant: &mut Grant, channel: std::os::fd::BorrowedFd<'_>, kept: u64) {
    if let Some(total) = grant.top_up(kept) {
        if link::send(channel, ToInit::Grant(total)).is_ok() {
            grant.told(total);
        }
    }
}

/// How the job ended, from the command's wait status as the keeper
/// reported or recorded it, and the keeper's own (`None`: a keeper this
/// jwd adopted, which it cannot reap).
pub(super) fn settle(
    info: &mut JobInfo,
    command_status: Option<i32>,
    init_status: Option<std::io::Result<(i32, i32)>>,
) {
    info.state = JobState::Exited;
    let killed_by_us = info.stopped || info.oom_killed;
    match (command_status, init_status) {
        (Some(st), _) if libc::WIFEXITED(st) => info.exit_code = Some(libc::WEXITSTATUS(st)),
        (Some(st), _) if libc::WIFSIGNALED(st) => info.signal = Some(libc::WTERMSIG(st)),
        // The keeper itself was killed by a stop (cgroup.kill) or the OOM
        // killer: the command died with it, of the same signal.
        (_, Some(Ok((code, sig))))
            if (code == libc::CLD_KILLED || code == libc::CLD_DUMPED) && killed_by_us =>
        {
            info.signal = Some(sig)
        }
        (_, Some(Ok((code, sig)))) if code == libc::CLD_KILLED || code == libc::CLD_DUMPED => {
            info.state = JobState::Lost;
            info.error = Some(format!(
                "the job's keeper (its PID 1, jw-init) was killed by signal {sig}, and the job's processes with it; its output up to then is kept"
            ));
        }
        (_, Some(Ok((_, code)))) => {
            info.state = JobState::Failed;
            info.error = Some(format!(
                "the job's init exited with status {code} without reporting the command's end"
            ));
        }
        (_, Some(Err(e))) => {
            info.state = JobState::Failed;
            info.error = Some(format!("cannot collect the job's init: {e}"));
        }
        (_, None) if killed_by_us => info.signal = Some(libc::SIGKILL),
        (_, None) => {
            info.state = JobState::Lost;
            info.error = Some(
                "the job's keeper (its PID 1, jw-init) ended without recording how the command ended (it was killed), and the job's processes with it; its output up to then is kept".into(),
            );
        }
    }
}

/// Waits for the init (pid `pid`, jwd's unreaped child) to exit and reaps
/// it. Returns its `(si_code, si_status)`. The pidfd lives only for this
/// wait: the pid cannot have been reused, since only this reaps it.
pub(super) async fn reap_pid(pid: i32) -> std::io::Result<(i32, i32)> {
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("pid 0"))?,
        rustix::process::PidfdFlags::empty(),
    )?;
    reap(&Arc::new(pidfd)).await
}

/// Waits for the pidfd's process to exit and reaps it. Returns its
/// `(si_code, si_status)`.
pub(super) async fn reap(pidfd: &Arc<OwnedFd>) -> std::io::Result<(i32, i32)> {
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

/// Removes an ended job's cgroups: at once if they are free, else retried
/// with a growing pause (the kernel answers EBUSY while it tears the last
/// task down) for up to `CGROUP_REMOVE_BOUND`, each attempt on the pool
/// and every pause on the runtime's timer, so no thread sleeps.
pub(super) async fn remove_cgroups(
    pool: &Pool,
    cgroup: &Arc<JobCgroup>,
) -> Result<(), CgroupError> {
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
pub(super) const CGROUP_REMOVE_BOUND: Duration = Duration::from_secs(10);

/// Empties an ended job's work directory for its uid's next job (a pool
/// uid's), or removes it (a fixed job user's, one per job).
pub(super) fn tidy_work_dir(home: &std::path::Path, ids: JobIds) -> std::io::Result<()> {
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

/// Whether an emptied work directory may serve the next job of its uid as
/// it is: no extended attributes (default ACLs, user data), the inode
/// flags of a directory jwd just made (those of its parent), one block.
pub(super) fn reusable(home: &std::path::Path) -> bool {
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
