//! The async client (tokio + tokio-rustls), used by `jw` and `jw-load`.
//!
//! One connection carries many streams: a background task reads frames and
//! routes each event to its stream's channel; requests are written under a
//! lock. The client grants `Output` credit as the caller consumes chunks,
//! so its memory is bounded by the credit it chose. A job's input is
//! written through an [`Attachment`] (`attach.rs`).

mod attach;
mod connect;
mod jobs;

pub use attach::{AttachControl, Attachment, MAX_AHEAD, MAX_INPUT_FRAME};
pub use connect::{Phase, DEFAULT_CONNECT_TIMEOUT};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;

use crate::protocol::{
    self, ClientMessage, ErrorCode, ErrorInfo, Event, FrameDecoder, JobId, JobInfo, LogsRequest,
    Request, ServerMessage, StartRequest, Stdin, Welcome,
};
use crate::tls::TlsError;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `host:port`.
    pub addr: String,
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    /// The user's certificate and key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach jwd at {addr}: {source} (is jwd running and listening there?)")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// A phase of the connection took longer than its bound.
    #[error("{}", timeout_text(addr, *phase, *after))]
    Timeout {
        addr: String,
        phase: Phase,
        after: Duration,
    },
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("the TLS handshake with {addr} failed: {reason}")]
    Handshake {
        addr: String,
        reason: String,
        /// The transport broke (reset, closed, timed out), as opposed to a
        /// TLS failure such as a certificate that does not verify.
        lost: bool,
    },
    /// The server refused the connection: `reason` says why and what to
    /// do (see `connect::refusal`).
    #[error("{reason}")]
    Rejected {
        reason: String,
        /// The server closed the connection without an alert: a refusal
        /// for now (too many connections, shutting down) or a crash.
        closed: bool,
        /// The TLS alert the server sent, if it sent one (in TLS 1.3 a
        /// refused client certificate is learnt on the first read after
        /// the handshake).
        alert: Option<rustls::AlertDescription>,
    },
    #[error("{} ({})", .0.message, .0.code)]
    Server(ErrorInfo),
    #[error("the server closed the connection: {} ({})", .0.message, .0.code)]
    Fatal(ErrorInfo),
    #[error("the connection to jwd was lost")]
    Closed,
    #[error("protocol error: {0}")]
    Protocol(#[from] protocol::ProtocolError),
    #[error("unexpected reply from the server: {0}")]
    Unexpected(String),
    /// The server speaks an older protocol than the request needs.
    #[error("jwd speaks protocol {server}; {what} needs a jwd that speaks {needed} (upgrade jwd)")]
    OldServer {
        server: u32,
        needed: u32,
        /// What the user asked for that needs it.
        what: &'static str,
    },
    /// The job's input was closed (the job ended, or its input was ended)
    /// while writing to it.
    #[error("the job's input is closed (the job ended, or its input was ended) after {input_offset} bytes")]
    InputClosed { input_offset: u64 },
}

impl ClientError {
    /// The server's error code, if the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(e) | ClientError::Fatal(e) => Some(e.code),
            _ => None,
        }
    }

    /// Whether the connection to jwd broke or could not be made (refused,
    /// reset, closed without an answer), as opposed to an answer: an error
    /// reply, a certificate the server refuses, a protocol violation. A
    /// client may retry the first kind on a new connection.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            ClientError::Closed | ClientError::Connect { .. } | ClientError::Timeout { .. } => true,
            ClientError::Handshake { lost, .. } => *lost,
            ClientError::Rejected { closed, .. } => *closed,
            _ => false,
        }
    }
}

/// What a connection that timed out in `phase` tells the user.
fn timeout_text(addr: &str, phase: Phase, after: Duration) -> String {
    let secs = after.as_secs_f64();
    match phase {
        Phase::Tcp => format!(
            "cannot reach jwd at {addr}: no answer to the TCP connect within {secs}s (is the \
             address right and jwd running? a slow network: raise --connect-timeout or \
             JW_CONNECT_TIMEOUT)"
        ),
        Phase::Handshake => format!(
            "{addr} accepted the connection but did not complete jw's TLS handshake within \
             {secs}s: it is not jwd, or jwd is stuck (check --addr/JW_ADDR names jwd's port; \
             a slow network: raise --connect-timeout or JW_CONNECT_TIMEOUT)"
        ),
    }
}

/// Whether an I/O error means the transport broke rather than that TLS
/// refused the peer (rustls reports its own failures as `InvalidData`).
fn transport_broke(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | TimedOut | NotConnected
    )
}

type EventTx = mpsc::UnboundedSender<Result<Event, ClientError>>;

/// Open streams; `closed` once the connection ended (checked under the same
/// lock as inserts, so no stream opened late waits forever).
#[derive(Default)]
struct Streams {
    map: HashMap<u32, EventTx>,
    closed: bool,
}

