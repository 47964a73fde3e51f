//! The job engine: validated specs, cgroups, spawning into namespaces, the
//! in-job init, output capture and the registry. Knows nothing of TLS or
//! frames; usable as a library without the server.

pub mod cgroup;
pub mod channel;
pub mod init;
pub mod manager;
pub mod output;
pub mod pool;
mod record;
pub mod sandbox;
pub mod spawn;
pub mod spec;
pub mod tree;
pub mod uids;

pub use manager::{EngineConfig, Job, JobError, Manager, StartTurn, Started};
pub use spec::{JobSpec, SpecError, SpecPolicy};

use std::os::fd::AsRawFd;

/// Registers an fd the caller owns with tokio's reactor for readability.
fn async_readable<T: AsRawFd>(fd: T) -> std::io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: `fd` is moved into the AsyncFd, which owns it until it is
    // dropped, so the descriptor stays open and means the same file for the
    // registration's whole life (T is an OwnedFd or an Arc of one).
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into())
}
