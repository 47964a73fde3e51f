//! The two CAs of a PKI: made new by `init`, or loaded from a PKI
//! directory (certificate and key) to issue, renew and sign the CRL.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

use super::files::read_text;
use super::PkiError;

/// A CA that can sign: its issuer (name and key), its certificate (DER)
/// and the end of its validity.
pub(super) struct Ca {
    pub(super) issuer: Issuer<'static, KeyPair>,
    pub(super) der: Vec<u8>,
    pub(super) not_after: OffsetDateTime,
}

/// A new self-signed CA named `name`, valid for `days`; with the PEM of
/// its certificate and key.
pub(super) fn generate(name: &str, days: i64) -> Result<(Ca, String, String), PkiError> {
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
    let not_after = params.not_after;
    let cert = params.self_signed(&key)?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    Ok((
        Ca {
            issuer: Issuer::new(params, key),
            der: cert.der().to_vec(),
            not_after,
        },
        cert_pem,
        key_pem,
    ))
}

/// The CA `NAME.crt` + `NAME.key` of the PKI directory `dir`.
pub(super) fn load(dir: &Path, name: &str) -> Result<Ca, PkiError> {
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    for path in [&cert_path, &key_path] {
        if !path.exists() {
            return Err(PkiError::NotPki {
                dir: dir.to_path_buf(),
                missing: path.clone(),
            });
        }
    }
    let invalid = |path: &Path, reason: String| PkiError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let cert_pem = read_text(&cert_path)?;
    let key_pem = read_text(&key_path)?;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| invalid(&cert_path, format!("not a PEM certificate: {e}")))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| invalid(&cert_path, format!("not an X.509 certificate: {e}")))?;
    if !parsed.is_ca() {
        return Err(invalid(&cert_path, "not a CA certificate".into()));
    }
    let not_after = parsed.validity().not_after.to_datetime();
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| invalid(&key_path, format!("not a private key rcgen can use: {e}")))?;
    if key.public_key_raw() != parsed.public_key().subject_public_key.data.as_ref() {
        return Err(invalid(
            &key_path,
            format!("not the key of {}", cert_path.display()),
        ));
    }
    let issuer = Issuer::from_ca_cert_der(&der, key)
        .map_err(|e| invalid(&cert_path, format!("cannot sign with this CA: {e}")))?;
    Ok(Ca {
        issuer,
        der: der.to_vec(),
        not_after,
    })
}
