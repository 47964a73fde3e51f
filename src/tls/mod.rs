//! rustls configurations (TLS 1.3 only, mutual TLS, ALPN `jw/1`) and the
//! peer identity read from a verified client certificate.
//!
//! The server's material (certificate, key, client CAs, revocation lists)
//! is loaded by [`ServerTls`] (`server.rs`), which checks the revocation
//! lists against the CAs (`crl.rs`, signatures with `signed.rs`) and
//! describes what it loaded for `jwd --check-config` (`describe.rs`).

mod crl;
mod describe;
mod server;
mod signed;

pub use crl::Revoked;
pub use describe::{CertSummary, CrlSummary, TlsDescription};
pub use server::{server_config, LoadedTls, ServerTls};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::protocol::Identity;

/// The one ALPN protocol jw speaks.
pub const ALPN: &[u8] = b"jw/1";

/// Why TLS material could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, SEC1 or PKCS#1)")]
    NoKey { path: PathBuf },
    #[error("{path} is not valid PEM: {}", pem_reason(source))]
    Pem { path: PathBuf, source: pem::Error },
    #[error("the private key {path} can be read by {who} (mode {mode:04o}); make it owner-only: chmod 600 {path}")]
    KeyExposed {
        path: PathBuf,
        who: &'static str,
        mode: u32,
    },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot use the certificates: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot use the CA certificates in {path}: {reason}")]
    Roots { path: PathBuf, reason: String },
    #[error("the certificate in {path} cannot be parsed: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path} holds no PEM revocation list (-----BEGIN X509 CRL-----); give the CRL file the client CA signed (crl.pem in the PKI directory)")]
    NoCrl { path: PathBuf },
    #[error("{path} holds a revocation list that cannot be read: {reason}")]
    BadCrl { path: PathBuf, reason: String },
    #[error("the revocation list {path} is issued by {issuer}, which is not a CA in {client_ca} (--client-ca); give the lists of the client CA jwd trusts (crl.pem in its PKI directory)")]
    CrlIssuer {
        path: PathBuf,
        issuer: String,
        client_ca: PathBuf,
    },
    #[error("the revocation list {path} names {issuer} as its issuer but is not signed by that CA's key in {client_ca}: it belongs to another PKI with the same CA name, or was altered")]
    CrlSignature {
        path: PathBuf,
        issuer: String,
        client_ca: PathBuf,
    },
    #[error("the client CA {ca} in {client_ca} has no revocation list among the --crl files: every client certificate it signed would be refused (unknown revocation status); add its CRL with --crl, or give no --crl at all")]
    CaWithoutCrl { ca: String, client_ca: PathBuf },
    #[error("{first} and {second} are both revocation lists of {issuer}: jwd would check only the first; give one --crl per CA, its newest list (crl.pem in its PKI directory)")]
    CrlTwice {
        issuer: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("cannot use the revocation lists {paths}: {reason}")]
    Crls { paths: String, reason: String },
}

/// The most a certificate, key or revocation list file may hold (a large
/// organisation's CRL is a few MiB).
const MAX_FILE: u64 = 64 << 20;

/// A TLS file's bytes: a regular file only, so that a FIFO or a device
/// named by mistake cannot block jwd's reload on SIGHUP (and with it
/// SIGTERM) or fill its memory.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    crate::settings_file::read_regular(path, MAX_FILE).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        source => TlsError::Pem {
            path: path.to_path_buf(),
            source,
        },
    })
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Roots {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// Loads a certificate chain and its key, and checks that the key belongs
/// to the leaf certificate, so a mismatch is a clear start-up error rather
/// than failed handshakes later.
pub(crate) fn load_pair(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = load_certs(cert_path)?;
    let key = load_key(key_path)?;
    let signing = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(TlsError::Rustls)?;
    let certified = rustls::sign::CertifiedKey::new(certs.clone(), signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok((certs, key))
        }
        Err(_) => Err(TlsError::Mismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        }),
    }
}

/// Refuses a private key file that anyone but its owner may read or write
/// (like ssh with an unprotected key): whoever reads the server's key can
/// pose as the server.
pub fn check_key_mode(path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o7777;
    let who = match (mode & 0o070 != 0, mode & 0o007 != 0) {
        (false, false) => return Ok(()),
        (true, false) => "its group",
        (false, true) => "every user",
        (true, true) => "its group and every user",
    };
    Err(TlsError::KeyExposed {
        path: path.to_path_buf(),
        who,
        mode,
    })
}

/// The client side: trusts `server_ca`, presents `cert`/`key`.
pub fn client_config(
    server_ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ClientConfig>, TlsError> {
    let (certs, private) = load_pair(cert, key)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(server_ca)?)
        .with_client_auth_cert(certs, private)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Whether a user name is acceptable (see protocol.md, "Identity").
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

/// The identity in a client certificate (already verified by rustls):
/// subject CN = user, subject O values = groups.
pub fn identity(cert: &CertificateDer<'_>, admin_group: &str) -> Result<Identity, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("cannot parse the client certificate: {e}"))?;
    let subject = parsed.subject();
    let cns: Vec<&str> = subject
        .iter_common_name()
        .map(|cn| {
            cn.as_str()
                .map_err(|_| "the certificate's CN is not a string".to_string())
        })
        .collect::<Result<_, _>>()?;
    let user = match cns.as_slice() {
        [one] => *one,
        [] => return Err("the client certificate has no subject CN (the user name)".into()),
        _ => return Err("the client certificate has more than one subject CN".into()),
    };
    if !valid_user_name(user) {
        return Err(format!(
            "the client certificate's CN {user:?} is not a valid user name (1-64 of A-Z a-z 0-9 . _ @ -)"
        ));
    }
    let groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .filter(|o| !o.is_empty() && o.len() <= 64)
        .map(String::from)
        .collect();
    let admin = groups.iter().any(|g| g == admin_group);
    Ok(Identity {
        user: user.to_string(),
        groups,
        admin,
    })
}

/// A PEM error in words (rustls's own prints the markers as byte lists).
fn pem_reason(e: &pem::Error) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a section has no \"-----END {}-----\" line (a file cut short, or still being written?)",
            text(end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => {
            format!("a malformed BEGIN line: {:?}", text(line))
        }
        pem::Error::Base64Decode(why) => format!("a section is not valid base64: {why}"),
        pem::Error::NoItemsFound => "no PEM section of the expected kind".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_file_cut_short_is_named_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("half.crt");
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
        let err = load_certs(&path).unwrap_err().to_string();
        assert!(
            err.contains("no \"-----END CERTIFICATE-----\" line"),
            "{err}"
        );
    }

    #[test]
    fn a_fifo_named_as_a_certificate_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crl.pem");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        match load_certs(&path) {
            Err(TlsError::Read { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn user_names() {
        for good in ["alice", "a", "bob.smith", "x_y@z-1"] {
            assert!(valid_user_name(good), "{good}");
        }
        for bad in ["", ".hidden", "-x", "a b", "a/b", &"x".repeat(65), "é"] {
            assert!(!valid_user_name(bad), "{bad}");
        }
    }
}
