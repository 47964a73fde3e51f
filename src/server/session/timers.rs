//! What ends a connection from outside its reader: the handshake and idle
//! timeouts, a client that takes nothing for the write timeout, the
//! server's shutdown, and a reload of the TLS material whose revocation
//! lists revoke the connection's client certificate.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::{CurrentTls, Session};
use crate::protocol::ErrorCode;

/// How long a connection may go on sending once shutdown began.
const SHUTDOWN_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// Handshake and idle timeouts, the server's shutdown, and reloads of its
/// TLS material (a connection whose certificate the new lists revoke is
/// closed). Ends the connection by shutting the socket down, which ends
/// the reader's pending read (no io_uring op is dropped).
pub(super) async fn watch_timers(
    conn: Rc<Session>,
    mut tls_watch: watch::Receiver<Arc<CurrentTls>>,
) {
    let config = &conn.out.shared.config;
    let mut shutdown = conn.out.shared.shutdown.clone();
    // False once the server dropped its end (it is going away).
    let mut reloads = true;
    let handshake_deadline = tokio::time::Instant::now() + config.handshake_timeout;
    loop {
        let deadline = if conn.welcomed.get() {
            tokio::time::Instant::from_std(conn.out.last_activity.get() + config.idle_timeout)
        } else {
            handshake_deadline
        };
        // A write in flight is looked at at least every half write timeout:
        // a client that stops reading is cut off between one and one and a
        // half timeouts after its write began, with no cost per write.
        let wake = deadline.min(tokio::time::Instant::now() + config.write_timeout / 2);
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => {
                conn.out.close();
                let _ = conn.tcp.shutdown(std::net::Shutdown::Read);
                // What is queued may still go out; a client that does not
                // read is cut off, which ends the writer's pending send.
                tokio::time::sleep(SHUTDOWN_FLUSH).await;
                let _ = conn.tcp.shutdown(std::net::Shutdown::Both);
                return;
            }
            changed = tls_watch.changed(), if reloads => {
                if changed.is_err() {
                    reloads = false;
                    continue;
                }
                let current = tls_watch.borrow_and_update().clone();
                if revoked(&conn, &current) {
                    close_revoked(&conn);
                    return;
                }
                continue;
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        if conn
            .write_began
            .get()
            .is_some_and(|began| began.elapsed() >= config.write_timeout)
        {
            tracing::info!(peer = %conn.out.peer, "write timeout: the client took nothing for {:?}; closing", config.write_timeout);
            conn.out.close();
            // Ends the pending send (and read): the writer and reader finish.
            let _ = conn.tcp.shutdown(std::net::Shutdown::Both);
            return;
        }
        if tokio::time::Instant::now() < deadline {
            continue;
        }
        if !conn.welcomed.get() {
            tracing::info!(peer = %conn.out.peer, "handshake timeout: no TLS handshake and Hello within {:?}", config.handshake_timeout);
            let _ = conn.tcp.shutdown(std::net::Shutdown::Both);
            return;
        }
        let idle = conn.out.last_activity.get().elapsed() >= config.idle_timeout;
        if idle && conn.out.streams.borrow().is_empty() {
            tracing::info!(peer = %conn.out.peer, "idle timeout: no open stream for {:?}", config.idle_timeout);
            conn.out.close();
            let _ = conn.tcp.shutdown(std::net::Shutdown::Read);
            return;
        }
        if idle {
            // Streams are open: the connection is busy, not idle.
            conn.out.last_activity.set(Instant::now());
        }
    }
}

/// Whether `current`'s lists revoke the certificate the client presented
/// (a connection still in its handshake has none yet: its Hello is
/// checked against the lists then).
pub(super) fn revoked(conn: &Session, current: &CurrentTls) -> bool {
    if current.revoked.is_empty() {
        return false;
    }
    let tls = conn.tls.borrow();
    tls.peer_certificates()
        .and_then(|c| c.first())
        .is_some_and(|cert| current.revoked.contains(cert))
}

/// Tells the client its certificate was revoked and closes the connection
/// (what is queued before the error still goes out).
fn close_revoked(conn: &Session) {
    let user = conn.out.identity.borrow().as_ref().map(|i| i.user.clone());
    conn.out
        .fatal(ErrorCode::UNAUTHENTICATED, revoked_text(user.as_deref()));
    // Ends the reader's pending read; the writer sends the error and
    // close_notify, then ends.
    let _ = conn.tcp.shutdown(std::net::Shutdown::Read);
}

/// What a client whose certificate was revoked is told (`user`: whom it
/// names, once known).
pub(super) fn revoked_text(user: Option<&str>) -> String {
    format!(
        "the client certificate was revoked (jwd reloaded its revocation lists); ask the operator for a new one (jw certs renew {})",
        user.unwrap_or("NAME")
    )
}
