//! One client connection: rustls driven by hand over io_uring owned
//! buffers, frames, and the streams multiplexed on it.
//!
//! tokio-uring's TcpStream has no AsyncRead/AsyncWrite, so tokio-rustls
//! cannot be used; the buffered `rustls::ServerConnection` is fed with
//! `read_tls` and drained with `write_tls` instead. The connection has one
//! reader task (socket -> TLS -> frames -> streams) and one writer task
//! (queued frames -> TLS -> socket). Neither ever races an io_uring read or
//! write against something else in a `select!`: dropping an in-flight op on
//! a TLS session is how other projects corrupted their streams. Stream
//! handlers run as their own tasks and hand finished frames to the writer.
//!
//! Memory per connection is bounded whatever the client does: one read
//! buffer, the frame decoder (at most one frame), `OUT_BUDGET` bytes of
//! output and list items queued by the streams' handlers (a handler waits
//! for room before it reads a chunk), one `WRITE_BATCH` of TLS records
//! being written, and replies to requests: the reader stops reading
//! requests while `READ_PAUSE` bytes wait to go out. A client that takes
//! nothing for `--write-timeout` is cut off and all of it freed.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::job::output::MappedSpan;
use crate::uring::{self, TcpStream};
use rustls::ServerConnection;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::quota::Place;
use super::{handler, Shared};
use crate::protocol::{
    self, ClientMessage, ConnectionLimits, ErrorCode, ErrorInfo, Event, FrameDecoder, Identity,
    ServerMessage, Welcome, MAX_CHUNK, MAX_CREDIT, MAX_FRAME, MAX_STREAMS, PROTOCOL_VERSION,
};

/// Socket read size: one TLS record and a bit.
const READ_BUF: usize = 17 * 1024;
/// Output chunks and list items a connection's handlers may have queued,
/// in bytes.
const OUT_BUDGET: usize = 512 * 1024;
/// TLS records the writer prepares for one socket write, in bytes (plus at
/// most one frame past it).
const WRITE_BATCH: usize = 256 * 1024;
/// The reader takes no more requests while this many bytes wait to go out.
const READ_PAUSE: usize = 1 << 20;

/// A frame waiting for the writer, with its share of the budget.
struct Outgoing {
    frame: Vec<u8>,
    /// Bytes that follow `frame` on the wire, straight from an output
    /// file's mapping (rustls reads them as it encrypts: no copy here).
    body: Option<MappedSpan>,
    /// Given back when the writer has encrypted the frame.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Outgoing {
    fn len(&self) -> usize {
        self.frame.len() + self.body.as_ref().map_or(0, |b| b.len)
    }
}

/// Writes a frame and its body as one stream of TLS records.
fn write_frame(w: &mut impl std::io::Write, head: &[u8], body: &[u8]) -> std::io::Result<()> {
    let (mut head, mut body) = (head, body);
    while !head.is_empty() || !body.is_empty() {
        let n = w.write_vectored(&[std::io::IoSlice::new(head), std::io::IoSlice::new(body)])?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len());
        head = &head[from_head..];
        body = &body[n - from_head..];
    }
    Ok(())
}

/// Per-stream state the connection and the stream's handler share.
pub(crate) struct StreamState {
    pub id: u32,
    /// The user's place for this stream, held until the handler is done.
    _place: Place,
    /// Bytes of `Output` data the client allows.
    credit: Cell<u64>,
    credit_added: Notify,
    cancelled: Cell<bool>,
    cancel: Notify,
}

impl StreamState {
    /// The credit now.
    pub fn credit(&self) -> u64 {
        self.credit.get()
    }

