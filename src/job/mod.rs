//! The job engine: validated specs, cgroups, spawning into namespaces, the
//! in-job init, output capture and the registry. Knows nothing of TLS or
//! frames; usable as a library without the server.

pub mod cgroup;
pub mod channel;
pub mod check;
mod config;
mod engine;
mod error;
mod exec_failure;
pub mod init;
mod input;
pub mod keeper;
mod lifetime;
mod link;
mod lock;
mod manager;
pub mod output;
pub mod pool;
mod record;
mod registry;
mod resolve;
mod restore;
pub mod sandbox;
pub mod spawn;
pub mod spec;
mod start;
mod supervise;
pub mod tree;
pub mod uids;

pub use config::{
    EngineConfig, DEFAULT_MAX_OUTPUT_TOTAL, DEFAULT_MEMORY, DEFAULT_PIDS, DEFAULT_RETAIN,
};
pub use engine::Manager;
pub use error::JobError;
pub use input::Attachment;
pub use lifetime::{Holding, FIRST_HOLD};
pub use registry::Job;
pub use spec::{JobSpec, SpecError, SpecPolicy};
pub use start::{StartTurn, Started};
pub use supervise::MAX_GRACE;

use std::os::fd::AsRawFd;
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds (the unit of a job's recorded times).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Registers an fd the caller owns with tokio's reactor for readability.
fn async_readable<T: AsRawFd>(fd: T) -> std::io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: `fd` is moved into the AsyncFd, which owns it until it is
    // dropped, so the descriptor stays open and means the same file for the
    // registration's whole life (T is an OwnedFd or an Arc of one).
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into())
}
