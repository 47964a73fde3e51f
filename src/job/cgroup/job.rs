//! One job's cgroups: the cgroup2 leaf it is cloned into (both layouts),
//! and the cgroups that carry its limits behind `LimitCgroups` (the leaf
//! itself in v2, one v1 cgroup per controller in the hybrid layout).

use std::fmt::Debug;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::controller::{cpu, kill};
use super::{fs, CgroupError};
use crate::protocol::Usage;

/// Where a job's limits live, and what follows from that: which cgroups
/// its init must join, where its memory, I/O and pids figures are read, and
/// what else must be removed with the leaf.
pub trait LimitCgroups: Debug + Send + Sync {
    /// The cgroups, besides the leaf, the job's init joins itself.
    fn join_dirs(&self) -> Vec<PathBuf>;

    /// Where the job's keeper moves itself once the command runs, so the
    /// output it writes is charged to jw's subtree rather than the job's
    /// memory cgroup (which, removed with page cache still charged to it,
    /// would linger as a dying cgroup holding kernel memory until reclaim):
    /// the memory cgroup's parent where memory is a controller of its own
    /// (v1); `None` where it cannot be apart from the job (v2).
    fn keeper_memory_dir(&self) -> Option<PathBuf> {
        None
    }

    /// Adds memory, I/O and pids figures to `usage`.
    fn usage(&self, usage: &mut Usage);

    /// How many processes the kernel's OOM killer killed.
    fn oom_kills(&self) -> u64;

    /// SIGKILLs each process listed in these cgroups.
    fn kill_listed(&self);

    /// Removes these cgroups (besides the leaf) without waiting: `Ok(false)`
    /// if one is still busy.
    fn remove_now(&self) -> Result<bool, CgroupError>;

    /// Removes these cgroups (besides the leaf), waiting while one is busy.
    fn remove(&self) -> Result<(), CgroupError>;
}

/// One job's cgroups.
#[derive(Debug)]
pub struct JobCgroup {
    /// The cgroup2 leaf the job is cloned into.
    leaf: PathBuf,
    /// The cgroups that carry the limits.
    limits: Box<dyn LimitCgroups>,
}

impl JobCgroup {
    pub(super) fn new(leaf: PathBuf, limits: Box<dyn LimitCgroups>) -> Self {
        JobCgroup { leaf, limits }
    }

    /// The cgroup2 leaf directory.
    pub fn leaf(&self) -> &Path {
        &self.leaf
    }

    /// Opens the leaf O_PATH for clone3's `cgroup` field. Held only around
    /// the clone: a running job should not cost the server one more fd.
    pub fn open_leaf(&self) -> Result<OwnedFd, CgroupError> {
        rustix::fs::open(
            &self.leaf,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| CgroupError::io("open", &self.leaf, e.into()))
    }

    /// The cgroups the job's init must join itself, by writing to their
    /// `cgroup.procs` before it runs anything of the job: the v1 ones in
    /// the hybrid layout (v1 has no CLONE_INTO_CGROUP), and the leaf too
    /// when the kernel refused CLONE_INTO_CGROUP (`into_leaf = false`).
    pub fn join_dirs(&self, into_leaf: bool) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if !into_leaf {
            dirs.push(self.leaf.clone());
        }
        dirs.extend(self.limits.join_dirs());
        dirs
    }

    /// See `LimitCgroups::keeper_memory_dir`.
    pub fn keeper_memory_dir(&self) -> Option<PathBuf> {
        self.limits.keeper_memory_dir()
    }

    /// Kills every process in the job at once (cgroup.kill, Linux 5.14+).
    /// Falls back to SIGKILL for each listed pid on older kernels.
    pub fn kill(&self) -> Result<(), CgroupError> {
        kill::kill(&self.leaf)
    }

    /// SIGKILLs each process listed in any of the job's cgroups, one by
    /// one: for when cgroup.kill cannot be written, or did not take.
    pub fn kill_listed(&self) {
        kill::kill_procs(&self.leaf);
        self.limits.kill_listed();
    }

    /// Whether any process is still in the job.
    pub fn populated(&self) -> bool {
        kill::populated(&self.leaf)
    }

    /// Resource use so far.
    pub fn usage(&self) -> Usage {
        let mut usage = cpu::usage(&self.leaf);
        self.limits.usage(&mut usage);
        usage
    }

    /// Whether the kernel's OOM killer killed a process of the job. Reads
    /// the `oom_kill` counter, not `oom` (which also counts allocations that
    /// merely failed; see containerd#6323).
    pub fn oom_killed(&self) -> bool {
        self.limits.oom_kills() > 0
    }

    /// Removes the job's cgroups if that needs no waiting: `Ok(false)` if
    /// one is still busy or populated (then call `remove`, off the async
    /// runtime). Call after the job has ended and its figures were read.
    pub fn remove_now(&self) -> Result<bool, CgroupError> {
        if self.populated() {
            return Ok(false);
        }
        let leaf = fs::rmdir_now(&self.leaf)?;
        let rest = self.limits.remove_now()?;
        Ok(leaf && rest)
    }

    /// Removes all of the job's cgroups. Call after the job has ended and
    /// its figures were read.
    pub fn remove(&self) -> Result<(), CgroupError> {
        if self.populated() {
            self.kill()?;
        }
        let leaf = fs::rmdir(&self.leaf);
        let rest = self.limits.remove();
        leaf.and(rest)
    }
}
