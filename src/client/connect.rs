//! Making a connection: TCP, the TLS handshake and the Hello/Welcome
//! exchange, each phase within a bound.
//!
//! The bound (`connect_timeout`, 10 s by default) applies to each phase
//! separately: once to the TCP connect, once to the TLS handshake and the
//! Welcome together. A refused or unreachable address fails in the first;
//! a port that accepts TCP but is not jwd (it never speaks TLS, or never
//! answers the Hello) fails in the second, so the message can say which.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::AlertDescription;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::Streams;
use super::{read_message, route, transport_broke, Client, ClientError, ConnectOptions, Inner};
use crate::protocol::{
    self, ClientMessage, FrameDecoder, Hello, ServerMessage, MAX_FRAME, MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
};
use crate::tls;

/// The bound of each phase of a connection unless the caller gives one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The phase of a connection a timeout cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The TCP connect: nothing answered at the address.
    Tcp,
    /// The TLS handshake and the Hello/Welcome exchange: something
    /// accepted the connection but did not speak jw's TLS protocol.
    Handshake,
}

fn server_name(addr: &str) -> Result<ServerName<'static>, ClientError> {
    let host = match addr.parse::<SocketAddr>() {
        Ok(sa) => return Ok(ServerName::IpAddress(sa.ip().into())),
        Err(_) => addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| ClientError::Handshake {
        addr: addr.to_string(),
        reason: format!("{host:?} is not a valid server name: {e}"),
        lost: false,
    })
}

/// The alert the server sent, if `e` is rustls reporting one.
pub(super) fn alert_of(e: &std::io::Error) -> Option<AlertDescription> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// What a refusal by `alert` tells the user; `raw` is rustls's text, and
/// `cert` the certificate file presented and the user it names, when
/// known.
pub(super) fn refusal(alert: AlertDescription, raw: &str, cert: Option<(&Path, &str)>) -> String {
    let (certificate, user) = match cert {
        Some((path, user)) => (
            format!("jwd rejected the client certificate {}", path.display()),
            user,
        ),
        None => ("jwd rejected the client certificate".to_string(), "NAME"),
    };
    match alert {
        AlertDescription::CertificateRevoked => format!(
            "{certificate}: it has been revoked; ask the operator for a new one (jw certs renew {user})"
        ),
        AlertDescription::CertificateExpired => format!(
            "{certificate}: it has expired or is not valid yet (is this host's clock right?); ask the operator for a new one (jw certs renew {user})"
        ),
        AlertDescription::UnknownCA => format!(
            "{certificate}: it is not signed by a client CA this jwd trusts (jwd --client-ca); use a certificate from this jwd's operator (jw certs add-user {user})"
        ),
        AlertDescription::BadCertificate | AlertDescription::UnsupportedCertificate => format!(
            "{certificate}: it is malformed or not made for a TLS client; ask the operator for a new one (jw certs renew {user})"
        ),
        AlertDescription::DecryptError => format!(
            "{certificate}: its signature does not verify (a certificate altered, or signed by another key of the same CA name); ask the operator for a new one (jw certs renew {user})"
        ),
        AlertDescription::CertificateRequired => {
            "jwd requires a client certificate; give one (--cert and --key, or JW_CERT and JW_KEY)".to_string()
        }
        _ => format!(
            "the server rejected the connection: {raw} (is your certificate signed by the CA jwd trusts, and still valid?)"
        ),
    }
}

/// A refusal's message with the certificate file named (`cert`), and the
/// user it is for read from it.
fn naming_certificate(e: ClientError, cert: &Path) -> ClientError {
    let ClientError::Rejected {
        closed,
        alert: Some(alert),
        ..
    } = e
    else {
        return e;
    };
    let user = tls::load_certs(cert)
        .ok()
        .and_then(|certs| certs.into_iter().next())
        .and_then(|c| tls::identity(&c, "").ok())
        .map(|i| i.user)
        .unwrap_or_else(|| "NAME".to_string());
    ClientError::Rejected {
        reason: refusal(
            alert,
            &format!("received fatal alert: {alert:?}"),
            Some((cert, &user)),
        ),
        closed,
        alert: Some(alert),
    }
}

