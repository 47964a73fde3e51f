//! The job's mount namespace: every mount private, the job's filesystem
//! view (what it is lives in `sandbox.rs`; the order lives here) and its
//! own /proc.

use std::path::Path;

use nix::sys::stat::Mode;

use super::{At, Failure};
use crate::job::channel::{Setup, Stage};
use crate::job::sandbox;

/// Makes every mount of the new mount namespace private, so nothing done
/// here propagates back to the host.
pub(super) fn make_private() -> Result<(), Failure> {
    sandbox::make_mounts_private().at(Stage::MountPrivate)
}

/// The job's filesystem view: its work directory taken before anything
/// covers it, jwd's files hidden, the host read-only, then the job's own
/// writable mounts.
pub(super) fn build_view(setup: &Setup) -> Result<(), Failure> {
    let home = sandbox::clone_tree(Path::new(&setup.home)).at(Stage::Home)?;
    for path in setup
        .hide
        .iter()
        .map(String::as_str)
        .chain(sandbox::ALWAYS_HIDDEN)
    {
        sandbox::hide(Path::new(path)).at(Stage::Hide)?;
    }
    sandbox::read_only_root().at(Stage::ReadOnly)?;
    // What the init creates below gets exactly the modes it asks for.
    nix::sys::stat::umask(Mode::empty());
    for dir in sandbox::PRIVATE_TMP {
        sandbox::private_tmp(dir).at(Stage::PrivateTmp)?;
    }
    sandbox::private_dev().at(Stage::Dev)?;
    if matches!(setup.stdin, crate::protocol::Stdin::Terminal(_)) {
        sandbox::private_pts().at(Stage::Terminal)?;
    }
    sandbox::attach_home(&home).at(Stage::Home)
}

/// A fresh, read-only /proc for the job's PID namespace.
pub(super) fn mount_proc() -> Result<(), Failure> {
    sandbox::mount_proc().at(Stage::MountProc)
}
