//! The job's PID 1: the `jw-init` program, which jwd executes as the first
//! process of every job's new PID namespace.
//!
//! jwd clones it with CLONE_VM | CLONE_VFORK (see `spawn.rs`): the child
//! borrows jwd's memory only long enough to put its fds in place and
//! execute this program, so jwd never copies its page tables and never
//! takes copy-on-write faults afterwards, and everything the job's set-up
//! costs (the namespaces, the mounts, the cgroup moves) is done and paid
//! for by the job's own process, inside the job's cgroup.
//!
//! What it does, in order (like runc init and tini, in one small program):
//! 1. find /dev/null on fds 0, 1, 2 and its channel to jwd on 3, and read
//!    the job's [`Setup`] from the channel (the command, its environment and
//!    everything else a user chose travel as data, never through the
//!    init's own environment: it runs as root with a fixed one);
//! 2. join the job's cgroups that CLONE_INTO_CGROUP could not put it in
//!    (the v1 controllers of the hybrid layout), reset its OOM score;
//! 3. create its mount, UTS, IPC and (unless host networking) network
//!    namespaces, make every mount private, build the job's filesystem view
//!    (`sandbox.rs`: read-only host, private /tmp, /var/tmp and /dev/shm,
//!    the work directory at /home/job, jwd's files hidden), mount a fresh
//!    /proc, set the hostname, bring `lo` up;
//! 4. fork the command, which empties its capability bounding and ambient
//!    sets, drops to the job's uid and gid, clears every other capability
//!    set, sets no_new_privs, installs the seccomp filter and execs with the
//!    user's environment; an exec failure comes back over a close-on-exec
//!    pipe;
//! 5. report "exec ok" or the exact error to jwd, then relay the command's
//!    stdout and stderr (two pipes that end here) to jwd as messages on the
//!    channel, forward SIGTERM/SIGINT/... to the command, reap every orphan,
//!    and once the command has ended, relay what is left in the pipes,
//!    report its status and exit (the kernel then kills whatever is left in
//!    the PID namespace). If jwd goes away, the job ends with it.
//!
//! Relaying through the init, rather than handing jwd the pipes, keeps jwd
//! at one descriptor per running job (the channel), which is what lets one
//! jwd run 12,000 jobs under a 20,000 descriptor limit; the copy is paid
//! by the job's own init, in the job's cgroup.
//!
//! It is a fresh single-threaded process: ordinary code is safe here,
//! unlike in the child of the clone before the exec.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::Path;

use super::sandbox;

/// The channel to jwd, in the init: one end of a SOCK_SEQPACKET socket
/// pair, so every message arrives whole and alone. It is the only
/// descriptor jwd holds for a running job.
pub const CHANNEL_FD: c_int = 3;

/// Messages from the init to jwd start with a little-endian u32 kind.
/// Reports are 12 bytes: kind, stage (u32), value (i32).
pub const REPORT_LEN: usize = 12;
pub const REPORT_EXEC_OK: u32 = 1;
pub const REPORT_FAILED: u32 = 2;
pub const REPORT_EXITED: u32 = 3;
/// Output: the kind, then 1..=OUTPUT_CHUNK bytes the command wrote.
pub const MSG_STDOUT: u32 = 4;
pub const MSG_STDERR: u32 = 5;
pub const OUTPUT_CHUNK: usize = 64 * 1024;
/// The largest message jwd has to receive.
pub const MAX_MESSAGE: usize = 4 + OUTPUT_CHUNK;
/// From jwd to the init: kind, then the signal (i32) to forward to the
/// command.
pub const CONTROL_SIGNAL: u32 = 1;
pub const CONTROL_LEN: usize = 8;
/// The exit code of the clone's child when it cannot set up its fds (and
/// so cannot report).
pub const EXIT_FDS: i32 = 125;
/// The first argument: the argument format, so a jwd and a jw-init from
/// different builds fail loudly instead of misreading each other.
const ARGS_VERSION: &CStr = c"jw-init/2";

