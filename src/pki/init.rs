//! `jw certs init`: a new PKI directory: both CAs, the server certificate,
//! the users' certificates, an empty CRL and the record of what was issued.

use std::path::{Path, PathBuf};

use time::Duration;

use super::ca::{self, Ca};
use super::crl::{self, Crl};
use super::files::{lock, write_new};
use super::issue::{issue, validity, Issued, Subject};
use super::record::{self, Entry};
use super::{check_days, check_user, crl_path, record_path, PkiError, PkiOptions};

/// Writes a user's certificate and key, and records it.
fn write_user(
    out: &Path,
    file: &str,
    issued: &Issued,
    user: &str,
) -> Result<[PathBuf; 2], PkiError> {
    let cert = write_new(out, &format!("{file}.crt"), &issued.cert_pem, false)?;
    let key = write_new(out, &format!("{file}.key"), &issued.key_pem, true)?;
    record::append(
        out,
        &Entry {
            serial: issued.serial.clone(),
            user: user.to_string(),
            not_after: issued.not_after,
        },
    )?;
    Ok([cert, key])
}

fn client(cn: &str, orgs: &[&str]) -> Subject {
    Subject {
        cn: cn.to_string(),
        orgs: orgs.iter().map(|o| o.to_string()).collect(),
        names: vec![],
    }
}

/// Makes the PKI in `out` (created if needed). Returns the files written.
pub fn init(out: &Path, opts: &PkiOptions) -> Result<Vec<PathBuf>, PkiError> {
    for user in opts.users.iter().chain(&opts.admins) {
        check_user(user)?;
    }
    check_days(opts.days)?;
    std::fs::create_dir_all(out).map_err(|source| PkiError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let _lock = lock(out)?;
    // Not over another PKI's record or CRL.
    for path in [record_path(out), crl_path(out)] {
        if path.exists() {
            return Err(PkiError::Exists { path });
        }
    }
    let valid = validity(opts.days);
    let mut written = Vec::new();

    let (server_ca, cert, key) = ca::generate("jw server CA", opts.days)?;
    written.push(write_new(out, "server-ca.crt", &cert, false)?);
    written.push(write_new(out, "server-ca.key", &key, true)?);
    let (client_ca, cert, key) = ca::generate("jw client CA", opts.days)?;
    written.push(write_new(out, "client-ca.crt", &cert, false)?);
    written.push(write_new(out, "client-ca.key", &key, true)?);

    let server = Subject {
        cn: "jwd".into(),
        orgs: vec![],
        names: opts.server_names.clone(),
    };
    let issued = issue(&server_ca, &server, true, valid)?;
    written.push(write_new(out, "server.crt", &issued.cert_pem, false)?);
    written.push(write_new(out, "server.key", &issued.key_pem, true)?);

    crl::write(
        out,
        &client_ca,
        &Crl {
            number: 1,
            revoked: vec![],
        },
    )?;
    written.push(crl_path(out));

    let users = opts.users.iter().map(|u| (u, client(u, &[])));
    let admins = opts.admins.iter().map(|u| (u, client(u, &["admin"])));
    for (user, subject) in users.chain(admins) {
        let issued = issue(&client_ca, &subject, false, valid)?;
        written.extend(write_user(out, user, &issued, user)?);
    }

    if opts.test_extras {
        written.extend(test_extras(out, &client_ca, opts.days)?);
    }
    if record_path(out).exists() {
        written.push(record_path(out));
    }
    Ok(written)
}

/// `rogue` (user alice from a CA nobody trusts) and `expired` (user alice,
/// expired yesterday), for negative tests; `expired` is recorded.
fn test_extras(out: &Path, client_ca: &Ca, days: i64) -> Result<Vec<PathBuf>, PkiError> {
    let mut written = Vec::new();
    let alice = client("alice", &[]);
    let (rogue_ca, _, _) = ca::generate("rogue CA", days)?;
    let issued = issue(&rogue_ca, &alice, false, validity(days))?;
    written.push(write_new(out, "rogue.crt", &issued.cert_pem, false)?);
    written.push(write_new(out, "rogue.key", &issued.key_pem, true)?);
    let (now_less_a_day, _) = validity(1);
    let expired = (now_less_a_day - Duration::days(29), now_less_a_day);
    let issued = issue(client_ca, &alice, false, expired)?;
    written.extend(write_user(out, "expired", &issued, "alice")?);
    Ok(written)
}
