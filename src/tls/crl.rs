//! Certificate revocation lists of client certificates (`jwd --crl`):
//! read from PEM files and checked against the client CAs when loaded, so
//! a wrong list is a start (or reload) error rather than refused clients.
//! Fail closed: every list must be signed by a CA of `--client-ca`, and
//! with any list given every CA must have one (rustls refuses a
//! certificate whose revocation status it cannot know).
//!
//! The revoked serials are also kept ([`Revoked`]) so that jwd can close
//! connections opened, before a reload, with a certificate the new lists
//! revoke.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::signed::{self, SignatureError};
use super::{provider, read, TlsError};

/// A client CA as the revocation checks need it.
pub(crate) struct Ca {
    pub subject: String,
    subject_raw: Vec<u8>,
    spki: Vec<u8>,
}

/// The client CAs of `--client-ca`, parsed.
pub(crate) fn cas(path: &Path, certs: &[CertificateDer<'_>]) -> Result<Vec<Ca>, TlsError> {
    certs
        .iter()
        .map(|der| {
            let (_, cert) =
                x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| TlsError::Roots {
                    path: path.to_path_buf(),
                    reason: format!("a certificate cannot be parsed: {e}"),
                })?;
            Ok(Ca {
                subject: cert.subject().to_string(),
                subject_raw: cert.subject().as_raw().to_vec(),
                spki: cert.public_key().raw.to_vec(),
            })
        })
        .collect()
}

/// One revocation list as loaded.
pub(crate) struct Crl {
    pub path: PathBuf,
    pub der: CertificateRevocationListDer<'static>,
    /// The issuer's name (a CA of `--client-ca`).
    pub issuer: String,
    issuer_raw: Vec<u8>,
    /// The revoked serial numbers (DER integer contents).
    serials: HashSet<Vec<u8>>,
    pub this_update: String,
    pub next_update: Option<String>,
}

impl Crl {
    /// How many certificates it revokes.
    pub fn entries(&self) -> usize {
        self.serials.len()
    }
}

/// A time of a certificate or list, RFC 3339 (UTC).
pub(crate) fn time_text(t: x509_parser::time::ASN1Time) -> String {
    t.to_datetime()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Reads every list in `paths` and checks each against the client CAs
/// (`client_ca` is the file they came from, for the messages).
pub(crate) fn load(paths: &[PathBuf], client_ca: &Path, cas: &[Ca]) -> Result<Vec<Crl>, TlsError> {
    let algorithms = provider().signature_verification_algorithms.all;
    let mut crls = Vec::new();
    for path in paths {
        let pem = read(path)?;
        let ders = CertificateRevocationListDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Pem {
                path: path.clone(),
                source,
            })?;
        if ders.is_empty() {
            return Err(TlsError::NoCrl { path: path.clone() });
        }
        for der in ders {
            let bad = |reason: String| TlsError::BadCrl {
                path: path.clone(),
                reason,
            };
            let (_, parsed) = CertificateRevocationList::from_der(der.as_ref())
                .map_err(|e| bad(e.to_string()))?;
            let issuer_raw = parsed.issuer().as_raw().to_vec();
            let issuer = parsed.issuer().to_string();
            let Some(ca) = cas.iter().find(|ca| ca.subject_raw == issuer_raw) else {
                return Err(TlsError::CrlIssuer {
                    path: path.clone(),
                    issuer,
                    client_ca: client_ca.to_path_buf(),
                });
            };
            match signed::verify(der.as_ref(), &ca.spki, algorithms) {
                Ok(()) => {}
                Err(SignatureError::Invalid) => {
                    return Err(TlsError::CrlSignature {
                        path: path.clone(),
                        issuer,
                        client_ca: client_ca.to_path_buf(),
                    })
                }
                Err(SignatureError::Malformed) => {
                    return Err(bad("its signature or the CA's key is not valid DER".into()))
                }
                Err(SignatureError::Unsupported) => {
                    return Err(bad(format!(
                        "it is signed with an algorithm jwd does not support ({})",
                        parsed.signature_algorithm.algorithm
                    )))
                }
            }
            let serials = parsed
                .iter_revoked_certificates()
                .map(|r| r.raw_serial().to_vec())
                .collect();
            crls.push(Crl {
                path: path.clone(),
                issuer,
                issuer_raw,
                serials,
                this_update: time_text(parsed.last_update()),
                next_update: parsed.next_update().map(time_text),
                der: der.clone(),
            });
        }
    }
    // rustls consults only the first list of an issuer: a second one
    // (a newer list given after an older) would be ignored in the handshake.
    for (n, crl) in crls.iter().enumerate() {
        if let Some(first) = crls[..n].iter().find(|c| c.issuer_raw == crl.issuer_raw) {
            return Err(TlsError::CrlTwice {
                issuer: crl.issuer.clone(),
                first: first.path.clone(),
                second: crl.path.clone(),
            });
        }
    }
    if !paths.is_empty() {
        if let Some(ca) = cas
            .iter()
            .find(|ca| !crls.iter().any(|crl| crl.issuer_raw == ca.subject_raw))
        {
            return Err(TlsError::CaWithoutCrl {
                ca: ca.subject.clone(),
                client_ca: client_ca.to_path_buf(),
            });
        }
    }
    Ok(crls)
}

