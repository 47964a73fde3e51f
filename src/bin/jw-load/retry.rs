//! A connection to jwd that comes back: for soak with restarts, an
//! operation whose connection could not be made or was lost is tried again
//! on a new connection (backoff from 20 ms to 500 ms) for at most
//! `OUTAGE_BOUND` per operation; an answer from jwd (an error reply
//! included) is never retried.

use std::future::Future;
use std::time::{Duration, Instant};

use jw::client::{Client, ClientError, ConnectOptions};

/// How long one operation may wait for jwd to come back.
pub(crate) const OUTAGE_BOUND: Duration = Duration::from_secs(30);
const FIRST_DELAY: Duration = Duration::from_millis(20);
const MAX_DELAY: Duration = Duration::from_millis(500);

/// Why an operation failed.
pub(crate) enum CallError {
    /// jwd answered with an error; `retried` when the operation had been
    /// sent before on a connection that was lost (it may have taken effect).
    Answer { error: ClientError, retried: bool },
    /// jwd could not be reached for `OUTAGE_BOUND`.
    Outage(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Answer { error, .. } => write!(f, "{error}"),
            CallError::Outage(e) => f.write_str(e),
        }
    }
}

/// A client that reconnects; counts its reconnections.
pub(crate) struct Retrying {
    opts: ConnectOptions,
    client: Option<Client>,
    /// The last connection was lost (rather than hung up).
    lost: bool,
    /// Connections made after a lost one.
    pub(crate) reconnects: u64,
}

impl Retrying {
    pub(crate) fn new(opts: &ConnectOptions) -> Self {
        Retrying {
            opts: opts.clone(),
            client: None,
            lost: false,
            reconnects: 0,
        }
    }

    /// Closes the current connection: the next operation opens a new one.
    pub(crate) fn hang_up(&mut self) {
        self.client = None;
    }

    /// Drops the current connection because it was lost outside an
    /// operation (a stream broke): the next connection counts as a
    /// reconnection.
    pub(crate) fn lost(&mut self) {
        self.client = None;
        self.lost = true;
    }

    /// The current connection, or a new one, tried until `began` +
    /// `OUTAGE_BOUND`.
    async fn client(&mut self, began: Instant) -> Result<Client, CallError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let mut delay = FIRST_DELAY;
        loop {
            match Client::connect(&self.opts).await {
                Ok(c) => {
                    self.client = Some(c.clone());
                    if self.lost {
                        self.reconnects += 1;
                        self.lost = false;
                    }
                    return Ok(c);
                }
                Err(e) if e.is_connection_lost() => {
                    if began.elapsed() > OUTAGE_BOUND {
                        return Err(CallError::Outage(format!(
                            "could not reach jwd for {OUTAGE_BOUND:?}: {e}"
                        )));
                    }
                    self.lost = true;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_DELAY);
                }
                Err(error) => {
                    return Err(CallError::Answer {
                        error,
                        retried: false,
                    })
                }
            }
        }
    }

    /// Runs `op` on a connection, again on a new one while the connection
    /// is lost, for at most `OUTAGE_BOUND` since the first failure.
    pub(crate) async fn call<T, F, Fut>(&mut self, mut op: F) -> Result<T, CallError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut began = Instant::now();
        let mut retried = false;
        loop {
            let client = self.client(began).await?;
            match op(client).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_connection_lost() => {
                    if !retried {
                        began = Instant::now();
                    }
                    retried = true;
                    self.client = None;
                    self.lost = true;
                    if began.elapsed() > OUTAGE_BOUND {
                        return Err(CallError::Outage(format!(
                            "the connection to jwd kept breaking for {OUTAGE_BOUND:?}: {e}"
                        )));
                    }
                }
                Err(error) => return Err(CallError::Answer { error, retried }),
            }
        }
    }

    /// Runs `op` once (on a new connection if needed): for a start, whose
    /// lost reply must not be sent again. `Ok(None)` if the connection was
    /// lost after `op` was sent (its effect is unknown).
    pub(crate) async fn once<T, F, Fut>(&mut self, op: F) -> Result<Option<T>, CallError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let client = self.client(Instant::now()).await?;
        match op(client).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_connection_lost() => {
                self.client = None;
                self.lost = true;
                Ok(None)
            }
            Err(error) => Err(CallError::Answer {
                error,
                retried: false,
            }),
        }
    }
}