/// Where set-up failed, for the message the user sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    Fds = 1,
    Init = 2,
    Args = 3,
    Join = 4,
    Unshare = 5,
    MountPrivate = 6,
    MountProc = 7,
    Hostname = 8,
    Loopback = 9,
    Signals = 10,
    Fork = 11,
    Session = 12,
    Chdir = 13,
    Groups = 14,
    Gid = 15,
    Uid = 16,
    NoNewPrivs = 17,
    Exec = 18,
    Pipes = 19,
    Setup = 20,
    OomScore = 21,
    Hide = 22,
    ReadOnly = 23,
    PrivateTmp = 24,
    Home = 25,
    Capabilities = 26,
    Seccomp = 27,
    Dev = 28,
}

impl Stage {
    const ALL: [Stage; 28] = [
        Stage::Fds,
        Stage::Init,
        Stage::Args,
        Stage::Join,
        Stage::Unshare,
        Stage::MountPrivate,
        Stage::MountProc,
        Stage::Hostname,
        Stage::Loopback,
        Stage::Signals,
        Stage::Fork,
        Stage::Session,
        Stage::Chdir,
        Stage::Groups,
        Stage::Gid,
        Stage::Uid,
        Stage::NoNewPrivs,
        Stage::Exec,
        Stage::Pipes,
        Stage::Setup,
        Stage::OomScore,
        Stage::Hide,
        Stage::ReadOnly,
        Stage::PrivateTmp,
        Stage::Home,
        Stage::Capabilities,
        Stage::Seccomp,
        Stage::Dev,
    ];

    pub fn from_u32(n: u32) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| *s as u32 == n)
    }

    /// What the init was doing, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Fds => "set up the job's file descriptors",
            Stage::Init => "execute the job init program jw-init (jwd --init)",
            Stage::Args => {
                "read the job init's arguments (are jwd and jw-init from the same build?)"
            }
            Stage::Join => "join the job's cgroups",
            Stage::Unshare => "create the job's namespaces",
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
            Stage::Pipes => "create the job's output pipes",
            Stage::Setup => "receive the job's set-up from jwd",
            Stage::OomScore => "reset the job's OOM score",
            Stage::Hide => "hide jwd's files from the job",
            Stage::ReadOnly => "make the host's filesystem read-only for the job",
            Stage::PrivateTmp => "mount the job's private /tmp and /var/tmp",
            Stage::Dev => "make the job's /dev",
            Stage::Home => {
                "mount the job's work directory at /home/job (does the host have /home?)"
            }
            Stage::Capabilities => "drop the job's capabilities",
            Stage::Seccomp => "install the job's system call filter",
        }
    }
}

/// Everything jwd tells the init about the job, sent as the first message
/// on the channel (postcard), never through the command line or the
/// environment: the init runs as root before it drops privileges, and
/// nothing a user chose may reach the dynamic loader or the init's own
/// arguments. The init is executed with [`INIT_ENV`] and `jw-init
/// jw-init/2` as its whole command line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Setup {
    pub uid: u32,
    pub gid: u32,
    /// A new network namespace with only `lo` (false: the host's network).
    pub new_net: bool,
    pub hostname: String,
    /// The job's work directory on the host, bound at `sandbox::JOB_HOME`.
    pub home: String,
    /// The working directory inside the job.
    pub workdir: String,
    /// Host paths the job may not see (jwd's data directory, key, ...).
    pub hide: Vec<String>,
    /// Cgroup directories the init moves itself into before anything else.
    pub join: Vec<String>,
    /// The seccomp filter to install (BPF, `sandbox::default_filter`);
    /// empty: none (`jwd --no-seccomp`).
    #[serde(with = "serde_bytes")]
    pub seccomp: Vec<u8>,
    /// Paths to try for the command, in order (execvp's search).
    pub candidates: Vec<String>,
    /// The command's argv, argv[0] first.
    pub argv: Vec<String>,
    /// The command's environment, `NAME=value` each, applied only at its
    /// execve.
    pub env: Vec<String>,
}

