//! cgroup v1 controllers, as the hybrid layout uses them: one directory per
//! controller per job, each knowing its own files and units.

use std::path::{Path, PathBuf};

use super::{fs, BlockDevice, CgroupError};
use crate::protocol::{Limits, Usage};

/// The v1 controllers that carry jw's limits.
pub const CONTROLLERS: [&str; 4] = ["cpu", "memory", "blkio", "pids"];

/// One job's v1 cgroups.
#[derive(Debug)]
pub struct V1Job {
    pub cpu: PathBuf,
    pub memory: PathBuf,
    pub blkio: PathBuf,
    pub pids: PathBuf,
}

impl V1Job {
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
            let _ = self.remove();
        }
        made
    }

    fn write_limits(&self, limits: &Limits, devices: &[BlockDevice]) -> Result<(), CgroupError> {
        if let Some(millicores) = limits.cpu_millicores {
            let period = super::v2::CPU_PERIOD_US;
            let quota = u64::from(millicores) * period / 1000;
            fs::write(&self.cpu.join("cpu.cfs_period_us"), &period.to_string())?;
            fs::write(&self.cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        if let Some(bytes) = limits.memory_bytes {
            fs::write(
                &self.memory.join("memory.limit_in_bytes"),
                &bytes.to_string(),
            )?;
            // memsw = memory + swap; equal to the memory limit means no swap.
            // Absent when swap accounting is off: then make swapping this
            // cgroup as unattractive as the kernel allows.
            let memsw = self.memory.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                fs::write(&memsw, &bytes.to_string())?;
            } else {
                fs::write(&self.memory.join("memory.swappiness"), "0")?;
            }
        }
        for (bps, file) in [
            (limits.io_read_bps, "blkio.throttle.read_bps_device"),
            (limits.io_write_bps, "blkio.throttle.write_bps_device"),
        ] {
            if let Some(bps) = bps {
                for dev in devices {
                    fs::write(&self.blkio.join(file), &format!("{} {bps}", dev.majmin))?;
                }
            }
        }
        if let Some(pids) = limits.pids {
            fs::write(&self.pids.join("pids.max"), &pids.to_string())?;
        }
        Ok(())
    }

    /// Memory, I/O and pids figures.
    pub fn usage(&self, usage: &mut Usage) {
        usage.memory_peak_bytes = fs::read_optional(&self.memory.join("memory.max_usage_in_bytes"))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        // "MAJ:MIN Read N" / "MAJ:MIN Write N" lines, plus a "Total N" line.
        if let Some(io) =
            fs::read_optional(&self.blkio.join("blkio.throttle.io_service_bytes_recursive"))
        {
            for line in io.lines() {
                let mut parts = line.split_whitespace();
                let (_, op, n) = (parts.next(), parts.next(), parts.next());
                let n: u64 = n.and_then(|n| n.parse().ok()).unwrap_or(0);
                match op {
                    Some("Read") => usage.io_read_bytes += n,
                    Some("Write") => usage.io_write_bytes += n,
                    _ => {}
                }
            }
        }
        usage.pids_current = fs::read_optional(&self.pids.join("pids.current"))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
    }

    /// The `oom_kill` count from memory.oom_control (Linux 4.13+).
    pub fn oom_kills(&self) -> u64 {
        fs::read_optional(&self.memory.join("memory.oom_control"))
            .and_then(|s| fs::keyed(&s, "oom_kill"))
            .unwrap_or(0)
    }

    /// Removes every directory, SIGKILLing stragglers first (v1 has no
    /// cgroup.kill; normally the v2 leaf's kill already emptied them).
    pub fn remove(&self) -> Result<(), CgroupError> {
        let mut result = Ok(());
        for dir in self.dirs() {
            kill_procs(dir);
            if let Err(e) = fs::rmdir(dir) {
                result = result.and(Err(e));
            }
        }
        result
    }
}

impl V1Job {
    /// `remove` without waiting: `Ok(false)` if a directory is still busy.
    pub fn remove_now(&self) -> Result<bool, CgroupError> {
        let mut all = true;
        for dir in self.dirs() {
            all &= fs::rmdir_now(dir)?;
        }
        Ok(all)
    }
}

/// SIGKILLs every process listed in a jw-created v1 cgroup.
pub fn kill_procs(dir: &Path) {
    for pid in fs::procs(dir) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
