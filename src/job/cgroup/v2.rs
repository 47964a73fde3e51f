//! The pure cgroup v2 layout: one leaf per job carries every limit.
//!
//! Subtree: `<server's cgroup>/<name>/<job id>`. cgroup2's no-internal-process
//! rule says a cgroup that hands controllers to its children may hold no
//! processes itself, so when the server's cgroup is not the root, the server
//! first moves itself into a sibling leaf `<server's cgroup>/<name>.server`.
//! The root cgroup is exempt from the rule, so there the server stays put.

use std::path::{Path, PathBuf};

use super::controller::{self, kill, memory};
use super::job::LimitCgroups;
use super::{fs, BlockDevice, CgroupError, JobCgroup, Layout, LayoutKind};
use crate::protocol::{Limits, Usage};

/// jw's subtree in a cgroup2 hierarchy that has the limit controllers.
#[derive(Debug)]
pub struct V2Layout {
    subtree: PathBuf,
    devices: Vec<BlockDevice>,
}

fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let enabled = fs::read(&dir.join("cgroup.subtree_control"))?;
    let missing: Vec<String> = controller::V2
        .iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs::write(&dir.join("cgroup.subtree_control"), &missing.join(" ")).map_err(|e| match e {
        CgroupError::Io { source, path, .. } if source.raw_os_error() == Some(libc::EBUSY) => {
            CgroupError::Unsupported(format!(
                "cannot enable controllers in {}: other processes live in that cgroup; start jwd in a cgroup of its own (e.g. a systemd unit with Delegate=yes)",
                path.display()
            ))
        }
        other => other,
    })
}

impl V2Layout {
    /// Prepares jw's subtree `name` beside the server's own cgroup `parent`
    /// (whose path in the hierarchy is `own`): moves the server into a leaf
    /// of its own unless it is in the root cgroup, and enables the
    /// controllers for the subtree and for the jobs in it.
    pub(super) fn new(
        parent: PathBuf,
        own: &str,
        name: &str,
        devices: Vec<BlockDevice>,
    ) -> Result<Self, CgroupError> {
        if own != "/" {
            let server_leaf = parent.join(format!("{name}.server"));
            fs::mkdir(&server_leaf)?;
            fs::write(
                &server_leaf.join("cgroup.procs"),
                &std::process::id().to_string(),
            )?;
        }
        enable_controllers(&parent)?;
        let subtree = parent.join(name);
        fs::mkdir(&subtree)?;
        enable_controllers(&subtree)?;
        Ok(V2Layout { subtree, devices })
    }
}

impl Layout for V2Layout {
    fn kind(&self) -> LayoutKind {
        LayoutKind::V2
    }

    fn devices(&self) -> &[BlockDevice] {
        &self.devices
    }

    fn v2_subtree(&self) -> &Path {
        &self.subtree
    }

    fn job_dirs(&self) -> Vec<PathBuf> {
        fs::job_dirs(&self.subtree)
    }

    fn remove_subtree(&self) {
        let _ = std::fs::remove_dir(&self.subtree);
    }

    fn create(&self, id: &str, limits: &Limits) -> Result<JobCgroup, CgroupError> {
        let leaf = self.subtree.join(id);
        fs::mkdir(&leaf)?;
        match controller::apply_v2(&leaf, limits, &self.devices) {
            Ok(()) => Ok(JobCgroup::new(leaf.clone(), Box::new(LeafLimits { leaf }))),
            Err(e) => {
                let _ = fs::rmdir(&leaf);
                Err(e)
            }
        }
    }

    fn open(&self, id: &str) -> JobCgroup {
        let leaf = self.subtree.join(id);
        JobCgroup::new(leaf.clone(), Box::new(LeafLimits { leaf }))
    }

    fn cleanup_stale(&self, keep: &dyn Fn(&str) -> bool) -> Result<usize, CgroupError> {
        let stale: Vec<_> = fs::job_dirs(&self.subtree)
            .into_iter()
            .filter(|d| !d.file_name().and_then(|n| n.to_str()).is_some_and(keep))
            .collect();
        for dir in &stale {
            kill::kill_and_remove(dir)?;
        }
        Ok(stale.len())
    }
}

/// In v2 the job's leaf carries its limits itself: nothing more to join,
/// kill or remove.
#[derive(Debug)]
pub struct LeafLimits {
    leaf: PathBuf,
}

impl LimitCgroups for LeafLimits {
    fn join_dirs(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    fn usage(&self, usage: &mut Usage) {
        controller::usage_v2(&self.leaf, usage);
    }

    fn oom_kills(&self) -> u64 {
        memory::oom_kills_v2(&self.leaf)
    }

    fn kill_listed(&self) {}

    fn remove_now(&self) -> Result<bool, CgroupError> {
        Ok(true)
    }

    fn remove(&self) -> Result<(), CgroupError> {
        Ok(())
    }
}
