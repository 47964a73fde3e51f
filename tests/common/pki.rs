//! A deployment's PKI for the operate tests: made and changed by the real
//! `jw certs` in a scratch directory, with what `jw certs` does not make
//! made here from the CA keys (a revocation list signed by any CA), and a
//! look at the certificate jwd presents.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rcgen::{
    CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType, Issuer,
    KeyIdMethod, KeyPair, RevocationReason, RevokedCertParams, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;

/// `jw certs init --out DIR --user U... --admin A...`.
pub fn init(dir: &Path, users: &[&str], admins: &[&str]) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jw"));
    command.args(["certs", "init", "--out"]).arg(dir);
    for user in users {
        command.args(["--user", user]);
    }
    for admin in admins {
        command.args(["--admin", admin]);
    }
    let out = command.output().expect("jw certs init runs");
    assert!(
        out.status.success(),
        "jw certs init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first certificate of a PEM file, DER.
pub fn cert_der(path: &Path) -> Vec<u8> {
    let pem = std::fs::read(path).unwrap();
    CertificateDer::pem_slice_iter(&pem)
        .next()
        .expect("a certificate")
        .unwrap()
        .as_ref()
        .to_vec()
}

/// The CA `DIR/NAME.crt` (with its key `DIR/NAME.key`) as an rcgen issuer:
/// the same subject, byte for byte, as rcgen encoded it at init.
fn issuer(dir: &Path, name: &str) -> Issuer<'static, KeyPair> {
    let der = cert_der(&dir.join(format!("{name}.crt")));
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
    let mut dn = DistinguishedName::new();
    for attr in cert.subject().iter_attributes() {
        let oid: Vec<u64> = attr.attr_type().iter().unwrap().collect();
        dn.push(DnType::from_oid(&oid), attr.as_str().unwrap());
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    let key = KeyPair::from_pem(&std::fs::read_to_string(dir.join(format!("{name}.key"))).unwrap())
        .unwrap();
    Issuer::new(params, key)
}

/// Writes `DIR/FILE`, a revocation list signed by the CA `DIR/CA.crt`
/// (`client-ca`, `server-ca`) that revokes the certificates
/// `DIR/USER.crt` of `revoked`. Returns its path.
pub fn crl(dir: &Path, file: &str, ca: &str, revoked: &[&str]) -> PathBuf {
    let now = OffsetDateTime::now_utc();
    let revoked_certs = revoked
        .iter()
        .map(|user| {
            let der = cert_der(&dir.join(format!("{user}.crt")));
            let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
            RevokedCertParams {
                serial_number: SerialNumber::from_slice(cert.raw_serial()),
                revocation_time: now,
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }
        })
        .collect();
    let list = CertificateRevocationListParams {
        this_update: now - Duration::minutes(1),
        next_update: now + Duration::days(30),
        crl_number: SerialNumber::from(now.unix_timestamp() as u64),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer(dir, ca))
    .unwrap();
    let path = dir.join(file);
    replace(&path, list.pem().unwrap().as_bytes(), 0o644);
    path
}

/// `jw certs COMMAND NAME --out DIR` (add-user, renew, revoke).
pub fn certs(dir: &Path, command: &str, name: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_jw"))
        .args(["certs", command, name, "--out"])
        .arg(dir)
        .output()
        .expect("jw certs runs");
    assert!(
        out.status.success(),
        "jw certs {command} {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Replaces a file at once (a new file renamed over it), with `mode`.
pub fn replace(path: &Path, content: &[u8], mode: u32) {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("new");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .unwrap();
    std::io::Write::write_all(&mut file, content).unwrap();
    drop(file);
    std::fs::rename(&tmp, path).unwrap();
}

/// The certificate jwd at `addr` presents (DER), seen by a TLS client
/// that trusts `DIR/server-ca.crt` and presents `DIR/USER.crt`.
pub async fn presented_certificate(addr: &str, dir: &Path, user: &str) -> Vec<u8> {
    let config: Arc<rustls::ClientConfig> = jw::tls::client_config(
        &dir.join("server-ca.crt"),
        &dir.join(format!("{user}.crt")),
        &dir.join(format!("{user}.key")),
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .expect("the handshake ends within 30 s")
    .expect("the handshake succeeds");
    tls.get_ref()
        .1
        .peer_certificates()
        .expect("a server certificate")[0]
        .as_ref()
        .to_vec()
}
