//! One engine per data directory and per cgroup subtree. A second jwd on
//! either would take the first one's jobs from it: its start-up kills the
//! "stale" jobs it finds in the cgroup subtree and moves the work
//! directories aside. So the engine takes an exclusive `flock` on a file in
//! the data directory and on its cgroup subtree directory before it touches
//! either, and holds both for its life. The kernel releases them when the
//! process dies, however it dies: a crashed jwd never blocks the next one.
//! The descriptors are close-on-exec, so no job's init inherits them.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FlockOperation, Mode, OFlags};

use super::error::{io_err, JobError};

/// The lock file in the data directory; it holds the owner's pid, for the
/// message the next one gets.
const LOCK_FILE: &str = "jwd.lock";

/// The locks an engine holds: released when dropped, or when its process
/// ends.
#[derive(Debug, Default)]
pub(super) struct InstanceLock {
    held: Vec<OwnedFd>,
}

impl InstanceLock {
    /// Locks the data directory `dir`, making it (owner-only) if it is not
    /// there yet.
    pub(super) fn data_dir(&mut self, dir: &Path) -> Result<(), JobError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(format!(
                "cannot create data directory {}",
                dir.display()
            )))?;
        let path = dir.join(LOCK_FILE);
        let file = rustix::fs::open(
            &path,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io_err(format!("cannot open {}", path.display()))(e.into()))?;
        if !lock(&file, &path)? {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return Err(JobError::InUse {
                what: "data directory",
                path: dir.to_path_buf(),
                by: if holder.is_empty() {
                    "another jwd".into()
                } else {
                    format!("jwd pid {holder}")
                },
            });
        }
        // Ours now: the next jwd's message names this process.
        let pid = format!("{}\n", std::process::id());
        rustix::fs::ftruncate(&file, 0)
            .and_then(|()| rustix::io::pwrite(&file, pid.as_bytes(), 0).map(|_| ()))
            .map_err(|e| io_err(format!("cannot write {}", path.display()))(e.into()))?;
        self.held.push(file);
        Ok(())
    }

    /// Locks the engine's cgroup subtree directory (`--cgroup-name`).
    pub(super) fn cgroup_subtree(&mut self, dir: &Path, name: &str) -> Result<(), JobError> {
        let fd = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(format!("cannot open {}", dir.display()))(e.into()))?;
        if !lock(&fd, dir)? {
            return Err(JobError::InUse {
                what: "cgroup subtree",
                path: dir.to_path_buf(),
                by: format!("another jwd with --cgroup-name {name}"),
            });
        }
        self.held.push(fd);
        Ok(())
    }
}

/// Who holds the data directory `dir`'s lock ("jwd pid N"), if anyone;
/// `None` also when it cannot be told. Takes nothing: a shared lock taken
/// and let go at once.
pub(super) fn data_dir_holder(dir: &Path) -> Option<String> {
    let path = dir.join(LOCK_FILE);
    let file = rustix::fs::open(
        &path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    if !held(&file) {
        return None;
    }
    let pid = std::fs::read_to_string(&path).unwrap_or_default();
    Some(match pid.trim() {
        "" => "another jwd".into(),
        pid => format!("jwd pid {pid}"),
    })
}

/// Whether a jwd holds the cgroup subtree directory `dir`.
pub(super) fn subtree_held(dir: &Path) -> bool {
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .is_ok_and(|fd| held(&fd))
}

/// Whether another holds an exclusive lock on `fd` (a shared lock cannot
/// be had); the shared lock, if had, goes with the descriptor.
fn held(fd: &OwnedFd) -> bool {
    loop {
        match rustix::fs::flock(fd, FlockOperation::NonBlockingLockShared) {
            Ok(()) => return false,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return e == rustix::io::Errno::WOULDBLOCK,
        }
    }
}

/// Takes an exclusive lock without waiting: `false` if another holds it.
fn lock(fd: &OwnedFd, path: &Path) -> Result<bool, JobError> {
    loop {
        match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io_err(format!("cannot lock {}", path.display()))(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_of_a_data_directory_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut first = InstanceLock::default();
        first.data_dir(&data).unwrap();
        let mut second = InstanceLock::default();
        let err = second.data_dir(&data).unwrap_err().to_string();
        let pid = std::process::id().to_string();
        assert!(err.contains("in use") && err.contains(&pid), "{err}");
        drop(first);
        second.data_dir(&data).unwrap();
    }

    #[test]
    fn a_holder_is_seen_without_taking_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert_eq!(data_dir_holder(&data), None);
        let mut first = InstanceLock::default();
        first.data_dir(&data).unwrap();
        first.cgroup_subtree(dir.path(), "jw").unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(data_dir_holder(&data), Some(format!("jwd pid {pid}")));
        assert!(subtree_held(dir.path()));
        drop(first);
        assert_eq!(data_dir_holder(&data), None);
        assert!(!subtree_held(dir.path()));
        // Looking took nothing.
        InstanceLock::default().data_dir(&data).unwrap();
    }

    #[test]
    fn a_second_holder_of_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = InstanceLock::default();
        first.cgroup_subtree(dir.path(), "jw").unwrap();
        let err = InstanceLock::default()
            .cgroup_subtree(dir.path(), "jw")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--cgroup-name jw"), "{err}");
    }
}
