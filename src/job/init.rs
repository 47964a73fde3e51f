//! The PID-1 init that runs inside each job's namespaces.
//!
//! It runs in the child of `clone3`, a copy of a multi-threaded server with
//! one thread. The other threads' locks (malloc's among them) were copied
//! in whatever state they were, and glibc still believes the process is
//! multi-threaded. So from here to `execve` (and for the init's whole life,
//! since it never execs) the code may only make system calls and touch
//! memory prepared before the clone: no allocation, no locks, no std I/O,
//! no panics. Calls that glibc implements with cross-thread machinery
//! (`fork`, `setresuid`, `setgroups`, ...) are made as raw syscalls.
//!
//! What it does, in order (like runc init and tini, in one small loop):
//! 1. put the job's stdio on fds 0, 1, 2 and its two pipes to the server on
//!    3 and 4; close every other inherited fd;
//! 2. (hybrid layout, or no CLONE_INTO_CGROUP) wait until the server has
//!    placed it in all its cgroups;
//! 3. make every mount private, mount a fresh /proc, set the hostname, bring
//!    `lo` up in a new network namespace;
//! 4. fork the command, which drops to the job user, sets no_new_privs and
//!    execs; an exec failure comes back over a close-on-exec pipe;
//! 5. report "exec ok" or the exact error to the server, then forward
//!    SIGTERM/SIGINT/... to the command, reap every orphan, and exit with the
//!    command's status once it has ended (the kernel then kills whatever is
//!    left in the PID namespace).

use std::ffi::{c_char, c_int, CString};

/// Fds in the init after set-up.
const REPORT_FD: c_int = 3;
const GO_FD: c_int = 4;

/// Report records the init writes to the server: three little-endian u32s
/// (kind, stage, value), 12 bytes, written in one `write` (atomic on a pipe).
pub const REPORT_LEN: usize = 12;
pub const REPORT_EXEC_OK: u32 = 1;
pub const REPORT_FAILED: u32 = 2;
pub const REPORT_EXITED: u32 = 3;
/// The init's exit code when it cannot set up its fds (and so cannot report).
pub const EXIT_FDS: i32 = 125;
/// The init's exit code when the server abandoned it before releasing it.
pub const EXIT_ABANDONED: i32 = 126;

/// Where set-up failed, for the message the user sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    Fds = 1,
    Go = 2,
    MountPrivate = 3,
    MountProc = 4,
    Hostname = 5,
    Loopback = 6,
    Signals = 7,
    Fork = 8,
    Session = 9,
    Chdir = 10,
    Groups = 11,
    Gid = 12,
    Uid = 13,
    NoNewPrivs = 14,
    Exec = 15,
}

impl Stage {
    pub fn from_u32(n: u32) -> Option<Stage> {
        use Stage::*;
        [
            Fds,
            Go,
            MountPrivate,
            MountProc,
            Hostname,
            Loopback,
            Signals,
            Fork,
            Session,
            Chdir,
            Groups,
            Gid,
            Uid,
            NoNewPrivs,
            Exec,
        ]
        .into_iter()
        .find(|s| *s as u32 == n)
    }

    /// What the init was doing, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Fds => "set up the job's file descriptors",
            Stage::Go => "wait to be placed in the job's cgroups",
            Stage::MountPrivate => "make the job's mounts private",
            Stage::MountProc => "mount /proc for the job",
            Stage::Hostname => "set the job's hostname",
            Stage::Loopback => "bring up lo in the job's network namespace",
            Stage::Signals => "set up signal handling",
            Stage::Fork => "fork the command",
            Stage::Session => "start a new session",
            Stage::Chdir => "change to the working directory",
            Stage::Groups => "drop supplementary groups",
            Stage::Gid => "switch to the job group",
            Stage::Uid => "switch to the job user",
            Stage::NoNewPrivs => "set no_new_privs",
            Stage::Exec => "execute the command",
        }
    }
}

/// Everything the init needs, prepared (and allocated) before the clone.
pub struct InitContext {
    pub stdin: c_int,
    pub stdout: c_int,
    pub stderr: c_int,
    pub report: c_int,
    /// Read end of the "go" pipe, or -1 when no placement is needed.
    pub go: c_int,
    pub hostname: CString,
    pub new_net: bool,
    pub uid: u32,
    pub gid: u32,
    pub workdir: CString,
    /// Null-terminated pointer arrays into the CStrings below.
    pub candidates: Vec<CString>,
    pub argv_ptrs: Vec<*const c_char>,
    pub envp_ptrs: Vec<*const c_char>,
    /// Owners of the strings the pointer arrays point into.
    pub _argv: Vec<CString>,
    pub _envp: Vec<CString>,
}

/// The signals the init forwards to the command.
const FORWARDED: [c_int; 8] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
];

extern "C" fn ignore_signal(_: c_int) {}

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot; reading it
    // is async-signal-safe.
    unsafe { *libc::__errno_location() }
}

