//! Where the init lives: the job's cgroups that CLONE_INTO_CGROUP could not
//! put it in (the v1 controllers of the hybrid layout), then its own mount,
//! UTS, IPC and (unless host networking) network namespaces.

use std::path::Path;

use nix::sched::CloneFlags;

use super::{At, Failure};
use crate::job::channel::Stage;

/// Moves the init into each cgroup directory of `join`, before anything
/// else it does is counted anywhere else.
pub(super) fn join_cgroups(join: &[String]) -> Result<(), Failure> {
    for dir in join {
        // "0" is "the writing process" in both cgroup versions.
        std::fs::write(Path::new(dir).join("cgroup.procs"), "0").at(Stage::Join)?;
    }
    Ok(())
}

/// The `cgroup.procs` of the cgroup the keeper moves into once the command
/// runs (`Setup::keeper_cgroup`), opened now: the job's view hides it
/// later. `None` if there is none, or it cannot be opened (the keeper then
/// stays where it is).
pub(super) fn open_keeper_cgroup(dir: &str) -> Option<std::fs::File> {
    if dir.is_empty() {
        return None;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(Path::new(dir).join("cgroup.procs"))
        .ok()
}

/// Moves the keeper into the cgroup `open_keeper_cgroup` opened.
pub(super) fn move_keeper(procs: Option<std::fs::File>) {
    use std::io::Write;
    if let Some(mut procs) = procs {
        let _ = procs.write_all(b"0");
    }
}

/// The namespaces the init creates (its PID namespace came with the
/// clone).
fn flags(new_net: bool) -> CloneFlags {
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if new_net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    flags
}

/// Creates the job's namespaces; `new_net`: a network namespace of its own
/// (false: the host's network).
pub(super) fn unshare(new_net: bool) -> Result<(), Failure> {
    nix::sched::unshare(flags(new_net)).at(Stage::Unshare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_namespace_only_when_asked() {
        let with = flags(true);
        let without = flags(false);
        assert!(with.contains(CloneFlags::CLONE_NEWNET));
        assert!(!without.contains(CloneFlags::CLONE_NEWNET));
        for f in [with, without] {
            assert!(f.contains(
                CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC
            ));
            assert!(!f.contains(CloneFlags::CLONE_NEWUSER), "no user namespace");
        }
    }
}
