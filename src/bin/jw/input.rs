//! Local input to the job's input, through an `Attachment`, across lost
//! connections: when the connection breaks, the follow (`follow.rs`)
//! connects again; the input attaches again on the new connection and
//! sends again the bytes the job did not get, when jwd's count says which
//! (`Attachment::resume`; after a restart of jwd it cannot, and says so).
//! The end of local input ends the job's input.

use std::time::{Duration, Instant};

use jw::client::{AttachControl, Attachment, Client, ClientError};
use jw::protocol::{ErrorCode, JobId};
use tokio::sync::{mpsc, watch};

use crate::local_input::Read;

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(2);

/// The writer of a job's input and what it needs to go on after a lost
/// connection.
pub(crate) struct Input {
    pub(crate) attachment: Attachment,
    /// The connection in use (replaced by the follow after a loss).
    pub(crate) connection: watch::Receiver<Client>,
    /// Where the current attachment's control is published (for resizes).
    pub(crate) controls: watch::Sender<Option<AttachControl>>,
    /// How long to try attaching again after a loss (`--reconnect-timeout`).
    pub(crate) reconnect_timeout: Duration,
}

/// Sends every chunk read to the job, then ends its input at the end of
/// local input. Returns early when the job's input closes (the job ended)
/// or cannot be written any more (said on stderr).
pub(crate) async fn forward_input(mut input: Input, mut chunks: mpsc::Receiver<Read>) {
    loop {
        match chunks.recv().await {
            Some(Read::Data(data)) => {
                if !input.deliver(&data).await {
                    return;
                }
            }
            Some(Read::End) => return input.finish().await,
            Some(Read::Failed(e)) => {
                eprintln!("jw: cannot read stdin: {e}; ending the job's input");
                return input.finish().await;
            }
            // The reader stopped for the detach keys: the input stays open.
            None => return,
        }
    }
}

impl Input {
    fn id(&self) -> JobId {
        self.attachment.job()
    }

    /// Writes `data`; false when the input cannot be written any more.
    async fn deliver(&mut self, data: &[u8]) -> bool {
        let mut rest = data;
        loop {
            let before = self.attachment.input_offset();
            match self.attachment.write(rest).await {
                Ok(()) => return true,
                Err(e) => {
                    // The bytes before the new offset are the attachment's
                    // to send again; the rest are still ours.
                    let took = (self.attachment.input_offset() - before) as usize;
                    rest = &rest[took..];
                    if !self.recover(e).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Ends the job's input, attaching again as often as the connection is
    /// lost meanwhile.
    async fn finish(mut self) {
        loop {
            match self.attachment.close_input().await {
                Ok(_) => return,
                Err(e) => {
                    if !self.recover(e).await {
                        return;
                    }
                }
            }
        }
    }

    /// After a failed write: true once attached again on a new connection;
    /// false when the input is closed or cannot be written any more.
    async fn recover(&mut self, error: ClientError) -> bool {
        match error {
            ClientError::InputClosed { .. } => false,
            e if e.is_connection_lost() => self.attach_again(e).await,
            e => {
                self.give_up(&e);
                false
            }
        }
    }

    /// Attaches on the connection that replaces the lost one, retrying
    /// while the server still holds the old attachment, until
    /// `--reconnect-timeout`.
    async fn attach_again(&mut self, lost: ClientError) -> bool {
        let id = self.id();
        let began = Instant::now();
        let mut delay = FIRST_DELAY;
        let mut last = lost;
        loop {
            if self.reconnect_timeout.is_zero() || began.elapsed() >= self.reconnect_timeout {
                self.give_up(&last);
                return false;
            }
            if last.is_connection_lost() && self.connection.changed().await.is_err() {
                return false;
            }
            let client = self.connection.borrow_and_update().clone();
            match self.attachment.resume(&client).await {
                Ok(unknown) => {
                    if unknown > 0 {
                        eprintln!(
                            "jw: up to {unknown} bytes of input sent before the connection \
                             was lost may not have reached job {id} (jwd restarted?)"
                        );
                    }
                    self.controls.send_replace(Some(self.attachment.control()));
                    return true;
                }
                Err(ClientError::InputClosed { .. }) => return false,
                Err(e) if e.code() == Some(ErrorCode::FAILED_PRECONDITION) => {
                    // The job ended, its input was closed, or jwd has not
                    // yet seen that the old connection is gone.
                    match client.status(id).await {
                        Ok(info) if !info.state.is_active() => return false,
                        _ => {}
                    }
                    last = e;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_DELAY);
                }
                Err(e) if e.is_connection_lost() => last = e,
                Err(e) => {
                    self.give_up(&e);
                    return false;
                }
            }
        }
    }

    fn give_up(&self, e: &ClientError) {
        let id = self.id();
        eprintln!(
            "jw: cannot write to the input of job {id} any more: {e}; \
             `jw attach {id}` to type into it again"
        );
    }
}
