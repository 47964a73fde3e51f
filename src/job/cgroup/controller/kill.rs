//! Ending a job's processes and telling whether any are left: cgroup2's
//! `cgroup.kill` for the whole tree at once, SIGKILL for each listed
//! process where that is missing (and in v1, which has no kill file), and
//! `populated` from cgroup.events.

use std::path::Path;

use crate::job::cgroup::{fs, CgroupError};

/// Kills every process in a cgroup2 cgroup at once (cgroup.kill, Linux
/// 5.14+). Falls back to SIGKILL for each listed pid on older kernels.
pub fn kill(leaf: &Path) -> Result<(), CgroupError> {
    let kill_file = leaf.join("cgroup.kill");
    match std::fs::write(&kill_file, "1") {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The pids are in our own cgroup: they cannot be reused by
            // someone else's process between the read and the kill
            // except after they died, which the kernel guards with ESRCH.
            kill_procs(leaf);
            Ok(())
        }
        Err(e) => Err(CgroupError::io("write \"1\" to", &kill_file, e)),
    }
}

/// SIGKILLs every process listed in a jw-created cgroup's cgroup.procs.
pub fn kill_procs(dir: &Path) {
    for pid in fs::procs(dir) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Whether any process is in a cgroup2 cgroup: `populated` from
/// cgroup.events, else whether cgroup.procs lists any.
pub fn populated(leaf: &Path) -> bool {
    fs::read_keyed(&leaf.join("cgroup.events"), "populated")
        .map(|n| n > 0)
        .unwrap_or_else(|| !fs::procs(leaf).is_empty())
}

/// Kills whatever is left in a cgroup2 job directory and removes it.
pub fn kill_and_remove(dir: &Path) -> Result<(), CgroupError> {
    if !fs::procs(dir).is_empty() {
        let _ = fs::write(&dir.join("cgroup.kill"), "1");
    }
    fs::rmdir(dir)
}