/// Writes one report record; errors are ignored (the server sees EOF).
fn report(kind: u32, stage: u32, value: i32) {
    let mut rec = [0u8; REPORT_LEN];
    rec[0..4].copy_from_slice(&kind.to_le_bytes());
    rec[4..8].copy_from_slice(&stage.to_le_bytes());
    rec[8..12].copy_from_slice(&value.to_le_bytes());
    // SAFETY: rec is a live stack buffer of REPORT_LEN bytes.
    unsafe { libc::write(REPORT_FD, rec.as_ptr().cast(), REPORT_LEN) };
}

/// Reports a set-up failure with the current errno and exits.
fn fail(stage: Stage) -> ! {
    report(REPORT_FAILED, stage as u32, errno());
    // SAFETY: _exit is async-signal-safe and ends the process at once.
    unsafe { libc::_exit(127) }
}

fn check(rc: libc::c_long, stage: Stage) {
    if rc < 0 {
        fail(stage);
    }
}

/// The init's entry point in the child of clone3.
///
/// # Safety
/// Call only in a freshly cloned child process (never in the server), with
/// `ctx` fully prepared and its fds open. Never returns.
pub unsafe fn run(ctx: &InitContext) -> ! {
    // SAFETY (whole function): only raw system calls on memory that `ctx`
    // owns or on stack buffers; see the module comment.
    unsafe {
        setup_fds(ctx);
        if ctx.go >= 0 {
            let mut byte = 0u8;
            loop {
                let n = libc::read(GO_FD, (&raw mut byte).cast(), 1);
                if n == 1 {
                    break;
                }
                if n < 0 && errno() == libc::EINTR {
                    continue;
                }
                // The server went away or gave up on this job.
                libc::_exit(EXIT_ABANDONED);
            }
            libc::close(GO_FD);
        }

        check(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) as libc::c_long,
            Stage::MountPrivate,
        );
        check(
            libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ) as libc::c_long,
            Stage::MountProc,
        );
        check(
            libc::sethostname(ctx.hostname.as_ptr(), ctx.hostname.as_bytes().len()) as libc::c_long,
            Stage::Hostname,
        );
        if ctx.new_net {
            loopback_up();
        }

        // Block everything; forwarded signals get a no-op handler because
        // the kernel drops signals with a default disposition that are sent
        // to a PID namespace's init, even from the parent namespace.
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        check(
            libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut()) as libc::c_long,
            Stage::Signals,
        );
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_signal as *const () as usize;
        libc::sigfillset(&mut action.sa_mask);
        for sig in FORWARDED {
            check(
                libc::sigaction(sig, &action, std::ptr::null_mut()) as libc::c_long,
                Stage::Signals,
            );
        }
        // SIGCHLD must not be SIG_IGN, or children would be reaped unseen.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        check(
            libc::sigaction(libc::SIGCHLD, &dfl, std::ptr::null_mut()) as libc::c_long,
            Stage::Signals,
        );

        // A close-on-exec pipe: EOF means the command's execve succeeded.
        let mut exec_pipe = [0 as c_int; 2];
        check(
            libc::pipe2(exec_pipe.as_mut_ptr(), libc::O_CLOEXEC) as libc::c_long,
            Stage::Fork,
        );

        // fork() as a raw clone: glibc's fork would take locks copied from
        // the server's other threads.
        let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
        if pid < 0 {
            fail(Stage::Fork);
        }
        if pid == 0 {
            libc::close(exec_pipe[0]);
            exec_command(ctx, exec_pipe[1]);
        }
        let command = pid as libc::pid_t;
        libc::close(exec_pipe[1]);

        let mut failure = [0u8; 8];
        let n = loop {
            let n = libc::read(exec_pipe[0], failure.as_mut_ptr().cast(), failure.len());
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            break n;
        };
        libc::close(exec_pipe[0]);
        if n == 8 {
            let stage = u32::from_le_bytes([failure[0], failure[1], failure[2], failure[3]]);
            let err = i32::from_le_bytes([failure[4], failure[5], failure[6], failure[7]]);
            let mut status = 0;
            libc::waitpid(command, &mut status, 0);
            report(REPORT_FAILED, stage, err);
            libc::_exit(127);
        }
        report(REPORT_EXEC_OK, 0, 0);

        supervise(command)
    }
}

