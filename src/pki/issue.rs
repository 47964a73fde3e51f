//! Leaf certificates: issuing one (a new key, a random serial) and reading
//! back what an existing one says (subject, names, serial, validity).

use std::path::Path;

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;

use super::ca::Ca;
use super::files::read_text;
use super::PkiError;

/// The OID of the subject attribute O (organizationName).
const O_OID: [u64; 4] = [2, 5, 4, 10];
/// The most subject O values (groups) a certificate jw makes holds.
pub(super) const MAX_GROUPS: usize = 2;

/// Who a certificate is for: subject CN, subject O values (groups), and
/// for a server certificate its DNS names and IP addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Subject {
    pub(super) cn: String,
    pub(super) orgs: Vec<String>,
    pub(super) names: Vec<String>,
}

/// A certificate just issued.
pub(super) struct Issued {
    pub(super) cert_pem: String,
    pub(super) key_pem: String,
    /// Lowercase hex of its bytes, no leading zero byte.
    pub(super) serial: String,
    pub(super) not_after: OffsetDateTime,
}

/// An existing certificate, read back.
pub(super) struct Existing {
    pub(super) subject: Subject,
    pub(super) serial: String,
    pub(super) not_after: OffsetDateTime,
}

/// A serial number's canonical text: lowercase hex of its bytes without
/// leading zero bytes ("0" for zero).
pub(super) fn serial_text(bytes: &[u8]) -> String {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let hex: String = bytes[start..].iter().map(|b| format!("{b:02x}")).collect();
    if hex.is_empty() {
        "0".into()
    } else {
        hex
    }
}

/// A serial number of 16 random bytes, positive and without a leading zero.
fn random_serial() -> Result<Vec<u8>, PkiError> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(PkiError::Random(e.into())),
        }
    }
    bytes[0] = (bytes[0] & 0x7f).max(1);
    Ok(bytes.to_vec())
}

/// Issues a certificate for `subject` signed by `ca`, valid from a day ago
/// (clocks differ) to `not_after`; a server certificate (ServerAuth, its
/// DNS/IP names) or a client's (ClientAuth).
pub(super) fn issue(
    ca: &Ca,
    subject: &Subject,
    server: bool,
    valid: (OffsetDateTime, OffsetDateTime),
) -> Result<Issued, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(subject.names.clone())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, subject.cn.as_str());
    // rcgen holds one value per attribute type: the second O is written
    // as a custom attribute of the same OID (the same DER).
    let o_types = [
        DnType::OrganizationName,
        DnType::CustomDnType(O_OID.to_vec()),
    ];
    if subject.orgs.len() > o_types.len() {
        return Err(PkiError::TooManyGroups(subject.orgs.clone()));
    }
    for (org, ty) in subject.orgs.iter().zip(o_types) {
        params.distinguished_name.push(ty, org.as_str());
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.use_authority_key_identifier_extension = true;
    let serial = random_serial()?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    (params.not_before, params.not_after) = valid;
    let cert = params.signed_by(&key, &ca.issuer)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        serial: serial_text(&serial),
        not_after: valid.1,
    })
}

/// The validity of a certificate issued now for `days`.
pub(super) fn validity(days: i64) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    // Whole seconds, as X.509 and the record keep them.
    let now = now - Duration::nanoseconds(now.nanosecond().into());
    (now - Duration::days(1), now + Duration::days(days))
}

/// Reads the certificate at `path`, which `ca` must have signed.
pub(super) fn read(path: &Path, ca: &Ca) -> Result<Existing, PkiError> {
    let invalid = |reason: String| PkiError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let pem = read_text(path)?;
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| invalid(format!("not a PEM certificate: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| invalid(format!("not an X.509 certificate: {e}")))?;
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca.der)
        .map_err(|e| invalid(format!("cannot parse its CA: {e}")))?;
    cert.verify_signature(Some(ca_cert.public_key()))
        .map_err(|_| invalid(format!("not issued by the CA {}", ca_cert.subject())))?;
    let text = |value: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        value
            .as_str()
            .map(str::to_string)
            .map_err(|_| invalid("a subject value is not text".into()))
    };
    let subject = cert.subject();
    let cns = subject
        .iter_common_name()
        .map(text)
        .collect::<Result<Vec<_>, _>>()?;
    let [cn] = cns.as_slice() else {
        return Err(invalid(format!(
            "has {} subject CNs; jw certs makes one",
            cns.len()
        )));
    };
    let orgs = subject
        .iter_organization()
        .map(text)
        .collect::<Result<Vec<_>, _>>()?;
    let mut names = Vec::new();
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| invalid(format!("bad subject alternative names: {e}")))?
    {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.to_string()),
                GeneralName::IPAddress(ip) => names.push(
                    ip_text(ip)
                        .ok_or_else(|| invalid(format!("an IP address of {} bytes", ip.len())))?,
                ),
                _ => {}
            }
        }
    }
    Ok(Existing {
        subject: Subject {
            cn: cn.clone(),
            orgs,
            names,
        },
        serial: serial_text(cert.raw_serial()),
        not_after: cert.validity().not_after.to_datetime(),
    })
}

/// An IP address from its 4 or 16 bytes.
fn ip_text(bytes: &[u8]) -> Option<String> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(std::net::Ipv4Addr::from(v4).to_string());
    }
    let v6 = <[u8; 16]>::try_from(bytes).ok()?;
    Some(std::net::Ipv6Addr::from(v6).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_canonical_hex() {
        assert_eq!(serial_text(&[0, 0x1a, 0x02]), "1a02");
        assert_eq!(serial_text(&[0, 0]), "0");
        assert_eq!(serial_text(&[0x7f, 0xff]), "7fff");
        let a = random_serial().unwrap();
        let b = random_serial().unwrap();
        assert_eq!(a.len(), 16);
        assert!(a[0] != 0 && a[0] < 0x80, "{a:?}");
        assert_ne!(a, b);
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(ip_text(&[127, 0, 0, 1]).as_deref(), Some("127.0.0.1"));
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(ip_text(&v6).as_deref(), Some("::1"));
        assert_eq!(ip_text(&[1, 2, 3]), None);
    }
}
