//! What a starting jwd finds: the data directory made owner-only (stale
//! work directories moved aside and removed in the background), and every
//! job a previous jwd recorded, loaded; those that were running are marked
//! lost (see `load_jobs` for why they are not re-adopted yet).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::error::{io_err, JobError};
use super::now_ms;
use super::output::Output;
use super::record;
use super::registry::Job;
use crate::protocol::{JobId, JobInfo, JobState};

/// Where jobs' work directories live, under the data directory.
pub(super) const WORK_DIR: &str = "work";

/// Work directories a previous jwd left, being removed.
pub(super) const STALE_PREFIX: &str = "work.stale-";

/// Creates (or makes owner-only) the data directory and its `jobs` and
/// `work` directories: 0700, so no job and no other host user can reach
/// output, records or another job's files. Work directories a crashed jwd
/// left go (their jobs were killed with the stale cgroups).
pub(super) fn prepare_data_dir(data_dir: &std::path::Path) -> Result<(), JobError> {
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

/// Loads every job a previous server recorded. Jobs that were starting or
/// running are marked lost: their processes were killed and their cgroups
/// removed by the cgroup clean-up that ran just before, and their output
/// up to that moment stays readable.
///
/// Why not re-adopt them: the job's stdout and stderr are pipes drained by
/// the server (that is what keeps the capture order of both streams, the
/// output cap and the full-disk accounting in one place), so a job that
/// outlived its server has already lost output to a dead pipe.
pub(super) fn load_jobs(jobs_dir: &std::path::Path) -> HashMap<JobId, Arc<Job>> {
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
