//! clone3 with CLONE_INTO_CGROUP | CLONE_NEWPID, then execute the job init
//! (`jw-init`, see `init/`): the one place the server forks.
//!
//! The child starts as the job's PID 1, already inside its cgroup, so not
//! one instruction of the job runs outside its limits. The parent gets the
//! pid and its end of the job's channel, on which the init says whether the
//! command was executed, what output it has written and how it ended. No pidfd
//! is kept while the job runs (one descriptor per job is the budget): the
//! init is jwd's child and is reaped only after its channel closed, so its
//! pid cannot be reused before then.
//!
//! On x86_64 the clone shares jwd's memory (CLONE_VM | CLONE_VFORK, as
//! posix_spawn does): the child runs a few system calls on a stack of its
//! own, executes the init, and only then does the calling thread go on.
//! A fork-style clone would copy the page tables of the whole server and
//! leave every page copy-on-write, which the server would then pay for in
//! faults and TLB shootdowns on each of its threads: that was a fifth of
//! jwd's CPU per start. Other architectures take the fork-style path, which
//! runs the same child code.

use std::ffi::{c_char, c_int, c_void, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::signal::{SigSet, SigmaskHow};

use super::channel::{self, Report, Setup, Stage, MAX_SETUP};

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
    /// The init program, opened O_PATH (executed with execveat, so a
    /// replaced or deleted file on disk does not matter).
    pub init: BorrowedFd<'a>,
    /// The job's set-up, encoded (`Setup::encode`): queued on the channel
    /// for the init before the clone.
    pub setup: &'a [u8],
    /// The cgroup2 leaf to clone into; `None` clones into the server's own
    /// cgroup and relies on the init joining its cgroups (`Setup::join`).
    pub cgroup: Option<BorrowedFd<'a>>,
    /// /dev/null: the init's fds 0, 1 and 2, and the command's stdin.
    pub devnull: BorrowedFd<'a>,
    /// The keeper's listening socket (`channel::LISTENER_FD` in the init).
    pub listener: BorrowedFd<'a>,
    /// The job's directory, O_PATH (`channel::DIR_FD` in the init).
    pub dir: BorrowedFd<'a>,
    /// Share the server's memory until the exec (CLONE_VM | CLONE_VFORK);
    /// false clones fork-style.
    pub share_memory: bool,
}

/// A cloned job init.
#[derive(Debug)]
pub struct Child {
    /// Pid in the server's namespace.
    pub pid: i32,
    /// jwd's end of the job's channel (SOCK_SEQPACKET).
    pub channel: OwnedFd,
}

/// Why a clone failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The kernel does not accept CLONE_INTO_CGROUP here (older kernel,
    /// threaded cgroup, ...): retry without it and let the init join.
    #[error("clone3 refused CLONE_INTO_CGROUP: {0}")]
    IntoCgroupRefused(io::Error),
    #[error("cannot clone the job: {0}")]
    Clone(io::Error),
    #[error("cannot prepare the job: {0}")]
    Prepare(io::Error),
}

/// Whether this build can clone with CLONE_VM (it has the trampoline).
pub const CAN_SHARE_MEMORY: bool = cfg!(target_arch = "x86_64");

/// What the child needs between the clone and the exec, prepared (and
/// allocated) before the clone: it may only make system calls.
struct ChildSetup {
    /// Become fds 0, 1, 2, `channel::CHANNEL_FD` (3), `LISTENER_FD` (4)
    /// and `DIR_FD` (5), in that order.
    fds: [c_int; 6],
    /// The init program (O_PATH), moved to `INIT_FD` with close-on-exec.
    init: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
}

/// Where the init program sits while the child executes it.
const INIT_FD: c_int = 6;

