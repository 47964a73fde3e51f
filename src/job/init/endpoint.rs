//! The init's end of the channel to jwd: at first the socket pair jwd put
//! at [`CHANNEL_FD`], later whatever connection a restarted jwd made to
//! the keeper's listening socket ([`LISTENER_FD`]). The set-up in, reports
//! and progress out, control messages in. What the bytes mean is
//! `channel.rs`'s; this file only moves them. After the exec nothing here
//! waits for jwd: a message that does not fit now is sent later, and a jwd
//! that has gone away is simply not there until the next one connects.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::net::{RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use super::stdio::Input;
use super::{exit, At, Failure};
use crate::job::channel::{
    FromInit, Report, Setup, Stage, ToInit, CHANNEL_FD, CONTROL_LEN, LISTENER_FD, MAX_MESSAGE,
    MAX_SETUP,
};

/// The channel (while jwd is there) and the listening socket, owned by
/// the init.
pub(super) struct Endpoint {
    channel: Option<OwnedFd>,
    listener: OwnedFd,
}

/// What a look at the channel found.
pub(super) enum Control {
    /// jwd asks for this signal to be forwarded to the command.
    Signal(i32),
    /// jwd asks for this signal to be sent to every process of the job.
    SignalAll(i32),
    /// jwd asks for the job's input to be closed.
    CloseInput,
    /// jwd grants the job this many output bytes in all.
    Grant(u64),
    /// Nothing (yet), or a message this build does not send.
    Nothing,
    /// jwd is gone.
    Closed,
}

/// How a message without waiting went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    Done,
    /// The channel is full (jwd is behind): try again when it is writable.
    Full,
    /// No jwd is connected.
    Gone,
}

/// Takes descriptor `fd`, which jwd left to this process, if it is open;
/// it stays with the init (close-on-exec: the command does not inherit
/// it).
pub(super) fn adopt_fd(fd: i32) -> Option<OwnedFd> {
    // SAFETY: fcntl(F_GETFD) only reads a descriptor's flags, for any
    // number; it fails with EBADF on a closed one.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: `fd` is open (checked above), jwd left it to this process,
    // and nothing else here claims it: the OwnedFd is its one owner.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // A failure only means the command would inherit it.
    let _ = rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC);
    Some(owned)
}

impl Endpoint {
    /// The channel and listening socket jwd put at fds 3 and 4, if this
    /// process is a job's PID 1 that jwd started (`None`: run by hand).
    pub(super) fn adopt() -> Option<Endpoint> {
        if !rustix::process::getpid().is_init() {
            return None;
        }
        let channel = adopt_fd(CHANNEL_FD)?;
        let listener = adopt_fd(LISTENER_FD)?;
        // Accepting never waits: poll says when a jwd is connecting.
        let _ = rustix::io::ioctl_fionbio(&listener, true);
        Some(Endpoint {
            channel: Some(channel),
            listener,
        })
    }

    fn channel(&self) -> Result<&OwnedFd, Failure> {
        self.channel.as_ref().ok_or(Failure {
            stage: Stage::Setup,
            errno: libc::ENOTCONN,
        })
    }

