//! Slow readers: many logs streams with a large credit on connections with
//! a small receive buffer, never read.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use jw::protocol::JobId;

use super::bounds::{within, ABUSER_TIMEOUT};
use super::counters::AbuseCounters;
use super::raw::{abusive_logs, raw_connect, raw_send, RawTls};
use crate::clients::share;

/// The receive buffer of a slow reader's socket, set before connecting.
pub(crate) const SLOW_RCVBUF: u32 = 4096;

/// `n` logs streams of `job` with a large credit over `connections` raw
/// connections with a small receive buffer, never read after the Welcome.
/// The connections are opened at once and returned, to be held open and
/// then dropped.
pub(crate) async fn open_slow_readers(
    addr: &str,
    config: &Arc<rustls::ClientConfig>,
    job: JobId,
    n: usize,
    connections: usize,
    counters: &Arc<AbuseCounters>,
) -> Vec<RawTls> {
    let connections = connections.min(n);
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let streams = share(n, connections, c);
            let (addr, config, counters) = (addr.to_string(), config.clone(), counters.clone());
            tokio::spawn(async move {
                let connected = within(
                    ABUSER_TIMEOUT,
                    raw_connect(&addr, config, Some(SLOW_RCVBUF)),
                )
                .await;
                let mut tls = match connected {
                    Ok(t) => t,
                    Err(e) => {
                        counters.refused("slow reader", &e);
                        return None;
                    }
                };
                counters.slow_connections.fetch_add(1, Ordering::Relaxed);
                let requests: Vec<_> = (1..=streams as u32).map(|s| abusive_logs(s, job)).collect();
                match within(ABUSER_TIMEOUT, raw_send(&mut tls, &requests)).await {
                    Ok(()) => {
                        counters
                            .slow_streams
                            .fetch_add(streams as u64, Ordering::Relaxed);
                    }
                    Err(e) => counters.error("slow reader", &e),
                }
                Some(tls)
            })
        })
        .collect();
    let mut held = Vec::new();
    for t in tasks {
        // Every step above is bounded: the task ends.
        if let Ok(Some(tls)) = t.await {
            held.push(tls);
        }
    }
    held
}
