//! What jwd's TLS material holds, as `jwd --check-config` prints it and
//! the reload log names it: the server certificate's subject, names and
//! validity, the client CAs, and each revocation list's issuer, entry
//! count and dates.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use super::crl::{time_text, Ca, Crl};
use super::TlsError;

/// The server certificate.
#[derive(Debug, Clone)]
pub struct CertSummary {
    pub subject: String,
    /// DNS names and IP addresses it is valid for.
    pub names: Vec<String>,
    /// RFC 3339.
    pub not_before: String,
    pub not_after: String,
}

/// One revocation list.
#[derive(Debug, Clone)]
pub struct CrlSummary {
    pub path: PathBuf,
    pub issuer: String,
    /// How many certificates it revokes.
    pub entries: usize,
    /// RFC 3339.
    pub this_update: String,
    pub next_update: Option<String>,
}

/// Everything loaded.
#[derive(Debug, Clone)]
pub struct TlsDescription {
    pub server: CertSummary,
    /// The subjects of the client CAs.
    pub client_cas: Vec<String>,
    pub crls: Vec<CrlSummary>,
}

pub(crate) fn describe(
    cert_path: &Path,
    cert: &CertificateDer<'_>,
    cas: &[Ca],
    crls: &[Crl],
) -> Result<TlsDescription, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| {
        TlsError::BadCertificate {
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_string()),
                GeneralName::IPAddress(ip) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*ip) {
                        names.push(std::net::Ipv4Addr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*ip) {
                        names.push(std::net::Ipv6Addr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(TlsDescription {
        server: CertSummary {
            subject: parsed.subject().to_string(),
            names,
            not_before: time_text(parsed.validity().not_before),
            not_after: time_text(parsed.validity().not_after),
        },
        client_cas: cas.iter().map(|ca| ca.subject.clone()).collect(),
        crls: crls
            .iter()
            .map(|crl| CrlSummary {
                path: crl.path.clone(),
                issuer: crl.issuer.clone(),
                entries: crl.entries(),
                this_update: crl.this_update.clone(),
                next_update: crl.next_update.clone(),
            })
            .collect(),
    })
}

impl fmt::Display for TlsDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.server;
        writeln!(f, "server certificate: {}", s.subject)?;
        writeln!(f, "  names: {}", s.names.join(", "))?;
        writeln!(f, "  valid: {} to {}", s.not_before, s.not_after)?;
        for ca in &self.client_cas {
            writeln!(f, "client CA: {ca}")?;
        }
        if self.crls.is_empty() {
            writeln!(
                f,
                "revocation lists: none (no client certificate is checked for revocation)"
            )?;
        }
        for crl in &self.crls {
            writeln!(
                f,
                "revocation list {}: issuer {}, {} revoked, issued {}{}",
                crl.path.display(),
                crl.issuer,
                crl.entries,
                crl.this_update,
                crl.next_update
                    .as_deref()
                    .map(|n| format!(", next update {n}"))
                    .unwrap_or_default()
            )?;
        }
        Ok(())
    }
}
