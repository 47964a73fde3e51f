//! Small file helpers for cgroupfs: every failure names the file and the
//! operation, which is what an operator needs to fix a broken setup.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::CgroupError;

/// Writes `value` to a cgroup control file in one `write(2)`, as the kernel
/// expects.
pub fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|e| CgroupError::io(format!("write {value:?} to"), path, e))
}

/// Reads a control file.
pub fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|e| CgroupError::io("read", path, e))
}

/// Reads a control file that may legitimately be absent (older kernels).
pub fn read_optional(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The value of `key` in a flat keyed file ("key value" per line), such as
/// cpu.stat, memory.events or memory.oom_control.
pub fn keyed(content: &str, key: &str) -> Option<u64> {
    content.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next()? == key).then(|| parts.next()?.parse().ok())?
    })
}

/// Creates a directory that may already exist.
pub fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(CgroupError::io("create", path, e)),
    }
}

/// Removes an empty cgroup directory. The kernel answers EBUSY for a short
/// while after the last task exited (it is still being torn down), so retry
/// with a bounded backoff, as runc and crun do. A directory that is already
/// gone counts as removed.
pub fn rmdir(path: &Path) -> Result<(), CgroupError> {
    let mut delay = Duration::from_micros(200);
    let mut waited = Duration::ZERO;
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && waited < Duration::from_secs(5) => {
                std::thread::sleep(delay);
                waited += delay;
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(CgroupError::io("remove", path, e)),
        }
    }
}

/// Removes an empty cgroup directory without waiting: `Ok(false)` when the
/// kernel answers EBUSY (still tearing the last task down; `rmdir` waits).
pub fn rmdir_now(path: &Path) -> Result<bool, CgroupError> {
    match std::fs::remove_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(false),
        Err(e) => Err(CgroupError::io("remove", path, e)),
    }
}

/// The pids listed in a cgroup.procs file (empty if the cgroup is gone).
pub fn procs(dir: &Path) -> Vec<i32> {
    read_optional(&dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Child directories of `dir` whose names are job ids: the only cgroups jw
/// ever creates below its subtree, so the only ones it may clean up.
pub fn job_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<crate::protocol::JobId>().is_ok() && n.len() == 36)
        })
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_parse() {
        let s = "usage_usec 120\nuser_usec 100\nsystem_usec 20\n";
        assert_eq!(keyed(s, "user_usec"), Some(100));
        assert_eq!(keyed(s, "system_usec"), Some(20));
        assert_eq!(keyed(s, "usec"), None);
        assert_eq!(
            keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            Some(3)
        );
    }
}
