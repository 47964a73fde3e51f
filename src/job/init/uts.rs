//! The job's UTS namespace: its hostname.

use super::{At, Failure};
use crate::job::channel::Stage;

/// Sets the hostname of the job's own UTS namespace.
pub(super) fn set_hostname(hostname: &str) -> Result<(), Failure> {
    nix::unistd::sethostname(hostname).at(Stage::Hostname)
}
