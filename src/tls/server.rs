//! jwd's TLS material: its certificate and key, the client CAs and their
//! revocation lists, loaded and checked in one place for the server (at
//! start and on SIGHUP), `jwd --check-config` and jw-load's baseline.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use super::crl::{self, Revoked};
use super::describe::{self, TlsDescription};
use super::{check_key_mode, load_certs, load_pair, provider, roots, TlsError, ALPN};

/// Where jwd's TLS material is (`--cert`, `--key`, `--client-ca`, `--crl`).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    /// Revocation lists of client certificates; none: no revocation check.
    pub crls: Vec<PathBuf>,
}

/// The material loaded and checked: the rustls configuration, what the
/// lists revoke, and what was found.
#[derive(Clone)]
pub struct LoadedTls {
    /// TLS 1.3 only, a client certificate signed by a client CA (and not
    /// revoked) required, ALPN `jw/1`.
    pub config: Arc<ServerConfig>,
    pub revoked: Revoked,
    pub description: TlsDescription,
}

impl ServerTls {
    /// The server's rustls configuration (see [`ServerTls::load_all`]).
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        Ok(self.load_all()?.config)
    }

    /// What the material holds, once it has passed every check of
    /// [`ServerTls::load_all`] (for `jwd --check-config`).
    pub fn describe(&self) -> Result<TlsDescription, TlsError> {
        Ok(self.load_all()?.description)
    }

    /// Loads and checks everything: the key is owner-only and belongs to
    /// the certificate; every revocation list is signed by a client CA,
    /// and with any list given every client CA has one. Only end-entity
    /// certificates are checked against the lists.
    pub fn load_all(&self) -> Result<LoadedTls, TlsError> {
        check_key_mode(&self.key)?;
        let (certs, private) = load_pair(&self.cert, &self.key)?;
        let ca_certs = load_certs(&self.client_ca)?;
        let cas = crl::cas(&self.client_ca, &ca_certs)?;
        let crls = crl::load(&self.crls, &self.client_ca, &cas)?;
        let mut builder = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots(&self.client_ca)?),
            provider(),
        );
        if !crls.is_empty() {
            builder = builder
                .with_crls(crls.iter().map(|c| c.der.clone()))
                .only_check_end_entity_revocation();
        }
        let verifier = builder.build().map_err(|e| {
            if crls.is_empty() {
                TlsError::Roots {
                    path: self.client_ca.clone(),
                    reason: e.to_string(),
                }
            } else {
                TlsError::Crls {
                    paths: paths_text(&self.crls),
                    reason: e.to_string(),
                }
            }
        })?;
        let description = describe::describe(&self.cert, &certs[0], &cas, &crls)?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, private)?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        // No resumption: a resumed session skips the client certificate's
        // checks (a certificate that expired since would be taken for up
        // to the ticket's 24 hours) and needs no private key, only the
        // ticket. Every connection is verified in full.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(LoadedTls {
            config: Arc::new(config),
            revoked: Revoked::new(&crls),
            description,
        })
    }
}

/// The server's rustls configuration from a certificate, its key and the
/// client CAs, without revocation lists (see [`ServerTls`]).
pub fn server_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: &std::path::Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    ServerTls {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        client_ca: client_ca.to_path_buf(),
        crls: Vec::new(),
    }
    .load()
}

fn paths_text(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{init, PkiOptions};
    use rustls::{ClientConnection, ServerConnection};

    /// Runs a handshake between two in-memory connections.
    fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) {
        for _ in 0..20 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut &buf[..]).unwrap();
            server.process_new_packets().unwrap();
            buf.clear();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut &buf[..]).unwrap();
            client.process_new_packets().unwrap();
            if !client.is_handshaking() && !server.is_handshaking() && !server.wants_write() {
                return;
            }
        }
        panic!("the handshake did not finish");
    }

    /// A resumed session skips the client certificate's checks (its expiry
    /// among them) and needs no private key: jwd verifies every client.
    #[test]
    fn no_session_is_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let opts = PkiOptions {
            users: vec!["alice".into()],
            ..PkiOptions::default()
        };
        init(dir.path(), &opts).unwrap();
        let p = |name: &str| dir.path().join(name);
        let server = ServerTls {
            cert: p("server.crt"),
            key: p("server.key"),
            client_ca: p("client-ca.crt"),
            crls: vec![p("crl.pem")],
        }
        .load()
        .unwrap();
        let client =
            crate::tls::client_config(&p("server-ca.crt"), &p("alice.crt"), &p("alice.key"))
                .unwrap();
        for _ in 0..2 {
            let mut c =
                ClientConnection::new(client.clone(), "localhost".try_into().unwrap()).unwrap();
            let mut s = ServerConnection::new(server.clone()).unwrap();
            handshake(&mut c, &mut s);
            assert_eq!(s.handshake_kind(), Some(rustls::HandshakeKind::Full));
        }
    }
}
