//! The one interface both layouts implement. The layout is detected once
//! (`detect`) and kept as a `Box<dyn Layout>`; nothing else asks which one
//! it is.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use super::{BlockDevice, CgroupError, JobCgroup, LayoutKind};
use crate::protocol::Limits;

/// jw's cgroups in one layout: where its subtrees are and how a job's
/// cgroups are made there.
pub trait Layout: Debug + Send + Sync {
    /// Which layout this is, for the start-up log.
    fn kind(&self) -> LayoutKind;

    /// The block devices I/O limits apply to.
    fn devices(&self) -> &[BlockDevice];

    /// Where job leaves are created in the cgroup2 hierarchy.
    fn v2_subtree(&self) -> &Path;

    /// Every cgroup directory jw has for jobs now, in every hierarchy.
    fn job_dirs(&self) -> Vec<PathBuf>;

    /// Removes jw's subtree directories that are empty.
    fn remove_subtree(&self);

    /// Creates a job's cgroups with its limits written, ready to clone into;
    /// removes what it made if anything fails.
    fn create(&self, id: &str, limits: &Limits) -> Result<JobCgroup, CgroupError>;

    /// The cgroups of job `id` that a previous server made (a job it left
    /// running, or one that ended while no server was there).
    fn open(&self, id: &str) -> JobCgroup;

    /// Kills and removes every job cgroup found in jw's subtrees, but those
    /// of the jobs `keep` names. Returns how many jobs' cgroups were
    /// removed.
    fn cleanup_stale(&self, keep: &dyn Fn(&str) -> bool) -> Result<usize, CgroupError>;
}
