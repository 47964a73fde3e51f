//! Noticing that the reader of jw's stdout went away (`jw run ... | head`)
//! while the job writes nothing: a pipe's write end reports an error once
//! its last reader closed, which epoll tells without a write.

use std::os::fd::{AsFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Resolves when stdout is a pipe or socket whose reader has gone away;
/// never when it is anything else (a terminal hangs up with SIGHUP; a file
/// has no reader).
pub(crate) async fn stdout_gone() {
    let stdout = std::io::stdout();
    let watchable = rustix::fs::fstat(stdout.as_fd())
        .map(|st| {
            let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
            matches!(
                kind,
                rustix::fs::FileType::Fifo | rustix::fs::FileType::Socket
            )
        })
        .unwrap_or(false);
    if !watchable {
        return std::future::pending().await;
    }
    // A copy of the descriptor the watch owns: the same pipe, open for as
    // long as the watch.
    let Ok(copy) = rustix::io::dup(stdout.as_fd()) else {
        return std::future::pending().await;
    };
    // SAFETY: `copy` is an open descriptor owned by the AsyncFd from here
    // to its drop, and its as_raw_fd is the same number all along.
    let registered = unsafe { AsyncFd::register_with_interest(copy, Interest::ERROR) };
    let watched: AsyncFd<OwnedFd> = match registered {
        Ok(watched) => watched,
        Err(_) => return std::future::pending().await,
    };
    match watched.ready(Interest::ERROR).await {
        Ok(mut guard) => guard.retain_ready(),
        Err(_) => std::future::pending().await,
    }
}