/// Moves the job's fds to 0..=4 and closes everything else the server had.
unsafe fn setup_fds(ctx: &InitContext) {
    // SAFETY: fcntl/dup2/close on fds; no memory is touched.
    unsafe {
        // First dup every source above the target range, so that moving one
        // into place can never clobber another still to be moved.
        let sources = [ctx.stdin, ctx.stdout, ctx.stderr, ctx.report, ctx.go];
        let mut high = [-1 as c_int; 5];
        for (i, &fd) in sources.iter().enumerate() {
            if fd >= 0 {
                high[i] = libc::fcntl(fd, libc::F_DUPFD, 10);
                if high[i] < 0 {
                    libc::_exit(EXIT_FDS);
                }
            }
        }
        for (target, &fd) in high.iter().enumerate() {
            if fd >= 0 && libc::dup2(fd, target as c_int) < 0 {
                libc::_exit(EXIT_FDS);
            }
        }
        let first_closed = if ctx.go >= 0 { 5 } else { 4 };
        if libc::syscall(
            libc::SYS_close_range,
            first_closed as libc::c_uint,
            libc::c_uint::MAX,
            0,
        ) < 0
        {
            // Kernels before 5.9: close one by one up to the fd limit.
            let mut lim: libc::rlimit = std::mem::zeroed();
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            let max = lim.rlim_cur.min(1 << 20) as c_int;
            for fd in first_closed..max {
                libc::close(fd);
            }
        }
        // The pipes to the server stay with the init, not the command.
        libc::fcntl(REPORT_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        if ctx.go >= 0 {
            libc::fcntl(GO_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// `ip link set lo up`, with one ioctl: a new network namespace starts with
/// `lo` down.
unsafe fn loopback_up() {
    // SAFETY: ifreq is a plain C struct; zeroed is a valid value; the name
    // fits in IFNAMSIZ with its NUL.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            fail(Stage::Loopback);
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as c_char;
        req.ifr_name[1] = b'o' as c_char;
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
            fail(Stage::Loopback);
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) < 0 {
            fail(Stage::Loopback);
        }
        libc::close(sock);
    }
}

/// The command's side of the fork: drop privileges and exec. Never returns.
unsafe fn exec_command(ctx: &InitContext, exec_pipe: c_int) -> ! {
    fn fail_exec(exec_pipe: c_int, stage: Stage, err: i32) -> ! {
        let mut rec = [0u8; 8];
        rec[0..4].copy_from_slice(&(stage as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&err.to_le_bytes());
        // SAFETY: rec is a live stack buffer; _exit ends the process.
        unsafe {
            libc::write(exec_pipe, rec.as_ptr().cast(), rec.len());
            libc::_exit(127)
        }
    }
    // SAFETY: raw syscalls on ctx-owned memory, in a single-threaded child.
    unsafe {
        // Default dispositions and an empty mask: the server ignores SIGPIPE
        // (Rust does) and the init blocked everything; neither is the job's.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());

        if libc::setsid() < 0 {
            fail_exec(exec_pipe, Stage::Session, errno());
        }
        // The server raised its own fd limit for many connections; a job
        // starts with the conventional soft limit.
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur > 1024 {
            lim.rlim_cur = 1024;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        libc::umask(0o022);

        // Raw syscalls: glibc's wrappers would try to change the credentials
        // of threads that exist only in the server.
        if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) < 0 {
            fail_exec(exec_pipe, Stage::Groups, errno());
        }
        if libc::syscall(libc::SYS_setresgid, ctx.gid, ctx.gid, ctx.gid) < 0 {
            fail_exec(exec_pipe, Stage::Gid, errno());
        }
        if libc::syscall(libc::SYS_setresuid, ctx.uid, ctx.uid, ctx.uid) < 0 {
            fail_exec(exec_pipe, Stage::Uid, errno());
        }
        // chdir as the job user, so directory permissions apply to it.
        if libc::chdir(ctx.workdir.as_ptr()) < 0 {
            fail_exec(exec_pipe, Stage::Chdir, errno());
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
            fail_exec(exec_pipe, Stage::NoNewPrivs, errno());
        }
        // execvp's rules: try each candidate; remember EACCES; stop at an
        // error other than "not there".
        let mut err = libc::ENOENT;
        for path in &ctx.candidates {
            libc::execve(
                path.as_ptr(),
                ctx.argv_ptrs.as_ptr(),
                ctx.envp_ptrs.as_ptr(),
            );
            match errno() {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => err = libc::EACCES,
                other => {
                    err = other;
                    break;
                }
            }
        }
        fail_exec(exec_pipe, Stage::Exec, err)
    }
}

/// The init's life after a successful exec: forward signals, reap orphans,
/// exit with the command's status.
unsafe fn supervise(command: libc::pid_t) -> ! {
    // SAFETY: signal set manipulation and wait/kill syscalls on stack data.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        for sig in FORWARDED {
            libc::sigaddset(&mut set, sig);
        }
        loop {
            let sig = libc::sigwaitinfo(&set, std::ptr::null_mut());
            if sig < 0 {
                continue; // EINTR
            }
            if sig != libc::SIGCHLD {
                libc::kill(command, sig);
                continue;
            }
            loop {
                let mut status = 0;
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid <= 0 {
                    break;
                }
                if pid == command {
                    report(REPORT_EXITED, 0, status);
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                    libc::_exit(code);
                }
            }
        }
    }
}
