//! A job's input, written by its one writer: the `Attach` stream of
//! protocol version 2 ([`Client::attach`]).
//!
//! The server grants input credit (`Attached.credit`, then `InputCredit`
//! as the job takes bytes); the client never sends beyond it. The bytes
//! sent that the job has not taken yet are all the client holds, so that
//! on a new connection to the same jwd ([`Attachment::resume`]) it can
//! send again exactly those the job did not get (`Attached.input_offset`
//! says where the job is). Memory is bounded by the credit, and at most
//! [`MAX_AHEAD`].

use std::collections::VecDeque;

use crate::protocol::{Attached, ClientMessage, ErrorCode, Event, JobId, Request, WindowSize};

use super::{Client, ClientError, Stream};

/// The largest `Input` frame this client sends (the protocol allows 256 KiB).
pub const MAX_INPUT_FRAME: usize = 64 * 1024;
/// The most bytes this client sends ahead of what the job took, whatever
/// credit the server grants: what it may have to send again.
pub const MAX_AHEAD: usize = 4 << 20;

/// The accounting of one writer's input: offsets, credit, and the bytes
/// sent that the job has not taken.
#[derive(Debug)]
struct InputWindow {
    /// Offset of `held[0]`: the job took every byte before it.
    taken: u64,
    /// The bytes from `taken` on: those before `sent` went out on the
    /// current stream, the rest are to go (again) on it.
    held: VecDeque<u8>,
    /// Offset of the next byte to go out on the current stream.
    sent: u64,
    /// Bytes the server lets the current stream send now.
    credit: u64,
}

impl InputWindow {
    fn new(offset: u64, credit: u32) -> InputWindow {
        InputWindow {
            taken: offset,
            held: VecDeque::new(),
            sent: offset,
            credit: u64::from(credit),
        }
    }

    /// The offset the next new byte will have.
    fn end(&self) -> u64 {
        self.taken + self.held.len() as u64
    }

    /// Whether held bytes still have to go out on the current stream.
    fn pending(&self) -> bool {
        self.sent < self.end()
    }

    /// Takes as much of `fresh` as may go out now (none while held bytes
    /// are to go again, none beyond the credit or [`MAX_AHEAD`]); how many
    /// bytes it took.
    fn take(&mut self, fresh: &[u8]) -> usize {
        if self.pending() {
            return 0;
        }
        let room = MAX_AHEAD - self.held.len();
        let credit = usize::try_from(self.credit).unwrap_or(usize::MAX);
        let n = fresh.len().min(room).min(credit).min(MAX_INPUT_FRAME);
        self.held.extend(&fresh[..n]);
        n
    }

    /// The next `Input` to send, its offset and bytes, within the credit;
    /// `None` when nothing is to go or there is no credit. Counted as sent
    /// at once: bytes lost with the connection are sent again by `restart`.
    fn frame(&mut self) -> Option<(u64, Vec<u8>)> {
        let start = (self.sent - self.taken) as usize;
        let credit = usize::try_from(self.credit).unwrap_or(usize::MAX);
        let len = (self.held.len() - start).min(credit).min(MAX_INPUT_FRAME);
        if len == 0 {
            return None;
        }
        let data = self.held.range(start..start + len).copied().collect();
        let offset = self.sent;
        self.sent += len as u64;
        self.credit -= len as u64;
        Some((offset, data))
    }

    /// `InputCredit{bytes}`: the job took `bytes` more.
    fn credited(&mut self, bytes: u32) {
        self.credit += u64::from(bytes);
        let took = u64::from(bytes).min(self.sent - self.taken);
        self.held.drain(..took as usize);
        self.taken += took;
    }