fn rejected_or(addr: &str, e: std::io::Error) -> ClientError {
    if let Some(alert) = alert_of(&e) {
        ClientError::Rejected {
            reason: refusal(alert, &e.to_string(), None),
            closed: false,
            alert: Some(alert),
        }
    } else if e.to_string().contains("alert") {
        ClientError::Rejected {
            reason: format!(
                "the server rejected the connection: {e} (is your certificate signed by the CA jwd trusts, and still valid?)"
            ),
            closed: false,
            alert: None,
        }
    } else {
        ClientError::Handshake {
            addr: addr.to_string(),
            reason: e.to_string(),
            lost: transport_broke(e.kind()),
        }
    }
}

impl Client {
    /// Connects, completes TLS and the Hello/Welcome exchange, each phase
    /// within [`DEFAULT_CONNECT_TIMEOUT`].
    pub async fn connect(opts: &ConnectOptions) -> Result<Client, ClientError> {
        Self::connect_within(opts, DEFAULT_CONNECT_TIMEOUT).await
    }

    /// Connects as [`Client::connect`] does, each phase within `bound`.
    pub async fn connect_within(
        opts: &ConnectOptions,
        bound: Duration,
    ) -> Result<Client, ClientError> {
        let config = tls::client_config(&opts.ca, &opts.cert, &opts.key)?;
        Self::connect_with_within(&opts.addr, config, bound)
            .await
            .map_err(|e| naming_certificate(e, &opts.cert))
    }

    /// Connects with a ready rustls configuration, each phase within
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    pub async fn connect_with(
        addr: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Client, ClientError> {
        Self::connect_with_within(addr, config, DEFAULT_CONNECT_TIMEOUT).await
    }

    /// Connects with a ready rustls configuration, each phase within
    /// `bound`.
    pub async fn connect_with_within(
        addr: &str,
        config: Arc<rustls::ClientConfig>,
        bound: Duration,
    ) -> Result<Client, ClientError> {
        let name = server_name(addr)?;
        let timeout = |phase| ClientError::Timeout {
            addr: addr.to_string(),
            phase,
            after: bound,
        };
        let tcp = tokio::time::timeout(bound, TcpStream::connect(addr))
            .await
            .map_err(|_| timeout(Phase::Tcp))?
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        tokio::time::timeout(bound, Self::greet(addr, name, config, tcp))
            .await
            .map_err(|_| timeout(Phase::Handshake))?
    }

    /// TLS on `tcp`, then Hello and the server's Welcome.
    async fn greet(
        addr: &str,
        name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
        tcp: TcpStream,
    ) -> Result<Client, ClientError> {
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| rejected_or(addr, e))?;
        let (mut read, mut write) = tokio::io::split(tls);
        let mut hello = Vec::new();
        protocol::encode(
            &ClientMessage::Hello(Hello {
                version: PROTOCOL_VERSION,
                client: concat!("jw/", env!("CARGO_PKG_VERSION")).into(),
            }),
            &mut hello,
        )?;
        write
            .write_all(&hello)
            .await
            .map_err(|e| rejected_or(addr, e))?;
        write.flush().await.map_err(|e| rejected_or(addr, e))?;
        let mut decoder = FrameDecoder::new(MAX_FRAME);
        let welcome = match read_message(&mut read, &mut decoder, PROTOCOL_VERSION)
            .await
            .map_err(|e| match e {
                ClientError::Closed => ClientError::Rejected {
                    reason: "the server rejected the connection: it closed it during the handshake (too many connections, or shutting down?)".into(),
                    closed: true,
                    alert: None,
                },
                ClientError::Handshake { reason, lost, .. } => {
                    let kind = if lost {
                        std::io::ErrorKind::ConnectionReset
                    } else {
                        std::io::ErrorKind::Other
                    };
                    rejected_or(addr, std::io::Error::new(kind, reason))
                }
                other => other,
            })? {
            ServerMessage::Welcome(w)
                if (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&w.version) =>
            {
                w
            }
            ServerMessage::Welcome(w) => {
                return Err(ClientError::Unexpected(format!(
                    "the server chose protocol version {}",
                    w.version
                )))
            }
            ServerMessage::Fatal(e) => return Err(ClientError::Fatal(e)),
            other => return Err(ClientError::Unexpected(format!("{other:?} before Welcome"))),
        };
        let inner = Arc::new(Inner {
            writer: tokio::sync::Mutex::new(write),
            streams: Mutex::new(Streams::default()),
            next_stream: AtomicU32::new(1),
            welcome,
            router: std::sync::OnceLock::new(),
        });
        let router = tokio::spawn(route(read, decoder, Arc::downgrade(&inner)));
        let _ = inner.router.set(router.abort_handle());
        Ok(Client { inner })
    }
}
