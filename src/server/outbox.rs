//! A connection's outbox: the frames its requests answer with, queued for
//! the session's writer within the connection's budget, and the table of
//! its open streams (a terminal event closes its stream). Requests send
//! through it and never see the socket or TLS.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::stream::StreamState;
use super::Shared;
use crate::job::output::MappedSpan;
use crate::protocol::{self, ErrorCode, ErrorInfo, Event, Identity, ServerMessage};

/// Output chunks and list items a connection's requests may have queued,
/// in bytes.
pub(super) const OUT_BUDGET: usize = 512 * 1024;

/// A frame waiting for the writer, with its share of the budget.
pub(super) struct Outgoing {
    pub(super) frame: Vec<u8>,
    /// Bytes that follow `frame` on the wire, straight from an output
    /// file's mapping (rustls reads them as it encrypts: no copy here).
    pub(super) body: Option<MappedSpan>,
    /// Given back when the writer has encrypted the frame.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Outgoing {
    pub(super) fn len(&self) -> usize {
        self.frame.len() + self.body.as_ref().map_or(0, |b| b.len)
    }
}

/// One connection's outbox.
pub(crate) struct Outbox {
    pub peer: SocketAddr,
    pub shared: Arc<Shared>,
    pub(super) queue: RefCell<VecDeque<Outgoing>>,
    /// Bytes in `queue`.
    pub(super) queued: Cell<usize>,
    /// Room for requests' output and list items in the queue.
    pub(super) budget: Arc<Semaphore>,
    pub(super) wake_writer: Notify,
    /// The queue got short (or the connection is closing): the reader may
    /// go on.
    pub(super) drained: Notify,
    /// One `List` at a time per connection: a list holds the user's jobs
    /// while it sends them.
    pub list_turn: Semaphore,
    /// No more frames from us after what is queued; then close.
    pub(super) closing: Cell<bool>,
    pub(super) streams: RefCell<HashMap<u32, Rc<StreamState>>>,
    pub(super) identity: RefCell<Option<Identity>>,
    pub(super) last_activity: Cell<Instant>,
    /// The protocol version agreed in Hello/Welcome: what every frame is
    /// encoded for.
    pub version: Cell<u32>,
}

impl Outbox {
    pub(super) fn new(peer: SocketAddr, shared: Arc<Shared>) -> Outbox {
        Outbox {
            peer,
            shared,
            queue: RefCell::new(VecDeque::new()),
            queued: Cell::new(0),
            budget: Arc::new(Semaphore::new(OUT_BUDGET)),
            wake_writer: Notify::new(),
            drained: Notify::new(),
            list_turn: Semaphore::new(1),
            closing: Cell::new(false),
            streams: RefCell::new(HashMap::new()),
            identity: RefCell::new(None),
            last_activity: Cell::new(Instant::now()),
            version: Cell::new(protocol::MIN_PROTOCOL_VERSION),
        }
    }

    pub fn identity(&self) -> Identity {
        self.identity
            .borrow()
            .clone()
            .expect("handlers run after Hello")
    }

    pub(super) fn enqueue(
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

    pub async fn reserve(
        &self,
        stream: &StreamState,
        bytes: usize,
    ) -> Option<OwnedSemaphorePermit> {
        if stream.is_cancelled() || self.closing.get() {
            return None;
        }
        let bytes = u32::try_from(bytes.min(OUT_BUDGET)).unwrap_or(u32::MAX);
        tokio::select! {
            permit = self.budget.clone().acquire_many_owned(bytes) => permit.ok(),
            _ = stream.cancelled() => None,
        }
    }

    pub async fn emit_bounded(&self, stream: &StreamState, event: Event) -> bool {
        let mut frame = Vec::new();
        let msg = ServerMessage::Event {
            stream: stream.id,
            event,
        };
        if let Err(e) = protocol::encode_for(self.version.get(), &msg, &mut frame) {
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
        if stream.is_cancelled() || self.closing.get() {
            return false;
        }
        self.enqueue(frame, None, Some(permit));
        true
    }

    pub(super) fn send_message(&self, msg: &ServerMessage) {
        let mut frame = Vec::new();
        match protocol::encode_for(self.version.get(), msg, &mut frame) {
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
                    if protocol::encode_for(self.version.get(), &err, &mut frame).is_ok() {
                        self.enqueue(frame, None, None);
                    }
                }
            }
        }
    }

    pub fn emit(&self, stream: &StreamState, event: Event) {
        if stream.is_cancelled() {
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

    pub fn send_output(
        &self,
        stream: &StreamState,
        frame: Vec<u8>,
        body: Option<MappedSpan>,
        permit: OwnedSemaphorePermit,
    ) -> bool {
        if stream.is_cancelled() || self.closing.get() {
            return false;
        }
        self.enqueue(frame, body, Some(permit));
        true
    }

    pub(super) fn close_stream(&self, id: u32) {
        if let Some(s) = self.streams.borrow_mut().remove(&id) {
            s.cancel();
        }
        self.last_activity.set(Instant::now());
    }

    pub(super) fn fatal(&self, code: ErrorCode, message: impl Into<String>) {
        let info = ErrorInfo::new(code, message);
        tracing::info!(peer = %self.peer, user = ?self.identity.borrow().as_ref().map(|i| i.user.as_str()).unwrap_or("-"), error = %info, "closing connection");
        self.send_message(&ServerMessage::Fatal(info));
        self.close();
    }

    pub(super) fn close(&self) {
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
}
