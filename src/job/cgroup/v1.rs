//! One job's v1 cgroups, as the hybrid layout uses them: one directory per
//! limit controller, each written and read by its controller module.

use std::path::{Path, PathBuf};

use super::controller::{cpu, io, kill, memory, pids};
use super::job::LimitCgroups;
use super::{fs, BlockDevice, CgroupError};
use crate::protocol::{Limits, Usage};

/// One job's v1 cgroups.
#[derive(Debug)]
pub struct V1Job {
    pub cpu: PathBuf,
    pub memory: PathBuf,
    pub blkio: PathBuf,
    pub pids: PathBuf,
}

impl V1Job {
    /// The directories, in `controller::V1` order.
    pub fn dirs(&self) -> [&Path; 4] {
        [&self.cpu, &self.memory, &self.blkio, &self.pids]
    }

    /// Creates the directories and writes the limits; removes what it made
    /// if anything fails.
    pub fn create(&self, limits: &Limits, devices: &[BlockDevice]) -> Result<(), CgroupError> {
        let made = self
            .dirs()
            .iter()
            .try_for_each(|d| fs::mkdir(d))
            .and_then(|()| self.write_limits(limits, devices));
        if made.is_err() {
            let _ = LimitCgroups::remove(self);
        }
        made
    }

    fn write_limits(&self, limits: &Limits, devices: &[BlockDevice]) -> Result<(), CgroupError> {
        cpu::apply_v1(&self.cpu, limits)?;
        memory::apply_v1(&self.memory, limits)?;
        io::apply_v1(&self.blkio, limits, devices)?;
        pids::apply(&self.pids, limits)
    }
}

impl LimitCgroups for V1Job {
    fn join_dirs(&self) -> Vec<PathBuf> {
        self.dirs().into_iter().map(Path::to_path_buf).collect()
    }

    fn keeper_memory_dir(&self) -> Option<PathBuf> {
        self.memory.parent().map(Path::to_path_buf)
    }

    fn usage(&self, usage: &mut Usage) {
        usage.memory_peak_bytes = memory::peak_v1(&self.memory);
        io::usage_v1(&self.blkio, usage);
        usage.pids_current = pids::current(&self.pids);
    }

    fn oom_kills(&self) -> u64 {
        memory::oom_kills_v1(&self.memory)
    }

    fn kill_listed(&self) {
        for dir in self.dirs() {
            kill::kill_procs(dir);
        }
    }

    /// Removes every directory without waiting: `Ok(false)` if one is still
    /// busy.
    fn remove_now(&self) -> Result<bool, CgroupError> {
        let mut all = true;
        for dir in self.dirs() {
            all &= fs::rmdir_now(dir)?;
        }
        Ok(all)
    }

    /// Removes every directory, SIGKILLing stragglers first (v1 has no
    /// cgroup.kill; normally the v2 leaf's kill already emptied them).
    fn remove(&self) -> Result<(), CgroupError> {
        let mut result = Ok(());
        for dir in self.dirs() {
            kill::kill_procs(dir);
            if let Err(e) = fs::rmdir(dir) {
                result = result.and(Err(e));
            }
        }
        result
    }
}
