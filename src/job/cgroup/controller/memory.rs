//! The memory controller: the memory limit with no swap on top of it, the
//! peak use, and the count of OOM kills.

use std::path::Path;

use crate::job::cgroup::{fs, CgroupError};
use crate::protocol::Limits;

/// v2: `memory.max`, and `memory.swap.max` 0 so that a job over its memory
/// is OOM-killed rather than slowly swapped (the file is absent without
/// swap accounting).
pub fn apply_v2(leaf: &Path, limits: &Limits) -> Result<(), CgroupError> {
    if let Some(bytes) = limits.memory_bytes {
        fs::write(&leaf.join("memory.max"), &bytes.to_string())?;
        let swap = leaf.join("memory.swap.max");
        if swap.exists() {
            fs::write(&swap, "0")?;
        }
    }
    Ok(())
}

/// v1: `memory.limit_in_bytes`, and memsw (memory + swap) equal to it,
/// which means no swap. memsw is absent when swap accounting is off: then
/// make swapping this cgroup as unattractive as the kernel allows.
pub fn apply_v1(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    if let Some(bytes) = limits.memory_bytes {
        fs::write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            fs::write(&memsw, &bytes.to_string())?;
        } else {
            fs::write(&dir.join("memory.swappiness"), "0")?;
        }
    }
    Ok(())
}

/// v2: the most memory the job used (`memory.peak`, Linux 5.19+; else 0).
pub fn peak_v2(leaf: &Path) -> u64 {
    fs::read_single(&leaf.join("memory.peak")).unwrap_or(0)
}

/// v1: the most memory the job used.
pub fn peak_v1(dir: &Path) -> u64 {
    fs::read_single(&dir.join("memory.max_usage_in_bytes")).unwrap_or(0)
}

/// v2: the `oom_kill` count from memory.events. Not `oom`, which also counts
/// allocations that merely failed (see containerd#6323).
pub fn oom_kills_v2(leaf: &Path) -> u64 {
    fs::read_keyed(&leaf.join("memory.events"), "oom_kill").unwrap_or(0)
}

/// v1: the `oom_kill` count from memory.oom_control (Linux 4.13+).
pub fn oom_kills_v1(dir: &Path) -> u64 {
    fs::read_keyed(&dir.join("memory.oom_control"), "oom_kill").unwrap_or(0)
}