    /// Waits until the client grants credit or cancels.
    pub async fn credit_changed(&self) {
        if self.cancelled.get() {
            return;
        }
        tokio::select! {
            _ = self.credit_added.notified() => {}
            _ = self.cancel.notified() => {}
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.get()
    }

    pub fn spend(&self, bytes: u64) {
        self.credit.set(self.credit.get().saturating_sub(bytes));
    }

    /// Resolves when the stream is cancelled (by the client or because the
    /// connection ended).
    pub async fn cancelled(&self) {
        while !self.cancelled.get() {
            self.cancel.notified().await;
        }
    }
}

/// One connection.
pub(crate) struct Conn {
    tcp: TcpStream,
    tls: RefCell<ServerConnection>,
    pub peer: SocketAddr,
    pub shared: Arc<Shared>,
    queue: RefCell<VecDeque<Outgoing>>,
    /// Bytes in `queue`.
    queued: Cell<usize>,
    /// Room for handlers' output and list items in the queue.
    budget: Arc<Semaphore>,
    wake_writer: Notify,
    /// The queue got short (or the connection is closing): the reader may
    /// go on.
    drained: Notify,
    /// The user's place for this connection, from Hello on.
    place: RefCell<Option<Place>>,
    /// Counted in the server's handshakes in progress (until Hello).
    handshaking: Cell<bool>,
    /// One `List` at a time per connection: a list holds the user's jobs
    /// while it sends them.
    pub list_turn: Semaphore,
    /// No more frames from us after what is queued; then close.
    closing: Cell<bool>,
    streams: RefCell<HashMap<u32, Rc<StreamState>>>,
    identity: RefCell<Option<Identity>>,
    welcomed: Cell<bool>,
    last_activity: Cell<Instant>,
    /// When the write in flight began (`None`: none in flight), for the
    /// write timeout.
    write_began: Cell<Option<Instant>>,
}

impl Conn {
    pub fn identity(&self) -> Identity {
        self.identity
            .borrow()
            .clone()
            .expect("handlers run after Hello")
    }

    fn enqueue(
        &self,
        frame: Vec<u8>,
        body: Option<MappedSpan>,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let item = Outgoing {
            frame,
            body,
            _permit: permit,
        };
        self.queued.set(self.queued.get() + item.len());
        self.queue.borrow_mut().push_back(item);
        self.wake_writer.notify_one();
    }

    /// Waits for room for `bytes` more in the connection's outgoing budget.
    /// `None` if the stream or the connection ended meanwhile.
    pub async fn reserve(
        &self,
        stream: &StreamState,
        bytes: usize,
    ) -> Option<OwnedSemaphorePermit> {
        if stream.cancelled.get() || self.closing.get() {
            return None;
        }
        let bytes = u32::try_from(bytes.min(OUT_BUDGET)).unwrap_or(u32::MAX);
        tokio::select! {
            permit = self.budget.clone().acquire_many_owned(bytes) => permit.ok(),
            _ = stream.cancelled() => None,
        }
    }

    /// Sends a non-terminal event (a list item) within the outgoing
    /// budget. `false` if the stream or the connection ended meanwhile.
    pub async fn emit_bounded(&self, stream: &StreamState, event: Event) -> bool {
        let mut frame = Vec::new();
        let msg = ServerMessage::Event {
            stream: stream.id,
            event,
        };
        if let Err(e) = protocol::encode(&msg, &mut frame) {
            tracing::error!(peer = %self.peer, error = %e, "cannot encode a reply");
            self.emit(
                stream,
                Event::Error(ErrorInfo::new(
                    ErrorCode::INTERNAL,
                    "the reply was too large to send",
                )),
            );
            return false;
        }
        let Some(permit) = self.reserve(stream, frame.len()).await else {
            return false;
        };
        if stream.cancelled.get() || self.closing.get() {
            return false;
        }
        self.enqueue(frame, None, Some(permit));
        true
    }

    fn send_message(&self, msg: &ServerMessage) {
        let mut frame = Vec::new();
        match protocol::encode(msg, &mut frame) {
            Ok(()) => self.enqueue(frame, None, None),
            Err(e) => {
                // Only a JobInfo with absurdly long strings could get here;
                // tell the client rather than send nothing.
                tracing::error!(peer = %self.peer, error = %e, "cannot encode a reply");
                if let ServerMessage::Event { stream, .. } = msg {
                    let mut frame = Vec::new();
                    let err = ServerMessage::Event {
                        stream: *stream,
                        event: Event::Error(ErrorInfo::new(
                            ErrorCode::INTERNAL,
                            "the reply was too large to send",
                        )),
                    };
                    if protocol::encode(&err, &mut frame).is_ok() {
                        self.enqueue(frame, None, None);
                    }
                }
            }
        }
    }