    /// A new stream, whose server says it gave the job `offset` bytes.
    /// When that count is exact for this writer (`exact`: the server says
    /// this writer was the last to attach through it, so nobody else wrote
    /// in between and it counted every byte this one sent) and within the
    /// held bytes, the bytes from there go again: returns 0. Otherwise no
    /// one can tell which held bytes reached the job (a restarted jwd
    /// counts from 0, another writer came in between): they are dropped
    /// and their number returned; new bytes follow at `offset`.
    fn restart(&mut self, offset: u64, credit: u32, exact: bool) -> u64 {
        let nothing_held = self.end() == self.taken;
        let unknown = if (exact || nothing_held) && (self.taken..=self.end()).contains(&offset) {
            self.held.drain(..(offset - self.taken) as usize);
            0
        } else {
            let unknown = self.end() - self.taken;
            self.held.clear();
            unknown
        };
        self.taken = offset;
        self.sent = offset;
        self.credit = u64::from(credit);
        unknown
    }
}

/// The writer of a job's input, on one `Attach` stream.
pub struct Attachment {
    stream: Stream,
    job: JobId,
    terminal: bool,
    /// This writer's number, as the server gave it.
    writer: u64,
    window: InputWindow,
    /// The job's input closed: `Detached` arrived with this offset.
    closed: Option<u64>,
}

/// What can be done to an attachment from elsewhere while its owner
/// writes: resize the terminal, detach. Cheap to clone.
#[derive(Clone)]
pub struct AttachControl {
    client: Client,
    stream: u32,
}

impl Client {
    /// Becomes the writer of the job's input (protocol version 2): waits
    /// for `Attached`.
    pub async fn attach(&self, job: JobId) -> Result<Attachment, ClientError> {
        let (stream, attached) = self.open_attach(job).await?;
        Ok(Attachment {
            stream,
            job,
            terminal: attached.terminal,
            writer: attached.writer,
            window: InputWindow::new(attached.input_offset, attached.credit),
            closed: None,
        })
    }

    async fn open_attach(&self, job: JobId) -> Result<(Stream, Attached), ClientError> {
        let mut stream = self.open(Request::Attach { job }).await?;
        match stream.next().await? {
            Some(Event::Attached(attached)) => Ok((stream, attached)),
            Some(other) => Err(ClientError::Unexpected(format!("{other:?}"))),
            None => Err(ClientError::Closed),
        }
    }
}

impl Attachment {
    pub fn job(&self) -> JobId {
        self.job
    }

    /// Whether the job's input is a terminal (`resize` applies).
    pub fn terminal(&self) -> bool {
        self.terminal
    }

    /// The offset in the job's input the next byte given to `write` will
    /// have. After a failed `write`, the bytes of it before this offset
    /// were taken (and are sent again by `resume`), the rest were not.
    pub fn input_offset(&self) -> u64 {
        self.window.end()
    }

    /// A handle to resize or detach while this attachment is busy writing.
    pub fn control(&self) -> AttachControl {
        AttachControl {
            client: self.stream.client.clone(),
            stream: self.stream.id,
        }
    }