    /// Reads the set-up message jwd queued on the channel before the
    /// clone.
    pub(super) fn receive_setup(&self) -> Result<Setup, Failure> {
        let channel = self.channel()?;
        let recv = |buf: &mut [u8], flags: RecvFlags| loop {
            match rustix::net::recv(channel, &mut *buf, flags) {
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

    /// Sends a set-up report (exec ok or failed), waiting for room: jwd is
    /// waiting for exactly this. If jwd has gone away, a failed set-up
    /// ends the init; a command that runs is kept (the next jwd finds it).
    pub(super) fn report(&mut self, report: Report) {
        let gone = |this: &mut Endpoint| {
            if report != Report::ExecOk {
                exit(137)
            }
            this.channel = None;
        };
        let Ok(channel) = self.channel() else {
            return gone(self);
        };
        loop {
            // MSG_NOSIGNAL: a closed channel is EPIPE, not SIGPIPE.
            match rustix::net::send(channel, &report.encode(), SendFlags::NOSIGNAL) {
                Ok(_) => return,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return gone(self),
            }
        }
    }

    /// Whether a jwd is connected.
    pub(super) fn connected(&self) -> bool {
        self.channel.is_some()
    }

    /// Sends one message without waiting.
    pub(super) fn send_now(&mut self, message: &[u8]) -> Sent {
        self.send_with(message, None)
    }

    /// Tells jwd what the job's input is, with a copy of its descriptor
    /// (SCM_RIGHTS) while it is open, without waiting: it is sent on an
    /// empty channel (before the exec report, or first on a new
    /// connection), so it fits.
    pub(super) fn send_input(&mut self, input: &Input) -> Sent {
        let mut message = [0u8; MAX_MESSAGE];
        let n = FromInit::Input(input.kind()).encode(&mut message);
        self.send_with(&message[..n], input.fd())
    }

    /// Sends one message, and `fd` with it if given, without waiting.
    fn send_with(&mut self, message: &[u8], fd: Option<BorrowedFd<'_>>) -> Sent {
        let Some(channel) = &self.channel else {
            return Sent::Gone;
        };
        let fds = fd.map(|fd| [fd]);
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if let Some(fds) = &fds {
            control.push(SendAncillaryMessage::ScmRights(fds));
        }
        let flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
        let bytes = [std::io::IoSlice::new(message)];
        loop {
            match rustix::net::sendmsg(channel, &bytes, &mut control, flags) {
                Ok(_) => return Sent::Done,
                Err(rustix::io::Errno::INTR) => {}
                // jwd has gone: its end is closed.
                Err(
                    rustix::io::Errno::PIPE
                    | rustix::io::Errno::CONNRESET
                    | rustix::io::Errno::NOTCONN,
                ) => {
                    self.channel = None;
                    return Sent::Gone;
                }
                // Full, or short of buffers for now: sent later.
                Err(_) => return Sent::Full,
            }
        }
    }

    /// Takes one control message from jwd, without waiting. A closed
    /// channel is let go of.
    pub(super) fn control(&mut self) -> Control {
        let Some(channel) = &self.channel else {
            return Control::Closed;
        };
        let mut message = [0u8; CONTROL_LEN + 1];
        let control = match rustix::net::recv(channel, &mut message[..], RecvFlags::DONTWAIT) {
            Ok((_, 0)) => Control::Closed,
            Ok((n, _)) => match ToInit::decode(&message[..n]) {
                Ok(ToInit::Signal(sig)) => Control::Signal(sig),
                Ok(ToInit::SignalAll(sig)) => Control::SignalAll(sig),
                Ok(ToInit::CloseInput) => Control::CloseInput,
                Ok(ToInit::Grant(bytes)) => Control::Grant(bytes),
                Err(_) => Control::Nothing,
            },
            Err(rustix::io::Errno::CONNRESET | rustix::io::Errno::NOTCONN) => Control::Closed,
            Err(_) => Control::Nothing,
        };
        if let Control::Closed = control {
            self.channel = None;
        }
        control
    }

    /// Takes a jwd's connection to the listening socket as the channel
    /// (the newest jwd wins; only one runs per data directory). Returns
    /// whether there was one from root: only root can reach the socket (in
    /// jwd's owner-only data directory, hidden from the job), and anything
    /// else is refused.
    pub(super) fn accept(&mut self) -> bool {
        let Ok(conn) = rustix::net::accept_with(
            &self.listener,
            rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
        ) else {
            return false;
        };
        // (nix, not rustix: the peer's pid is 0 here, since jwd is outside
        // the job's PID namespace, and rustix's credentials type cannot
        // hold a pid 0.)
        match nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials) {
            Ok(cred) if cred.uid() == 0 => {
                self.channel = Some(conn);
                true
            }
            _ => false,
        }
    }

    /// The listening socket, for poll.
    pub(super) fn listener(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The channel, for poll, while a jwd is connected.
    pub(super) fn channel_fd(&self) -> Option<BorrowedFd<'_>> {
        self.channel.as_ref().map(|c| c.as_fd())
    }
}
