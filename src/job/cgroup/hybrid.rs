//! The hybrid layout: cgroup2 (without limit controllers) beside v1
//! controllers, as on the development and CI machines.
//!
//! The job is cloned into a cgroup2 leaf `<server's v2 cgroup>/<name>/<id>`
//! for atomic tracking, cgroup.kill and cpu.stat; its limits live in
//! `<server's v1 cgroup>/<name>/<id>` in each of the cpu, memory, blkio and
//! pids hierarchies, and the child joins those before it may execve.

use std::path::{Path, PathBuf};

use super::v1::{self, V1Job};
use super::{fs, under, v2, BlockDevice, CgroupConfig, CgroupError, JobCgroup, Mounts, OwnCgroups};
use crate::protocol::Limits;

#[derive(Debug)]
pub struct HybridCgroups {
    pub(super) subtree: PathBuf,
    /// The per-controller subtrees, in `v1::CONTROLLERS` order.
    v1_subtrees: [PathBuf; 4],
    pub(super) devices: Vec<BlockDevice>,
}

impl HybridCgroups {
    pub(super) fn new(
        config: &CgroupConfig,
        unified: &Path,
        mounts: &Mounts,
        own: &OwnCgroups,
        devices: Vec<BlockDevice>,
    ) -> Result<Self, CgroupError> {
        let subtree = under(unified, &own.v2).join(&config.name);
        let mut v1_subtrees: Vec<PathBuf> = Vec::new();
        for controller in v1::CONTROLLERS {
            let mount = mounts.v1(controller).ok_or_else(|| {
                CgroupError::Unsupported(format!(
                    "cgroup2 at {} has no limit controllers and the v1 {controller} controller is not mounted",
                    unified.display()
                ))
            })?;
            v1_subtrees.push(under(mount, own.v1(controller)).join(&config.name));
        }
        let v1_subtrees: [PathBuf; 4] = v1_subtrees.try_into().expect("one per controller");
        fs::mkdir(&subtree)?;
        for dir in &v1_subtrees {
            fs::mkdir(dir)?;
        }
        Ok(HybridCgroups {
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

    pub(super) fn create(&self, id: &str, limits: &Limits) -> Result<JobCgroup, CgroupError> {
        let v1 = self.v1_job(id);
        v1.create(limits, &self.devices)?;
        let leaf = self.subtree.join(id);
        let made = fs::mkdir(&leaf).and_then(|()| JobCgroup::new(leaf.clone(), Some(v1)));
        if made.is_err() {
            let _ = fs::rmdir(&leaf);
            let _ = self.v1_job(id).remove();
        }
        made
    }

    pub(super) fn job_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = fs::job_dirs(&self.subtree);
        for sub in &self.v1_subtrees {
            dirs.extend(fs::job_dirs(sub));
        }
        dirs
    }

    pub(super) fn remove_subtree(&self) {
        for dir in std::iter::once(&self.subtree).chain(&self.v1_subtrees) {
            let _ = std::fs::remove_dir(dir);
        }
    }

    pub(super) fn cleanup_stale(&self) -> Result<usize, CgroupError> {
        let leaves = fs::job_dirs(&self.subtree);
        for leaf in &leaves {
            v2::kill_and_remove(leaf)?;
        }
        let mut ids: Vec<String> = leaves
            .iter()
            .filter_map(|d| d.file_name()?.to_str().map(String::from))
            .collect();
        for sub in &self.v1_subtrees {
            for dir in fs::job_dirs(sub) {
                if let Some(name) = dir.file_name().and_then(|n| n.to_str()) {
                    if !ids.iter().any(|i| i == name) {
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
