//! jwd's end of a job's channel: the keeper's reports and what it has
//! written, received without a copy of any output (the keeper writes the
//! files itself), and the control messages jwd sends it.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;

use super::channel::{FromInit, Report, ToInit, CONTROL_LEN, MAX_MESSAGE};
use super::output::Progress;

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

    /// The next report; what the keeper says it has written on the way is
    /// handed to `progress` (the latest of what had arrived, once per
    /// wake-up). `None` once the keeper has exited (EOF).
    pub(super) async fn next_report(
        &mut self,
        mut progress: impl FnMut(Progress),
    ) -> Option<Report> {
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
                let received = guard.try_io(|fd| {
                    rustix::net::recv(
                        fd.get_ref(),
                        &mut message[..],
                        rustix::net::RecvFlags::empty(),
                    )
                    .map(|(_, n)| n)
                    .map_err(std::io::Error::from)
                });
                match received {
                    Ok(Ok(0)) => break Some(None),
                    Ok(Ok(n)) => match FromInit::decode(&message[..n.min(message.len())]) {
                        Ok(FromInit::Progress(p)) => latest = Some(p),
                        Ok(FromInit::Report(r)) => break Some(Some(r)),
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
                progress(p);
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
