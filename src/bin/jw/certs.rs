//! `jw certs`: a deployment's CAs and certificates (`jw::pki`): init,
//! add-user, renew, revoke; prints the paths written (and for revoke,
//! what it revoked).

use crate::args::CertsCommand;
use crate::failure::Failure;

/// How jwd learns of a new CRL or server certificate.
const RELOAD: &str = "send jwd SIGHUP (systemctl reload jwd) to apply";

fn failure(e: jw::pki::PkiError) -> Failure {
    if e.is_usage() {
        Failure::usage(e.to_string())
    } else {
        Failure::new(e.to_string())
    }
}

fn print_paths(written: Vec<std::path::PathBuf>) {
    for path in written {
        println!("{}", path.display());
    }
}

/// `jw certs init|add-user|renew|revoke ...`.
pub(crate) fn certs(command: &CertsCommand) -> Result<u8, Failure> {
    match command {
        CertsCommand::Init {
            out,
            server_names,
            users,
            admins,
            days,
            test_extras,
        } => {
            let opts = jw::pki::PkiOptions {
                server_names: server_names.clone(),
                users: users.clone(),
                admins: admins.clone(),
                days: *days,
                test_extras: *test_extras,
            };
            print_paths(jw::pki::init(out, &opts).map_err(failure)?);
        }
        CertsCommand::AddUser {
            name,
            admin,
            groups,
            days,
            out,
        } => {
            let opts = jw::pki::UserOptions {
                name: name.clone(),
                admin: *admin,
                groups: groups.clone(),
                days: *days,
            };
            print_paths(jw::pki::add_user(out, &opts).map_err(failure)?);
        }
        CertsCommand::Renew { name, days, out } => {
            print_paths(jw::pki::renew(out, name, *days).map_err(failure)?);
            if name == jw::pki::SERVER {
                eprintln!("{RELOAD}");
            }
        }
        CertsCommand::Revoke { name, out } => {
            let done = jw::pki::revoke(out, name).map_err(failure)?;
            print_revoked(&done);
        }
    }
    Ok(0)
}

/// What `revoke` did, one serial a line, then the CRL.
fn print_revoked(done: &jw::pki::Revoked) {
    let user = &done.user;
    for reason in &done.skipped {
        eprintln!(
            "jw: warning: {} {reason}: skipped (if it was one of {user}'s certificates, it is not revoked)",
            jw::pki::record_path(done.crl.parent().unwrap_or(std::path::Path::new("."))).display()
        );
    }
    for serial in &done.revoked {
        println!("{user}: revoked serial {serial}");
    }
    for serial in &done.already {
        println!("{user}: serial {serial} was already revoked");
    }
    for serial in &done.expired {
        println!("{user}: serial {serial} has expired (left out)");
    }
    let crl = done.crl.display();
    let number = done.crl_number;
    if !done.revoked.is_empty() {
        println!("wrote {crl} (CRL number {number})");
    } else if !done.already.is_empty() {
        println!("{user} was already revoked: {crl} unchanged (CRL number {number})");
    } else {
        println!("every certificate of {user} has expired: nothing to revoke; {crl} unchanged");
        return;
    }
    println!("{RELOAD}");
}
