//! Work spread over several connections to jwd.

use jw::client::{Client, ConnectOptions};

/// Part `i` of `total` split as evenly as possible over `parts`.
pub(crate) fn share(total: usize, parts: usize, i: usize) -> usize {
    total / parts + usize::from(i < total % parts)
}

/// `n` connections to the server.
pub(crate) async fn connect_all(opts: &ConnectOptions, n: usize) -> Result<Vec<Client>, String> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(Client::connect(opts).await.map_err(|e| e.to_string())?);
    }
    Ok(clients)
}
