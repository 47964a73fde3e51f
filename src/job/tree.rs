//! Removing what a job left in its work directory, as root, safely: the
//! tree is the job's (any shape: 30,000 nested directories, symlinks,
//! files it made unreadable), so the walk must not recurse (std's
//! `remove_dir_all` recurses once per level and keeps a descriptor per
//! level: a deep enough tree overflowed jwd's stack and exhausted its
//! descriptors), must not follow a symlink, and must end.
//!
//! The walk keeps one directory open at a time and a stack of names. It
//! goes down with `openat(O_NOFOLLOW | O_DIRECTORY)` and back up with
//! `openat("..")`, which is sound because nothing else changes the tree:
//! the job's processes are gone (its cgroup was removed) and only root can
//! write the directory that holds it.

use std::ffi::{CString, OsStr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

fn open_dir_at(parent: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Subdirectories remembered per directory and pass: a directory with more
/// is read again once these are gone (it has shrunk by then), so memory
/// stays bounded however wide the tree is.
const BATCH: usize = 4096;

/// One directory on the way down from the top.
struct Level {
    /// Its name in its parent (`None` for the top).
    name: Option<CString>,
    /// Subdirectories found and not yet removed.
    pending: Vec<CString>,
    /// Whether the last pass left subdirectories unremembered (or none ran).
    unread: bool,
}

/// One pass over `dir`: unlinks every entry that is not a directory
/// (symlinks as links) and remembers up to [`BATCH`] subdirectories.
fn scan(dir: &OwnedFd, level: &mut Level) -> Result<(), Errno> {
    level.unread = false;
    let mut entries = Dir::read_from(dir)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            FileType::Directory => true,
            FileType::Unknown => rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)?,
            _ => false,
        };
        if !is_dir {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        } else if level.pending.len() < BATCH {
            level.pending.push(name.to_owned());
        } else {
            level.unread = true;
        }
    }
    Ok(())
}

/// Removes everything inside `dir`, keeping `dir` itself. Holds at most two
/// descriptors, whatever the depth, and at most [`BATCH`] names per level.
pub fn empty(dir: &Path) -> std::io::Result<()> {
    let mut current = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut stack = vec![Level {
        name: None,
        pending: Vec::new(),
        unread: true,
    }];
    // Every step removes an entry, reads a directory that has shrunk since
    // its last pass, or moves down or up one level: the loop ends.
    while let Some(level) = stack.last_mut() {
        if level.pending.is_empty() && level.unread {
            scan(&current, level)?;
            continue;
        }
        if let Some(child) = level.pending.pop() {
            current = open_dir_at(&current, OsStr::from_bytes(child.to_bytes()))?;
            stack.push(Level {
                name: Some(child),
                pending: Vec::new(),
                unread: true,
            });
            continue;
        }
        // Empty: go up and remove it, or stop at the top.
        let Some(Level {
            name: Some(name), ..
        }) = stack.pop()
        else {
            return Ok(());
        };
        current = open_dir_at(&current, OsStr::new(".."))?;
        rustix::fs::unlinkat(&current, name.as_c_str(), AtFlags::REMOVEDIR)?;
    }
    Ok(())
}

/// Removes `dir` and everything in it (see [`empty`]). A missing `dir` is
/// not an error.
pub fn remove(dir: &Path) -> std::io::Result<()> {
    match empty(dir) {
        Ok(()) => std::fs::remove_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn empties_a_deep_tree_with_two_descriptors() {
        let root = tempfile::tempdir().unwrap();
        let top = root.path().join("home");
        std::fs::create_dir(&top).unwrap();
        // Deeper than PATH_MAX allows as one path, and than std's
        // recursion survives on a small stack.
        let mut dir = rustix::fs::open(&top, OFlags::DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..5000 {
            rustix::fs::mkdirat(&dir, "dd", Mode::from_raw_mode(0o700)).unwrap();
            dir = open_dir_at(&dir, OsStr::new("dd")).unwrap();
        }
        rustix::fs::openat(
            &dir,
            "f",
            OFlags::CREATE | OFlags::WRONLY,
            Mode::from_raw_mode(0o600),
        )
        .unwrap();
        drop(dir);
        // A small stack: no recursion.
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn({
                let top = top.clone();
                move || empty(&top).unwrap()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(top.is_dir());
        assert_eq!(std::fs::read_dir(&top).unwrap().count(), 0);
    }

    #[test]
    fn empties_a_wide_directory_in_batches() {
        let root = tempfile::tempdir().unwrap();
        let top = root.path().join("home");
        for i in 0..(BATCH + 10) {
            std::fs::create_dir_all(top.join(format!("d{i}/e"))).unwrap();
        }
        std::fs::write(top.join("f"), "x").unwrap();
        empty(&top).unwrap();
        assert_eq!(std::fs::read_dir(&top).unwrap().count(), 0);
    }

    #[test]
    fn removes_links_never_what_they_point_to() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "host file").unwrap();
        let top = root.path().join("home");
        std::fs::create_dir_all(top.join("sub/locked")).unwrap();
        symlink(&outside, top.join("link-to-dir")).unwrap();
        symlink(outside.join("keep"), top.join("sub/link-to-file")).unwrap();
        std::fs::write(top.join("sub/locked/f"), "x").unwrap();
        std::fs::set_permissions(
            top.join("sub/locked"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        let result = empty(&top);
        // Root removes a directory its owner locked; another user may not.
        std::fs::set_permissions(
            top.join("sub/locked"),
            std::fs::Permissions::from_mode(0o700),
        )
        .ok();
        if rustix::process::geteuid().is_root() {
            result.unwrap();
            assert_eq!(std::fs::read_dir(&top).unwrap().count(), 0);
        }
        assert_eq!(
            std::fs::read_to_string(outside.join("keep")).unwrap(),
            "host file"
        );
        remove(&top).unwrap();
        assert!(!top.exists());
        remove(&top).unwrap();
    }
}
