//! A complete PKI for a jw deployment, made with rcgen, and its lifecycle:
//! `jw certs init` makes it, `add-user` issues a user certificate, `renew`
//! replaces one (or the server's) with a new key, `revoke` puts every
//! unexpired certificate of a user into the CRL.
//!
//! Two CAs, not one: a client certificate must never be usable as a server
//! certificate, and the server's trust in clients (`--client-ca`) is then
//! independent of the clients' trust in the server.
//!
//! A PKI directory holds `server-ca.crt`/`.key`, `client-ca.crt`/`.key`,
//! `server.crt`/`.key`, `NAME.crt`/`.key` per user, and:
//! - `crl.pem`: the certificate revocation list of the client CA (PEM,
//!   `X509 CRL`), signed by it; empty (CRL number 1) after `init`, each
//!   `revoke` that adds entries keeps the old ones and adds 1 to the number.
//! - `issued.txt`: the record of every client certificate issued, one line
//!   a certificate, `SERIAL USER NOT-AFTER`: the serial number in lowercase
//!   hex (two digits a byte, no leading zero byte), the user name (subject CN), and the end of its
//!   validity in RFC 3339 UTC (`2027-12-02T06:00:00Z`). Lines starting with
//!   `#` are comments. `revoke NAME` revokes what it lists for NAME.
//! - `.lock`: locked (flock) by each `jw certs` run that changes the
//!   directory, so that concurrent runs lose no record line nor CRL entry.
//!
//! Serial numbers are 16 random bytes (positive): renewals never collide.

mod ca;
mod crl;
mod files;
mod init;
mod issue;
pub mod record;
mod users;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use init::init;
pub use users::{add_user, renew, revoke, Revoked};

use crate::tls::valid_user_name;

/// The CRL in a PKI directory.
pub const CRL_FILE: &str = "crl.pem";
/// The record of the client certificates issued, in a PKI directory.
pub const RECORD_FILE: &str = "issued.txt";
/// The lock file of a PKI directory.
const LOCK_FILE: &str = ".lock";
/// The name `renew` takes for the server's certificate.
pub const SERVER: &str = "server";
/// Names a user may not have: their files would be the PKI's own.
const RESERVED: &[&str] = &["server", "server-ca", "client-ca", "crl", "issued"];
/// The longest validity `--days` accepts (about 110 years).
pub const MAX_DAYS: i64 = 40_000;
/// The default validity of a user certificate (`add-user`, `renew`), in days.
pub const USER_DAYS: i64 = 365;

/// The CRL of the PKI in `dir`.
pub fn crl_path(dir: &Path) -> PathBuf {
    dir.join(CRL_FILE)
}

/// The record of the client certificates issued by the PKI in `dir`.
pub fn record_path(dir: &Path) -> PathBuf {
    dir.join(RECORD_FILE)
}

/// Why the PKI could not be made or changed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot make a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{0:?} is not a valid user name (1-64 of A-Z a-z 0-9 . _ @ -, not starting with . or -)"
    )]
    BadUser(String),
    #[error("{0:?} is not a valid group (1-64 of A-Z a-z 0-9 . _ @ -, not starting with . or -)")]
    BadGroup(String),
    #[error(
        "{0:?} cannot be a user: its files would be the PKI's own (server, server-ca, client-ca, crl, issued); choose another name"
    )]
    Reserved(String),
    #[error(
        "{0:?}: a certificate jw makes holds at most 2 groups (subject O values), --admin included"
    )]
    TooManyGroups(Vec<String>),
    #[error("--days {0}: a certificate is valid for 1 to {MAX_DAYS} days")]
    BadDays(i64),
    #[error("{path} already exists; choose an empty directory or remove it")]
    Exists { path: PathBuf },
    #[error("{dir} is not a PKI directory made by jw certs init: {missing} is missing")]
    NotPki { dir: PathBuf, missing: PathBuf },
    #[error("{0} already has a certificate; use jw certs renew {0}")]
    HasCertificate(String),
    #[error(
        "{name} has no certificate ({path} is missing); issue one with jw certs add-user {name}"
    )]
    NoCertificate { name: String, path: PathBuf },
    #[error("{name} has no certificate: none in {record}, no {cert}; nothing to revoke")]
    Unknown {
        name: String,
        record: PathBuf,
        cert: PathBuf,
    },
    #[error(
        "the server's certificate cannot be revoked: clients do not check a CRL for the server; renew it instead (jw certs renew server)"
    )]
    RevokeServer,
    #[error("cannot get random bytes for a serial number (getrandom): {0}")]
    Random(std::io::Error),
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl PkiError {
    /// Whether the error is in what the user asked for (a name, a group,
    /// a number of days), not in the files.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            PkiError::BadUser(_)
                | PkiError::BadGroup(_)
                | PkiError::TooManyGroups(_)
                | PkiError::Reserved(_)
                | PkiError::BadDays(_)
                | PkiError::RevokeServer
        )
    }
}

/// What `init` issues.
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

/// What `add_user` issues.
#[derive(Debug, Clone)]
pub struct UserOptions {
    /// The user name: subject CN.
    pub name: String,
    /// Also the `admin` group (subject O = admin).
    pub admin: bool,
    /// Groups: one subject O each.
    pub groups: Vec<String>,
    /// Validity in days.
    pub days: i64,
}

impl UserOptions {
    /// A plain user valid for [`USER_DAYS`].
    pub fn new(name: &str) -> UserOptions {
        UserOptions {
            name: name.to_string(),
            admin: false,
            groups: vec![],
            days: USER_DAYS,
        }
    }
}

/// Checks a name for a new user certificate.
fn check_user(name: &str) -> Result<(), PkiError> {
    if !valid_user_name(name) {
        return Err(PkiError::BadUser(name.to_string()));
    }
    if RESERVED.contains(&name) {
        return Err(PkiError::Reserved(name.to_string()));
    }
    Ok(())
}

/// Checks a validity in days.
fn check_days(days: i64) -> Result<(), PkiError> {
    if (1..=MAX_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(PkiError::BadDays(days))
    }
}
