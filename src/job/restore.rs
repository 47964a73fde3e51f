//! What a starting jwd finds: every job a previous jwd recorded, loaded;
//! those still running under a live keeper re-adopted (`keeper.rs` checks
//! the keeper and connects to it), those that ended while no jwd was there
//! settled from their keeper's exit record, the rest marked lost; and the
//! data directory made owner-only, with the work directories no adopted
//! job uses moved aside and removed in the background.

use super::input::{InputState, JobInput};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::cgroup::{Cgroups, JobCgroup};
use super::channel::ExitRecord;
use super::engine::Manager;
use super::error::{io_err, JobError};
use super::keeper::{self, Gone};
use super::lifetime::Lifetime;
use super::link::InitChannel;
use super::now_ms;
use super::output::Grant;
use super::output::Output;
use super::record::{self, StopTerms};
use super::registry::{Control, Job};
use super::supervise::{remove_cgroups, settle, supervise, tell_grant, Keeper, Running};
use super::uids::JobIds;
use crate::protocol::{JobId, JobInfo, JobState, Usage};

/// Where jobs' work directories live, under the data directory.
pub(super) const WORK_DIR: &str = "work";

/// Work directories a previous jwd left, being removed.
pub(super) const STALE_PREFIX: &str = "work.stale-";

