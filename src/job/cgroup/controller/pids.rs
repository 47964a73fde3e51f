//! The pids controller: the most processes and threads alive at once, and
//! how many there are now. Same files in v1 and v2.

use std::path::Path;

use crate::job::cgroup::{fs, CgroupError};
use crate::protocol::Limits;

/// Writes `pids.max`.
pub fn apply(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    if let Some(pids) = limits.pids {
        fs::write(&dir.join("pids.max"), &pids.to_string())?;
    }
    Ok(())
}

/// The processes and threads in the cgroup now (`pids.current`; 0 if
/// unreadable).
pub fn current(dir: &Path) -> u32 {
    fs::read_single(&dir.join("pids.current")).unwrap_or(0)
}
