//! jwd: the io_uring server. N single-threaded tokio-uring runtimes accept
//! on one listening socket (each holds a duplicate of it) and share one
//! job engine. One socket, not one SO_REUSEPORT socket per runtime: a
//! second jwd on the same address fails to bind instead of taking half
//! the connections.
//!
//! `session` turns TLS bytes into frames and streams (`stream`), each
//! request runs in `request/` (one file per request: authorise with
//! `authz`, call the engine, answer) and answers through the connection's
//! `outbox`. No job logic lives here: the engine (`crate::job`) holds
//! every job rule.

mod authz;
mod outbox;
mod quota;
mod request;
mod session;
mod shared;
mod stream;

pub use quota::UserLimits;
pub use shared::ServerConfig;
use shared::{CurrentTls, Shared};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::job::Manager;
use crate::tls::LoadedTls;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: address in use: another jwd (or another program) listens there; stop it, or give this jwd another --listen")]
    InUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server thread failed: {0}")]
    Thread(String),
}

/// A running server: its address, and how to reload its TLS material and
/// stop it.
pub struct Server {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tls: watch::Sender<Arc<CurrentTls>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The listening socket, bound before anything else starts (so a jwd
/// whose address is taken fails before it touches the data directory or
/// the cgroups).
pub struct Listener {
    addr: SocketAddr,
    socket: std::net::TcpListener,
}

impl Listener {
    /// Binds `addr` (SO_REUSEADDR, for a restart while old connections
    /// linger in TIME_WAIT; no SO_REUSEPORT: the address is this jwd's).
    pub fn bind(addr: SocketAddr) -> Result<Listener, ServerError> {
        let socket = listener(addr).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                ServerError::InUse { addr }
            } else {
                ServerError::Listen { addr, source }
            }
        })?;
        // With port 0 the bind picks the port.
        let addr = socket
            .local_addr()
            .map_err(|source| ServerError::Listen { addr, source })?;
        Ok(Listener { addr, socket })
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_cloexec(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

impl Server {
    /// Starts the runtimes on `listener`, each accepting on its own
    /// duplicate of the socket, new handshakes with `tls`.
    pub fn start(
        listener: Listener,
        config: ServerConfig,
        tls: LoadedTls,
        manager: Manager,
    ) -> Result<Server, ServerError> {
        let addr = listener.addr;
        let mut listeners = Vec::new();
        for _ in 1..config.threads.max(1) {
            listeners.push(
                listener
                    .socket
                    .try_clone()
                    .map_err(|source| ServerError::Listen { addr, source })?,
            );
        }
        listeners.push(listener.socket);
        let (tls_tx, tls_rx) = watch::channel(Arc::new(CurrentTls {
            config: tls.config,
            revoked: tls.revoked,
        }));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            quotas: quota::Quotas::new(config.user_limits),
            tls: tls_rx,
            handshaking: AtomicUsize::new(0),
            config,
            manager,
            connections: AtomicUsize::new(0),
            shutdown: shutdown_rx,
            stopping: AtomicBool::new(false),
        });
        let mut threads = Vec::new();
        let (up_tx, up_rx) = std::sync::mpsc::channel::<()>();
        for (i, listener) in listeners.into_iter().enumerate() {
            let shared = shared.clone();
            let up = up_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("jwd-{i}"))
                .spawn(move || {
                    crate::uring::start(async move {
                        let _ = up.send(());
                        serve(listener, shared).await
                    })
                })
                .map_err(|e| ServerError::Thread(e.to_string()))?;
            threads.push(thread);
        }
        drop(up_tx);
        // Ready means every runtime is up (its ring made): a thread that
        // dies first (no io_uring) drops its sender and fails the start.
        for _ in 0..threads.len() {
            if up_rx.recv().is_err() {
                let _ = shutdown_tx.send(true);
                return Err(ServerError::Thread(
                    "a server runtime did not start (is io_uring available to jwd?)".into(),
                ));
            }
        }
        Ok(Server {
            addr,
            shutdown: shutdown_tx,
            tls: tls_tx,
            threads,
        })
    }

    /// New handshakes use `tls` from now on; open connections keep the
    /// material they were made with, except that one whose client
    /// certificate `tls`'s lists revoke is closed.
    pub fn reload_tls(&self, tls: LoadedTls) {
        self.tls.send_replace(Arc::new(CurrentTls {
            config: tls.config,
            revoked: tls.revoked,
        }));
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every connection, stops running jobs with
    /// the configured grace period and waits until they have ended and
    /// their statuses are recorded.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// One runtime: accept connections until shutdown, then help finish jobs.
async fn serve(listener: std::net::TcpListener, shared: Arc<Shared>) {
    let listener = crate::uring::TcpListener::from_std(listener);
    // Jobs a previous jwd left running are supervised on the first runtime
    // to get here.
    shared.manager.resume();
    let mut shutdown = shared.shutdown.clone();
    loop {
        // At shutdown the in-flight accept is dropped; harmless, the
        // listener closes right after.
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        // EMFILE and friends: back off briefly instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let open = shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
                if open > shared.config.max_connections {
                    shared.connections.fetch_sub(1, Ordering::AcqRel);
                    tracing::warn!(%peer, max = shared.config.max_connections, "connection refused: --max-connections reached");
                    drop(stream);
                    continue;
                }
                let handshaking = shared.handshaking.fetch_add(1, Ordering::AcqRel) + 1;
                if handshaking > shared.config.max_handshakes {
                    shared.handshaking.fetch_sub(1, Ordering::AcqRel);
                    shared.connections.fetch_sub(1, Ordering::AcqRel);
                    tracing::warn!(%peer, max = shared.config.max_handshakes, "connection refused: --max-handshakes connections are still in their handshake");
                    drop(stream);
                    continue;
                }
                let shared = shared.clone();
                crate::uring::spawn(async move {
                    session::serve(stream, peer, shared.clone()).await;
                    shared.connections.fetch_sub(1, Ordering::AcqRel);
                });
            }
        }
    }
    drop(listener);
    // Connections see the same shutdown signal and close themselves. Jobs
    // supervised on this runtime need it alive until they have ended.
    let first_to_stop = !shared.stopping.swap(true, Ordering::AcqRel);
    if first_to_stop {
        shared.manager.drain().await;
    } else {
        shared.manager.drained().await;
    }
    // Connections close themselves on the shutdown signal; one whose client
    // stopped reading may never finish its write: it is not waited for past
    // the bound (the runtime drops it when this returns).
    let deadline = tokio::time::Instant::now() + CLOSE_BOUND;
    while shared.connections.load(Ordering::Acquire) > 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                open = shared.connections.load(Ordering::Acquire),
                "connections still open {CLOSE_BOUND:?} after shutdown began; closing them"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How long shutdown waits for connections to close once jobs are done.
const CLOSE_BOUND: Duration = Duration::from_secs(5);
