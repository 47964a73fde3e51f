//! What the abusers did and what they met, counted across their tasks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use jw::client::ClientError;

/// A short name for a client error, to count errors by kind.
pub(crate) fn error_key(e: &ClientError) -> String {
    match e {
        ClientError::Server(info) => info.code.to_string(),
        ClientError::Fatal(info) => format!("fatal {}", info.code),
        ClientError::Connect { .. } => "connect".into(),
        ClientError::Timeout { .. } => "timeout".into(),
        ClientError::Tls(_) => "tls".into(),
        ClientError::Handshake { .. } => "handshake".into(),
        ClientError::Rejected { .. } => "rejected".into(),
        ClientError::Closed => "closed".into(),
        ClientError::Protocol(_) => "protocol".into(),
        ClientError::Unexpected(_) => "unexpected".into(),
        ClientError::OldServer { .. } => "old server".into(),
        ClientError::InputClosed { .. } => "input closed".into(),
    }
}

/// What the abusers did and what they met.
#[derive(Default)]
pub(crate) struct AbuseCounters {
    pub(crate) slow_connections: AtomicU64,
    pub(crate) slow_streams: AtomicU64,
    pub(crate) hangups: AtomicU64,
    pub(crate) hangup_bytes: AtomicU64,
    pub(crate) half_open_connections: AtomicU64,
    pub(crate) half_open_closed: AtomicU64,
    /// Milliseconds from connect to jwd closing a half-open connection.
    pub(crate) half_open_lifetimes: Mutex<Vec<u64>>,
    pub(crate) storm_admitted: AtomicU64,
    pub(crate) storm_refused: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    /// "abuser: error" -> count. The error is the text before the first
    /// ':' (a code, or what failed), so the keys stay few.
    pub(crate) errors: Mutex<BTreeMap<String, u64>>,
}

impl AbuseCounters {
    pub(crate) fn error(&self, abuser: &str, error: &str) {
        let what = error.split(':').next().unwrap_or(error).trim();
        let mut errors = self.errors.lock().expect("errors lock");
        *errors.entry(format!("{abuser}: {what}")).or_default() += 1;
    }

    /// A connection that could not be opened (TCP, TLS or Hello).
    pub(crate) fn refused(&self, abuser: &str, error: &str) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
        self.error(abuser, error);
    }
}
