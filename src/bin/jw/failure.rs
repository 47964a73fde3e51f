//! The one error `jw` shows: a message for the user, already saying what
//! to do. `main` prints it after `jw: ` and exits 1.

use jw::client::ClientError;

/// A failure for the user: the message, already saying what to do.
pub(crate) struct Failure(pub(crate) String);

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure(e.to_string())
    }
}
