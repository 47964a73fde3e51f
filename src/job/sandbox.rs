//! What a job may see and do: its filesystem view, its (absent)
//! capabilities and its system call filter. jw-init applies all three
//! before the user's program runs; jwd only decides the inputs.
//!
//! Modelled on systemd's sandboxing (ProtectSystem=strict, PrivateTmp=,
//! ProtectHome=tmpfs, InaccessiblePaths=, CapabilityBoundingSet=,
//! NoNewPrivileges=, SystemCallFilter=) and on runc's masked paths:
//!
//! - the host's whole mount tree is read-only and nosuid inside the job;
//! - `/tmp`, `/var/tmp` and `/dev/shm` are fresh tmpfs mounts private to
//!   the job, charged to its memory cgroup and gone with it;
//! - `/home` is an empty read-only tmpfs holding only the job's own work
//!   directory at [`JOB_HOME`], a bind of a directory jwd made for the job
//!   on disk and removes when it ends;
//! - jwd's data directory, its key and certificates and the cgroup
//!   hierarchy are covered (empty read-only tmpfs over directories,
//!   `/dev/null` over files);
//! - every capability set is empty (bounding, ambient, inheritable,
//!   permitted, effective) and no_new_privs is set;
//! - a seccomp filter in the spirit of Docker's default profile refuses
//!   with EPERM what a job never needs and what widens the kernel's attack
//!   surface: new namespaces (so no user namespaces), mounts, keyrings,
//!   bpf, perf, io_uring, module and kexec loading, clock and swap changes.
//!
//! Every function here makes one kind of system call and says why it is
//! sound; the order lives in `init.rs`.

use std::collections::BTreeMap;
use std::ffi::{c_int, CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// The job's own writable directory, its default working directory and
/// `HOME`.
pub const JOB_HOME: &str = "/home/job";

/// Directories that become private tmpfs mounts in every job (those the
/// host has).
pub const PRIVATE_TMP: [&str; 3] = ["/tmp", "/var/tmp", "/dev/shm"];

/// Covered in every job besides what jwd names: the cgroup hierarchy, so a
/// job cannot see other jobs' cgroups (or anything of the host's).
pub const ALWAYS_HIDDEN: [&str; 1] = ["/sys/fs/cgroup"];

/// The result of one step: Ok, or the errno it failed with.
pub type Step = Result<(), i32>;

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn cstring(path: &Path) -> Result<CString, i32> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)
}

fn check(rc: c_int) -> Step {
    if rc < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// mount(2) with C strings; `source`, `fstype` and `data` may be absent.
fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Step {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is a NUL-terminated string that outlives the
    // call, or null where mount(2) accepts null.
    check(unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    })
}

/// Makes every mount of the new mount namespace private, so nothing done
/// here propagates back to the host.
pub fn make_mounts_private() -> Step {
    mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
}

