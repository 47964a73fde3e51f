//! `jw certs`: a deployment's CAs and certificates (`jw::pki`); prints the
//! paths written.

use crate::args::CertsCommand;
use crate::failure::Failure;

/// `jw certs init --out DIR ...`.
pub(crate) fn certs(command: &CertsCommand) -> Result<u8, Failure> {
    let CertsCommand::Init {
        out,
        server_names,
        users,
        admins,
        days,
        test_extras,
    } = command;
    let written = jw::pki::init(
        out,
        &jw::pki::PkiOptions {
            server_names: server_names.clone(),
            users: users.clone(),
            admins: admins.clone(),
            days: *days,
            test_extras: *test_extras,
        },
    )
    .map_err(|e| Failure::new(e.to_string()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(0)
}