struct Inner {
    writer: tokio::sync::Mutex<WriteHalf<TlsStream<TcpStream>>>,
    streams: Mutex<Streams>,
    next_stream: AtomicU32,
    welcome: Welcome,
    /// The routing task: ended when the last client handle is dropped, so
    /// dropping a `Client` closes its connection.
    router: std::sync::OnceLock<tokio::task::AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(router) = self.router.get() {
            router.abort();
        }
    }
}

/// A connected, greeted client. Cheap to clone; all clones share the
/// connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// One open stream.
pub struct Stream {
    id: u32,
    rx: mpsc::UnboundedReceiver<Result<Event, ClientError>>,
    client: Client,
    done: bool,
}

impl Client {
    /// What the server said about us.
    pub fn welcome(&self) -> &Welcome {
        &self.inner.welcome
    }

    async fn send(&self, msg: &ClientMessage) -> Result<(), ClientError> {
        let mut frame = Vec::new();
        protocol::encode(msg, &mut frame)?;
        let mut w = self.inner.writer.lock().await;
        w.write_all(&frame).await.map_err(|_| ClientError::Closed)?;
        w.flush().await.map_err(|_| ClientError::Closed)
    }

    /// Opens a stream with `request`; refused here, unsent, when the
    /// server speaks a protocol older than the request.
    pub async fn open(&self, request: Request) -> Result<Stream, ClientError> {
        let needed = request.min_version();
        if needed > self.inner.welcome.version {
            return Err(ClientError::OldServer {
                server: self.inner.welcome.version,
                needed,
                what: jobs::needs(&request),
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let id = {
            let mut streams = self.inner.streams.lock().expect("streams lock");
            if streams.closed {
                return Err(ClientError::Closed);
            }
            let id = loop {
                let id = self.inner.next_stream.fetch_add(1, Ordering::Relaxed);
                if id != 0 && !streams.map.contains_key(&id) {
                    break id;
                }
            };
            streams.map.insert(id, tx);
            id
        };
        if let Err(e) = self
            .send(&ClientMessage::Request {
                stream: id,
                request,
            })
            .await
        {
            self.inner
                .streams
                .lock()
                .expect("streams lock")
                .map
                .remove(&id);
            return Err(e);
        }
        Ok(Stream {
            id,
            rx,
            client: self.clone(),
            done: false,
        })
    }

    async fn one(&self, request: Request) -> Result<Event, ClientError> {
        let mut stream = self.open(request).await?;
        stream.next().await?.ok_or(ClientError::Closed)
    }

    pub async fn start(&self, req: StartRequest) -> Result<JobId, ClientError> {
        match self.one(Request::Start(req)).await? {
            Event::Started { job } => Ok(job),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Starts a job with its input open (protocol version 2): a pipe or a
    /// terminal, written through [`Client::attach`].
    pub async fn start_with(&self, spec: StartRequest, stdin: Stdin) -> Result<JobId, ClientError> {
        match self.one(Request::StartWith { spec, stdin }).await? {
            Event::Started { job } => Ok(job),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Sends `signal` (1 to 31) to the job's command, or with `all` to
    /// every process of the job (protocol version 2); the job's status.
    pub async fn signal(&self, job: JobId, signal: i32, all: bool) -> Result<JobInfo, ClientError> {
        match self.one(Request::Signal { job, signal, all }).await? {
            Event::Status(info) => Ok(info),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub async fn status(&self, job: JobId) -> Result<JobInfo, ClientError> {
        match self.one(Request::Status { job }).await? {
            Event::Status(info) => Ok(info),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Stops a job and returns its final status.
    pub async fn stop(&self, job: JobId, grace_ms: u32) -> Result<JobInfo, ClientError> {
        match self.one(Request::Stop { job, grace_ms }).await? {
            Event::Status(info) => Ok(info),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub async fn wait(&self, job: JobId) -> Result<JobInfo, ClientError> {
        match self.one(Request::Wait { job }).await? {
            Event::End(info) => Ok(info),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub async fn remove(&self, job: JobId) -> Result<(), ClientError> {
        match self.one(Request::Remove { job }).await? {
            Event::Removed => Ok(()),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub async fn list(&self, all: bool) -> Result<Vec<JobInfo>, ClientError> {
        let mut stream = self.open(Request::List { all }).await?;
        let mut jobs = Vec::new();
        while let Some(event) = stream.next().await? {
            match event {
                Event::ListItem(info) => jobs.push(info),
                Event::ListEnd { .. } => return Ok(jobs),
                other => return Err(ClientError::Unexpected(format!("{other:?}"))),
            }
        }
        Err(ClientError::Closed)
    }

    /// Opens a logs stream; read it with `Stream::next` and return credit
    /// with `Stream::grant` as chunks are consumed.
    pub async fn logs(&self, req: LogsRequest) -> Result<Stream, ClientError> {
        self.open(Request::Logs(req)).await
    }
}

impl Stream {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The next event; `Ok(None)` after the terminal one. A terminal
    /// `Error` event comes back as `Err(ClientError::Server)`.
    pub async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        if self.done {
            return Ok(None);
        }
        let got = self.rx.recv().await;
        self.receive(got)
    }

    /// The next event if one has arrived already, `None` if none has: as
    /// [`Stream::next`] otherwise.
    pub(crate) fn next_ready(&mut self) -> Option<Result<Option<Event>, ClientError>> {
        if self.done {
            return Some(Ok(None));
        }
        match self.rx.try_recv() {
            Ok(got) => Some(self.receive(Some(got))),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => Some(self.receive(None)),
        }
    }

    /// An event taken from the channel (`None`: the channel closed), as
    /// `next` returns it.
    fn receive(
        &mut self,
        got: Option<Result<Event, ClientError>>,
    ) -> Result<Option<Event>, ClientError> {
        match got {
            Some(Ok(Event::Error(e))) => {
                self.done = true;
                Err(ClientError::Server(e))
            }
            Some(Ok(event)) => {
                if event.is_terminal() {
                    self.done = true;
                }
                Ok(Some(event))
            }
            Some(Err(e)) => {
                self.done = true;
                Err(e)
            }
            None => {
                self.done = true;
                Err(ClientError::Closed)
            }
        }
    }

    /// Grants the server `bytes` more bytes of output on this stream.
    pub async fn grant(&self, bytes: u32) -> Result<(), ClientError> {
        self.client
            .send(&ClientMessage::Credit {
                stream: self.id,
                bytes,
            })
            .await
    }

    /// Whether the stream is still open on this side (no terminal event
    /// arrived, the connection is up).
    fn is_open(client: &Client, id: u32) -> bool {
        client
            .inner
            .streams
            .lock()
            .map(|s| s.map.contains_key(&id))
            .unwrap_or(false)
    }

    /// Asks the server to end the stream.
    pub async fn cancel(&self) -> Result<(), ClientError> {
        self.client
            .send(&ClientMessage::Cancel { stream: self.id })
            .await
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Ok(mut streams) = self.client.inner.streams.lock() {
            streams.map.remove(&self.id);
        }
    }
}

/// Reads one message, in the form of protocol `version` (the Welcome is
/// the same in every version).
async fn read_message(
    read: &mut ReadHalf<TlsStream<TcpStream>>,
    decoder: &mut FrameDecoder,
    version: u32,
) -> Result<ServerMessage, ClientError> {
    loop {
        if let Some(payload) = decoder.next_frame()? {
            return Ok(protocol::decode_for(version, payload)?);
        }
        // Straight into the decoder's buffer: no zeroed buffer per message
        // and no copy from one buffer to the other.
        let n = read
            .read_buf(decoder.append_buffer(64 * 1024))
            .await
            .map_err(|e| match connect::alert_of(&e) {
                Some(alert) => ClientError::Rejected {
                    reason: connect::refusal(alert, &e.to_string(), None),
                    closed: false,
                    alert: Some(alert),
                },
                None => ClientError::Handshake {
                    addr: String::new(),
                    reason: e.to_string(),
                    lost: transport_broke(e.kind()),
                },
            })?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
    }
}

/// Routes events to their streams until the connection ends.
async fn route(
    mut read: ReadHalf<TlsStream<TcpStream>>,
    mut decoder: FrameDecoder,
    inner: std::sync::Weak<Inner>,
) {
    let Some(version) = inner.upgrade().map(|i| i.welcome.version) else {
        return;
    };
    let end = loop {
        let msg = match read_message(&mut read, &mut decoder, version).await {
            Ok(m) => m,
            Err(ClientError::Closed) => break ClientError::Closed,
            Err(e @ ClientError::Rejected { .. }) => break e,
            Err(_) => break ClientError::Closed,
        };
        let Some(inner) = inner.upgrade() else { return };
        match msg {
            ServerMessage::Event { stream, event } => {
                let terminal = event.is_terminal();
                let mut streams = inner.streams.lock().expect("streams lock");
                if let Some(tx) = streams.map.get(&stream) {
                    let _ = tx.send(Ok(event));
                }
                if terminal {
                    streams.map.remove(&stream);
                }
            }
            ServerMessage::Fatal(e) => break ClientError::Fatal(e),
            ServerMessage::Welcome(_) => break ClientError::Unexpected("a second Welcome".into()),
        }
    };
    if let Some(inner) = inner.upgrade() {
        let streams: Vec<_> = {
            let mut streams = inner.streams.lock().expect("streams lock");
            streams.closed = true;
            streams.map.drain().collect()
        };
        for (_, tx) in streams {
            let e = match &end {
                ClientError::Fatal(info) => ClientError::Fatal(info.clone()),
                ClientError::Rejected {
                    reason,
                    closed,
                    alert,
                } => ClientError::Rejected {
                    reason: reason.clone(),
                    closed: *closed,
                    alert: *alert,
                },
                ClientError::Unexpected(s) => ClientError::Unexpected(s.clone()),
                _ => ClientError::Closed,
            };
            let _ = tx.send(Err(e));
        }
    }
}