/// A detached copy of the mount at `path` (open_tree with OPEN_TREE_CLONE):
/// taken before anything covers the path, attached later with
/// [`attach_home`].
pub fn clone_tree(path: &Path) -> Result<OwnedFd, i32> {
    let path = cstring(path)?;
    // SAFETY: open_tree takes a NUL-terminated path and flags, and returns a
    // new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

/// mount_setattr(2) on `path` (or on `fd` itself with an empty path).
fn mount_setattr(fd: c_int, path: &CStr, at_flags: c_int, set: u64) -> Step {
    let mut attr: libc::mount_attr = libc::mount_attr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` is a live, correctly sized mount_attr; `path` is
    // NUL-terminated.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            path.as_ptr(),
            at_flags as libc::c_uint,
            &raw mut attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    check(rc as c_int)
}

/// Covers `path` so the job cannot read it: an empty read-only tmpfs with
/// mode 000 over a directory, `/dev/null` over anything else. A path the
/// job's view does not have is already hidden.
pub fn hide(path: &Path) -> Step {
    let target = cstring(path)?;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    if meta.file_type().is_symlink() {
        // jwd resolved the paths it names; a symlink here was not made by
        // jwd, and a mount would follow it.
        return Err(libc::ELOOP);
    }
    if meta.is_dir() {
        mount(
            Some(c"jw-hidden"),
            &target,
            Some(c"tmpfs"),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some(c"mode=000,size=4k,nr_inodes=2"),
        )
    } else {
        mount(Some(c"/dev/null"), &target, None, libc::MS_BIND, None)
    }
}

/// Makes the whole mount tree read-only and nosuid (mounts made after this
/// keep their own flags).
pub fn read_only_root() -> Step {
    mount_setattr(
        libc::AT_FDCWD,
        c"/",
        libc::AT_RECURSIVE,
        libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID,
    )
}

/// A fresh tmpfs at `dir`, writable by everyone with the sticky bit, like
/// the host's. Skipped where the host has no such directory.
pub fn private_tmp(dir: &str) -> Step {
    if !Path::new(dir).is_dir() {
        return Ok(());
    }
    let target = CString::new(dir).map_err(|_| libc::EINVAL)?;
    mount(
        Some(c"jw-tmp"),
        &target,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(c"mode=1777"),
    )
}

/// Covers `/home` with a small read-only tmpfs whose only entry is the
/// job's work directory (`tree`, from [`clone_tree`]) at [`JOB_HOME`].
pub fn attach_home(tree: &OwnedFd) -> Step {
    mount(
        Some(c"jw-home"),
        c"/home",
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(c"mode=0755,size=16k,nr_inodes=4"),
    )?;
    std::fs::create_dir(JOB_HOME).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    mount_setattr(
        tree.as_raw_fd(),
        c"",
        libc::AT_EMPTY_PATH,
        libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
    )?;
    let home = CString::new(JOB_HOME).map_err(|_| libc::EINVAL)?;
    // SAFETY: move_mount takes a descriptor, NUL-terminated paths and
    // flags; `tree` is a detached mount from open_tree.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            home.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    check(rc as c_int)?;
    mount_setattr(libc::AT_FDCWD, c"/home", 0, libc::MOUNT_ATTR_RDONLY)
}

/// A fresh /proc for the job's PID namespace.
pub fn mount_proc() -> Step {
    mount(
        Some(c"proc"),
        c"/proc",
        Some(c"proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
}

/// Puts the init (and so the job) back to the default OOM score: jwd
/// protects itself with -1000, which children would inherit.
pub fn reset_oom_score() -> Step {
    std::fs::write("/proc/self/oom_score_adj", b"0")
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// prctl(2) with integer arguments.
fn prctl(option: c_int, arg2: libc::c_ulong) -> c_int {
    // SAFETY: the prctl options used here take integers only.
    unsafe {
        libc::prctl(
            option,
            arg2,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    }
}

/// Empties the capability bounding set and the ambient set, while the
/// process still has CAP_SETPCAP (before it changes uid): no later execve
/// can gain a capability, not even of a root-owned or file-capable
/// program.
pub fn drop_bounding_and_ambient() -> Step {
    let mut cap = 0;
    loop {
        if prctl(libc::PR_CAPBSET_READ, cap) < 0 {
            // EINVAL: past the kernel's last capability.
            break;
        }
        check(prctl(libc::PR_CAPBSET_DROP, cap))?;
        cap += 1;
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// Clears the effective, permitted and inheritable sets (after the uid
/// change, which clears them anyway unless the job user is root).
pub fn clear_capabilities() -> Step {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset reads a version-3 header and two data structs, all
    // live and correctly laid out (linux/capability.h).
    check(unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) } as c_int)
}

/// Sets no_new_privs: no execve from here on can raise privileges (setuid
/// bits, file capabilities), and a seccomp filter may be installed.
pub fn no_new_privs() -> Step {
    check(prctl(libc::PR_SET_NO_NEW_PRIVS, 1))
}

/// Installs a compiled filter on the calling thread (no_new_privs first).
pub fn install_filter(filter: &BpfProgram) -> Step {
    seccompiler::apply_filter(filter).map_err(|e| match e {
        seccompiler::Error::Seccomp(io) => io.raw_os_error().unwrap_or(libc::EINVAL),
        _ => libc::EINVAL,
    })
}

/// System calls every job is refused (EPERM), whatever their arguments.
const DENIED: &[i64] = &[
    // Namespaces: entering or creating them (user namespaces above all).
    libc::SYS_unshare,
    libc::SYS_setns,
    // Mounts, old and new API.
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    // Kernel keyrings are per uid, not per job.
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    // Kernel attack surface a job does not need.
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_syslog,
    libc::SYS_quotactl,
    libc::SYS_open_by_handle_at,
    libc::SYS_lookup_dcookie,
    libc::SYS_vhangup,
    // The host's clock.
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
];

/// Namespace flags a job's clone(2) may not carry. (CLONE_NEWTIME only
/// exists for clone3 and unshare: in clone's flags its bit is part of the
/// exit signal.)
const NEW_NAMESPACES: [u64; 7] = [
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// x32 system calls are the x86_64 numbers with this bit; the filter
/// refuses them too (where the kernel runs x32 at all).
#[cfg(target_arch = "x86_64")]
const X32_BIT: i64 = 0x4000_0000;

fn with_x32(nr: i64) -> Vec<i64> {
    #[cfg(target_arch = "x86_64")]
    return vec![nr, nr | X32_BIT];
    #[cfg(not(target_arch = "x86_64"))]
    vec![nr]
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    action: SeccompAction,
) -> Result<BpfProgram, String> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp: {e}"))?;
    SeccompFilter::new(rules, SeccompAction::Allow, action, arch)
        .and_then(BpfProgram::try_from)
        .map_err(|e| format!("seccomp: {e}"))
}

/// The job's default system call filter, as the programs to install (in
/// order): one refusing with EPERM, and one answering clone3 with ENOSYS
/// (its flags are out of a filter's reach, so the C library falls back to
/// clone, whose flags the first filter checks), as Docker's profile does.
///
/// A foreign-architecture system call (a 32-bit int 0x80 on x86_64) kills
/// the process: the filter cannot check it against this table.
pub fn default_filters() -> Result<Vec<BpfProgram>, String> {
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in DENIED {
        for n in with_x32(nr) {
            denied.insert(n, Vec::new());
        }
    }
    let mut clone_rules = Vec::new();
    for flag in NEW_NAMESPACES {
        let condition = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
        .map_err(|e| format!("seccomp: {e}"))?;
        clone_rules.push(SeccompRule::new(vec![condition]).map_err(|e| format!("seccomp: {e}"))?);
    }
    for n in with_x32(libc::SYS_clone) {
        denied.insert(n, clone_rules.clone());
    }
    let mut clone3 = BTreeMap::new();
    for n in with_x32(libc::SYS_clone3) {
        clone3.insert(n, Vec::new());
    }
    Ok(vec![
        compile(denied, SeccompAction::Errno(libc::EPERM as u32))?,
        compile(clone3, SeccompAction::Errno(libc::ENOSYS as u32))?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filters_compile() {
        let filters = default_filters().unwrap();
        assert_eq!(filters.len(), 2);
        // The EPERM filter has a chain for every denied call and its x32
        // twin, plus clone's conditions.
        assert!(
            filters[0].len() > DENIED.len() * 2 * 3,
            "{}",
            filters[0].len()
        );
    }

    #[test]
    fn job_home_is_under_home() {
        assert!(Path::new(JOB_HOME).starts_with("/home"));
        assert_eq!(Path::new(JOB_HOME).components().count(), 3);
    }
}
