//! The one error `jw` shows: a message for the user, already saying what
//! to do, and the exit code it ends jw with. `main` prints it after `jw: `.
//!
//! Exit codes (README): 1 an error; 2 a usage error; 124 the job timed out;
//! 126 the command cannot be executed; 127 it does not exist; 128+N the
//! job (or jw) died of signal N; 255 the connection to jwd failed or was
//! lost.

use jw::client::ClientError;
use jw::protocol::{ErrorCode, JobId};

use crate::server_text::in_user_units;

/// Any other error.
pub(crate) const ERROR: u8 = 1;
/// A usage error: a flag or a value jw does not accept.
pub(crate) const USAGE: u8 = 2;
/// The job ran past its `--timeout` (as timeout(1)).
pub(crate) const TIMED_OUT: u8 = 124;
/// The command exists but cannot be executed.
pub(crate) const CANNOT_EXECUTE: u8 = 126;
/// The command does not exist.
pub(crate) const NOT_FOUND: u8 = 127;
/// The connection to jwd failed or was lost (as ssh).
pub(crate) const CONNECTION: u8 = 255;

/// A failure for the user: the message, already saying what to do, and
/// jw's exit code. An empty message is not printed.
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl Failure {
    /// An error: exit code 1.
    pub(crate) fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: ERROR,
        }
    }

    /// A usage error: exit code 2.
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: USAGE,
        }
    }

    /// The connection to jwd failed or was lost: exit code 255.
    pub(crate) fn connection(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: CONNECTION,
        }
    }

    /// The reader of jw's stdout went away (`jw ... | head`): jw ends as
    /// SIGPIPE would have ended it, silently.
    pub(crate) fn output_closed() -> Failure {
        Failure {
            message: String::new(),
            code: 128 + libc::SIGPIPE as u8,
        }
    }

    /// Whether this is [`Failure::output_closed`].
    pub(crate) fn is_output_closed(&self) -> bool {
        self.message.is_empty() && self.code == 128 + libc::SIGPIPE as u8
    }

    /// A lost or failed connection's message names job `id`, which was
    /// started or chosen before, and says how to look at it.
    pub(crate) fn about_job(mut self, id: JobId) -> Failure {
        let text = id.to_string();
        if self.code == CONNECTION && !self.message.contains(&text) {
            self.message = format!(
                "{} (job {id} may still be running: `jw status {id}`)",
                self.message
            );
        }
        self
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::Connect { .. }
            | ClientError::Timeout { .. }
            | ClientError::Tls(_)
            | ClientError::Handshake { .. }
            | ClientError::Rejected { .. }
            | ClientError::Fatal(_)
            | ClientError::Closed => CONNECTION,
            ClientError::Server(info) if info.code == ErrorCode::COMMAND_NOT_FOUND => NOT_FOUND,
            // An older jwd says "not found" with EXEC_FAILED.
            ClientError::Server(info)
                if info.code == ErrorCode::EXEC_FAILED
                    && (info.message.contains("not found on the job's PATH")
                        || info.message.contains("No such file or directory")) =>
            {
                NOT_FOUND
            }
            ClientError::Server(info) if info.code == ErrorCode::EXEC_FAILED => CANNOT_EXECUTE,
            _ => ERROR,
        };
        let message = match &e {
            ClientError::Server(info) => {
                in_user_units(&info.message).unwrap_or_else(|| e.to_string())
            }
            _ => e.to_string(),
        };
        Failure { message, code }
    }
}