/// The serial numbers the revocation lists revoke, by issuer: what a
/// connection opened before a reload is checked against.
#[derive(Debug, Clone, Default)]
pub struct Revoked {
    by_issuer: HashMap<Vec<u8>, HashSet<Vec<u8>>>,
}

impl Revoked {
    pub(crate) fn new(crls: &[Crl]) -> Revoked {
        let mut by_issuer: HashMap<Vec<u8>, HashSet<Vec<u8>>> = HashMap::new();
        for crl in crls {
            by_issuer
                .entry(crl.issuer_raw.clone())
                .or_default()
                .extend(crl.serials.iter().cloned());
        }
        Revoked { by_issuer }
    }

    /// Whether no certificate is revoked.
    pub fn is_empty(&self) -> bool {
        self.by_issuer.values().all(HashSet::is_empty)
    }

    /// Whether a list revokes `cert` (a certificate that cannot be parsed
    /// is not this check's business: the handshake verified it).
    pub fn contains(&self, cert: &CertificateDer<'_>) -> bool {
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
            return false;
        };
        self.by_issuer
            .get(parsed.issuer().as_raw())
            .is_some_and(|serials| serials.contains(parsed.raw_serial()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
        KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
    };
    use time::{Duration, OffsetDateTime};

    fn ca(name: &str) -> (Issuer<'static, KeyPair>, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let cert = params.self_signed(&key).unwrap();
        (Issuer::new(params, key), cert.der().clone())
    }

    fn leaf(issuer: &Issuer<'static, KeyPair>, serial: u64) -> CertificateDer<'static> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "alice");
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, issuer).unwrap().der().clone()
    }

    fn crl_file(
        dir: &Path,
        name: &str,
        issuer: &Issuer<'static, KeyPair>,
        serials: &[u64],
    ) -> PathBuf {
        let now = OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now,
            next_update: now + Duration::days(1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(issuer)
        .unwrap();
        let path = dir.join(name);
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        path
    }

    #[test]
    fn lists_are_checked_against_the_cas_and_revoke_by_issuer_and_serial() {
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.crt");
        let (issuer, ca_der) = ca("client CA");
        let one = cas(&ca_path, std::slice::from_ref(&ca_der)).unwrap();

        let good = crl_file(dir.path(), "good.pem", &issuer, &[7]);
        let crls = load(&[good], &ca_path, &one).unwrap();
        assert_eq!(crls[0].entries(), 1);
        let revoked = Revoked::new(&crls);
        assert!(revoked.contains(&leaf(&issuer, 7)));
        assert!(!revoked.contains(&leaf(&issuer, 8)));
        // The same serial from another CA is another certificate.
        let (other, _) = ca("other CA");
        assert!(!revoked.contains(&leaf(&other, 7)));

        let foreign = crl_file(dir.path(), "foreign.pem", &other, &[]);
        assert!(matches!(
            load(&[foreign], &ca_path, &one),
            Err(TlsError::CrlIssuer { .. })
        ));
        let (same_name, _) = ca("client CA");
        let forged = crl_file(dir.path(), "forged.pem", &same_name, &[]);
        assert!(matches!(
            load(&[forged], &ca_path, &one),
            Err(TlsError::CrlSignature { .. })
        ));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(
            load(&[empty], &ca_path, &one),
            Err(TlsError::NoCrl { .. })
        ));

        let older = crl_file(dir.path(), "older.pem", &issuer, &[]);
        let newer = crl_file(dir.path(), "newer.pem", &issuer, &[7]);
        match load(&[older.clone(), newer.clone()], &ca_path, &one) {
            Err(TlsError::CrlTwice { first, second, .. }) => {
                assert_eq!((first, second), (older, newer))
            }
            other => panic!("expected CrlTwice, got {:?}", other.map(|_| ())),
        }

        let (_, second_der) = ca("second CA");
        let two = cas(&ca_path, &[ca_der, second_der]).unwrap();
        let good = crl_file(dir.path(), "good.pem", &issuer, &[]);
        match load(&[good], &ca_path, &two) {
            Err(TlsError::CaWithoutCrl { ca, .. }) => assert_eq!(ca, "CN=second CA"),
            other => panic!("expected CaWithoutCrl, got {:?}", other.map(|_| ())),
        }
        assert!(load(&[], &ca_path, &two).unwrap().is_empty());
    }
}
