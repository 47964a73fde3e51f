//! One stream of a connection: its credit (the `Output` bytes the client
//! allows, granted with `Credit`), its cancellation, the user's place it
//! holds, and, for an `Attach` stream, the input the client sent (within
//! the credit the server gave). Shared by the session, which grants,
//! queues and cancels, and the stream's request, which spends and waits.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use tokio::sync::Notify;

use super::quota::Place;
use crate::protocol::WindowSize;

/// The client's input on an `Attach` stream, on its way to the job. At
/// most the credit the server gave waits here, in one ring of bytes
/// (however many frames brought them): a client that sends more breaks
/// the protocol and is cut off.
#[derive(Default)]
pub(crate) struct StreamInput {
    /// `Attached` was sent: input may come.
    open: Cell<bool>,
    /// The offset the next `Input` must have.
    next_offset: Cell<u64>,
    /// Input bytes the client may still send.
    credit: Cell<u64>,
    queue: RefCell<VecDeque<u8>>,
    /// `InputEnd` came (after what is queued).
    ended: Cell<bool>,
    /// The latest `Resize` not yet applied.
    resize: Cell<Option<WindowSize>>,
    arrived: Notify,
}

/// Why the session refuses an input message: the client broke a rule.
pub(crate) enum InputRefused {
    BeforeAttached,
    AfterEnd,
    Offset { got: u64, expected: u64 },
    OverCredit { len: usize, credit: u64 },
}

impl std::fmt::Display for InputRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputRefused::BeforeAttached => f.write_str("input before Attached"),
            InputRefused::AfterEnd => f.write_str("input after InputEnd"),
            InputRefused::Offset { got, expected } => {
                write!(f, "input at offset {got}, expected {expected}")
            }
            InputRefused::OverCredit { len, credit } => write!(
                f,
                "{len} bytes of input beyond the stream's input credit of {credit} bytes"
            ),
        }
    }
}

impl StreamInput {
    /// Opens the input at `offset` with `credit` bytes (when `Attached` is
    /// sent).
    pub fn open(&self, offset: u64, credit: u64) {
        self.next_offset.set(offset);
        self.credit.set(credit);
        self.open.set(true);
    }

    /// Whether input may come now (`Attached` was sent, `InputEnd` not).
    fn accepting(&self) -> Result<(), InputRefused> {
        if !self.open.get() {
            return Err(InputRefused::BeforeAttached);
        }
        if self.ended.get() {
            return Err(InputRefused::AfterEnd);
        }
        Ok(())
    }

    /// Takes input from the client, if it keeps the rules.
    pub fn push(&self, offset: u64, data: Vec<u8>) -> Result<(), InputRefused> {
        self.accepting()?;
        let expected = self.next_offset.get();
        if offset != expected {
            return Err(InputRefused::Offset {
                got: offset,
                expected,
            });
        }
        let (len, credit) = (data.len(), self.credit.get());
        if len as u64 > credit {
            return Err(InputRefused::OverCredit { len, credit });
        }
        if data.is_empty() {
            return Ok(());
        }
        self.credit.set(credit - len as u64);
        self.next_offset.set(expected + len as u64);
        self.queue.borrow_mut().extend(&data);
        self.arrived.notify_one();
        Ok(())
    }

    /// The client's end of input.
    pub fn end(&self) -> Result<(), InputRefused> {
        self.accepting()?;
        self.ended.set(true);
        self.arrived.notify_one();
        Ok(())
    }

    /// A new terminal size (only the latest counts).
    pub fn resize(&self, size: WindowSize) -> Result<(), InputRefused> {
        if !self.open.get() {
            return Err(InputRefused::BeforeAttached);
        }
        self.resize.set(Some(size));
        self.arrived.notify_one();
        Ok(())
    }

    /// Up to `max` bytes of the queued input, oldest first.
    pub fn pop(&self, max: usize) -> Option<Vec<u8>> {
        let mut queue = self.queue.borrow_mut();
        if queue.is_empty() {
            return None;
        }
        let n = queue.len().min(max);
        Some(queue.drain(..n).collect())
    }

    /// The size to apply, if a resize came.
    pub fn take_resize(&self) -> Option<WindowSize> {
        self.resize.take()
    }

    /// Whether the end came and everything before it was taken.
    pub fn is_done(&self) -> bool {
        self.ended.get() && self.queue.borrow().is_empty()
    }

    /// Gives the client `bytes` more credit (sent as `InputCredit`).
    pub fn give_credit(&self, bytes: u64) {
        self.credit.set(self.credit.get() + bytes);
    }

    /// Waits for input, its end or a resize.
    pub async fn arrived(&self) {
        self.arrived.notified().await
    }
}

/// Per-stream state the connection and the stream's handler share.
pub(crate) struct StreamState {
    pub id: u32,
    /// The user's place for this stream, held until the handler is done.
    pub(super) _place: Place,
    /// Bytes of `Output` data the client allows.
    pub(super) credit: Cell<u64>,
    pub(super) credit_added: Notify,
    pub(super) cancelled: Cell<bool>,
    pub(super) cancel: Notify,
    /// An `Attach` stream's input (`None` for other requests: boxed, so
    /// they do not carry its room).
    pub(super) input: Option<Box<StreamInput>>,
}

impl StreamState {
    pub fn new(id: u32, place: Place, credit: u64, input: bool) -> StreamState {
        StreamState {
            id,
            _place: place,
            credit: Cell::new(credit),
            credit_added: Notify::new(),
            cancelled: Cell::new(false),
            cancel: Notify::new(),
            input: input.then(Box::default),
        }
    }

    /// An `Attach` stream's input.
    pub fn input(&self) -> Option<&StreamInput> {
        self.input.as_deref()
    }

    /// Ends the stream: its request stops waiting for credit or anything.
    pub fn cancel(&self) {
        self.cancelled.set(true);
        self.cancel.notify_waiters();
        self.credit_added.notify_waiters();
    }

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
