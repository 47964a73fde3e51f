//! The clean-up after the abusers: their jobs stopped and removed, bounded.

use std::time::Instant;

use jw::client::Client;
use jw::protocol::JobId;

use super::bounds::{within, ABUSER_TIMEOUT};

/// Stops (grace 0) and removes `ids`, 32 at a time, every call bounded;
/// gives up at `deadline`, or after a batch of which none could be removed
/// (jwd is not answering). Returns how many were not removed.
pub(crate) async fn stop_and_remove(client: &Client, ids: &[JobId], deadline: Instant) -> usize {
    let mut left = 0;
    for (i, batch) in ids.chunks(32).enumerate() {
        if Instant::now() >= deadline {
            return left + ids.len() - i * 32;
        }
        let handles: Vec<_> = batch
            .iter()
            .map(|&id| {
                let c = client.clone();
                tokio::spawn(async move {
                    let _ = within(ABUSER_TIMEOUT, c.stop(id, 0)).await;
                    within(ABUSER_TIMEOUT, c.remove(id)).await.is_ok()
                })
            })
            .collect();
        let mut failed = 0;
        for h in handles {
            if !h.await.unwrap_or(false) {
                failed += 1;
            }
        }
        left += failed;
        if failed == batch.len() {
            return left + ids.len().saturating_sub((i + 1) * 32);
        }
    }
    left
}
