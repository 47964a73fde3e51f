//! Signals in a job: the init takes every signal through a signalfd,
//! forwards SIGTERM, SIGINT, ... to the command and reaps every process
//! that ends in the PID namespace; the command gets the default
//! dispositions and an empty mask back before its exec.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rustix::process::{Pid, WaitOptions};

use super::{At, Failure};
use crate::job::channel::Stage;

/// The signals the init forwards to the command.
const FORWARDED: [Signal; 8] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

extern "C" fn ignore_signal(_: libc::c_int) {}

/// The init's signals, read from a signalfd.
pub(super) struct Signals(SignalFd);

impl Signals {
    /// Blocks every signal and reads SIGCHLD and the forwarded ones from a
    /// signalfd. The forwarded ones also get a no-op handler: the kernel
    /// drops signals with a default disposition that are sent to a PID
    /// namespace's init, should one ever be unblocked.
    pub(super) fn take_over() -> Result<Signals, Failure> {
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None)
            .at(Stage::Signals)?;
        let no_op = SigAction::new(
            SigHandler::Handler(ignore_signal),
            SaFlags::empty(),
            SigSet::all(),
        );
        for sig in FORWARDED {
            // SAFETY: the handler does nothing, so it is async-signal-safe
            // and touches no state the init's code relies on.
            unsafe { nix::sys::signal::sigaction(sig, &no_op) }.at(Stage::Signals)?;
        }
        // SIGCHLD must not be SIG_IGN, or children would be reaped unseen.
        let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: SIG_DFL installs no handler code.
        unsafe { nix::sys::signal::sigaction(Signal::SIGCHLD, &default) }.at(Stage::Signals)?;
        let watched: SigSet = FORWARDED.into_iter().chain([Signal::SIGCHLD]).collect();
        let fd = SignalFd::with_flags(&watched, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .at(Stage::Signals)?;
        Ok(Signals(fd))
    }

    /// Takes every pending signal: forwards each forwarded one to
    /// `command`, and on SIGCHLD reaps every child that has ended. Returns
    /// the command's wait status once it has been reaped.
    pub(super) fn handle(&self, command: Pid) -> Option<i32> {
        let mut ended = None;
        while let Ok(Some(info)) = self.0.read_signal() {
            if info.ssi_signo != libc::SIGCHLD as u32 {
                forward(command, info.ssi_signo as i32);
                continue;
            }
            while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
                if pid == command {
                    ended = Some(status.as_raw());
                }
            }
        }
        ended
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Sends `sig` to the command (gone already: nothing to do).
pub(super) fn forward(command: Pid, sig: i32) {
    if let Some(sig) = rustix::process::Signal::from_named_raw(sig) {
        let _ = rustix::process::kill_process(command, sig);
    }
}

/// Sends `sig` to every process of the job: from the PID namespace's
/// init, kill(-1) reaches every process in it but the init itself.
pub(super) fn to_all(sig: i32) {
    if let Ok(sig) = Signal::try_from(sig) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), sig);
    }
}

/// In the command, before its exec: the default disposition of every
/// signal and an empty mask. jwd ignores SIGPIPE (Rust does) and the init
/// blocked everything; neither is the job's.
pub(super) fn restore_defaults() {
    let default: libc::sigaction =
        SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty()).into();
    for sig in 1..libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: `default` is a live, initialised sigaction installing
            // SIG_DFL (no handler code); the old action is not asked for.
            unsafe { libc::sigaction(sig, &default, std::ptr::null_mut()) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}
