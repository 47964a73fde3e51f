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
//!    init's own environment: it runs as root with a fixed one; every
//!    message on the channel is defined in `channel.rs`);
//! 2. join the job's cgroups that CLONE_INTO_CGROUP could not put it in
//!    (the v1 controllers of the hybrid layout), reset its OOM score;
//! 3. create its mount, UTS, IPC and (unless host networking) network
//!    namespaces, make every mount private, build the job's filesystem view
//!    (`sandbox.rs`: read-only host, private /tmp, /var/tmp and /dev/shm,
//!    the work directory at /home/job, jwd's files hidden), mount a fresh
//!    /proc, set the hostname, bring `lo` up;
//! 4. make the command's stdio (`stdio.rs`: output pipes; a pipe or a
//!    pseudo-terminal of the job's own devpts for its input, if asked);
//!    fork the command, which empties its capability bounding and ambient
//!    sets, drops to the job's uid and gid, clears every other capability
//!    set, sets no_new_privs, installs the seccomp filter and execs with the
//!    user's environment; an exec failure comes back over a close-on-exec
//!    pipe;
//! 5. hand jwd a copy of the job's input (its write end), report "exec
//!    ok" or the exact error to jwd, then keep the job
//!    (`keeper.rs`): write the command's stdout and stderr (two pipes that
//!    end here) into the job's files itself, through the job directory jwd
//!    handed over at fd 5, and tell jwd the written lengths; forward
//!    SIGTERM/SIGINT/... to the command; reap every orphan; take a
//!    restarted jwd's connection on the listening socket at fd 4; and once
//!    the command has ended, keep what is left in the pipes, write the exit
//!    record, report the status and exit (the kernel then kills whatever is
//!    left in the PID namespace). If jwd goes away, the job goes on.
//!
//! The keeper is what lets a job outlive jwd (a crash, a restart, an
//! upgrade), as containerd's shim and conmon do for containers; it is
//! also the job's PID 1, so it costs no process of its own. jwd holds one
//! descriptor per running job (the channel), and the copy of the output
//! is paid by the job's own init, in the job's cgroup.
//!
//! It is a fresh single-threaded process: ordinary code is safe here,
//! unlike in the child of the clone before the exec.
//!
//! Each step is a small safe function in its own file (`endpoint`: the
//! channel; `namespaces`, `mounts`, `uts`, `loopback`: the job's view;
//! `signals`; `exec` and `privileges`: the command's side of the fork;
//! `keeper`: the rest of the init's life), called in order by [`main`].
//! `unsafe` is left only where no wrapper exists (fork, execve with
//! prepared pointers, _exit, adopting fd 3 and reading its flags,
//! sigaction, the loopback ioctls and their zeroed `ifreq`; in
//! `sandbox.rs` the seccomp and new-mount-API system calls), one operation
//! a block.

mod endpoint;
mod exec;
mod keeper;
mod loopback;
mod mounts;
mod namespaces;
mod privileges;
mod signals;
mod stdio;
mod uts;

use std::convert::Infallible;

use super::channel::{Report, Stage, ARGS_VERSION, DIR_FD};
use super::output::Store;
use endpoint::Endpoint;

/// Where set-up failed and with which errno: reported to jwd as
/// [`Report::Failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failure {
    stage: Stage,
    errno: i32,
}

/// An error's errno, whichever library reported it.
trait Errno {
    fn errno(&self) -> i32;
}

impl Errno for i32 {
    fn errno(&self) -> i32 {
        *self
    }
}

impl Errno for std::io::Error {
    fn errno(&self) -> i32 {
        self.raw_os_error().unwrap_or(libc::EIO)
    }
}

impl Errno for rustix::io::Errno {
    fn errno(&self) -> i32 {
        self.raw_os_error()
    }
}

impl Errno for nix::errno::Errno {
    fn errno(&self) -> i32 {
        *self as i32
    }
}

/// Names the stage of a step's error.
trait At<T> {
    fn at(self, stage: Stage) -> Result<T, Failure>;
}

impl<T, E: Errno> At<T> for Result<T, E> {
    fn at(self, stage: Stage) -> Result<T, Failure> {
        self.map_err(|e| Failure {
            stage,
            errno: e.errno(),
        })
    }
}

/// Ends the process at once: no destructors, no atexit handlers, no
/// buffered output (the forked command's side must not run the init's).
fn exit(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// `jw-init`'s main.
pub fn main() -> ! {
    let Some(mut channel) = Endpoint::adopt() else {
        eprintln!("jw-init: jwd starts this program as the first process of each job; it is not meant to be run by hand");
        std::process::exit(2);
    };
    let Err(failure) = run(&mut channel);
    channel.report(Report::Failed {
        stage: failure.stage,
        errno: failure.errno,
    });
    exit(127)
}

/// The steps, in order; returns only if one failed.
fn run(channel: &mut Endpoint) -> Result<Infallible, Failure> {
    let version_ok = std::env::args_os()
        .nth(1)
        .is_some_and(|v| v.as_encoded_bytes() == ARGS_VERSION.to_bytes());
    if !version_ok {
        return Err(Failure {
            stage: Stage::Args,
            errno: libc::EINVAL,
        });
    }
    let dir = endpoint::adopt_fd(DIR_FD).ok_or(Failure {
        stage: Stage::Setup,
        errno: libc::EBADF,
    })?;
    let setup = channel.receive_setup()?;
    // Which process keeps the job, recorded before anything of it runs: a
    // jwd that dies from here on finds it when it restarts. Without it the
    // job still runs, but could not be adopted.
    let ids = super::uids::JobIds {
        uid: setup.uid,
        gid: setup.gid,
        pooled: setup.pooled,
    };
    if let Ok(record) = super::keeper::KeeperRecord::of_this_process(ids, setup.output_cap) {
        let _ = record.write_at(std::os::fd::AsFd::as_fd(&dir));
    }
    namespaces::join_cgroups(&setup.join)?;
    let keeper_cgroup = namespaces::open_keeper_cgroup(&setup.keeper_cgroup);
    super::sandbox::reset_oom_score().at(Stage::OomScore)?;
    let command = exec::Command::prepare(&setup);
    namespaces::unshare(setup.new_net)?;
    mounts::make_private()?;
    mounts::build_view(&setup)?;
    mounts::mount_proc()?;
    uts::set_hostname(&setup.hostname)?;
    if setup.new_net {
        loopback::up()?;
    }
    let signals = signals::Signals::take_over()?;
    let (input, stdio, readers) = stdio::open(&setup.stdin, setup.uid, setup.gid)?;
    let pid = exec::start(&command, stdio)?;
    // jwd has the job's input before it answers the start (a client may
    // attach at once), and waits for this report: first.
    channel.send_input(&input);
    channel.report(Report::ExecOk);
    // The command runs in the job's cgroups; the output the keeper writes
    // from now on is charged to jw's subtree (where it can be apart).
    namespaces::move_keeper(keeper_cgroup);
    let store = Store::new(dir, setup.output_cap, setup.granted);
    // What only the set-up needed (the command line, the environment, the
    // filter) goes before the keeper settles in for the job's life.
    drop(command);
    drop(setup);
    release_free_memory();
    keeper::run(channel, pid, &signals, (readers, input), store)
}

/// Returns the heap pages set-up freed to the kernel: a keeper lives as
/// long as its job, and thousands of them run at once.
fn release_free_memory() {
    // SAFETY: malloc_trim only walks and shrinks the allocator's own free
    // lists; the init is single-threaded and holds no allocator state.
    unsafe { libc::malloc_trim(0) };
}
