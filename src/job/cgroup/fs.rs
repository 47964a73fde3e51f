//! Small file helpers for cgroupfs: reading and writing control files,
//! making and removing cgroup directories, listing their processes and the
//! job directories below a subtree. Every failure names the file and the
//! operation. What the files contain is parsed in `parse`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{parse, CgroupError};

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

/// The value of `key` in the flat keyed file `path`, if the file and the
/// key are there.
pub fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    read_optional(path).and_then(|s| parse::keyed(&s, key))
}

/// The single number in the file `path` (pids.current, memory.peak...), if
/// the file is there and holds one.
pub fn read_single<T: std::str::FromStr>(path: &Path) -> Option<T> {
    read_optional(path).and_then(|s| parse::single(&s))
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

    const ID: &str = "0f8e3c2a-5b1d-4e6f-9a7b-1c2d3e4f5a6b";

    #[test]
    fn job_dirs_lists_only_job_ids() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            ID,
            "jw.server",
            "not-a-job",
            "0f8e3c2a5b1d4e6f9a7b1c2d3e4f5a6b",
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("1f8e3c2a-5b1d-4e6f-9a7b-1c2d3e4f5a6b"), "").unwrap();
        assert_eq!(job_dirs(dir.path()), [dir.path().join(ID)]);
        assert!(job_dirs(&dir.path().join("gone")).is_empty());
    }

    #[test]
    fn procs_mkdir_and_rmdir_on_plain_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let cg = dir.path().join("cg");
        mkdir(&cg).unwrap();
        mkdir(&cg).unwrap();
        assert!(procs(&cg).is_empty());
        write(&cg.join("cgroup.procs"), "12\n 34\nx\n").unwrap();
        assert_eq!(procs(&cg), [12, 34]);
        assert_eq!(read_single::<u32>(&cg.join("cgroup.procs")), None);
        let err = rmdir(&cg).unwrap_err();
        assert!(err.to_string().contains("cannot remove"), "{err}");
        std::fs::remove_file(cg.join("cgroup.procs")).unwrap();
        assert!(rmdir_now(&cg).unwrap());
        assert!(rmdir_now(&cg).unwrap());
        rmdir(&cg).unwrap();
        let err = read(&cg.join("x")).unwrap_err();
        assert!(err.to_string().starts_with("cannot read "), "{err}");
    }
}
