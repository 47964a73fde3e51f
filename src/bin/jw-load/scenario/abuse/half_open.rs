//! Half-open connections: TCP and then nothing, or a ClientHello cut short.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::bounds::{pause, within, ABUSER_TIMEOUT};
use super::counters::AbuseCounters;

/// The first bytes of a TLS ClientHello: the record header (handshake,
/// version 3.1, 512 bytes), the handshake header (ClientHello, 508 bytes)
/// and the legacy version; the rest never comes.
pub(crate) const PARTIAL_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
];

/// One half-open connection, held until the abusers stop: TCP only, then
/// nothing (even `index`) or the first bytes of a ClientHello (odd). When
/// jwd closes it, another takes its place.
pub(crate) async fn half_open(
    addr: String,
    index: usize,
    mut stop: watch::Receiver<bool>,
    counters: Arc<AbuseCounters>,
) {
    while !*stop.borrow() {
        let mut tcp = match within(ABUSER_TIMEOUT, tokio::net::TcpStream::connect(&addr)).await {
            Ok(t) => t,
            Err(e) => {
                counters.refused("half-open", &format!("connect: {e}"));
                if !pause(&mut stop, Duration::from_millis(100)).await {
                    return;
                }
                continue;
            }
        };
        counters
            .half_open_connections
            .fetch_add(1, Ordering::Relaxed);
        let opened = Instant::now();
        if index % 2 == 1 {
            // A few bytes into an empty send buffer: never blocks for long.
            let _ = within(ABUSER_TIMEOUT, tcp.write_all(PARTIAL_HELLO)).await;
        }
        let closed = async {
            let mut buf = [0u8; 512];
            while let Ok(n) = tcp.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = closed => {}
        }
        let lived = opened.elapsed();
        counters.half_open_closed.fetch_add(1, Ordering::Relaxed);
        counters
            .half_open_lifetimes
            .lock()
            .expect("lifetimes lock")
            .push(lived.as_millis() as u64);
        // Closed at once (a connection cap, say): do not spin.
        if lived < Duration::from_secs(1) && !pause(&mut stop, Duration::from_millis(100)).await {
            return;
        }
    }
}