/// The largest setup message (the protocol's argv and environment limit,
/// plus the strings jwd adds).
pub const MAX_SETUP: usize = crate::protocol::MAX_ARGV_ENV_BYTES + 64 * 1024 + 16 * 4096;

/// The init's whole environment: fixed, chosen by no user.
pub const INIT_ENV: [&CStr; 1] = [c"PATH=/usr/sbin:/usr/bin:/sbin:/bin"];

impl Setup {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a Setup always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Option<Setup> {
        let setup: Setup = postcard::from_bytes(bytes).ok()?;
        let has_nul = std::iter::once(&setup.hostname)
            .chain([&setup.home, &setup.workdir])
            .chain(&setup.hide)
            .chain(&setup.join)
            .chain(&setup.candidates)
            .chain(&setup.argv)
            .chain(&setup.env)
            .any(|s| s.contains('\0'));
        if has_nul || setup.argv.is_empty() || setup.candidates.is_empty() {
            return None;
        }
        Some(setup)
    }

    /// The init's command line.
    pub fn argv() -> [&'static CStr; 2] {
        [c"jw-init", ARGS_VERSION]
    }
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
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Writes one report record to `fd`; errors are ignored (jwd sees EOF).
/// Async-signal-safe: the child of the clone calls it too.
pub fn report_to(fd: c_int, kind: u32, stage: u32, value: i32) {
    let mut rec = [0u8; REPORT_LEN];
    rec[0..4].copy_from_slice(&kind.to_le_bytes());
    rec[4..8].copy_from_slice(&stage.to_le_bytes());
    rec[8..12].copy_from_slice(&value.to_le_bytes());
    // SAFETY: rec is a live stack buffer of REPORT_LEN bytes.
    unsafe { libc::write(fd, rec.as_ptr().cast(), REPORT_LEN) };
}

fn report(kind: u32, stage: u32, value: i32) {
    report_to(CHANNEL_FD, kind, stage, value);
}

/// Reports a set-up failure with `err` and exits.
fn fail_with(stage: Stage, err: i32) -> ! {
    report(REPORT_FAILED, stage as u32, err);
    // SAFETY: _exit ends the process at once.
    unsafe { libc::_exit(127) }
}

/// Reports a set-up failure with the current errno and exits.
fn fail(stage: Stage) -> ! {
    fail_with(stage, errno())
}

fn check(rc: c_int, stage: Stage) {
    if rc < 0 {
        fail(stage);
    }
}

fn step(result: sandbox::Step, stage: Stage) {
    if let Err(err) = result {
        fail_with(stage, err);
    }
}

/// Reads the setup message jwd queued on the channel before the clone.
fn receive_setup() -> Setup {
    // The message's size first (MSG_PEEK | MSG_TRUNC returns a datagram's
    // real length), so a small set-up needs no large buffer.
    let recv = |buf: &mut [u8], flags: c_int| loop {
        // SAFETY: receives into a live buffer of buf.len() bytes.
        let n = unsafe { libc::recv(CHANNEL_FD, buf.as_mut_ptr().cast(), buf.len(), flags) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        break n;
    };
    let size = recv(&mut [], libc::MSG_PEEK | libc::MSG_TRUNC);
    if size <= 0 {
        fail(Stage::Setup);
    }
    if size as usize > MAX_SETUP {
        fail_with(Stage::Setup, libc::EMSGSIZE);
    }
    let mut buf = vec![0u8; size as usize];
    let n = recv(&mut buf, 0);
    if n != size {
        fail(Stage::Setup);
    }
    match Setup::decode(&buf[..n as usize]) {
        Some(setup) => setup,
        None => fail_with(Stage::Setup, libc::EINVAL),
    }
}

/// The job's filesystem view (see `sandbox`): its work directory taken
/// before anything covers it, jwd's files hidden, the host read-only, then
/// the job's own writable mounts.
fn build_view(setup: &Setup) {
    let home = match sandbox::clone_tree(Path::new(&setup.home)) {
        Ok(tree) => tree,
        Err(err) => fail_with(Stage::Home, err),
    };
    for path in setup
        .hide
        .iter()
        .map(String::as_str)
        .chain(sandbox::ALWAYS_HIDDEN)
    {
        step(sandbox::hide(Path::new(path)), Stage::Hide);
    }
    step(sandbox::read_only_root(), Stage::ReadOnly);
    // What the init creates below gets exactly the modes it asks for.
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(0) };
    for dir in sandbox::PRIVATE_TMP {
        step(sandbox::private_tmp(dir), Stage::PrivateTmp);
    }
    step(sandbox::private_dev(), Stage::Dev);
    step(sandbox::attach_home(&home), Stage::Home);
}

/// `jw-init`'s main.
pub fn main() -> ! {
    // SAFETY: getpid and fcntl(F_GETFD) only read process state.
    let started_by_jwd =
        unsafe { libc::getpid() == 1 && libc::fcntl(CHANNEL_FD, libc::F_GETFD) >= 0 };
    if !started_by_jwd {
        eprintln!("jw-init: jwd starts this program as the first process of each job; it is not meant to be run by hand");
        std::process::exit(2);
    }
    // The channel stays with the init, not the command.
    // SAFETY: fcntl on an fd this process owns.
    unsafe { libc::fcntl(CHANNEL_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    let version_ok = std::env::args_os()
        .nth(1)
        .is_some_and(|v| v.as_encoded_bytes() == ARGS_VERSION.to_bytes());
    if !version_ok {
        fail_with(Stage::Args, libc::EINVAL)
    }
    let setup = receive_setup();
    for dir in &setup.join {
        // "0" is "the writing process" in both cgroup versions.
        if let Err(e) = std::fs::write(Path::new(dir).join("cgroup.procs"), "0") {
            fail_with(Stage::Join, e.raw_os_error().unwrap_or(libc::EIO));
        }
    }
    step(sandbox::reset_oom_score(), Stage::OomScore);
    let command = Command::prepare(&setup);
    let mut namespaces = libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if setup.new_net {
        namespaces |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare takes flags only.
    check(unsafe { libc::unshare(namespaces) }, Stage::Unshare);
    step(sandbox::make_mounts_private(), Stage::MountPrivate);
    build_view(&setup);
    step(sandbox::mount_proc(), Stage::MountProc);
    // SAFETY: the pointer and length describe the hostname's bytes.
    check(
        unsafe { libc::sethostname(setup.hostname.as_ptr().cast(), setup.hostname.len()) },
        Stage::Hostname,
    );
    // SAFETY: a single-threaded process; everything below is system calls
    // on memory this function owns.
    unsafe {
        if setup.new_net {
            loopback_up();
        }

        // Block everything and read SIGCHLD and the forwarded signals from a
        // signalfd. The forwarded ones also get a no-op handler: the kernel
        // drops signals with a default disposition that are sent to a PID
        // namespace's init, should one ever be unblocked.
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        check(
            libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut()),
            Stage::Signals,
        );
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_signal as *const () as usize;
        libc::sigfillset(&mut action.sa_mask);
        for sig in FORWARDED {
            check(
                libc::sigaction(sig, &action, std::ptr::null_mut()),
                Stage::Signals,
            );
        }
        // SIGCHLD must not be SIG_IGN, or children would be reaped unseen.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        check(
            libc::sigaction(libc::SIGCHLD, &dfl, std::ptr::null_mut()),
            Stage::Signals,
        );
        let mut watched: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut watched);
        libc::sigaddset(&mut watched, libc::SIGCHLD);
        for sig in FORWARDED {
            libc::sigaddset(&mut watched, sig);
        }
        let signals = libc::signalfd(-1, &watched, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        check(signals, Stage::Signals);

        // The command's stdout and stderr; the read ends stay here.
        let mut pipes = [[0 as c_int; 2]; 2];
        for pipe in &mut pipes {
            check(
                libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC),
                Stage::Pipes,
            );
        }

        // A close-on-exec pipe: EOF means the command's execve succeeded.
        let mut exec_pipe = [0 as c_int; 2];
        check(
            libc::pipe2(exec_pipe.as_mut_ptr(), libc::O_CLOEXEC),
            Stage::Fork,
        );
        let pid = libc::fork();
        if pid < 0 {
            fail(Stage::Fork);
        }
        if pid == 0 {
            libc::close(exec_pipe[0]);
            command.exec(exec_pipe[1], pipes[0][1], pipes[1][1]);
        }
        libc::close(exec_pipe[1]);
        for pipe in &pipes {
            libc::close(pipe[1]);
            libc::fcntl(pipe[0], libc::F_SETFL, libc::O_NONBLOCK);
        }

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
            libc::waitpid(pid, &mut status, 0);
            report(REPORT_FAILED, stage, err);
            libc::_exit(127);
        }
        report(REPORT_EXEC_OK, 0, 0);
        relay(pid, signals, [pipes[0][0], pipes[1][0]])
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

/// The command, with every string prepared before the fork.
struct Command {
    uid: u32,
    gid: u32,
    workdir: CString,
    candidates: Vec<CString>,
    argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    env: Vec<CString>,
    env_ptrs: Vec<*const c_char>,
    /// The seccomp filter to install (BPF); empty: none.
    filter: Vec<u8>,
}

fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

impl Command {
    fn prepare(setup: &Setup) -> Command {
        // Setup::decode refused strings with NUL bytes.
        let c = |s: &String| CString::new(s.as_str()).expect("no NUL: checked by Setup::decode");
        let argv: Vec<CString> = setup.argv.iter().map(c).collect();
        let env: Vec<CString> = setup.env.iter().map(c).collect();
        Command {
            uid: setup.uid,
            gid: setup.gid,
            workdir: c(&setup.workdir),
            candidates: setup.candidates.iter().map(c).collect(),
            argv_ptrs: null_terminated(&argv),
            argv,
            env_ptrs: null_terminated(&env),
            env,
            filter: setup.seccomp.clone(),
        }
    }

    /// The command's side of the fork: drop privileges and exec. Never
    /// returns; a failure goes to `exec_pipe` as (stage, errno).
    unsafe fn exec(&self, exec_pipe: c_int, stdout: c_int, stderr: c_int) -> ! {
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
        debug_assert_eq!(self.argv.len() + 1, self.argv_ptrs.len());
        debug_assert_eq!(self.env.len() + 1, self.env_ptrs.len());
        // SAFETY: system calls on memory `self` owns, in the forked child.
        unsafe {
            // The output pipes become fds 1 and 2 (dup2 clears close-on-exec;
            // both are above 3, so neither can be clobbered by the other).
            if libc::dup2(stdout, 1) < 0 || libc::dup2(stderr, 2) < 0 {
                fail_exec(exec_pipe, Stage::Pipes, errno());
            }
            // Default dispositions and an empty mask: jwd ignores SIGPIPE
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
            // jwd raised its own fd limit for many connections; a job starts
            // with the conventional soft limit.
            let mut lim: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur > 1024 {
                lim.rlim_cur = 1024;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            libc::umask(0o022);

            // The bounding and ambient sets go while the init's
            // CAP_SETPCAP is still there; the uid change then clears the
            // rest, and capset makes sure of it (a job user of root keeps
            // uid 0, but not one capability).
            if let Err(err) = sandbox::drop_bounding_and_ambient() {
                fail_exec(exec_pipe, Stage::Capabilities, err);
            }
            if libc::setgroups(0, std::ptr::null()) < 0 {
                fail_exec(exec_pipe, Stage::Groups, errno());
            }
            if libc::setresgid(self.gid, self.gid, self.gid) < 0 {
                fail_exec(exec_pipe, Stage::Gid, errno());
            }
            if libc::setresuid(self.uid, self.uid, self.uid) < 0 {
                fail_exec(exec_pipe, Stage::Uid, errno());
            }
            if let Err(err) = sandbox::clear_capabilities() {
                fail_exec(exec_pipe, Stage::Capabilities, err);
            }
            // chdir as the job user, so directory permissions apply to it.
            if libc::chdir(self.workdir.as_ptr()) < 0 {
                fail_exec(exec_pipe, Stage::Chdir, errno());
            }
            if let Err(err) = sandbox::no_new_privs() {
                fail_exec(exec_pipe, Stage::NoNewPrivs, err);
            }
            if !self.filter.is_empty() {
                if let Err(err) = sandbox::install_filter(&self.filter) {
                    fail_exec(exec_pipe, Stage::Seccomp, err);
                }
            }
            // execvp's rules: try each candidate; remember EACCES; stop at
            // an error other than "not there".
            let mut err = libc::ENOENT;
            for path in &self.candidates {
                libc::execve(
                    path.as_ptr(),
                    self.argv_ptrs.as_ptr(),
                    self.env_ptrs.as_ptr(),
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
}

/// Sends one message on the channel; if jwd has gone away, the job ends
/// with it (jwd marks it lost when it restarts).
fn send(message: &[u8]) {
    loop {
        // SAFETY: message is a live buffer; MSG_NOSIGNAL turns a closed
        // channel into EPIPE instead of SIGPIPE.
        let n = unsafe {
            libc::send(
                CHANNEL_FD,
                message.as_ptr().cast(),
                message.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return;
        }
        if errno() != libc::EINTR {
            // SAFETY: ends the process; the kernel kills the namespace.
            unsafe { libc::_exit(137) }
        }
    }
}

/// Relays up to `reads` chunks of what is in one output pipe now (one
/// per wake-up keeps the other pipe and the signals served; a pipe holds
/// at most 1 MiB, 16 chunks, when the command has ended). Returns false at
/// EOF.
fn relay_pipe(fd: c_int, kind: u32, buf: &mut [u8], reads: usize) -> bool {
    let mut left = reads;
    loop {
        if left == 0 {
            return true;
        }
        left -= 1;
        // SAFETY: reads into the buffer past its 4-byte header.
        let n = unsafe { libc::read(fd, buf[4..].as_mut_ptr().cast(), buf.len() - 4) };
        if n > 0 {
            buf[..4].copy_from_slice(&kind.to_le_bytes());
            send(&buf[..4 + n as usize]);
            continue;
        }
        if n == 0 {
            return false;
        }
        return match errno() {
            libc::EINTR => {
                left += 1;
                continue;
            }
            libc::EAGAIN => true,
            _ => false,
        };
    }
}

/// The init's life after a successful exec: relay output, forward
/// signals, reap orphans, exit with the command's status.
unsafe fn relay(command: libc::pid_t, signals: c_int, mut pipes: [c_int; 2]) -> ! {
    const KINDS: [u32; 2] = [MSG_STDOUT, MSG_STDERR];
    let mut buf = vec![0u8; MAX_MESSAGE];
    // SAFETY: poll, read, waitpid and kill on this process's own fds,
    // children and stack data.
    unsafe {
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: signals,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: pipes[0],
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: pipes[1],
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: CHANNEL_FD,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            if libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) < 0 {
                continue; // EINTR
            }
            for i in 0..2 {
                if fds[i + 1].revents != 0 && !relay_pipe(pipes[i], KINDS[i], &mut buf, 1) {
                    libc::close(pipes[i]);
                    pipes[i] = -1; // poll skips negative fds
                }
            }
            if fds[3].revents != 0 {
                let mut control = [0u8; CONTROL_LEN];
                let n = libc::recv(
                    CHANNEL_FD,
                    control.as_mut_ptr().cast(),
                    CONTROL_LEN,
                    libc::MSG_DONTWAIT,
                );
                if n == 0 || (n < 0 && errno() != libc::EAGAIN && errno() != libc::EINTR) {
                    // jwd is gone: nobody will read the output or the end.
                    libc::_exit(137);
                }
                if n == CONTROL_LEN as isize
                    && u32::from_le_bytes([control[0], control[1], control[2], control[3]])
                        == CONTROL_SIGNAL
                {
                    let sig = i32::from_le_bytes([control[4], control[5], control[6], control[7]]);
                    libc::kill(command, sig);
                }
            }
            if fds[0].revents == 0 {
                continue;
            }
            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            let mut ended = None;
            while libc::read(signals, (&raw mut info).cast(), size) == size as isize {
                if info.ssi_signo != libc::SIGCHLD as u32 {
                    libc::kill(command, info.ssi_signo as c_int);
                    continue;
                }
                loop {
                    let mut status = 0;
                    let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                    if pid <= 0 {
                        break;
                    }
                    if pid == command {
                        ended = Some(status);
                    }
                }
            }
            if let Some(status) = ended {
                // What the command wrote before it ended is in the pipes
                // now; a daemon it left may hold them open, so read what is
                // there rather than wait for EOF.
                for i in 0..2 {
                    if pipes[i] >= 0 {
                        relay_pipe(pipes[i], KINDS[i], &mut buf, 16);
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Setup {
        Setup {
            uid: 600_123,
            gid: 600_123,
            new_net: true,
            hostname: "jw-0123abcd".into(),
            home: "/var/lib/jw/work/0123".into(),
            workdir: "/home/job".into(),
            hide: vec!["/var/lib/jw".into(), "/etc/jw/server.key".into()],
            seccomp: vec![1, 2, 3, 4, 5, 6, 7, 8],
            join: vec![
                "/sys/fs/cgroup/memory/x/1".into(),
                "/sys/fs/cgroup/pids/x/1".into(),
            ],
            candidates: vec!["/usr/bin/sh".into(), "/bin/sh".into()],
            argv: vec!["sh".into(), "-c".into(), "".into(), "--".into(), "3".into()],
            env: vec!["LD_PRELOAD=/tmp/x.so".into(), "A=".into()],
        }
    }

    #[test]
    fn setup_round_trips() {
        let setup = sample();
        assert_eq!(Setup::decode(&setup.encode()), Some(setup));
    }

    #[test]
    fn setup_rejects_what_jwd_never_sends() {
        let good = sample().encode();
        // Every truncation.
        for len in 0..good.len() {
            assert_eq!(Setup::decode(&good[..len]), None, "len {len}");
        }
        let mut no_argv = sample();
        no_argv.argv.clear();
        assert_eq!(Setup::decode(&no_argv.encode()), None);
        let mut nul = sample();
        nul.env.push("A=\0".into());
        assert_eq!(Setup::decode(&nul.encode()), None);
    }

    #[test]
    fn the_largest_request_fits_one_setup_message() {
        let mut big = sample();
        // The protocol's limits: MAX_ARGS arguments and MAX_ENV variables,
        // MAX_ARGV_ENV_BYTES together; the base environment on top.
        use crate::protocol::{MAX_ARGS, MAX_ARGV_ENV_BYTES, MAX_ENV};
        let half = MAX_ARGV_ENV_BYTES / 2;
        big.argv = vec!["a".repeat(half / MAX_ARGS); MAX_ARGS];
        big.env = vec!["E=".to_string() + &"b".repeat(half / MAX_ENV); MAX_ENV + 4];
        big.candidates = vec!["/usr/local/sbin/".to_string() + &"c".repeat(4096); 6];
        assert!(big.encode().len() <= MAX_SETUP, "{}", big.encode().len());
    }

    #[test]
    fn every_stage_has_a_number_and_words() {
        for stage in Stage::ALL {
            assert_eq!(Stage::from_u32(stage as u32), Some(stage));
            assert!(!stage.describe().is_empty());
        }
        assert_eq!(Stage::from_u32(0), None);
    }
}
