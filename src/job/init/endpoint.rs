//! The init's end of the channel to jwd (fd [`CHANNEL_FD`]): the set-up
//! in, reports and output out, control messages in. What the bytes mean is
//! `channel.rs`'s; this file only moves them.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::net::{RecvFlags, SendFlags};

use super::{exit, At, Failure};
use crate::job::channel::{Report, Setup, Stage, ToInit, CHANNEL_FD, CONTROL_LEN, MAX_SETUP};

/// The channel, owned by the init.
pub(super) struct Endpoint(OwnedFd);

/// What a look at the channel found.
pub(super) enum Control {
    /// jwd asks for this signal to be forwarded to the command.
    Signal(i32),
    /// Nothing (yet), or a message this build does not send.
    Nothing,
    /// jwd is gone.
    Closed,
}

impl Endpoint {
    /// The channel jwd put at fd 3, if this process is a job's PID 1 that
    /// jwd started (`None`: run by hand). It stays with the init: the
    /// command does not inherit it.
    pub(super) fn adopt() -> Option<Endpoint> {
        if !rustix::process::getpid().is_init() {
            return None;
        }
        // SAFETY: fcntl(F_GETFD) only reads a descriptor's flags, for any
        // number; it fails with EBADF on a closed one.
        if unsafe { libc::fcntl(CHANNEL_FD, libc::F_GETFD) } < 0 {
            return None;
        }
        // SAFETY: fd 3 is open (checked above), jwd left it to this process
        // as its channel, and nothing else here claims it: the Endpoint is
        // its one owner.
        let fd = unsafe { OwnedFd::from_raw_fd(CHANNEL_FD) };
        // A failure only means the command would inherit the channel; the
        // set-up and reports still work.
        let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
        Some(Endpoint(fd))
    }

    /// Reads the set-up message jwd queued on the channel before the
    /// clone.
    pub(super) fn receive_setup(&self) -> Result<Setup, Failure> {
        let recv = |buf: &mut [u8], flags: RecvFlags| loop {
            match rustix::net::recv(&self.0, &mut *buf, flags) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other.map(|(_, len)| len).at(Stage::Setup),
            }
        };
        // The message's size first (MSG_PEEK | MSG_TRUNC returns a
        // datagram's real length), so a small set-up needs no large buffer.
        let size = recv(&mut [], RecvFlags::PEEK | RecvFlags::TRUNC)?;
        if size == 0 {
            // EOF: jwd closed its end before sending.
            return Err(Failure {
                stage: Stage::Setup,
                errno: 0,
            });
        }
        if size > MAX_SETUP {
            return Err(Failure {
                stage: Stage::Setup,
                errno: libc::EMSGSIZE,
            });
        }
        let mut buf = vec![0u8; size];
        let n = recv(&mut buf, RecvFlags::empty())?;
        let invalid = Failure {
            stage: Stage::Setup,
            errno: libc::EINVAL,
        };
        if n != size {
            return Err(invalid);
        }
        Setup::decode(&buf).ok_or(invalid)
    }

    /// Sends one message; if jwd has gone away, the job ends with it (jwd
    /// marks it lost when it restarts).
    pub(super) fn send(&self, message: &[u8]) {
        loop {
            // MSG_NOSIGNAL: a closed channel is EPIPE, not SIGPIPE.
            match rustix::net::send(&self.0, message, SendFlags::NOSIGNAL) {
                Ok(_) => return,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => exit(137),
            }
        }
    }

    /// Sends a report (any message but output).
    pub(super) fn report(&self, report: Report) {
        self.send(&report.encode());
    }

    /// Takes one control message from jwd, without waiting.
    pub(super) fn control(&self) -> Control {
        let mut message = [0u8; CONTROL_LEN];
        match rustix::net::recv(&self.0, &mut message[..], RecvFlags::DONTWAIT) {
            Ok((_, 0)) => Control::Closed,
            Ok((n, _)) => match ToInit::decode(&message[..n]) {
                Ok(ToInit::Signal(sig)) => Control::Signal(sig),
                Err(_) => Control::Nothing,
            },
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Control::Nothing,
            Err(_) => Control::Closed,
        }
    }
}

impl AsFd for Endpoint {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
