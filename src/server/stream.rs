//! One stream of a connection: its credit (the `Output` bytes the client
//! allows, granted with `Credit`), its cancellation, and the user's place
//! it holds. Shared by the session, which grants and cancels, and the
//! stream's request, which spends and waits.

use std::cell::Cell;

use tokio::sync::Notify;

use super::quota::Place;

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
}

impl StreamState {
    pub fn new(id: u32, place: Place, credit: u64) -> StreamState {
        StreamState {
            id,
            _place: place,
            credit: Cell::new(credit),
            credit_added: Notify::new(),
            cancelled: Cell::new(false),
            cancel: Notify::new(),
        }
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
