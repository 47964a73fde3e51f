//! A start storm: `sleep 30` jobs started as fast as jwd answers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use jw::client::{Client, ClientError, ConnectOptions};
use jw::protocol::{ErrorCode, JobId};
use tokio::sync::watch;

use super::bounds::{pause, ABUSER_TIMEOUT};
use super::counters::{error_key, AbuseCounters};
use crate::jobs::true_job;

/// Starts `sleep 30` jobs as fast as jwd answers until told to stop;
/// returns the ids of the jobs admitted.
pub(crate) async fn start_storm(
    opts: ConnectOptions,
    mut stop: watch::Receiver<bool>,
    counters: Arc<AbuseCounters>,
) -> Vec<JobId> {
    let mut ids = Vec::new();
    let mut client: Option<Client> = None;
    let mut req = true_job();
    req.command = "sleep".into();
    req.args = vec!["30".into()];
    while !*stop.borrow() {
        let c = match &client {
            Some(c) => c.clone(),
            None => match tokio::time::timeout(ABUSER_TIMEOUT, Client::connect(&opts)).await {
                Ok(Ok(c)) => {
                    client = Some(c.clone());
                    c
                }
                failed => {
                    let e = failed.map_or("timeout".into(), |r| {
                        r.err().map(|e| error_key(&e)).unwrap_or_default()
                    });
                    counters.refused("storm", &e);
                    if !pause(&mut stop, Duration::from_millis(100)).await {
                        break;
                    }
                    continue;
                }
            },
        };
        match tokio::time::timeout(ABUSER_TIMEOUT, c.start(req.clone())).await {
            Ok(Ok(id)) => {
                counters.storm_admitted.fetch_add(1, Ordering::Relaxed);
                ids.push(id);
            }
            Ok(Err(e)) => {
                if e.code() == Some(ErrorCode::RESOURCE_EXHAUSTED) {
                    counters.storm_refused.fetch_add(1, Ordering::Relaxed);
                }
                counters.error("storm", &error_key(&e));
                if !matches!(e, ClientError::Server(_)) {
                    client = None;
                }
            }
            Err(_) => {
                // The job may have started: it ends by itself in 30 s.
                counters.error("storm", "timeout");
                client = None;
            }
        }
    }
    ids
}