fn null_terminated(v: &[CString]) -> Vec<*const c_char> {
    v.iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Queues the set-up message for the init on jwd's end of its channel. A
/// socket pair's send buffer (wmem_default, 208 KiB here) may be smaller
/// than the largest set-up; root raises it for that one socket.
fn send_setup(channel: &OwnedFd, setup: &[u8]) -> io::Result<()> {
    if setup.len() > MAX_SETUP {
        return Err(io::Error::other(format!(
            "the job's set-up is {} bytes, more than the {} the init accepts",
            setup.len(),
            MAX_SETUP
        )));
    }
    if setup.len() > 64 * 1024 {
        rustix::net::sockopt::set_socket_send_buffer_size_force(channel, 2 * MAX_SETUP)?;
    }
    rustix::net::send(
        channel,
        setup,
        rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL,
    )?;
    Ok(())
}

/// Clones the job's init.
pub fn spawn(config: SpawnConfig<'_>) -> Result<Child, SpawnError> {
    let (channel, child_channel) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| SpawnError::Prepare(e.into()))?;
    send_setup(&channel, config.setup).map_err(SpawnError::Prepare)?;
    // The init's command line and environment are fixed: nothing a user
    // chose reaches a root process's loader or arguments.
    let argv: Vec<CString> = Setup::argv().iter().map(|a| (*a).to_owned()).collect();
    let envp: Vec<CString> = channel::INIT_ENV.iter().map(|e| (*e).to_owned()).collect();
    let argv_ptrs = null_terminated(&argv);
    let envp_ptrs = null_terminated(&envp);
    let setup = ChildSetup {
        fds: [
            config.devnull.as_raw_fd(),
            config.devnull.as_raw_fd(),
            config.devnull.as_raw_fd(),
            child_channel.as_raw_fd(),
            config.listener.as_raw_fd(),
            config.dir.as_raw_fd(),
        ],
        init: config.init.as_raw_fd(),
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
    };

    let mut args = CloneArgs {
        flags: libc::CLONE_NEWPID as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(cgroup) = config.cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cgroup.as_raw_fd() as u64;
    }
    let ret = if config.share_memory && CAN_SHARE_MEMORY {
        clone_vm(&mut args, &setup)
    } else {
        clone_fork(&mut args, &setup)
    };
    if ret < 0 {
        let err = io::Error::from_raw_os_error(-ret as i32);
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
    // The child has its copy (or has executed the init already): the
    // parent's copy of the child's end goes, so the channel reads EOF
    // exactly when the init is gone.
    drop(child_channel);
    Ok(Child {
        pid: ret as i32,
        channel,
    })
}

/// Blocks every signal in the calling thread until dropped: a handler
/// must never run in a child that shares the server's memory, and the init
/// starts with everything blocked (it sets its own mask).
struct SignalsBlocked(SigSet);

impl SignalsBlocked {
    fn new() -> SignalsBlocked {
        let mut old = SigSet::empty();
        // Cannot fail: the arguments are valid.
        let _ = nix::sys::signal::pthread_sigmask(
            SigmaskHow::SIG_SETMASK,
            Some(&SigSet::all()),
            Some(&mut old),
        );
        SignalsBlocked(old)
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

/// clone3 fork-style: the child gets a copy of the address space and runs
/// `child_main` on the same stack. Returns the pid or -errno.
fn clone_fork(args: &mut CloneArgs, setup: &ChildSetup) -> libc::c_long {
    let _blocked = SignalsBlocked::new();
    // SAFETY: clone3 with stack = 0 behaves like fork. The child branch
    // calls only `child_main`, which never returns and makes nothing but
    // system calls on `setup` (see there). `args` points to a live,
    // correctly sized struct.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        // SAFETY: we are the child; `setup` and what it points to are our
        // copies, prepared before the clone.
        unsafe { child_main((setup as *const ChildSetup).cast_mut().cast()) }
    }
    if ret < 0 {
        return -(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL) as libc::c_long);
    }
    ret
}

/// clone3 with CLONE_VM | CLONE_VFORK: the child runs `child_main` on a
/// stack of its own, in the server's memory, while this thread waits for
/// its exec (or exit). Returns the pid or -errno.
#[cfg(target_arch = "x86_64")]
fn clone_vm(args: &mut CloneArgs, setup: &ChildSetup) -> libc::c_long {
    /// The child's stack: it makes a handful of system calls, whose frames
    /// need well under a page; 64 KiB leaves room for glibc's wrappers.
    const STACK_WORDS: usize = 64 * 1024 / 16;
    // u128 for the ABI's 16-byte stack alignment.
    let mut stack = vec![0u128; STACK_WORDS];
    args.flags |= (libc::CLONE_VM | libc::CLONE_VFORK) as u64;
    args.stack = stack.as_mut_ptr() as u64;
    args.stack_size = (STACK_WORDS * 16) as u64;
    let _blocked = SignalsBlocked::new();
    let ret: libc::c_long;
    // SAFETY: clone3 starts the child with rsp at stack + stack_size (16-
    // byte aligned) and every register but rax, rcx and r11 as they were,
    // so it finds `setup` in r12 and `child_main` in r13 and calls it; the
    // call pushes the return address, leaving the alignment the ABI
    // expects at a function's entry. `child_main` never returns (ud2
    // guards the impossible). The parent takes the branch with rax != 0
    // and sees no other register change. CLONE_VFORK keeps this thread
    // (and so `stack`, `setup` and what they point to) where it is until
    // the child has executed the init or exited. With every signal blocked,
    // no handler can run on the child's side of the shared memory.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") setup as *const ChildSetup,
            in("r13") child_main as unsafe extern "C" fn(*mut c_void) -> !,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    drop(stack);
    ret
}

#[cfg(not(target_arch = "x86_64"))]
fn clone_vm(args: &mut CloneArgs, setup: &ChildSetup) -> libc::c_long {
    clone_fork(args, setup)
}

/// Ends the child at once. Async-signal-safe.
fn exit_now(code: c_int) -> ! {
    // SAFETY: _exit has no preconditions, runs no handler and touches no
    // user-space state: a system call.
    unsafe { libc::_exit(code) }
}

/// The child between clone and exec: put the fds in place, execute the
/// init, or report why not.
///
/// # Safety
/// Only in the child of `clone_fork` or `clone_vm`, with `setup` pointing
/// to a live `ChildSetup`. It may share the server's memory and must not
/// touch it beyond reading `setup`: nothing here allocates, takes a lock
/// or writes anything but this stack and the thread's errno (which the
/// parent, waiting in clone3, does not read). Every call below is a system
/// call or plain arithmetic on the stack.
unsafe extern "C" fn child_main(setup: *mut c_void) -> ! {
    // SAFETY: the function's contract: `setup` points to a live ChildSetup
    // that nothing writes while the child runs.
    let setup = unsafe { &*(setup as *const ChildSetup) };
    // First copy every source above the target range, so that moving
    // one into place can never clobber another still to be moved.
    let mut high = [-1 as c_int; 7];
    for (i, &fd) in setup.fds.iter().chain([&setup.init]).enumerate() {
        // SAFETY: fcntl(F_DUPFD) takes integers only; a closed fd fails.
        high[i] = unsafe { libc::fcntl(fd, libc::F_DUPFD, 10) };
        if high[i] < 0 {
            exit_now(channel::EXIT_FDS);
        }
    }
    for (target, &fd) in high[..6].iter().enumerate() {
        // SAFETY: dup2 takes integers only; the child owns its fd table.
        if unsafe { libc::dup2(fd, target as c_int) } < 0 {
            exit_now(channel::EXIT_FDS);
        }
    }
    // SAFETY: dup3 takes integers only.
    if unsafe { libc::dup3(high[6], INIT_FD, libc::O_CLOEXEC) } < 0 {
        exit_now(channel::EXIT_FDS);
    }
    // Nothing else of the server's reaches the job.
    // SAFETY: close_range takes integers only.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, INIT_FD + 1, libc::c_uint::MAX, 0) };
    if closed < 0 {
        // Kernels before 5.9: whatever is close-on-exec goes at the exec;
        // close the rest one by one up to the fd limit.
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into `lim`, on this stack.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        for fd in INIT_FD + 1..lim.rlim_cur.min(1 << 20) as c_int {
            // SAFETY: close takes an integer; the child's fd table is its
            // own (a fork-style or CLONE_VFORK clone without CLONE_FILES).
            unsafe { libc::close(fd) };
        }
    }
    // SAFETY: INIT_FD is the init program (O_PATH); the path is an empty
    // NUL-terminated string; argv and envp are null-terminated arrays of
    // NUL-terminated strings prepared before the clone and kept alive by
    // the parent, which waits (CLONE_VFORK) or owns a copy (fork-style).
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            INIT_FD,
            c"".as_ptr(),
            setup.argv,
            setup.envp,
            libc::AT_EMPTY_PATH,
        )
    };
    let report = Report::Failed {
        stage: Stage::Init,
        errno: nix::errno::Errno::last_raw(),
    }
    .encode();
    // SAFETY: write reads `report`, a live array on this stack.
    unsafe { libc::write(channel::CHANNEL_FD, report.as_ptr().cast(), report.len()) };
    exit_now(127)
}

/// The kernel's text for an errno.
pub fn errno_text(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}
