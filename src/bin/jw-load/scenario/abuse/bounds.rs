//! The bounds every abuse step runs under: answer timeouts, a bounded
//! future, and a pause the stop signal cuts short.

use std::time::Duration;

use tokio::sync::watch;

/// Longest wait for one answer to the normal workload (a connection, a
/// request, a logs event): the scenario ends even if jwd stalls.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait for one answer to an abuser.
pub(crate) const ABUSER_TIMEOUT: Duration = Duration::from_secs(10);

/// `f`, or an error if it takes longer than `limit`.
pub(crate) async fn within<T, E: std::fmt::Display>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer in {} s", limit.as_secs())),
    }
}

/// Sleeps for `d`; false if the abusers were told to stop meanwhile.
pub(crate) async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => false,
        _ = tokio::time::sleep(d) => true,
    }
}
