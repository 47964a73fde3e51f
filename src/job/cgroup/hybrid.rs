//! The hybrid layout: cgroup2 (without limit controllers) beside v1
//! controllers, as on the development and CI machines.
//!
//! The job is cloned into a cgroup2 leaf `<server's v2 cgroup>/<name>/<id>`
//! for atomic tracking, cgroup.kill and cpu.stat; its limits live in
//! `<server's v1 cgroup>/<name>/<id>` in each of the cpu, memory, blkio and
//! pids hierarchies, and the child joins those before it may execve.

use std::path::{Path, PathBuf};

use super::controller::kill;
use super::job::LimitCgroups;
use super::v1::V1Job;
use super::{fs, BlockDevice, CgroupError, JobCgroup, Layout, LayoutKind};
use crate::protocol::Limits;

/// jw's subtrees in the cgroup2 hierarchy and in each v1 hierarchy.
#[derive(Debug)]
pub struct HybridLayout {
    subtree: PathBuf,
    /// The per-controller subtrees, in `controller::V1` order.
    v1_subtrees: [PathBuf; 4],
    devices: Vec<BlockDevice>,
}

impl HybridLayout {
    /// Creates jw's cgroup2 subtree and its v1 subtrees (cpu, memory,
    /// blkio, pids), which may exist already.
    pub(super) fn new(
        subtree: PathBuf,
        v1_subtrees: [PathBuf; 4],
        devices: Vec<BlockDevice>,
    ) -> Result<Self, CgroupError> {
        fs::mkdir(&subtree)?;
        for dir in &v1_subtrees {
            fs::mkdir(dir)?;
        }
        Ok(HybridLayout {
            subtree,
            v1_subtrees,
            devices,
        })
    }

    fn v1_job(&self, id: &str) -> V1Job {
        let [cpu, memory, blkio, pids] = &self.v1_subtrees;
        V1Job {
            cpu: cpu.join(id),
            memory: memory.join(id),
            blkio: blkio.join(id),
            pids: pids.join(id),
        }
    }
}

impl Layout for HybridLayout {
    fn kind(&self) -> LayoutKind {
        LayoutKind::Hybrid
    }

    fn devices(&self) -> &[BlockDevice] {
        &self.devices
    }

    fn v2_subtree(&self) -> &Path {
        &self.subtree
    }

    fn job_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = fs::job_dirs(&self.subtree);
        for sub in &self.v1_subtrees {
            dirs.extend(fs::job_dirs(sub));
        }
        dirs
    }

    fn remove_subtree(&self) {
        for dir in std::iter::once(&self.subtree).chain(&self.v1_subtrees) {
            let _ = std::fs::remove_dir(dir);
        }
    }

    fn create(&self, id: &str, limits: &Limits) -> Result<JobCgroup, CgroupError> {
        let v1 = self.v1_job(id);
        v1.create(limits, &self.devices)?;
        let leaf = self.subtree.join(id);
        match fs::mkdir(&leaf) {
            Ok(()) => Ok(JobCgroup::new(leaf, Box::new(v1))),
            Err(e) => {
                let _ = fs::rmdir(&leaf);
                let _ = v1.remove();
                Err(e)
            }
        }
    }

    fn open(&self, id: &str) -> JobCgroup {
        JobCgroup::new(self.subtree.join(id), Box::new(self.v1_job(id)))
    }

    fn cleanup_stale(&self, keep: &dyn Fn(&str) -> bool) -> Result<usize, CgroupError> {
        let named = |d: &PathBuf| d.file_name().and_then(|n| n.to_str()).is_some_and(keep);
        let leaves: Vec<_> = fs::job_dirs(&self.subtree)
            .into_iter()
            .filter(|d| !named(d))
            .collect();
        for leaf in &leaves {
            kill::kill_and_remove(leaf)?;
        }
        let mut ids: Vec<String> = leaves
            .iter()
            .filter_map(|d| d.file_name()?.to_str().map(String::from))
            .collect();
        for sub in &self.v1_subtrees {
            for dir in fs::job_dirs(sub) {
                if let Some(name) = dir.file_name().and_then(|n| n.to_str()) {
                    if !keep(name) && !ids.iter().any(|i| i == name) {
                        ids.push(name.to_string());
                    }
                }
            }
        }
        for id in &ids {
            self.v1_job(id).remove()?;
        }
        Ok(ids.len())
    }
}
