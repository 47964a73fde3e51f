//! The connection to jwd from the global flags (`--addr`, `--ca`, `--cert`,
//! `--key` or their `JW_*` variables).

use std::path::PathBuf;

use jw::client::{Client, ConnectOptions};

use crate::args::Cli;
use crate::failure::Failure;

/// The connection settings from the flags, or a failure naming the
/// missing one.
pub(crate) fn connect_options(cli: &Cli) -> Result<ConnectOptions, Failure> {
    let need = |v: &Option<PathBuf>, flag: &str, env: &str| {
        v.clone()
            .ok_or_else(|| Failure(format!("no {flag} given: pass {flag} PATH or set {env}")))
    };
    Ok(ConnectOptions {
        addr: cli.addr.clone(),
        ca: need(&cli.ca, "--ca", "JW_CA")?,
        cert: need(&cli.cert, "--cert", "JW_CERT")?,
        key: need(&cli.key, "--key", "JW_KEY")?,
    })
}

/// A client connected to jwd, or a failure naming the missing flag.
pub(crate) async fn connect(cli: &Cli) -> Result<Client, Failure> {
    Ok(Client::connect(&connect_options(cli)?).await?)
}
