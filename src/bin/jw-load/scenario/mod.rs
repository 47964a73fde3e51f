//! The scenarios `jw-load` runs, one a file. Each returns its JSON report
//! and prints its summary line(s) on stderr.

pub(crate) mod abuse;
pub(crate) mod fanout;
pub(crate) mod follow_latency;
pub(crate) mod pty;
pub(crate) mod restart;
pub(crate) mod scale;
pub(crate) mod soak;
pub(crate) mod soak_restarts;
mod soak_worker;
pub(crate) mod start;
pub(crate) mod status;
mod ticker;
