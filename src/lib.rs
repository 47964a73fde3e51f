//! jw: run Linux processes ("jobs") for remote users, each in its own cgroup
//! and namespaces, over a mutual-TLS postcard protocol.
//!
//! The library holds everything; the binaries in `src/bin` are thin.

pub mod client;
pub mod job;
pub mod pki;
pub mod protocol;
pub mod server;
pub mod settings_file;
pub mod text;
pub mod tls;
pub mod units;
pub mod uring;
