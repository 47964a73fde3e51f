//! The PKI's certificate revocation list (`crl.pem`): made and signed by
//! the client CA with rcgen, read back with x509-parser so that a new
//! revocation keeps every entry already there.

use std::path::Path;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateRevocationListDer;
use time::OffsetDateTime;

use super::ca::Ca;
use super::files::{read_text, write_atomic};
use super::issue::serial_text;
use super::{crl_path, PkiError, CRL_FILE};

/// A certificate the CRL lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Revocation {
    /// Lowercase hex of its bytes, no leading zero byte.
    pub(super) serial: String,
    pub(super) time: OffsetDateTime,
}

/// What a CRL says: its number and the certificates it revokes.
#[derive(Debug, Default)]
pub(super) struct Crl {
    pub(super) number: u64,
    pub(super) revoked: Vec<Revocation>,
}

/// Reads the CRL of the PKI in `dir`, which `ca` must have signed. No
/// file: an empty CRL numbered 0 (a PKI made before jw wrote CRLs).
pub(super) fn read(dir: &Path, ca: &Ca) -> Result<Crl, PkiError> {
    let path = crl_path(dir);
    if !path.exists() {
        return Ok(Crl::default());
    }
    let invalid = |reason: String| PkiError::Invalid {
        path: path.clone(),
        reason,
    };
    let pem = read_text(&path)?;
    let der = CertificateRevocationListDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| invalid(format!("not a PEM X509 CRL: {e}")))?;
    let (_, crl) = x509_parser::parse_x509_crl(der.as_ref())
        .map_err(|e| invalid(format!("not an X.509 CRL: {e}")))?;
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca.der)
        .map_err(|e| invalid(format!("cannot parse the client CA: {e}")))?;
    crl.verify_signature(ca_cert.public_key())
        .map_err(|_| invalid("not signed by the client CA (client-ca.crt)".into()))?;
    let number = match crl.crl_number() {
        None => 0,
        Some(n) => {
            let bytes = n.to_bytes_be();
            if bytes.len() > 8 {
                return Err(invalid("its CRL number is over 2^64".into()));
            }
            bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b))
        }
    };
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| Revocation {
            serial: serial_text(r.raw_serial()),
            time: r.revocation_date.to_datetime(),
        })
        .collect();
    Ok(Crl { number, revoked })
}

/// The bytes of a serial number's canonical hex text.
fn serial_bytes(serial: &str) -> Option<Vec<u8>> {
    let padded = if serial.len() % 2 == 1 {
        format!("0{serial}")
    } else {
        serial.to_string()
    };
    (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(padded.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Signs `crl` with `ca` and writes it to the PKI in `dir` at once; valid
/// until the CA expires (jwd does not enforce next_update).
pub(super) fn write(dir: &Path, ca: &Ca, crl: &Crl) -> Result<(), PkiError> {
    let now = OffsetDateTime::now_utc();
    if ca.not_after <= now {
        return Err(PkiError::Invalid {
            path: dir.join("client-ca.crt"),
            reason: "the client CA has expired; make a new PKI with jw certs init".into(),
        });
    }
    let revoked_certs = crl
        .revoked
        .iter()
        .map(|r| {
            let bytes = serial_bytes(&r.serial).ok_or_else(|| PkiError::Invalid {
                path: crl_path(dir),
                reason: format!("{:?} is not a serial number in hex", r.serial),
            })?;
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: r.time,
                reason_code: None,
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>, PkiError>>()?;
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: ca.not_after,
        crl_number: SerialNumber::from_slice(&crl.number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let pem = params.signed_by(&ca.issuer)?.pem()?;
    write_atomic(dir, CRL_FILE, &pem, false)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_convert_both_ways() {
        for text in ["01", "ff", "01a2b3", "7f00000000000000000000000000000a"] {
            assert_eq!(serial_text(&serial_bytes(text).unwrap()), text);
        }
        assert_eq!(serial_bytes("zz"), None);
    }
}