    /// Sends an event on a stream that is still open; a terminal event
    /// closes it. Events for streams already ended (cancelled) are dropped.
    pub fn emit(&self, stream: &StreamState, event: Event) {
        if stream.cancelled.get() {
            return;
        }
        let terminal = event.is_terminal();
        if terminal {
            self.close_stream(stream.id);
        }
        self.send_message(&ServerMessage::Event {
            stream: stream.id,
            event,
        });
    }

    /// Queues a ready `Output` frame with the budget `reserve` gave for
    /// it. `false` if the stream or the connection ended meanwhile.
    pub fn send_output(
        &self,
        stream: &StreamState,
        frame: Vec<u8>,
        body: Option<MappedSpan>,
        permit: OwnedSemaphorePermit,
    ) -> bool {
        if stream.cancelled.get() || self.closing.get() {
            return false;
        }
        self.enqueue(frame, body, Some(permit));
        true
    }

    fn close_stream(&self, id: u32) {
        if let Some(s) = self.streams.borrow_mut().remove(&id) {
            s.cancelled.set(true);
            s.cancel.notify_waiters();
            s.credit_added.notify_waiters();
        }
        self.last_activity.set(Instant::now());
    }

    /// A connection-level error: send it, then close.
    fn fatal(&self, code: ErrorCode, message: impl Into<String>) {
        let info = ErrorInfo::new(code, message);
        tracing::info!(peer = %self.peer, user = ?self.identity.borrow().as_ref().map(|i| i.user.as_str()).unwrap_or("-"), error = %info, "closing connection");
        self.send_message(&ServerMessage::Fatal(info));
        self.close();
    }

    fn close(&self) {
        self.closing.set(true);
        let ids: Vec<u32> = self.streams.borrow().keys().copied().collect();
        for id in ids {
            self.close_stream(id);
        }
        // Handlers waiting for room give up.
        self.budget.close();
        self.wake_writer.notify_one();
        self.drained.notify_one();
    }

