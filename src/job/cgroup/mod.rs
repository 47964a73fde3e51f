//! Job cgroups, on the model of youki's libcgroups: the layout is detected
//! once (`detect`) and kept behind one trait (`Layout`, implemented by `v2`
//! and `hybrid`); each controller has one small file under `controller/`
//! that writes its limits and reads its counters in both formats; `parse`
//! reads what the kernel writes; `fs` does the file operations.
//!
//! Both layouts clone the job INTO a cgroup2 leaf that jw created: that gives
//! atomic placement, `cgroup.kill` for the whole tree, and cpu.stat. Where the
//! limit controllers live differs:
//! - `v2`: the same leaf carries cpu.max, memory.max, io.max, pids.max.
//! - `hybrid`: cgroup2 has no controllers; v1 cgroups created under the
//!   server's own v1 paths carry the limits, and the job's init joins them
//!   itself (`Setup::join`) before it runs anything of the job.
//!
//! jw only ever touches directories it created: its subtree (named by
//! `CgroupConfig::name`) under the server's own cgroup in each hierarchy, and
//! job directories inside it named by job id.

pub(crate) mod controller;
mod detect;
mod devices;
mod error;
mod fs;
mod hybrid;
mod job;
mod layout;
pub(crate) mod parse;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use controller::V2 as V2_CONTROLLERS;
pub use detect::{pid_cgroup_dirs, Plan};
pub use devices::{block_devices, BlockDevice};
pub use error::CgroupError;
pub use job::JobCgroup;

use layout::Layout;

use crate::protocol::Limits;

/// Where jw keeps its cgroups.
#[derive(Debug, Clone)]
pub struct CgroupConfig {
    /// Name of jw's subtree under the server's own cgroup in each hierarchy.
    /// One per server instance; a restarted server with the same name cleans
    /// up what its predecessor left.
    pub name: String,
    /// Where the hierarchies are mounted (normally /sys/fs/cgroup).
    pub mount_root: PathBuf,
    /// Where block devices are listed (normally /sys/block).
    pub sys_block: PathBuf,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        CgroupConfig {
            name: "jw".into(),
            mount_root: "/sys/fs/cgroup".into(),
            sys_block: "/sys/block".into(),
        }
    }
}

/// The detected layout, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutKind {
    V2,
    Hybrid,
}

impl std::fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LayoutKind::V2 => "v2",
            LayoutKind::Hybrid => "hybrid",
        })
    }
}

/// jw's cgroups on this host, in whichever layout it has.
#[derive(Debug)]
pub struct Cgroups {
    layout: Box<dyn Layout>,
}

impl Cgroups {
    /// Detects the layout once, from this process's /proc/self/mountinfo
    /// and /proc/self/cgroup, and prepares jw's subtree in it.
    pub fn detect(config: &CgroupConfig) -> Result<Cgroups, CgroupError> {
        let mountinfo = fs::read(Path::new("/proc/self/mountinfo"))?;
        let self_cgroup = fs::read(Path::new("/proc/self/cgroup"))?;
        Self::detect_from(config, &mountinfo, &self_cgroup)
    }

    /// `detect` with the mount table (mountinfo format) and the server's
    /// /proc/self/cgroup given as text.
    pub fn detect_from(
        config: &CgroupConfig,
        mountinfo: &str,
        self_cgroup: &str,
    ) -> Result<Cgroups, CgroupError> {
        Ok(Cgroups {
            layout: detect::layout(config, mountinfo, self_cgroup)?,
        })
    }

    /// Where jw's cgroups would go on this host, found from this
    /// process's /proc/self/mountinfo and /proc/self/cgroup without
    /// creating or moving anything.
    pub fn plan(config: &CgroupConfig) -> Result<Plan, CgroupError> {
        let mountinfo = fs::read(Path::new("/proc/self/mountinfo"))?;
        let self_cgroup = fs::read(Path::new("/proc/self/cgroup"))?;
        detect::plan(config, &mountinfo, &self_cgroup)
    }

    pub fn kind(&self) -> LayoutKind {
        self.layout.kind()
    }

    /// The block devices I/O limits apply to.
    pub fn devices(&self) -> &[BlockDevice] {
        self.layout.devices()
    }

    /// Where job leaves are created in the cgroup2 hierarchy.
    pub fn v2_subtree(&self) -> &Path {
        self.layout.v2_subtree()
    }

    /// Every cgroup directory jw has for jobs now (v2 and v1): for leak
    /// checks in tests and soak runs.
    pub fn job_dirs(&self) -> Vec<PathBuf> {
        self.layout.job_dirs()
    }

    /// Removes jw's (empty) subtree directories: on shutdown, and by tests
    /// that made a subtree of their own. Directories still holding job
    /// cgroups are left alone.
    pub fn remove_subtree(&self) {
        self.layout.remove_subtree()
    }

    /// Creates a job's cgroups with its limits written, ready to clone into.
    pub fn create(&self, id: &str, limits: &Limits) -> Result<JobCgroup, CgroupError> {
        self.layout.create(id, limits)
    }

    /// The cgroups of job `id` a previous server made: a job it left
    /// running (re-adopted), or one that ended while no server was there
    /// (its final figures are still in them).
    pub fn open(&self, id: &str) -> JobCgroup {
        self.layout.open(id)
    }

    /// Kills and removes every job cgroup a previous server with the same
    /// subtree left behind, but those of the jobs `keep` names (jobs
    /// re-adopted). Returns how many jobs' cgroups were removed.
    pub fn cleanup_stale(&self, keep: &dyn Fn(&str) -> bool) -> Result<usize, CgroupError> {
        self.layout.cleanup_stale(keep)
    }
}
