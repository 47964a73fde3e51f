//! The registry: jobs by id and owner, each job's state in a `watch`
//! channel (the one place it changes, what `wait` and followers subscribe
//! to), the per-user places reserved atomically before a start, each
//! owner's output kept over all their jobs, and their jobs' names (one
//! job per name and owner until it is removed).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::cgroup::JobCgroup;
use super::error::JobError;
use super::input::JobInput;
use super::lifetime::Lifetime;
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
    /// Its input, and the writer attached to it.
    pub(super) input: Mutex<JobInput>,
    /// The job's directory: output and status record.
    pub(super) dir: PathBuf,
    /// Its work directory on the host (`/home/job` inside); empty for jobs
    /// a restarted jwd loaded.
    pub(super) home: PathBuf,
    /// Its timeout and tie.
    pub(super) lifetime: Lifetime,
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
        if let Err(e) = record::write(&self.dir, &info, self.lifetime.terms()) {
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

/// Jobs starting or running, per owner.
type Places = Mutex<HashMap<String, usize>>;

/// The job of each owner's name, by (owner, name).
type Names = Mutex<HashMap<(String, String), JobId>>;

/// The jobs of the engine, by id and owner, and what each owner holds.
pub(super) struct Registry {
    jobs: Mutex<HashMap<JobId, Arc<Job>>>,
    next_seq: AtomicU64,
    /// Jobs starting or running per owner, counted from before the clone
    /// until the job's end is published (see `Slot`).
    slots: Arc<Places>,
    max_jobs_per_user: Option<usize>,
    /// Output kept per owner, with `max_output_per_user` set.
    outputs: Mutex<HashMap<String, Arc<UserOutput>>>,
    max_output_per_user: Option<u64>,
    /// Names, claimed before a start (see `NameClaim`) and given back when
    /// their job is removed.
    names: Arc<Names>,
}

impl Registry {
    /// The registry of the jobs a starting engine loaded, with each
    /// owner's kept output counted again.
    pub(super) fn new(
        jobs: HashMap<JobId, Arc<Job>>,
        max_jobs_per_user: Option<usize>,
        max_output_per_user: Option<u64>,
    ) -> Registry {
        let mut outputs: HashMap<String, Arc<UserOutput>> = HashMap::new();
        if let Some(cap) = max_output_per_user {
            let mut kept: HashMap<&str, u64> = HashMap::new();
            for job in jobs.values() {
                let o = job.output.info();
                *kept.entry(&job.owner).or_default() += o.stdout_bytes + o.stderr_bytes;
            }
            for (owner, bytes) in kept {
                outputs.insert(owner.to_string(), UserOutput::new(cap, bytes));
            }
        }
        let mut names = HashMap::new();
        for job in jobs.values() {
            if let Some(name) = job.info.borrow().name.clone() {
                let key = (job.owner.clone(), name);
                if let Some(other) = names.insert(key, job.id) {
                    tracing::warn!(job = %job.id, other = %other, "two recorded jobs of one owner have the same name");
                }
            }
        }
        Registry {
            names: Arc::new(Mutex::new(names)),
            next_seq: AtomicU64::new(jobs.len() as u64),
            jobs: Mutex::new(jobs),
            slots: Arc::new(Mutex::new(HashMap::new())),
            max_jobs_per_user,
            outputs: Mutex::new(outputs),
            max_output_per_user,
        }
    }

    /// The job `id`, if it exists and `owner` may see it (`None` = anyone).
    pub(super) fn get(&self, id: JobId, owner: Option<&str>) -> Result<Arc<Job>, JobError> {
        let jobs = self.jobs.lock().expect("jobs lock");
        match jobs.get(&id) {
            Some(job) if owner.is_none_or(|o| o == job.owner) => Ok(job.clone()),
            _ => Err(JobError::NotFound(id)),
        }
    }

    /// Jobs of `owner` (or all with `None`), oldest first.
    pub(super) fn jobs(&self, owner: Option<&str>) -> Vec<Arc<Job>> {
        let mut jobs: Vec<Arc<Job>> = self
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

    /// Runs `then` under the registry's lock and returns the jobs active at
    /// that moment: a job registered afterwards sees what `then` did.
    pub(super) fn active_after(&self, then: impl FnOnce()) -> Vec<JobId> {
        let jobs = self.jobs.lock().expect("jobs lock");
        then();
        jobs.values()
            .filter(|j| j.info.borrow().state.is_active())
            .map(|j| j.id)
            .collect()
    }

    /// The start order of the next job.
    pub(super) fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn insert(&self, job: Arc<Job>) {
        self.jobs.lock().expect("jobs lock").insert(job.id, job);
    }

    /// Forgets a job, and gives its name back; `None` if it was not there
    /// (removed meanwhile).
    pub(super) fn take(&self, id: JobId) -> Option<Arc<Job>> {
        let job = self.jobs.lock().expect("jobs lock").remove(&id)?;
        if let Some(name) = job.info.borrow().name.clone() {
            let mut names = self.names.lock().expect("names lock");
            let key = (job.owner.clone(), name);
            if names.get(&key) == Some(&id) {
                names.remove(&key);
            }
        }
        Some(job)
    }

    /// The job `owner` named `name`, if any.
    pub(super) fn named(&self, owner: &str, name: &str) -> Option<JobId> {
        let key = (owner.to_string(), name.to_string());
        self.names.lock().expect("names lock").get(&key).copied()
    }

    /// Claims `name` for `owner`'s job `id` about to start, or says which
    /// job has it.
    pub(super) fn claim_name(
        &self,
        owner: &str,
        name: &str,
        id: JobId,
    ) -> Result<NameClaim, JobError> {
        let key = (owner.to_string(), name.to_string());
        let mut names = self.names.lock().expect("names lock");
        if let Some(job) = names.get(&key) {
            return Err(JobError::NameTaken {
                name: name.to_string(),
                job: *job,
            });
        }
        names.insert(key.clone(), id);
        Ok(NameClaim {
            claim: Some((self.names.clone(), key)),
        })
    }

    /// One of `owner`'s places (`--max-jobs-per-user`), or why not.
    pub(super) fn reserve(&self, owner: &str) -> Result<Slot, JobError> {
        self.take_place(owner, false)
    }

    /// The place of a running job a restarted jwd adopted: taken even past
    /// the cap (the job runs already; a lowered cap applies to new starts).
    pub(super) fn reserve_adopted(&self, owner: &str) -> Slot {
        self.take_place(owner, true)
            .expect("an adopted job's place is never refused")
    }

    fn take_place(&self, owner: &str, adopted: bool) -> Result<Slot, JobError> {
        let Some(max) = self.max_jobs_per_user else {
            return Ok(Slot { place: None });
        };
        let mut slots = self.slots.lock().expect("slots lock");
        let taken = slots.entry(owner.to_string()).or_insert(0);
        if *taken >= max && !adopted {
            return Err(JobError::TooManyJobs {
                owner: owner.to_string(),
                max,
            });
        }
        *taken += 1;
        Ok(Slot {
            place: Some((self.slots.clone(), owner.to_string())),
        })
    }

    /// `owner`'s output over all their jobs, if the server caps it.
    pub(super) fn user_output(&self, owner: &str) -> Option<Arc<UserOutput>> {
        let cap = self.max_output_per_user?;
        let mut outputs = self.outputs.lock().expect("outputs lock");
        Some(
            outputs
                .entry(owner.to_string())
                .or_insert_with(|| UserOutput::new(cap, 0))
                .clone(),
        )
    }
}

/// One of an owner's `--max-jobs-per-user` places, taken under one lock
/// before anything of the job exists (so concurrent starts cannot all see
/// room) and given back when dropped: at a failed start, or just before
/// the job's end is published.
pub(super) struct Slot {
    place: Option<(Arc<Places>, String)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((slots, owner)) = self.place.take() {
            let mut slots = slots.lock().expect("slots lock");
            if let Some(taken) = slots.get_mut(&owner) {
                *taken -= 1;
                if *taken == 0 {
                    slots.remove(&owner);
                }
            }
        }
    }
}

/// A name claimed for a job that is starting: given back when dropped,
/// unless the job started (`keep`), after which it goes with the job.
pub(super) struct NameClaim {
    claim: Option<(Arc<Names>, (String, String))>,
}

impl NameClaim {
    /// The job started: its name is its own until it is removed.
    pub(super) fn keep(mut self) {
        self.claim = None;
    }
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        if let Some((names, key)) = self.claim.take() {
            names.lock().expect("names lock").remove(&key);
        }
    }
}