    /// Leaves the server's count of handshakes in progress (once).
    fn handshake_over(&self) {
        if self.handshaking.replace(false) {
            self.shared
                .handshaking
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

/// Serves one connection until it closes.
pub(crate) async fn serve(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    let tls = match ServerConnection::new(shared.config.tls.clone()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(%peer, error = %e, "cannot set up TLS for a connection");
            shared
                .handshaking
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            return;
        }
    };
    let conn = Rc::new(Conn {
        tcp,
        tls: RefCell::new(tls),
        peer,
        shared,
        queue: RefCell::new(VecDeque::new()),
        queued: Cell::new(0),
        budget: Arc::new(Semaphore::new(OUT_BUDGET)),
        wake_writer: Notify::new(),
        drained: Notify::new(),
        place: RefCell::new(None),
        handshaking: Cell::new(true),
        list_turn: Semaphore::new(1),
        closing: Cell::new(false),
        streams: RefCell::new(HashMap::new()),
        identity: RefCell::new(None),
        welcomed: Cell::new(false),
        last_activity: Cell::new(Instant::now()),
        write_began: Cell::new(None),
    });
    let writer = uring::spawn(write_loop(conn.clone()));
    let timers = uring::spawn(watch_timers(conn.clone()));
    read_loop(&conn).await;
    conn.handshake_over();
    conn.close();
    let _ = writer.await;
    timers.abort();
}

/// How long a connection may go on sending once shutdown began.
const SHUTDOWN_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// Handshake and idle timeouts, and the server's shutdown. Ends the
/// connection by shutting the socket down, which ends the reader's
/// pending read (no io_uring op is dropped).
async fn watch_timers(conn: Rc<Conn>) {
    let config = &conn.shared.config;
    let mut shutdown = conn.shared.shutdown.clone();
    let handshake_deadline = tokio::time::Instant::now() + config.handshake_timeout;
    loop {
        let deadline = if conn.welcomed.get() {
            tokio::time::Instant::from_std(conn.last_activity.get() + config.idle_timeout)
        } else {
            handshake_deadline
        };
        // A write in flight is looked at at least every half write timeout:
        // a client that stops reading is cut off between one and one and a
        // half timeouts after its write began, with no cost per write.
        let wake = deadline.min(tokio::time::Instant::now() + config.write_timeout / 2);
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => {
                conn.close();
                let _ = conn.tcp.shutdown(std::net::Shutdown::Read);
                // What is queued may still go out; a client that does not
                // read is cut off, which ends the writer's pending send.
                tokio::time::sleep(SHUTDOWN_FLUSH).await;
                let _ = conn.tcp.shutdown(std::net::Shutdown::Both);
                return;
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        if conn
            .write_began
            .get()
            .is_some_and(|began| began.elapsed() >= config.write_timeout)
        {
            tracing::info!(peer = %conn.peer, "write timeout: the client took nothing for {:?}; closing", config.write_timeout);
            conn.close();
            // Ends the pending send (and read): the writer and reader finish.
            let _ = conn.tcp.shutdown(std::net::Shutdown::Both);
            return;
        }
        if tokio::time::Instant::now() < deadline {
            continue;
        }
        if !conn.welcomed.get() {
            tracing::info!(peer = %conn.peer, "handshake timeout: no TLS handshake and Hello within {:?}", config.handshake_timeout);
            let _ = conn.tcp.shutdown(std::net::Shutdown::Both);
            return;
        }
        let idle = conn.last_activity.get().elapsed() >= config.idle_timeout;
        if idle && conn.streams.borrow().is_empty() {
            tracing::info!(peer = %conn.peer, "idle timeout: no open stream for {:?}", config.idle_timeout);
            conn.close();
            let _ = conn.tcp.shutdown(std::net::Shutdown::Read);
            return;
        }
        if idle {
            // Streams are open: the connection is busy, not idle.
            conn.last_activity.set(Instant::now());
        }
    }
}

/// Writes all of `out`, one io_uring write at a time, marking when each
/// began: the write timeout counts from the last progress, so a slow
/// reader is served and only one that takes nothing is cut off.
async fn write_timed(conn: &Conn, out: Vec<u8>) -> (std::io::Result<()>, Vec<u8>) {
    let mut out = out;
    let mut written = 0;
    let result = loop {
        if written == out.len() {
            break Ok(());
        }
        conn.write_began.set(Some(Instant::now()));
        let (result, buf) = uring::write_some(&conn.tcp, out, written).await;
        out = buf;
        match result {
            Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    conn.write_began.set(None);
    (result, out)
}

async fn write_loop(conn: Rc<Conn>) {
    let mut sent_close = false;
    // One buffer for the connection's TLS output, handed to io_uring and
    // back: no allocation, growth copy or fresh page per write.
    let mut out: Vec<u8> = Vec::new();
    loop {
        let (wants_write, handshaking) = {
            let tls = conn.tls.borrow();
            (tls.wants_write(), tls.is_handshaking())
        };
        let close_notify_due = conn.closing.get() && !sent_close && !handshaking;
        if conn.queue.borrow().is_empty() && !wants_write && !close_notify_due {
            if conn.closing.get() {
                break;
            }
            // Idle: an idle connection keeps no output buffer.
            out = Vec::new();
            conn.wake_writer.notified().await;
            continue;
        }
        out.clear();
        {
            let mut tls = conn.tls.borrow_mut();
            if !tls.is_handshaking() {
                let mut queue = conn.queue.borrow_mut();
                // One batch of records per socket write: what waits beyond
                // it stays plaintext (mapped, or in the budget), so a
                // client that reads slowly holds one batch of ciphertext.
                while out.len() < WRITE_BATCH {
                    let Some(item) = queue.pop_front() else {
                        break;
                    };
                    conn.queued.set(conn.queued.get() - item.len());
                    // The buffer limit is off: rustls takes all of it.
                    let _ = match &item.body {
                        None => tls.writer().write_all(&item.frame),
                        Some(body) => write_frame(&mut tls.writer(), &item.frame, body.bytes()),
                    };
                    drop(item);
                    while tls.wants_write() {
                        if tls.write_tls(&mut out).is_err() {
                            break;
                        }
                    }
                }
                if conn.closing.get() && queue.is_empty() && !sent_close {
                    tls.send_close_notify();
                    sent_close = true;
                }
            }
            while tls.wants_write() {
                if tls.write_tls(&mut out).is_err() {
                    break;
                }
            }
        }
        if conn.queued.get() < READ_PAUSE {
            conn.drained.notify_one();
        }
        if out.is_empty() {
            if conn.closing.get() && (sent_close || conn.tls.borrow().is_handshaking()) {
                break;
            }
            conn.wake_writer.notified().await;
            continue;
        }
        let (result, buf) = write_timed(&conn, out).await;
        out = buf;
        if let Err(e) = result {
            tracing::debug!(peer = %conn.peer, error = %e, "write failed; closing");
            conn.close();
            break;
        }
    }
    // Nothing more goes out: free what waits.
    conn.queue.borrow_mut().clear();
    conn.queued.set(0);
    let _ = conn.tcp.shutdown(std::net::Shutdown::Write);
}

async fn read_loop(conn: &Rc<Conn>) {
    let mut buf = vec![0u8; READ_BUF];
    let mut plain = vec![0u8; READ_BUF];
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    conn.tls.borrow_mut().set_buffer_limit(None);
    while !conn.closing.get() {
        // Replies the client is not reading pile up no further than this.
        while conn.queued.get() >= READ_PAUSE && !conn.closing.get() {
            conn.drained.notified().await;
        }
        if conn.closing.get() {
            return;
        }
        let (result, b) = conn.tcp.read(buf).await;
        buf = b;
        let n = match result {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(peer = %conn.peer, error = %e, "read failed");
                return;
            }
        };
        let mut input = &buf[..n];
        let mut eof = false;
        {
            let mut tls = conn.tls.borrow_mut();
            while !input.is_empty() {
                if let Err(e) = tls.read_tls(&mut input) {
                    tracing::info!(peer = %conn.peer, error = %e, "TLS read failed");
                    return;
                }
                if let Err(e) = tls.process_new_packets() {
                    let stage = if tls.is_handshaking() {
                        "TLS handshake failed"
                    } else {
                        "TLS error"
                    };
                    tracing::info!(peer = %conn.peer, error = %e, "{stage}");
                    // The alert rustls queued goes out with the writer.
                    drop(tls);
                    conn.closing.set(true);
                    conn.wake_writer.notify_one();
                    return;
                }
                loop {
                    match tls.reader().read(&mut plain) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(k) => decoder.feed(&plain[..k]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            tracing::info!(peer = %conn.peer, error = %e, "TLS stream ended uncleanly");
                            eof = true;
                            break;
                        }
                    }
                }
            }
            if tls.wants_write() {
                conn.wake_writer.notify_one();
            }
        }
        loop {
            // One read may hold hundreds of small requests: their replies
            // are counted before each one is taken, not only per read.
            while conn.queued.get() >= READ_PAUSE && !conn.closing.get() {
                conn.drained.notified().await;
            }
            if conn.closing.get() {
                return;
            }
            let frame = match decoder.next_frame() {
                Ok(Some(payload)) => protocol::decode::<ClientMessage>(payload),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            match frame {
                Ok(msg) => {
                    conn.last_activity.set(Instant::now());
                    on_message(conn, msg);
                    // Let the request's handler run now: a reply it sends
                    // at once is counted before the next frame is taken.
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    conn.fatal(ErrorCode::BAD_REQUEST, e.to_string());
                    return;
                }
            }
            if conn.closing.get() {
                return;
            }
        }
        if eof {
            return;
        }
    }
}

/// The identity of a verified client, or why it has none.
fn peer_identity(conn: &Conn) -> Result<Identity, (ErrorCode, String)> {
    let tls = conn.tls.borrow();
    if tls.alpn_protocol() != Some(crate::tls::ALPN) {
        return Err((
            ErrorCode::UNSUPPORTED,
            "the client did not offer ALPN jw/1".into(),
        ));
    }
    let cert = tls.peer_certificates().and_then(|c| c.first()).ok_or((
        ErrorCode::UNAUTHENTICATED,
        "no client certificate".to_string(),
    ))?;
    crate::tls::identity(cert, &conn.shared.config.admin_group)
        .map_err(|e| (ErrorCode::UNAUTHENTICATED, e))
}

fn on_message(conn: &Rc<Conn>, msg: ClientMessage) {
    if !conn.welcomed.get() {
        let ClientMessage::Hello(hello) = msg else {
            conn.fatal(ErrorCode::BAD_REQUEST, "the first message must be Hello");
            return;
        };
        let identity = match peer_identity(conn) {
            Ok(i) => i,
            Err((code, message)) => {
                conn.fatal(code, message);
                return;
            }
        };
        if hello.version < 1 {
            conn.fatal(
                ErrorCode::UNSUPPORTED,
                format!(
                    "protocol version {} is not supported; this server speaks 1",
                    hello.version
                ),
            );
            return;
        }
        let place = match conn.shared.quotas.connection(&identity.user) {
            Ok(place) => place,
            Err(full) => {
                conn.fatal(
                    ErrorCode::RESOURCE_EXHAUSTED,
                    format!(
                        "{} already has {} connections open to this server, the most it allows per user (jwd --max-connections-per-user); close one, or share one connection between streams",
                        identity.user, full.max
                    ),
                );
                return;
            }
        };
        *conn.place.borrow_mut() = Some(place);
        conn.handshake_over();
        let version = hello.version.min(PROTOCOL_VERSION);
        tracing::info!(peer = %conn.peer, user = ?identity.user, groups = ?identity.groups, admin = identity.admin, client = ?hello.client, "session opened");
        *conn.identity.borrow_mut() = Some(identity.clone());
        conn.welcomed.set(true);
        conn.send_message(&ServerMessage::Welcome(Welcome {
            version,
            server: concat!("jwd/", env!("CARGO_PKG_VERSION")).into(),
            identity,
            limits: ConnectionLimits {
                max_frame: MAX_FRAME as u32,
                max_streams: MAX_STREAMS as u32,
                max_chunk: MAX_CHUNK as u32,
            },
        }));
        return;
    }
    match msg {
        ClientMessage::Hello(_) => conn.fatal(ErrorCode::BAD_REQUEST, "Hello was already sent"),
        ClientMessage::Request { stream, request } => {
            if stream == 0 {
                conn.fatal(ErrorCode::BAD_REQUEST, "stream id 0 is reserved");
                return;
            }
            if conn.streams.borrow().contains_key(&stream) {
                conn.fatal(
                    ErrorCode::BAD_REQUEST,
                    format!("stream {stream} is already open"),
                );
                return;
            }
            let initial_credit = match &request {
                protocol::Request::Logs(l) => u64::from(l.credit),
                _ => 0,
            };
            if initial_credit > MAX_CREDIT {
                conn.fatal(
                    ErrorCode::BAD_REQUEST,
                    format!("credit on stream {stream} would exceed 2^31-1 bytes"),
                );
                return;
            }
            let refuse = |message: String| {
                conn.send_message(&ServerMessage::Event {
                    stream,
                    event: Event::Error(ErrorInfo::new(ErrorCode::RESOURCE_EXHAUSTED, message)),
                });
            };
            if conn.streams.borrow().len() >= MAX_STREAMS {
                refuse(format!(
                    "too many open streams on this connection (at most {MAX_STREAMS})"
                ));
                return;
            }
            let user = conn.identity().user;
            let place = match conn.shared.quotas.stream(&user) {
                Ok(place) => place,
                Err(full) => {
                    refuse(format!(
                        "{user} already has {} streams open on this server, the most it allows per user (jwd --max-streams-per-user); cancel or finish one",
                        full.max
                    ));
                    return;
                }
            };
            let state = Rc::new(StreamState {
                id: stream,
                _place: place,
                credit: Cell::new(initial_credit),
                credit_added: Notify::new(),
                cancelled: Cell::new(false),
                cancel: Notify::new(),
            });
            conn.streams.borrow_mut().insert(stream, state.clone());
            uring::spawn(handler::run(conn.clone(), state, request));
        }
        ClientMessage::Credit { stream, bytes } => {
            let state = conn.streams.borrow().get(&stream).cloned();
            if let Some(s) = state {
                let credit = s.credit.get() + u64::from(bytes);
                if credit > MAX_CREDIT {
                    conn.fatal(
                        ErrorCode::BAD_REQUEST,
                        format!("credit on stream {stream} would exceed 2^31-1 bytes"),
                    );
                    return;
                }
                s.credit.set(credit);
                s.credit_added.notify_waiters();
            }
        }
        ClientMessage::Cancel { stream } => {
            let state = conn.streams.borrow().get(&stream).cloned();
            if let Some(s) = state {
                conn.emit(
                    &s,
                    Event::Error(ErrorInfo::new(
                        ErrorCode::CANCELLED,
                        "cancelled by the client",
                    )),
                );
            }
        }
    }
}
