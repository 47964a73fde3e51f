//! The connection to jwd from the global flags (`--addr`, `--ca`, `--cert`,
//! `--key`, `--connect-timeout` or their `JW_*` variables), and what a
//! failure to connect tells the user to check.

use std::path::PathBuf;

use jw::client::{Client, ClientError, ConnectOptions};

use crate::args::Cli;
use crate::failure::Failure;

/// The connection settings from the flags, or a usage failure naming the
/// missing one.
pub(crate) fn connect_options(cli: &Cli) -> Result<ConnectOptions, Failure> {
    let need = |v: &Option<PathBuf>, flag: &str, env: &str| {
        v.clone().ok_or_else(|| {
            Failure::usage(format!("no {flag} given: pass {flag} PATH or set {env}"))
        })
    };
    Ok(ConnectOptions {
        addr: cli.addr.clone(),
        ca: need(&cli.ca, "--ca", "JW_CA")?,
        cert: need(&cli.cert, "--cert", "JW_CERT")?,
        key: need(&cli.key, "--key", "JW_KEY")?,
    })
}

/// A client connected to jwd within `--connect-timeout` a phase.
pub(crate) async fn connect(cli: &Cli) -> Result<Client, Failure> {
    let options = connect_options(cli)?;
    Client::connect_within(&options, cli.connect_timeout)
        .await
        .map_err(|e| connect_failure(&options, e))
}

/// A connection failure with what to check: a server certificate that
/// --ca does not verify names the CA file.
pub(crate) fn connect_failure(options: &ConnectOptions, e: ClientError) -> Failure {
    let text = e.to_string();
    let mut failure = Failure::from(e);
    if text.contains("UnknownIssuer") {
        failure.message = format!(
            "the server's certificate at {} is not signed by the CA in --ca {}: check JW_CA/--ca \
             (it must be the CA that signed jwd's certificate)",
            options.addr,
            options.ca.display()
        );
    } else if text.contains("NotValidForName") {
        failure.message = format!(
            "the server's certificate is not for {:?}: use the name or address it was issued \
             for in --addr/JW_ADDR ({text})",
            options.addr
        );
    }
    failure
}
