//! A complete PKI for a jw deployment, made with rcgen: a server CA, a
//! client CA, a server certificate, and one certificate per user.
//!
//! Two CAs, not one: a client certificate must never be usable as a server
//! certificate, and the server's trust in clients (`--client-ca`) is then
//! independent of the clients' trust in the server.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::tls::valid_user_name;

/// Why the PKI could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot make a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0:?} is not a valid user name (1-64 of A-Z a-z 0-9 . _ @ -, not starting with . or -)"
    )]
    BadUser(String),
    #[error("{path} already exists; choose an empty directory or remove it")]
    Exists { path: PathBuf },
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct PkiOptions {
    /// DNS names and IP addresses of the server.
    pub server_names: Vec<String>,
    pub users: Vec<String>,
    /// Users who also get the `admin` group (subject O).
    pub admins: Vec<String>,
    /// Validity of every certificate, in days.
    pub days: i64,
    /// Also write the negative-test material: `rogue` (from a CA nobody
    /// trusts) and `expired` (user alice, expired).
    pub test_extras: bool,
}

impl Default for PkiOptions {
    fn default() -> Self {
        PkiOptions {
            server_names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            users: vec![],
            admins: vec![],
            days: 3650,
            test_extras: false,
        }
    }
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str, days: i64) -> Result<(Ca, String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "jw");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(days);
    let cert = params.self_signed(&key)?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    Ok((
        Ca {
            issuer: Issuer::new(params, key),
        },
        cert_pem,
        key_pem,
    ))
}

fn leaf(
    issuer: &Ca,
    cn: &str,
    org: Option<&str>,
    sans: Vec<String>,
    server: bool,
    valid: (OffsetDateTime, OffsetDateTime),
) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    if let Some(org) = org {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = valid;
    let cert = params.signed_by(&key, &issuer.issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a file; keys get mode 0600 and are never overwritten.
fn write(dir: &Path, name: &str, content: &str, secret: bool) -> Result<PathBuf, PkiError> {
    let path = dir.join(name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    if secret {
        opts.mode(0o600);
    } else {
        opts.mode(0o644);
    }
    let mut file = opts.open(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            PkiError::Exists { path: path.clone() }
        } else {
            PkiError::Write {
                path: path.clone(),
                source,
            }
        }
    })?;
    file.write_all(content.as_bytes())
        .map_err(|source| PkiError::Write {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

/// Makes the PKI in `out` (created if needed). Returns the files written.
pub fn init(out: &Path, opts: &PkiOptions) -> Result<Vec<PathBuf>, PkiError> {
    for user in opts.users.iter().chain(&opts.admins) {
        if !valid_user_name(user) {
            return Err(PkiError::BadUser(user.clone()));
        }
    }
    std::fs::create_dir_all(out).map_err(|source| PkiError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let now = OffsetDateTime::now_utc();
    let valid = (now - Duration::days(1), now + Duration::days(opts.days));
    let mut written = Vec::new();

    let (server_ca, cert, key) = ca("jw server CA", opts.days)?;
    written.push(write(out, "server-ca.crt", &cert, false)?);
    written.push(write(out, "server-ca.key", &key, true)?);
    let (client_ca, cert, key) = ca("jw client CA", opts.days)?;
    written.push(write(out, "client-ca.crt", &cert, false)?);
    written.push(write(out, "client-ca.key", &key, true)?);

    let (cert, key) = leaf(
        &server_ca,
        "jwd",
        None,
        opts.server_names.clone(),
        true,
        valid,
    )?;
    written.push(write(out, "server.crt", &cert, false)?);
    written.push(write(out, "server.key", &key, true)?);

    let users = opts.users.iter().map(|u| (u, None));
    let admins = opts.admins.iter().map(|u| (u, Some("admin")));
    for (user, org) in users.chain(admins) {
        let (cert, key) = leaf(&client_ca, user, org, vec![], false, valid)?;
        written.push(write(out, &format!("{user}.crt"), &cert, false)?);
        written.push(write(out, &format!("{user}.key"), &key, true)?);
    }

    if opts.test_extras {
        let (rogue_ca, _, _) = ca("rogue CA", opts.days)?;
        let (cert, key) = leaf(&rogue_ca, "alice", None, vec![], false, valid)?;
        written.push(write(out, "rogue.crt", &cert, false)?);
        written.push(write(out, "rogue.key", &key, true)?);
        let expired = (now - Duration::days(30), now - Duration::days(1));
        let (cert, key) = leaf(&client_ca, "alice", None, vec![], false, expired)?;
        written.push(write(out, "expired.crt", &cert, false)?);
        written.push(write(out, "expired.key", &key, true)?);
    }
    Ok(written)
}
