//! The pure cgroup v2 layout: one leaf per job carries every limit.
//!
//! Subtree: `<server's cgroup>/<name>/<job id>`. cgroup2's no-internal-process
//! rule says a cgroup that hands controllers to its children may hold no
//! processes itself, so when the server's cgroup is not the root, the server
//! first moves itself into a sibling leaf `<server's cgroup>/<name>.server`.
//! The root cgroup is exempt from the rule, so there the server stays put.

use std::path::{Path, PathBuf};

use super::{fs, under, BlockDevice, CgroupConfig, CgroupError, JobCgroup, OwnCgroups};
use crate::protocol::{Limits, Usage};

/// The controllers jw needs in the v2 layout.
pub const CONTROLLERS: [&str; 4] = ["cpu", "memory", "io", "pids"];

/// The CFS period jw uses for CPU limits: 100 ms, the kernel's default.
pub const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug)]
pub struct V2Cgroups {
    pub(super) subtree: PathBuf,
    pub(super) devices: Vec<BlockDevice>,
}

fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let enabled = fs::read(&dir.join("cgroup.subtree_control"))?;
    let missing: Vec<String> = CONTROLLERS
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

impl V2Cgroups {
    pub(super) fn new(
        config: &CgroupConfig,
        own: &OwnCgroups,
        devices: Vec<BlockDevice>,
    ) -> Result<Self, CgroupError> {
        let parent = under(&config.mount_root, &own.v2);
        if own.v2 != "/" {
            let server_leaf = parent.join(format!("{}.server", config.name));
            fs::mkdir(&server_leaf)?;
            fs::write(
                &server_leaf.join("cgroup.procs"),
                &std::process::id().to_string(),
            )?;
        }
        enable_controllers(&parent)?;
        let subtree = parent.join(&config.name);
        fs::mkdir(&subtree)?;
        enable_controllers(&subtree)?;
        Ok(V2Cgroups { subtree, devices })
    }

    pub(super) fn create(&self, id: &str, limits: &Limits) -> Result<JobCgroup, CgroupError> {
        let leaf = self.subtree.join(id);
        fs::mkdir(&leaf)?;
        let made = write_limits(&leaf, limits, &self.devices)
            .and_then(|()| JobCgroup::new(leaf.clone(), None));
        if made.is_err() {
            let _ = fs::rmdir(&leaf);
        }
        made
    }

    pub(super) fn cleanup_stale(&self) -> Result<usize, CgroupError> {
        let stale = fs::job_dirs(&self.subtree);
        for dir in &stale {
            kill_and_remove(dir)?;
        }
        Ok(stale.len())
    }
}

/// Kills whatever is left in a cgroup2 job directory and removes it.
pub(super) fn kill_and_remove(dir: &Path) -> Result<(), CgroupError> {
    if !fs::procs(dir).is_empty() {
        let _ = fs::write(&dir.join("cgroup.kill"), "1");
    }
    fs::rmdir(dir)
}

/// Writes the limits into a v2 leaf before any process is in it.
fn write_limits(leaf: &Path, limits: &Limits, devices: &[BlockDevice]) -> Result<(), CgroupError> {
    if let Some(millicores) = limits.cpu_millicores {
        let quota = u64::from(millicores) * CPU_PERIOD_US / 1000;
        fs::write(&leaf.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
    }
    if let Some(bytes) = limits.memory_bytes {
        fs::write(&leaf.join("memory.max"), &bytes.to_string())?;
        // No swap on top of the limit: a job over its memory is OOM-killed
        // rather than slowly swapped. Absent without swap accounting.
        let swap = leaf.join("memory.swap.max");
        if swap.exists() {
            fs::write(&swap, "0")?;
        }
    }
    if limits.io_read_bps.is_some() || limits.io_write_bps.is_some() {
        for dev in devices {
            let mut line = dev.majmin.clone();
            if let Some(r) = limits.io_read_bps {
                line.push_str(&format!(" rbps={r}"));
            }
            if let Some(w) = limits.io_write_bps {
                line.push_str(&format!(" wbps={w}"));
            }
            fs::write(&leaf.join("io.max"), &line)?;
        }
    }
    if let Some(pids) = limits.pids {
        fs::write(&leaf.join("pids.max"), &pids.to_string())?;
    }
    Ok(())
}

/// Memory, I/O and pids figures from a v2 leaf.
pub(super) fn usage(leaf: &Path, usage: &mut Usage) {
    usage.memory_peak_bytes = fs::read_optional(&leaf.join("memory.peak"))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if let Some(io) = fs::read_optional(&leaf.join("io.stat")) {
        for field in io.split_whitespace() {
            if let Some(v) = field.strip_prefix("rbytes=") {
                usage.io_read_bytes += v.parse::<u64>().unwrap_or(0);
            } else if let Some(v) = field.strip_prefix("wbytes=") {
                usage.io_write_bytes += v.parse::<u64>().unwrap_or(0);
            }
        }
    }
    usage.pids_current = fs::read_optional(&leaf.join("pids.current"))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
}

/// The leaf's `oom_kill` count from memory.events.
pub(super) fn oom_kills(leaf: &Path) -> u64 {
    fs::read_optional(&leaf.join("memory.events"))
        .and_then(|s| fs::keyed(&s, "oom_kill"))
        .unwrap_or(0)
}
