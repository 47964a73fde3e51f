//! clone3 with CLONE_INTO_CGROUP | CLONE_PIDFD and new namespaces: the one
//! place the server forks.
//!
//! The child starts as the job's PID 1 (see `init.rs`), already inside its
//! cgroup, so not one instruction of the job runs outside its limits. The
//! parent gets a pidfd (exit is observed through its readiness, with no
//! SIGCHLD handler and no pid-reuse race) and the read end of a report pipe
//! on which the init says whether the command was executed and how it ended.

use std::ffi::{c_int, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::init::{self, InitContext};
use super::spec::JobSpec;
use crate::protocol::Network;

/// Bit 33 of clone3's u64 flags. (libc's constant is deprecated because it
/// overflows its c_int type.)
const CLONE_INTO_CGROUP: u64 = 1 << 33;

/// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What to clone.
pub struct SpawnConfig<'a> {
    pub spec: &'a JobSpec,
    /// The job's UTS hostname.
    pub hostname: &'a str,
    /// The job user and group.
    pub uid: u32,
    pub gid: u32,
    /// The cgroup2 leaf to clone into; `None` clones into the server's own
    /// cgroup and relies on placement before exec.
    pub cgroup: Option<BorrowedFd<'a>>,
    /// Whether the child waits for `Child::release` before doing anything.
    pub wait_for_release: bool,
    /// Write ends for the job's stdout and stderr.
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// A cloned job init.
#[derive(Debug)]
pub struct Child {
    /// Pid in the server's namespace.
    pub pid: i32,
    pub pidfd: OwnedFd,
    /// Read end of the init's report pipe.
    pub report: OwnedFd,
    /// Write end of the go pipe, while the child waits on it.
    go: Option<OwnedFd>,
}

impl Child {
    /// Lets a child that waits for placement go on. Dropping the child's go
    /// pipe without releasing makes it exit instead.
    pub fn release(&mut self) -> io::Result<()> {
        if let Some(go) = self.go.take() {
            rustix::io::write(&go, b"g")?;
        }
        Ok(())
    }

    /// Gives up on a child that waits for release: closing the go pipe
    /// makes its init exit without running anything.
    pub fn abandon(&mut self) {
        self.go = None;
    }
}

/// Why a clone failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The kernel does not accept CLONE_INTO_CGROUP here (older kernel,
    /// threaded cgroup, ...): retry without it and place the child by pid.
    #[error("clone3 refused CLONE_INTO_CGROUP: {0}")]
    IntoCgroupRefused(io::Error),
    #[error("cannot clone the job: {0}")]
    Clone(io::Error),
    #[error("cannot prepare the job: {0}")]
    Prepare(io::Error),
}

fn cstring(s: &str) -> CString {
    // JobSpec validation rejected NUL bytes in every string.
    CString::new(s).expect("validated: no NUL")
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| SpawnError::Prepare(e.into()))
}

/// Clones the job's init.
pub fn spawn(config: SpawnConfig<'_>) -> Result<Child, SpawnError> {
    let spec = config.spec;
    let devnull = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| SpawnError::Prepare(e.into()))?;
    let (report_read, report_write) = pipe()?;
    let go = if config.wait_for_release {
        Some(pipe()?)
    } else {
        None
    };

    let argv: Vec<CString> = std::iter::once(spec.command.as_str())
        .chain(spec.args.iter().map(String::as_str))
        .map(cstring)
        .collect();
    let envp: Vec<CString> = spec.env.iter().map(|e| cstring(e)).collect();
    let null_terminated = |v: &[CString]| {
        v.iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect::<Vec<_>>()
    };
    let ctx = InitContext {
        stdin: devnull.as_raw_fd(),
        stdout: config.stdout.as_raw_fd(),
        stderr: config.stderr.as_raw_fd(),
        report: report_write.as_raw_fd(),
        go: go.as_ref().map(|(r, _)| r.as_raw_fd()).unwrap_or(-1),
        hostname: cstring(config.hostname),
        new_net: spec.network == Network::None,
        uid: config.uid,
        gid: config.gid,
        workdir: cstring(&spec.workdir),
        candidates: spec.exec_candidates(),
        argv_ptrs: null_terminated(&argv),
        envp_ptrs: null_terminated(&envp),
        _argv: argv,
        _envp: envp,
    };

    let mut flags = (libc::CLONE_PIDFD
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC) as u64;
    if spec.network == Network::None {
        flags |= libc::CLONE_NEWNET as u64;
    }
    let mut pidfd: c_int = -1;
    let mut args = CloneArgs {
        flags,
        pidfd: (&raw mut pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(cgroup) = config.cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cgroup.as_raw_fd() as u64;
    }

    // SAFETY: clone3 with stack = 0 behaves like fork: the child gets a copy
    // of this address space and returns 0 here on the same stack. The child
    // branch calls only `init::run`, which never returns and uses nothing but
    // system calls and the memory prepared above (see init.rs). `args`
    // points to a live, correctly sized struct; `pidfd` outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw mut args,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        // SAFETY: we are the freshly cloned child; ctx is fully prepared.
        unsafe { init::run(&ctx) }
    }
    if ret < 0 {
        let err = io::Error::last_os_error();
        let refused = matches!(
            err.raw_os_error(),
            Some(libc::E2BIG) | Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
        );
        return Err(if config.cgroup.is_some() && refused {
            SpawnError::IntoCgroupRefused(err)
        } else {
            SpawnError::Clone(err)
        });
    }
    // The child has its copies; the parent's ends for the child are closed
    // when `devnull`, `report_write`, the go read end and the stdio write
    // ends drop at the end of this function.
    // SAFETY: clone3 with CLONE_PIDFD stored a new pidfd that we now own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Child {
        pid: ret as i32,
        pidfd,
        report: report_read,
        go: go.map(|(_, w)| w),
    })
}

/// The kernel's text for an errno.
pub fn errno_text(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}