/// Creates (or makes owner-only) the data directory and its `jobs` and
/// `work` directories: 0700, so no job and no other host user can reach
/// output, records or another job's files. Work directories a crashed jwd
/// left go (their jobs were killed with the stale cgroups), but those of
/// the jobs it re-adopted (`in_use`, by name in `work`).
pub(super) fn prepare_data_dir(
    data_dir: &std::path::Path,
    in_use: &HashSet<OsString>,
) -> Result<(), JobError> {
    use std::os::unix::fs::PermissionsExt;
    let work = data_dir.join(WORK_DIR);
    if work.exists() && !in_use.is_empty() {
        // Only what no running job uses goes, entry by entry.
        let stale = data_dir.join(format!("{STALE_PREFIX}{}-{}", std::process::id(), now_ms()));
        let entries = std::fs::read_dir(&work).map_err(io_err(format!(
            "cannot list the work directories in {}",
            work.display()
        )))?;
        for entry in entries.filter_map(Result::ok) {
            if in_use.contains(&entry.file_name()) {
                continue;
            }
            if !stale.exists() {
                std::fs::create_dir(&stale)
                    .map_err(io_err(format!("cannot create {}", stale.display())))?;
            }
            std::fs::rename(entry.path(), stale.join(entry.file_name())).map_err(io_err(
                format!(
                    "cannot move stale work directory {} aside",
                    entry.path().display()
                ),
            ))?;
        }
    } else if work.exists() {
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

/// A running job a restarted jwd found with its keeper alive and
/// connected: to be supervised again (`Manager::resume`).
pub(super) struct Adopted {
    pub(super) job: Arc<Job>,
    pub(super) channel: Arc<OwnedFd>,
    pub(super) pidfd: Arc<OwnedFd>,
    pub(super) cgroup: Arc<JobCgroup>,
    pub(super) ids: JobIds,
    pub(super) output_cap: u64,
}

/// What `load_jobs` found.
pub(super) struct Restored {
    pub(super) jobs: HashMap<JobId, Arc<Job>>,
    pub(super) adopted: Vec<Adopted>,
}

/// Loads every job a previous server recorded. A job that was running is
/// re-adopted if its keeper is alive (the same process, in the job's
/// cgroup, reachable on its socket); settled from its keeper's exit
/// record if it ended while no jwd was there; else marked lost (its
/// processes are killed with its stale cgroups right after). Its output
/// stays readable in every case. `work` is where work directories are.
pub(super) fn load_jobs(jobs_dir: &Path, work: &Path, cgroups: &Cgroups) -> Restored {
    let mut loaded: Vec<(JobInfo, StopTerms, PathBuf)> = Vec::new();
    let Ok(entries) = std::fs::read_dir(jobs_dir) else {
        return Restored {
            jobs: HashMap::new(),
            adopted: Vec::new(),
        };
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
            Ok((info, terms)) if info.id == id => loaded.push((info, terms, dir)),
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
    loaded.sort_by_key(|(info, _, _)| (info.started_at_ms, info.id));
    let mut jobs = HashMap::new();
    let mut adopted = Vec::new();
    let (mut lost, mut settled) = (0, 0);
    for (seq, (mut info, terms, dir)) in loaded.into_iter().enumerate() {
        let was_active = info.state.is_active();
        let found = was_active.then(|| keeper::find(&dir, info.id));
        let live = matches!(found, Some(Ok(_)));
        let opened = if live {
            Output::open_live(&dir, info.output.dropped_bytes)
        } else {
            Output::open_closed(&dir, info.output.dropped_bytes)
        };
        let output = match opened {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot open the job's output; job ignored");
                continue;
            }
        };
        let mut home = PathBuf::new();
        let mut control = None;
        let mut keep = None;
        match found {
            None => {}
            Some(Ok(found)) => {
                let ids = found.record.ids;
                let name = if ids.pooled {
                    ids.uid.to_string()
                } else {
                    info.id.to_string()
                };
                home = work.join(name);
                let cgroup = Arc::new(cgroups.open(&info.id.to_string()));
                let channel = Arc::new(found.channel);
                control = Some(Control {
                    channel: channel.clone(),
                    cgroup: cgroup.clone(),
                });
                keep = Some((channel, Arc::new(found.pidfd), cgroup, found.record));
            }
            Some(Err(gone)) => {
                // Its last figures are in its cgroups until they go.
                let cgroup = cgroups.open(&info.id.to_string());
                info.usage = Usage {
                    pids_current: 0,
                    ..cgroup.usage()
                };
                info.oom_killed |= cgroup.oom_killed();
                match ExitRecord::read(&dir) {
                    Some(exit) => {
                        settled += 1;
                        settle(&mut info, Some(exit.wait_status), None);
                        info.ended_at_ms = Some(exit.ended_at_ms);
                    }
                    None => {
                        lost += 1;
                        info.state = JobState::Lost;
                        info.ended_at_ms = Some(now_ms());
                        info.error = Some(lost_because(&gone));
                    }
                }
            }
        }
        info.output = output.info();
        if !live {
            info.usage.pids_current = 0;
        }
        // A running job's deadlines go on: its timeout from its start, its
        // tie from now (no client of the last jwd holds it any more).
        let lifetime = if live {
            Lifetime::new(info.started_at_ms, info.timeout_ms, terms)
        } else {
            Lifetime::ended(terms)
        };
        let job = Arc::new(Job {
            id: info.id,
            owner: info.owner.clone(),
            seq: seq as u64,
            info: watch::Sender::new(info),
            control: Mutex::new(control),
            output,
            // An adopted keeper says what its job's input is when it is
            // connected; an ended job has none.
            input: Mutex::new(JobInput {
                state: if live {
                    InputState::Unknown
                } else {
                    InputState::Ended
                },
                ..JobInput::default()
            }),
            dir,
            home,
            lifetime,
        });
        if was_active && !live {
            job.persist();
        }
        if let Some((channel, pidfd, cgroup, record)) = keep {
            adopted.push(Adopted {
                job: job.clone(),
                channel,
                pidfd,
                cgroup,
                ids: record.ids,
                output_cap: record.output_cap,
            });
        }
        jobs.insert(job.id, job);
    }
    tracing::info!(
        jobs = jobs.len(),
        adopted = adopted.len(),
        ended_meanwhile = settled,
        lost,
        "job records loaded"
    );
    Restored { jobs, adopted }
}

/// What a lost job's status says.
fn lost_because(gone: &Gone) -> String {
    match gone {
        Gone::NoRecord => "jwd stopped while the job was starting, before its keeper was recorded; the job was killed when jwd restarted".into(),
        Gone::Exited(_) | Gone::Reused(_) => "the job's keeper (its PID 1, jw-init) ended while jwd was not running, without recording how the command ended (it was killed); its output up to then is kept".into(),
        Gone::Unreachable { error, .. } => format!("jwd restarted and could not reach the job's keeper ({error}); the job was killed"),
    }
}

impl Manager {
    /// Supervises again the running jobs this engine adopted at start-up
    /// (their keepers kept them while no jwd was there): from here on they
    /// are served as if this jwd had started them. Call it once from
    /// within the runtime the supervisors are to run on; later calls find
    /// nothing left to do.
    pub fn resume(&self) {
        let adopted = std::mem::take(&mut *self.inner.adopted.lock().expect("adopted lock"));
        for Adopted {
            job,
            channel,
            pidfd,
            cgroup,
            ids,
            output_cap,
        } in adopted
        {
            let slot = self.inner.registry.reserve_adopted(&job.owner);
            self.inner.active.send_modify(|n| *n += 1);
            self.watch_lifetime(&job);
            let this = self.clone();
            tokio::spawn(async move {
                let home = job.home.clone();
                let (cgroups_removed, tidied) = match InitChannel::new(channel.clone()) {
                    Ok(watched) => {
                        let user = this.inner.registry.user_output(&job.owner);
                        let o = job.output.info();
                        let kept = o.stdout_bytes + o.stderr_bytes;
                        let mut grant = Grant::new(output_cap, user, kept);
                        // This jwd's grant replaces the last one's.
                        tell_grant(&mut grant, channel.as_fd(), kept);
                        let running = Running {
                            job,
                            keeper: Keeper::Adopted(pidfd),
                            cgroup,
                            channel: watched,
                            grant,
                            slot,
                        };
                        supervise(&this.inner.pool, running, (home.as_path(), ids)).await
                    }
                    Err(e) => {
                        tracing::warn!(job = %job.id, error = %e, "cannot watch the adopted job's channel; killing the job");
                        this.give_up(job, cgroup, slot).await
                    }
                };
                match tidied {
                    Some(result) => this.tidied(result, &home, ids),
                    None => this.clean_up(cgroups_removed, home, ids).await,
                }
                this.inner.active.send_modify(|n| *n -= 1);
            });
        }
    }

    /// Ends an adopted job jwd cannot supervise: kills it, records it lost
    /// and removes its cgroups. Returns whether they are gone.
    async fn give_up(
        &self,
        job: Arc<Job>,
        cgroup: Arc<JobCgroup>,
        slot: super::registry::Slot,
    ) -> (bool, Option<std::io::Result<()>>) {
        *job.control.lock().expect("control lock") = None;
        let mut info = job.info.borrow().clone();
        info.state = JobState::Lost;
        info.ended_at_ms = Some(now_ms());
        info.error =
            Some("jwd restarted and could not watch the job's keeper; the job was killed".into());
        let (cg, dir, record) = (cgroup.clone(), job.dir.clone(), info.clone());
        let terms = job.lifetime.terms();
        self.inner
            .pool
            .run(move || {
                let _ = cg.kill();
                if let Err(e) = record::write(&dir, &record, terms) {
                    tracing::warn!(error = %e, "cannot write the job's final status record");
                }
            })
            .await;
        let removed = remove_cgroups(&self.inner.pool, &cgroup).await;
        job.output.close();
        drop(slot);
        job.info.send_replace(info);
        (removed.is_ok(), None)
    }
}
