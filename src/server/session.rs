//! One client session: rustls driven by hand over io_uring owned buffers,
//! Hello, frames, and the streams multiplexed on it; answers go out
//! through the connection's outbox (`outbox.rs`).
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
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::uring::{self, TcpStream};
use rustls::ServerConnection;

use super::outbox::Outbox;
use super::quota::Place;
use super::stream::{InputRefused, StreamInput, StreamState};
mod timers;

use super::{request, CurrentTls, Shared};
use crate::protocol::{
    self, ClientMessage, ConnectionLimits, ErrorCode, ErrorInfo, Event, FrameDecoder, Identity,
    ServerMessage, Welcome, MAX_CHUNK, MAX_CREDIT, MAX_FRAME, MAX_STREAMS, MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
};
use timers::{revoked, revoked_text, watch_timers};

/// Socket read size: one TLS record and a bit.
const READ_BUF: usize = 17 * 1024;
/// TLS records the writer prepares for one socket write, in bytes (plus at
/// most one frame past it).
const WRITE_BATCH: usize = 256 * 1024;
/// The reader takes no more requests while this many bytes wait to go out.
const READ_PAUSE: usize = 1 << 20;

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

/// One connection: the socket, TLS, and what its reader and writer share
/// beyond the outbox.
pub(crate) struct Session {
    tcp: TcpStream,
    tls: RefCell<ServerConnection>,
    out: Rc<Outbox>,
    /// The user's place for this connection, from Hello on.
    place: RefCell<Option<Place>>,
    /// Counted in the server's handshakes in progress (until Hello).
    handshaking: Cell<bool>,
    welcomed: Cell<bool>,
    /// When the write in flight began (`None`: none in flight), for the
    /// write timeout.
    write_began: Cell<Option<Instant>>,
}

