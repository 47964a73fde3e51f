//! The lifecycle of the certificates in an existing PKI directory:
//! `add_user`, `renew` (a user's or the server's), `revoke`. Each holds the
//! directory's lock while it reads and changes the record and the CRL.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::ca;
use super::crl::{self, Revocation};
use super::files::{lock, write_atomic, write_new};
use super::issue::{self, issue, validity, Issued, Subject};
use super::record::{self, Entry};
use super::{check_days, check_user, crl_path, PkiError, UserOptions, SERVER};
use crate::tls::valid_user_name;

/// The group of the admin role (jwd's default `--admin-group`).
const ADMIN_GROUP: &str = "admin";

/// What `revoke` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub user: String,
    /// The CRL (rewritten only if `revoked` is not empty).
    pub crl: PathBuf,
    /// The CRL's number now.
    pub crl_number: u64,
    /// Serials (lowercase hex) this run added to the CRL.
    pub revoked: Vec<String>,
    /// Serials the CRL already listed.
    pub already: Vec<String>,
    /// Serials of certificates that have expired (left out: nobody can use them).
    pub expired: Vec<String>,
    /// Damaged lines of the record that name no serial of this user, in
    /// words: the revoke went on without them.
    pub skipped: Vec<String>,
}

/// Issues a certificate for a new user: `dir/NAME.crt` (0644) and
/// `dir/NAME.key` (0600), recorded. Returns the files written.
pub fn add_user(dir: &Path, opts: &UserOptions) -> Result<Vec<PathBuf>, PkiError> {
    let name = opts.name.as_str();
    check_user(name)?;
    check_days(opts.days)?;
    let mut orgs: Vec<String> = Vec::new();
    let admin = opts.admin.then_some(ADMIN_GROUP.to_string());
    for group in opts.groups.iter().chain(&admin) {
        if !valid_user_name(group) {
            return Err(PkiError::BadGroup(group.clone()));
        }
        if !orgs.contains(group) {
            orgs.push(group.clone());
        }
    }
    if orgs.len() > super::issue::MAX_GROUPS {
        return Err(PkiError::TooManyGroups(orgs));
    }
    let client_ca = ca::load(dir, "client-ca")?;
    let _lock = lock(dir)?;
    if dir.join(format!("{name}.crt")).exists() {
        return Err(PkiError::HasCertificate(name.to_string()));
    }
    let subject = Subject {
        cn: name.to_string(),
        orgs,
        names: vec![],
    };
    let issued = issue(&client_ca, &subject, false, validity(opts.days))?;
    let key = write_new(dir, &format!("{name}.key"), &issued.key_pem, true)?;
    let cert = write_new(dir, &format!("{name}.crt"), &issued.cert_pem, false)?;
    record_issued(dir, name, issued)?;
    Ok(vec![cert, key])
}

/// A new key and certificate for `name` (a user, or `server`), with the
/// subject (and for the server the DNS/IP names) of the current one,
/// valid for `days`; replaces both files at once. A user's is recorded.
/// Returns the files written.
pub fn renew(dir: &Path, name: &str, days: i64) -> Result<Vec<PathBuf>, PkiError> {
    check_days(days)?;
    let server = name == SERVER;
    if !server {
        check_user(name)?;
    }
    let signer = ca::load(dir, if server { "server-ca" } else { "client-ca" })?;
    let _lock = lock(dir)?;
    let path = dir.join(format!("{name}.crt"));
    if !path.exists() {
        return Err(if server {
            PkiError::NotPki {
                dir: dir.to_path_buf(),
                missing: path,
            }
        } else {
            PkiError::NoCertificate {
                name: name.to_string(),
                path,
            }
        });
    }
    let current = issue::read(&path, &signer)?;
    if !server && current.subject.cn != name {
        return Err(PkiError::Invalid {
            path,
            reason: format!(
                "its subject CN is {:?}, not {name:?}: it is not {name}'s certificate",
                current.subject.cn
            ),
        });
    }
    let issued = issue(&signer, &current.subject, server, validity(days))?;
    let key = write_atomic(dir, &format!("{name}.key"), &issued.key_pem, true)?;
    let cert = write_atomic(dir, &format!("{name}.crt"), &issued.cert_pem, false)?;
    if !server {
        record_issued(dir, name, issued)?;
    }
    Ok(vec![cert, key])
}

/// Puts every unexpired certificate of `name` (what the record lists for
/// it, and `dir/NAME.crt`) into the CRL, keeping its entries, with the
/// next CRL number; the CRL is left as it is when they all are there.
pub fn revoke(dir: &Path, name: &str) -> Result<Revoked, PkiError> {
    if name == SERVER {
        return Err(PkiError::RevokeServer);
    }
    check_user(name)?;
    let client_ca = ca::load(dir, "client-ca")?;
    let _lock = lock(dir)?;
    let (entries, skipped) = record::entries_of(dir, name)?;
    let mut certs: Vec<(String, OffsetDateTime)> = entries
        .into_iter()
        .map(|e| (e.serial, e.not_after))
        .collect();
    let path = dir.join(format!("{name}.crt"));
    if path.exists() {
        let current = issue::read(&path, &client_ca)?;
        if !certs.iter().any(|(serial, _)| *serial == current.serial) {
            certs.push((current.serial, current.not_after));
        }
    }
    if certs.is_empty() {
        return Err(PkiError::Unknown {
            name: name.to_string(),
            record: super::record_path(dir),
            cert: path,
        });
    }
    let mut crl = crl::read(dir, &client_ca)?;
    let now = OffsetDateTime::now_utc();
    let mut done = Revoked {
        user: name.to_string(),
        crl: crl_path(dir),
        crl_number: crl.number,
        revoked: vec![],
        already: vec![],
        expired: vec![],
        skipped,
    };
    for (serial, not_after) in certs {
        if crl.revoked.iter().any(|r| r.serial == serial) {
            done.already.push(serial);
        } else if not_after <= now {
            done.expired.push(serial);
        } else {
            crl.revoked.push(Revocation {
                serial: serial.clone(),
                time: now,
            });
            done.revoked.push(serial);
        }
    }
    if !done.revoked.is_empty() {
        crl.number = crl.number.checked_add(1).ok_or_else(|| PkiError::Invalid {
            path: crl_path(dir),
            reason: "its CRL number cannot grow further; make a new PKI".into(),
        })?;
        crl::write(dir, &client_ca, &crl)?;
        done.crl_number = crl.number;
    }
    Ok(done)
}

/// Adds a client certificate just issued to `name` to the record.
fn record_issued(dir: &Path, name: &str, issued: Issued) -> Result<(), PkiError> {
    record::append(
        dir,
        &Entry {
            serial: issued.serial,
            user: name.to_string(),
            not_after: issued.not_after,
        },
    )
}
