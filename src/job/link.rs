//! jwd's end of a job's channel: the keeper's reports and what it has
//! written, received without a copy of any output (the keeper writes the
//! files itself), and the control messages jwd sends it.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;

use super::channel::{FromInit, InputKind, Report, ToInit, CONTROL_LEN, MAX_MESSAGE};
use super::output::Progress;

/// What the keeper says besides its reports.
pub(super) enum Note {
    /// What it has written (the latest of what had arrived, once per
    /// wake-up).
    Progress(Progress),
    /// What the job's input is, with jwd's copy of it while open.
    Input(InputKind, Option<OwnedFd>),
}

/// Receives one message and the descriptor that may come with it.
fn receive(fd: &OwnedFd, message: &mut [u8]) -> std::io::Result<(usize, Option<OwnedFd>)> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        fd,
        &mut [std::io::IoSliceMut::new(message)],
        &mut control,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut passed = None;
    for ancillary in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = ancillary {
            // Only the first is kept; any other is closed as it drops.
            for fd in fds {
                passed.get_or_insert(fd);
            }
        }
    }
    Ok((received.bytes, passed))
}

/// Messages taken off one channel before the task lets others run.
const MESSAGES_PER_WAKE: usize = 64;

/// jwd's end of a job's channel.
pub(super) struct InitChannel {
    pub(super) fd: AsyncFd<Arc<OwnedFd>>,
}

/// Sends a control message to the keeper without waiting (a full channel
/// is an error: the keeper reads every message at once, so only a stuck
/// keeper fills it).
pub(super) fn send(channel: impl AsFd, message: ToInit) -> rustix::io::Result<()> {
    let mut buf = [0u8; CONTROL_LEN];
    rustix::net::send(
        channel,
        message.encode(&mut buf),
        rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL,
    )
    .map(|_| ())
}

impl InitChannel {
    pub(super) fn new(fd: Arc<OwnedFd>) -> std::io::Result<Self> {
        rustix::fs::fcntl_setfl(&*fd, rustix::fs::OFlags::NONBLOCK)?;
        Ok(InitChannel {
            fd: super::async_readable(fd)?,
        })
    }

    /// The next report; what the keeper says on the way is handed to
    /// `note`. `None` once the keeper has exited (EOF).
    pub(super) async fn next_report(&mut self, mut note: impl FnMut(Note)) -> Option<Report> {
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return None;
            };
            let mut latest = None;
            let mut budget = MESSAGES_PER_WAKE;
            let outcome = loop {
                if budget == 0 {
                    break None;
                }
                budget -= 1;
                let mut message = [0u8; MAX_MESSAGE + 1];
                let received = guard.try_io(|fd| receive(fd.get_ref(), &mut message));
                match received {
                    Ok(Ok((0, _))) => break Some(None),
                    Ok(Ok((n, passed))) => match FromInit::decode(&message[..n.min(message.len())])
                    {
                        Ok(FromInit::Progress(p)) => latest = Some(p),
                        Ok(FromInit::Report(r)) => break Some(Some(r)),
                        Ok(FromInit::Input(kind)) => {
                            note(Note::Input(kind, passed.filter(|_| kind.has_fd())))
                        }
                        // A message no keeper of this build sends: dropped.
                        Err(_) => {}
                    },
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Ok(Err(_)) => break Some(None),
                    Err(_would_block) => break None,
                }
            };
            drop(guard);
            if let Some(p) = latest {
                note(Note::Progress(p));
            }
            if let Some(end) = outcome {
                return end;
            }
            if budget == 0 {
                // Others' turn before this channel's next messages.
                tokio::task::yield_now().await;
            }
        }
    }
}
