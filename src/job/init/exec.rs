//! Fork the command and execute it: every string prepared before the fork,
//! the command's side of the fork drops to the job user and execs with the
//! user's environment, and an exec failure comes back to the init over a
//! close-on-exec pipe (EOF: the exec succeeded).

use std::convert::Infallible;
use std::ffi::{c_char, CString};
use std::os::fd::OwnedFd;

use nix::sys::resource::Resource;
use nix::sys::stat::Mode;
use nix::unistd::ForkResult;
use rustix::process::{Pid, WaitOptions};

use super::stdio::Stdio;
use super::{exit, privileges, signals, At, Failure};
use crate::job::channel::{FromInit, Report, Setup, Stage, REPORT_LEN};

/// The command, with every string prepared before the fork.
pub(super) struct Command {
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

/// The pointers execve takes: each string's, then null.
fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

impl Command {
    pub(super) fn prepare(setup: &Setup) -> Command {
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

    /// The command's side of the fork, up to its exec: returns only the
    /// failure that stopped it.
    fn become_command(&self, stdio: Stdio) -> Result<Infallible, Failure> {
        // The input and output become fds 0, 1 and 2 (dup2 clears
        // close-on-exec).
        if let Some(stdin) = &stdio.stdin {
            nix::unistd::dup2_stdin(stdin).at(Stage::Pipes)?;
        }
        nix::unistd::dup2_stdout(&stdio.stdout).at(Stage::Pipes)?;
        nix::unistd::dup2_stderr(&stdio.stderr).at(Stage::Pipes)?;
        signals::restore_defaults();
        nix::unistd::setsid().at(Stage::Session)?;
        if stdio.terminal {
            // The new session's controlling terminal; its process group
            // is the terminal's foreground (Ctrl-C, resizes reach it).
            rustix::process::ioctl_tiocsctty(std::io::stdin()).at(Stage::Terminal)?;
        }
        drop(stdio);
        // jwd raised its own fd limit for many connections; a job starts
        // with the conventional soft limit.
        if let Ok((soft, hard)) = nix::sys::resource::getrlimit(Resource::RLIMIT_NOFILE) {
            if soft > 1024 {
                let _ = nix::sys::resource::setrlimit(Resource::RLIMIT_NOFILE, 1024, hard);
            }
        }
        nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
        privileges::become_job_user(self.uid, self.gid)?;
        // chdir as the job user, so directory permissions apply to it.
        nix::unistd::chdir(self.workdir.as_c_str()).at(Stage::Chdir)?;
        privileges::lock_down(&self.filter)?;
        Err(self.exec())
    }

    /// execvp's rules: tries each candidate; remembers EACCES; stops at an
    /// error other than "not there". Returns only with the failure that
    /// counts: `Stage::Exec` with ENOENT only if no candidate exists (a
    /// file that exists but whose interpreter or loader does not also
    /// fails with ENOENT: that is `Stage::Interpreter`).
    fn exec(&self) -> Failure {
        debug_assert_eq!(self.argv.len() + 1, self.argv_ptrs.len());
        debug_assert_eq!(self.env.len() + 1, self.env_ptrs.len());
        let mut err = libc::ENOENT;
        for path in &self.candidates {
            // SAFETY: `path` is a NUL-terminated string, and argv_ptrs and
            // env_ptrs are null-terminated arrays of pointers to the
            // NUL-terminated strings in `self.argv` and `self.env`, all
            // owned by `self` and alive for the call.
            unsafe {
                libc::execve(
                    path.as_ptr(),
                    self.argv_ptrs.as_ptr(),
                    self.env_ptrs.as_ptr(),
                )
            };
            match nix::errno::Errno::last_raw() {
                libc::ENOENT if exists(path) => {
                    return Failure {
                        stage: Stage::Interpreter,
                        errno: libc::ENOENT,
                    }
                }
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => err = libc::EACCES,
                other => {
                    return Failure {
                        stage: Stage::Exec,
                        errno: other,
                    }
                }
            }
        }
        Failure {
            stage: Stage::Exec,
            errno: err,
        }
    }
}

/// Whether a file is at `path` (following symlinks, as execve does).
fn exists(path: &std::ffi::CStr) -> bool {
    rustix::fs::access(path, rustix::fs::Access::EXISTS).is_ok()
}

/// Forks and executes the command with its fds 0, 1 and 2 from `stdio`.
/// Returns its pid once its exec has succeeded, or where and why it
/// failed (the command's process is then reaped).
pub(super) fn start(command: &Command, stdio: Stdio) -> Result<Pid, Failure> {
    let (exec_read, exec_write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).at(Stage::Fork)?;
    // SAFETY: the init is single-threaded (it starts no thread, and a
    // program starts with one), so the child is a complete copy in which
    // any code may run, allocation and locks included.
    let forked = unsafe { nix::unistd::fork() }.at(Stage::Fork)?;
    let child = match forked {
        ForkResult::Child => {
            drop(exec_read);
            command_side(command, stdio, exec_write)
        }
        ForkResult::Parent { child } => child,
    };
    drop(exec_write);
    // The command's ends (a terminal's slave too: it hangs up when the
    // job's last process lets go of it) are the command's alone.
    drop(stdio);
    let pid = Pid::from_raw(child.as_raw()).expect("fork returns a positive pid");
    let mut failure = [0u8; REPORT_LEN];
    let n = loop {
        match rustix::io::read(&exec_read, &mut failure[..]) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other.unwrap_or(0),
        }
    };
    if let Ok(FromInit::Report(Report::Failed { stage, errno })) = FromInit::decode(&failure[..n]) {
        let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
        return Err(Failure { stage, errno });
    }
    Ok(pid)
}

/// The forked command: sets itself up and execs, or writes why not to
/// `exec_pipe` (as the report the init forwards) and exits.
fn command_side(command: &Command, stdio: Stdio, exec_pipe: OwnedFd) -> ! {
    let Err(failure) = command.become_command(stdio);
    let report = Report::Failed {
        stage: failure.stage,
        errno: failure.errno,
    }
    .encode();
    let _ = rustix::io::write(&exec_pipe, &report);
    exit(127)
}
