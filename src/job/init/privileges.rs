//! What the command may do, set in the forked command before its exec:
//! no capability in any set, the job's uid and gid with no supplementary
//! groups, no_new_privs and the job's system call filter. What each of
//! these is lives in `sandbox.rs`; the order lives here.

use nix::unistd::{Gid, Uid};

use super::{At, Failure};
use crate::job::channel::Stage;
use crate::job::sandbox;

/// Becomes the job user. The bounding and ambient sets go while the init's
/// CAP_SETPCAP is still there; the uid change then clears the rest, and
/// capset makes sure of it (a job user of root keeps uid 0, but not one
/// capability).
pub(super) fn become_job_user(uid: u32, gid: u32) -> Result<(), Failure> {
    sandbox::drop_bounding_and_ambient().at(Stage::Capabilities)?;
    nix::unistd::setgroups(&[]).at(Stage::Groups)?;
    let gid = Gid::from_raw(gid);
    nix::unistd::setresgid(gid, gid, gid).at(Stage::Gid)?;
    let uid = Uid::from_raw(uid);
    nix::unistd::setresuid(uid, uid, uid).at(Stage::Uid)?;
    sandbox::clear_capabilities().at(Stage::Capabilities)
}

/// Sets no_new_privs, then installs `filter` (BPF; empty: none, `jwd
/// --no-seccomp`): the last steps before the exec.
pub(super) fn lock_down(filter: &[u8]) -> Result<(), Failure> {
    sandbox::no_new_privs().at(Stage::NoNewPrivs)?;
    if !filter.is_empty() {
        sandbox::install_filter(filter).at(Stage::Seccomp)?;
    }
    Ok(())
}