impl Session {
    fn handshake_over(&self) {
        if self.handshaking.replace(false) {
            self.out
                .shared
                .handshaking
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

/// Serves one connection until it closes.
pub(crate) async fn serve(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    // The material current now; a reload is seen by `watch_timers`.
    let mut tls_watch = shared.tls.clone();
    let config = tls_watch.borrow_and_update().config.clone();
    let tls = match ServerConnection::new(config) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(%peer, error = %e, "cannot set up TLS for a connection");
            shared
                .handshaking
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            return;
        }
    };
    let conn = Rc::new(Session {
        tcp,
        tls: RefCell::new(tls),
        out: Rc::new(Outbox::new(peer, shared)),
        place: RefCell::new(None),
        handshaking: Cell::new(true),
        welcomed: Cell::new(false),
        write_began: Cell::new(None),
    });
    let writer = uring::spawn(write_loop(conn.clone()));
    let timers = uring::spawn(watch_timers(conn.clone(), tls_watch));
    read_loop(&conn).await;
    conn.handshake_over();
    conn.out.close();
    let _ = writer.await;
    timers.abort();
}

/// Writes all of `out`, one io_uring write at a time, marking when each
/// began: the write timeout counts from the last progress, so a slow
/// reader is served and only one that takes nothing is cut off.
async fn write_timed(conn: &Session, out: Vec<u8>) -> (std::io::Result<()>, Vec<u8>) {
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

async fn write_loop(conn: Rc<Session>) {
    let mut sent_close = false;
    // One buffer for the connection's TLS output, handed to io_uring and
    // back: no allocation, growth copy or fresh page per write.
    let mut out: Vec<u8> = Vec::new();
    loop {
        let (wants_write, handshaking) = {
            let tls = conn.tls.borrow();
            (tls.wants_write(), tls.is_handshaking())
        };
        let close_notify_due = conn.out.closing.get() && !sent_close && !handshaking;
        if conn.out.queue.borrow().is_empty() && !wants_write && !close_notify_due {
            if conn.out.closing.get() {
                break;
            }
            // Idle: an idle connection keeps no output buffer.
            out = Vec::new();
            conn.out.wake_writer.notified().await;
            continue;
        }
        out.clear();
        {
            let mut tls = conn.tls.borrow_mut();
            if !tls.is_handshaking() {
                let mut queue = conn.out.queue.borrow_mut();
                // One batch of records per socket write: what waits beyond
                // it stays plaintext (mapped, or in the budget), so a
                // client that reads slowly holds one batch of ciphertext.
                while out.len() < WRITE_BATCH {
                    let Some(item) = queue.pop_front() else {
                        break;
                    };
                    conn.out.queued.set(conn.out.queued.get() - item.len());
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
                if conn.out.closing.get() && queue.is_empty() && !sent_close {
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
        if conn.out.queued.get() < READ_PAUSE {
            conn.out.drained.notify_one();
        }
        if out.is_empty() {
            if conn.out.closing.get() && (sent_close || conn.tls.borrow().is_handshaking()) {
                break;
            }
            conn.out.wake_writer.notified().await;
            continue;
        }
        let (result, buf) = write_timed(&conn, out).await;
        out = buf;
        if let Err(e) = result {
            tracing::debug!(peer = %conn.out.peer, error = %e, "write failed; closing");
            conn.out.close();
            break;
        }
    }
    // Nothing more goes out: free what waits.
    conn.out.queue.borrow_mut().clear();
    conn.out.queued.set(0);
    let _ = conn.tcp.shutdown(std::net::Shutdown::Write);
}

async fn read_loop(conn: &Rc<Session>) {
    let mut buf = vec![0u8; READ_BUF];
    let mut plain = vec![0u8; READ_BUF];
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    conn.tls.borrow_mut().set_buffer_limit(None);
    while !conn.out.closing.get() {
        // Replies the client is not reading pile up no further than this.
        while conn.out.queued.get() >= READ_PAUSE && !conn.out.closing.get() {
            conn.out.drained.notified().await;
        }
        if conn.out.closing.get() {
            return;
        }
        let (result, b) = uring::read_some(&conn.tcp, buf).await;
        buf = b;
        let n = match result {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(peer = %conn.out.peer, error = %e, "read failed");
                return;
            }
        };
        let mut input = &buf[..n];
        let mut eof = false;
        {
            let mut tls = conn.tls.borrow_mut();
            while !input.is_empty() {
                if let Err(e) = tls.read_tls(&mut input) {
                    tracing::info!(peer = %conn.out.peer, error = %e, "TLS read failed");
                    return;
                }
                if let Err(e) = tls.process_new_packets() {
                    let stage = if tls.is_handshaking() {
                        "TLS handshake failed"
                    } else {
                        "TLS error"
                    };
                    tracing::info!(peer = %conn.out.peer, error = %e, "{stage}");
                    // The alert rustls queued goes out with the writer.
                    drop(tls);
                    conn.out.closing.set(true);
                    conn.out.wake_writer.notify_one();
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
                            tracing::info!(peer = %conn.out.peer, error = %e, "TLS stream ended uncleanly");
                            eof = true;
                            break;
                        }
                    }
                }
            }
            if tls.wants_write() {
                conn.out.wake_writer.notify_one();
            }
        }
        loop {
            // One read may hold hundreds of small requests: their replies
            // are counted before each one is taken, not only per read.
            while conn.out.queued.get() >= READ_PAUSE && !conn.out.closing.get() {
                conn.out.drained.notified().await;
            }
            if conn.out.closing.get() {
                return;
            }
            let frame = match decoder.next_frame() {
                Ok(Some(payload)) => protocol::decode::<ClientMessage>(payload),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            match frame {
                Ok(msg) => {
                    conn.out.last_activity.set(Instant::now());
                    on_message(conn, msg);
                    // Let the request's handler run now: a reply it sends
                    // at once is counted before the next frame is taken.
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    conn.out.fatal(ErrorCode::BAD_REQUEST, e.to_string());
                    return;
                }
            }
            if conn.out.closing.get() {
                return;
            }
        }
        if eof {
            return;
        }
    }
}

/// The identity of a verified client, or why it has none.
fn peer_identity(conn: &Session) -> Result<Identity, (ErrorCode, String)> {
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
    crate::tls::identity(cert, &conn.out.shared.config.admin_group)
        .map_err(|e| (ErrorCode::UNAUTHENTICATED, e))
}

fn on_message(conn: &Rc<Session>, msg: ClientMessage) {
    if !conn.welcomed.get() {
        let ClientMessage::Hello(hello) = msg else {
            conn.out
                .fatal(ErrorCode::BAD_REQUEST, "the first message must be Hello");
            return;
        };
        let identity = match peer_identity(conn) {
            Ok(i) => i,
            Err((code, message)) => {
                conn.out.fatal(code, message);
                return;
            }
        };
        // Lists loaded while this connection was in its handshake.
        if revoked(conn, &conn.out.shared.tls.borrow()) {
            conn.out.fatal(
                ErrorCode::UNAUTHENTICATED,
                revoked_text(Some(&identity.user)),
            );
            return;
        }
        if hello.version < MIN_PROTOCOL_VERSION {
            conn.out.fatal(
                ErrorCode::UNSUPPORTED,
                format!(
                    "protocol version {} is not supported; this server speaks {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}",
                    hello.version
                ),
            );
            return;
        }
        let place = match conn.out.shared.quotas.connection(&identity.user) {
            Ok(place) => place,
            Err(full) => {
                conn.out.fatal(
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
        conn.out.version.set(version);
        tracing::info!(peer = %conn.out.peer, user = ?identity.user, groups = ?identity.groups, admin = identity.admin, client = ?hello.client, "session opened");
        *conn.out.identity.borrow_mut() = Some(identity.clone());
        conn.welcomed.set(true);
        conn.out.send_message(&ServerMessage::Welcome(Welcome {
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
    if msg.min_version() > conn.out.version.get() {
        conn.out.fatal(
            ErrorCode::BAD_REQUEST,
            format!(
                "a message of protocol version {} on a session of version {}",
                msg.min_version(),
                conn.out.version.get()
            ),
        );
        return;
    }
    match msg {
        ClientMessage::Hello(_) => conn
            .out
            .fatal(ErrorCode::BAD_REQUEST, "Hello was already sent"),
        ClientMessage::Request { stream, request } => {
            if stream == 0 {
                conn.out
                    .fatal(ErrorCode::BAD_REQUEST, "stream id 0 is reserved");
                return;
            }
            if conn.out.streams.borrow().contains_key(&stream) {
                conn.out.fatal(
                    ErrorCode::BAD_REQUEST,
                    format!("stream {stream} is already open"),
                );
                return;
            }
            let initial_credit = match &request {
                protocol::Request::Logs(l) => u64::from(l.credit),
                protocol::Request::Read(r) => u64::from(r.logs.credit),
                _ => 0,
            };
            if initial_credit > MAX_CREDIT {
                conn.out.fatal(
                    ErrorCode::BAD_REQUEST,
                    format!("credit on stream {stream} would exceed 2^31-1 bytes"),
                );
                return;
            }
            let refuse = |message: String| {
                conn.out.send_message(&ServerMessage::Event {
                    stream,
                    event: Event::Error(ErrorInfo::new(ErrorCode::RESOURCE_EXHAUSTED, message)),
                });
            };
            if conn.out.streams.borrow().len() >= MAX_STREAMS {
                refuse(format!(
                    "too many open streams on this connection (at most {MAX_STREAMS})"
                ));
                return;
            }
            let user = conn.out.identity().user;
            let place = match conn.out.shared.quotas.stream(&user) {
                Ok(place) => place,
                Err(full) => {
                    refuse(format!(
                        "{user} already has {} streams open on this server, the most it allows per user (jwd --max-streams-per-user); cancel or finish one",
                        full.max
                    ));
                    return;
                }
            };
            let attach = matches!(request, protocol::Request::Attach { .. });
            let state = Rc::new(StreamState::new(stream, place, initial_credit, attach));
            conn.out.streams.borrow_mut().insert(stream, state.clone());
            uring::spawn(request::run(conn.out.clone(), state, request));
        }
        ClientMessage::Credit { stream, bytes } => {
            let state = conn.out.streams.borrow().get(&stream).cloned();
            if let Some(s) = state {
                let credit = s.credit.get() + u64::from(bytes);
                if credit > MAX_CREDIT {
                    conn.out.fatal(
                        ErrorCode::BAD_REQUEST,
                        format!("credit on stream {stream} would exceed 2^31-1 bytes"),
                    );
                    return;
                }
                s.credit.set(credit);
                s.credit_added.notify_waiters();
            }
        }
        ClientMessage::Input {
            stream,
            offset,
            data,
        } => on_input(conn, stream, |input| input.push(offset, data)),
        ClientMessage::InputEnd { stream } => on_input(conn, stream, |input| input.end()),
        ClientMessage::Resize { stream, size } => {
            on_input(conn, stream, |input| input.resize(size))
        }
        ClientMessage::Cancel { stream } => {
            let state = conn.out.streams.borrow().get(&stream).cloned();
            if let Some(s) = state {
                conn.out.emit(
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

/// Hands an input message to its `Attach` stream: dropped if the stream ended (they may cross);
/// the connection's end if the stream is another kind or the message breaks the input rules.
fn on_input(
    conn: &Rc<Session>,
    stream: u32,
    apply: impl FnOnce(&StreamInput) -> Result<(), InputRefused>,
) {
    let state = conn.out.streams.borrow().get(&stream).cloned();
    let Some(state) = state else {
        return;
    };
    let Some(input) = state.input() else {
        conn.out.fatal(
            ErrorCode::BAD_REQUEST,
            format!("input on stream {stream}, which is not an Attach stream"),
        );
        return;
    };
    if let Err(refused) = apply(input) {
        conn.out.fatal(
            ErrorCode::BAD_REQUEST,
            format!("{refused} on stream {stream}"),
        );
    }
}