    /// Sends `data` to the job's input: in frames within the credit,
    /// waiting for `InputCredit` when out of it. An error reply, the
    /// input's end (`ClientError::InputClosed`) or a lost connection while
    /// waiting are errors.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), ClientError> {
        let mut rest = data;
        loop {
            while let Some(got) = self.stream.next_ready() {
                self.absorb(got)?;
            }
            if let Some((offset, data)) = self.window.frame() {
                let stream = self.stream.id;
                self.stream
                    .client
                    .send(&ClientMessage::Input {
                        stream,
                        offset,
                        data,
                    })
                    .await?;
                continue;
            }
            if rest.is_empty() && !self.window.pending() {
                return Ok(());
            }
            let took = self.window.take(rest);
            if took > 0 {
                rest = &rest[took..];
                continue;
            }
            let got = self.stream.next().await;
            self.absorb(got)?;
        }
    }

    /// An event of the stream while writing.
    fn absorb(&mut self, got: Result<Option<Event>, ClientError>) -> Result<(), ClientError> {
        match got? {
            Some(Event::InputCredit { bytes }) => {
                self.window.credited(bytes);
                Ok(())
            }
            Some(Event::Detached { input_offset }) => {
                self.closed = Some(input_offset);
                Err(ClientError::InputClosed { input_offset })
            }
            Some(other) => Err(ClientError::Unexpected(format!("{other:?}"))),
            None => Err(ClientError::InputClosed {
                input_offset: self.closed.unwrap_or(self.window.sent),
            }),
        }
    }

    /// Ends the job's input (EOF after the bytes written; a terminal's EOF
    /// character for a terminal) and waits for `Detached`: the bytes of
    /// input the job was given in all.
    pub async fn end(mut self) -> Result<u64, ClientError> {
        self.close_input().await
    }

    /// `end`, keeping the attachment: after a lost connection, `resume`
    /// then `close_input` again (a job whose input was closed already
    /// refuses the new attach with `failed_precondition`).
    pub async fn close_input(&mut self) -> Result<u64, ClientError> {
        // Held bytes go first; events already in say whether the input is
        // still open.
        match self.write(&[]).await {
            Ok(()) => {}
            Err(ClientError::InputClosed { input_offset }) => return Ok(input_offset),
            Err(e) => return Err(e),
        }
        let stream = self.stream.id;
        self.stream
            .client
            .send(&ClientMessage::InputEnd { stream })
            .await?;
        loop {
            let got = self.stream.next().await;
            match self.absorb(got) {
                Ok(()) => {}
                Err(ClientError::InputClosed { input_offset }) => return Ok(input_offset),
                Err(e) => return Err(e),
            }
        }
    }

    /// The caller's terminal has a new size (ignored for a job without one).
    pub async fn resize(&self, size: WindowSize) -> Result<(), ClientError> {
        self.control().resize(size).await
    }

    /// Stops writing (`Cancel`), leaving the job running with its input
    /// open for a later attach; waits for the server's answer.
    pub async fn detach(mut self) -> Result<(), ClientError> {
        self.stream.cancel().await?;
        loop {
            match self.stream.next().await {
                Ok(Some(Event::InputCredit { .. })) => {}
                Ok(Some(Event::Detached { .. })) | Ok(None) => return Ok(()),
                Ok(Some(other)) => return Err(ClientError::Unexpected(format!("{other:?}"))),
                Err(ClientError::Server(e)) if e.code == ErrorCode::CANCELLED => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Attaches again on `client` (a new connection after this one's was
    /// lost) and sends again the bytes the job did not get, when the
    /// server's `input_offset` says which (the same jwd, and no other
    /// writer in between: `Attached.previous_writer` is this one); after a
    /// restart of jwd, or another writer, it cannot tell, and nothing is
    /// sent again. Returns how many
    /// bytes sent before may or may not have reached the job (0: none).
    /// On an error the attachment is as before: `resume` may be tried again.
    pub async fn resume(&mut self, client: &Client) -> Result<u64, ClientError> {
        let (stream, attached) = client.open_attach(self.job).await?;
        let exact = attached.previous_writer == self.writer;
        let unknown = self
            .window
            .restart(attached.input_offset, attached.credit, exact);
        self.writer = attached.writer;
        self.stream = stream;
        self.terminal = attached.terminal;
        self.closed = None;
        self.write(&[]).await?;
        Ok(unknown)
    }
}

impl AttachControl {
    /// The caller's terminal has a new size. Nothing is sent once the
    /// stream has ended.
    pub async fn resize(&self, size: WindowSize) -> Result<(), ClientError> {
        if !Stream::is_open(&self.client, self.stream) {
            return Ok(());
        }
        self.client
            .send(&ClientMessage::Resize {
                stream: self.stream,
                size,
            })
            .await
    }

    /// Asks the server to end the attachment (`Cancel`); the job keeps
    /// running with its input open. Does not wait for the answer.
    pub async fn cancel(&self) -> Result<(), ClientError> {
        self.client
            .send(&ClientMessage::Cancel {
                stream: self.stream,
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends every frame the window allows; their bytes, checking that
    /// each starts where the previous one ended.
    fn drain(w: &mut InputWindow) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some((offset, data)) = w.frame() {
            assert_eq!(offset, w.sent - data.len() as u64);
            assert!(data.len() <= MAX_INPUT_FRAME);
            out.extend(data);
        }
        out
    }

    #[test]
    fn never_sends_beyond_the_credit_nor_holds_more() {
        let mut w = InputWindow::new(100, 10);
        let data: Vec<u8> = (0..25).collect();
        assert_eq!(w.take(&data), 10);
        assert_eq!(
            w.take(&data[10..]),
            0,
            "nothing while held bytes are unsent"
        );
        assert_eq!(drain(&mut w), &data[..10]);
        assert_eq!(w.take(&data[10..]), 0, "no credit left");
        assert_eq!(w.held.len(), 10);
        assert_eq!(w.end(), 110);
        // The job took 4: credit for 4 more, and those 4 are no longer held.
        w.credited(4);
        assert_eq!(w.held.len(), 6);
        assert_eq!(w.take(&data[10..]), 4);
        assert_eq!(drain(&mut w), &data[10..14]);
        assert_eq!(w.held.len(), 10);
        assert_eq!((w.taken, w.sent, w.end()), (104, 114, 114));
    }

    #[test]
    fn frames_are_at_most_64_kib() {
        let mut w = InputWindow::new(0, 1 << 20);
        let data = vec![7u8; 200 * 1024];
        let mut fed = 0;
        let mut frames = 0;
        while fed < data.len() {
            fed += w.take(&data[fed..]);
            while let Some((_, frame)) = w.frame() {
                assert!(frame.len() <= MAX_INPUT_FRAME);
                frames += 1;
            }
        }
        assert_eq!(frames, 4);
        assert_eq!(w.end(), data.len() as u64);
    }

    #[test]
    fn a_new_stream_sends_again_what_the_job_did_not_take() {
        let mut w = InputWindow::new(0, 8);
        assert_eq!(w.take(b"abcdefgh"), 8);
        assert_eq!(drain(&mut w), b"abcdefgh");
        w.credited(2);
        // The connection is lost; the job took 5 bytes ("abcde") by the
        // time the new stream attached.
        assert_eq!(w.restart(5, 3, true), 0);
        assert!(w.pending());
        assert_eq!(w.take(b"ij"), 0, "new bytes wait for the old ones");
        assert_eq!(w.frame(), Some((5, b"fgh".to_vec())));
        assert_eq!(w.frame(), None);
        assert_eq!(w.take(b"ij"), 0, "no credit");
        w.credited(3);
        assert_eq!(w.take(b"ij"), 2);
        assert_eq!(w.frame(), Some((8, b"ij".to_vec())));
    }

    #[test]
    fn a_count_that_proves_nothing_sends_nothing_again() {
        // A restarted jwd counts from 0, and another writer may have come
        // in between: which held bytes reached the job is unknown, and
        // none goes again.
        let mut w = InputWindow::new(0, 8);
        assert_eq!(w.take(b"abcd"), 4);
        drain(&mut w);
        assert_eq!(w.restart(0, 8, false), 4);
        assert!(!w.pending());
        assert_eq!(w.take(b"e"), 1);
        assert_eq!(w.frame(), Some((0, b"e".to_vec())));
        // An offset outside the held bytes (below what the job took).
        let mut w = InputWindow::new(10, 4);
        assert_eq!(w.take(b"abcd"), 4);
        drain(&mut w);
        w.credited(2);
        assert_eq!(w.restart(3, 4, true), 2);
        assert_eq!((w.taken, w.sent, w.end()), (3, 3, 3));
        // Another writer wrote 2 bytes in between: the same numbers as a
        // count of this writer's bytes would be a lie.
        let mut w = InputWindow::new(10, 4);
        assert_eq!(w.take(b"abcd"), 4);
        drain(&mut w);
        assert_eq!(w.restart(12, 4, false), 4);
        // Nothing held: nothing to lose.
        let mut w = InputWindow::new(0, 4);
        assert_eq!(w.restart(0, 4, false), 0);
    }

    #[test]
    fn the_same_count_within_the_held_bytes_is_exact() {
        let mut w = InputWindow::new(10, 4);
        assert_eq!(w.take(b"abcd"), 4);
        drain(&mut w);
        w.credited(2);
        assert_eq!(w.restart(14, 4, true), 0);
        assert!(!w.pending());
        assert_eq!(w.held.len(), 0);
    }
}
