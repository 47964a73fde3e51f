//! `jw run`'s hold on its job: a `Hold` stream kept open on the current
//! connection, and opened again on each new one after a reconnect. While
//! one is open jwd keeps the tied job; when none has been for the tie
//! (`--reconnect-timeout`), jwd stops it: so a `jw run` that dies or loses
//! jwd for good does not leave its job behind.

use std::io::Write;

use jw::client::Client;
use jw::protocol::JobId;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Holds job `id` on the connection in `connection` (the latest one) until
/// the job ends or the task is aborted.
pub(crate) fn hold(id: JobId, mut connection: watch::Receiver<Client>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let client = connection.borrow_and_update().clone();
            match client.hold(id).await {
                Ok(_) => return,
                Err(e) if e.is_connection_lost() => {
                    drop(client);
                    // The follow makes the next connection; none: it gave up.
                    if connection.changed().await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "jw: cannot hold job {id} ({e}): it will be stopped \
                         --reconnect-timeout after its start unless a jw holds it"
                    );
                    return;
                }
            }
        }
    })
}
