//! Hang-ups: connect, open a logs stream, read a little, reset.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jw::protocol::JobId;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::bounds::{pause, within, ABUSER_TIMEOUT};
use super::counters::AbuseCounters;
use super::raw::{abusive_logs, raw_connect, raw_send};

/// What a hang-up reads before it resets its connection.
pub(crate) const HANGUP_READ: usize = 64 << 10;

/// Hang-ups in flight at once.
pub(crate) const HANGUP_WORKERS: usize = 4;

/// `count` hang-ups, one every `period`: connect, open a logs stream of
/// `job`, read a little, reset the connection (SO_LINGER 0).
pub(crate) async fn hang_ups(
    addr: String,
    config: Arc<rustls::ClientConfig>,
    job: JobId,
    count: usize,
    period: Duration,
    mut stop: watch::Receiver<bool>,
    counters: Arc<AbuseCounters>,
) {
    for _ in 0..count {
        if *stop.borrow() {
            return;
        }
        let began = Instant::now();
        match within(ABUSER_TIMEOUT, raw_connect(&addr, config.clone(), None)).await {
            Ok(mut tls) => {
                let read = within(ABUSER_TIMEOUT, async {
                    raw_send(&mut tls, &[abusive_logs(1, job)]).await?;
                    let mut buf = vec![0u8; 16 << 10];
                    let mut got = 0;
                    while got < HANGUP_READ {
                        let n = tls.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
                        if n == 0 {
                            return Err("closed: by jwd mid-stream".to_string());
                        }
                        got += n;
                    }
                    Ok::<_, String>(got)
                })
                .await;
                // Reset, not close: the data jwd sent stays unread.
                let _ = tls.get_ref().0.set_zero_linger();
                drop(tls);
                match read {
                    Ok(n) => {
                        counters.hangups.fetch_add(1, Ordering::Relaxed);
                        counters.hangup_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) => counters.error("hang-up", &e),
                }
            }
            Err(e) => counters.refused("hang-up", &e),
        }
        if !pause(&mut stop, period.saturating_sub(began.elapsed())).await {
            return;
        }
    }
}
