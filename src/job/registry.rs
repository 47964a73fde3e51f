//! The registry: jobs by id and owner, each job's state in a `watch`
//! channel (the one place it changes, what `wait` and followers subscribe
//! to), the per-user places reserved atomically before a start, and the
//! registry's requests: get, status, list, wait, remove, prune.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::cgroup::JobCgroup;
use super::error::{io_err, JobError};
use super::manager::{Inner, Manager};
use super::now_ms;
use super::output::{Output, UserOutput};
use super::record;
use crate::protocol::{JobId, JobInfo};

/// One job.
#[derive(Debug)]
pub struct Job {
    pub id: JobId,
    pub owner: String,
    /// Start order, for listings.
    pub(super) seq: u64,
    pub(super) info: watch::Sender<JobInfo>,
    /// While the process may be alive: what is needed to signal and kill it.
    pub(super) control: Mutex<Option<Control>>,
    pub(super) output: Arc<Output>,
    /// The job's directory: output and status record.
    pub(super) dir: PathBuf,
    /// Its work directory on the host (`/home/job` inside); empty for jobs
    /// a restarted jwd loaded.
    pub(super) home: PathBuf,
}

#[derive(Debug, Clone)]
pub(super) struct Control {
    /// jwd's end of the job's channel, to ask the init to forward signals.
    pub(super) channel: Arc<OwnedFd>,
    pub(super) cgroup: Arc<JobCgroup>,
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
    pub(super) fn persist(&self) {
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

/// One of an owner's `--max-jobs-per-user` places, taken under one lock
/// before anything of the job exists (so concurrent starts cannot all see
/// room) and given back when dropped: at a failed start, or just before
/// the job's end is published.
pub(super) struct Slot {
    pub(super) inner: Option<(Arc<Inner>, String)>,
}

impl Slot {
    pub(super) fn reserve(inner: &Arc<Inner>, owner: &str) -> Result<Slot, JobError> {
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

impl Manager {
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

    /// `owner`'s output over all their jobs, if the server caps it.
    pub(super) fn user_output(&self, owner: &str) -> Option<Arc<UserOutput>> {
        let cap = self.inner.config.max_output_per_user?;
        let mut outputs = self.inner.outputs.lock().expect("outputs lock");
        Some(
            outputs
                .entry(owner.to_string())
                .or_insert_with(|| UserOutput::new(cap, 0))
                .clone(),
        )
    }
}
