//! What every runtime of the server shares: its configuration, the current
//! TLS material, the engine, the counters of connections and handshakes,
//! the per-user quotas and the shutdown signal.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::quota::{self, UserLimits};
use crate::job::Manager;

/// How the server runs.
#[derive(Clone)]
pub struct ServerConfig {
    /// The group (certificate subject O) that makes a user admin.
    pub admin_group: String,
    /// Connections past this are closed at once.
    pub max_connections: usize,
    /// Connections that have not finished TLS and Hello, past which new
    /// ones are closed at once (so unauthenticated clients cannot take
    /// every connection).
    pub max_handshakes: usize,
    /// What one user may hold at once.
    pub user_limits: UserLimits,
    /// TLS handshake and `Hello` together.
    pub handshake_timeout: Duration,
    /// A connection without open streams is closed after this.
    pub idle_timeout: Duration,
    /// A connection whose client takes none of a write for this long is
    /// closed (its queued output and streams freed).
    pub write_timeout: Duration,
    /// Runtimes (threads), each accepting on the one listening socket.
    pub threads: usize,
}

/// The TLS material new handshakes use, and what its lists revoke (for
/// the connections opened before it was loaded).
pub(crate) struct CurrentTls {
    pub config: Arc<rustls::ServerConfig>,
    pub revoked: crate::tls::Revoked,
}

/// State shared by every runtime.
pub(crate) struct Shared {
    pub config: ServerConfig,
    pub manager: Manager,
    pub connections: AtomicUsize,
    /// Connections that have not finished TLS and Hello.
    pub handshaking: AtomicUsize,
    pub quotas: Arc<quota::Quotas>,
    /// Replaced on reload (SIGHUP); each accepted connection reads it once,
    /// and each open one is told of a change.
    pub tls: watch::Receiver<Arc<CurrentTls>>,
    pub shutdown: watch::Receiver<bool>,
    /// Set by the first runtime that starts stopping jobs at shutdown.
    pub stopping: AtomicBool,
}
