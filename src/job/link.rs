//! jwd's end of a job's channel: the init's reports and the output it
//! relays, received in batches and written on the blocking pool within one
//! global budget of memory.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use tokio::io::unix::AsyncFd;

use super::channel::{FromInit, Report, MAX_MESSAGE};
use super::output::OutputWriter;
use super::pool::Pool;
use crate::protocol::OutputStream;

/// jwd's end of a job's channel: reports and relayed output from the init.
pub(super) struct InitChannel {
    pub(super) fd: AsyncFd<Arc<OwnedFd>>,
}

/// Output received from a job's init and not yet written: the messages as
/// received (each a 4-byte kind, then the bytes) back to back, and where
/// each one's bytes are.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) buf: Vec<u8>,
    pub(super) spans: Vec<(OutputStream, std::ops::Range<usize>)>,
}

/// Output collected before it goes to the pool to be written: a few
/// messages' worth, so a job writing fast costs one thread hop per batch.
pub(super) const BATCH: usize = 4 * MAX_MESSAGE;

/// Output batches of all jobs received and not yet written, in bytes: what
/// jobs writing at once can hold of jwd's memory. A job past it waits (its
/// init, then the job, block on their full channel and pipes).
pub(super) const BATCHES_IN_FLIGHT: usize = 64 << 20;

pub(super) static WRITE_BUDGET: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(BATCHES_IN_FLIGHT / (BATCH + MAX_MESSAGE));

/// One message received off the channel.
pub(super) enum Received {
    Output,
    Report(Report),
    /// A message no init of this build sends: dropped.
    Bad,
    Eof,
}

impl InitChannel {
    pub(super) fn new(fd: OwnedFd) -> std::io::Result<Self> {
        rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK)?;
        Ok(InitChannel {
            fd: super::async_readable(Arc::new(fd))?,
        })
    }

    /// Receives one message: output is appended to `batch`.
    pub(super) fn receive(fd: &OwnedFd, batch: &mut Batch) -> std::io::Result<Received> {
        let start = batch.buf.len();
        batch.buf.reserve(MAX_MESSAGE);
        let (_, n) = rustix::net::recv(
            fd,
            rustix::buffer::spare_capacity(&mut batch.buf),
            rustix::net::RecvFlags::empty(),
        )?;
        if n == 0 {
            return Ok(Received::Eof);
        }
        let end = batch.buf.len();
        let received = match FromInit::decode(&batch.buf[start..]) {
            Ok(FromInit::Output { stream, bytes }) => {
                // The bytes stay where they were received.
                batch.spans.push((stream, end - bytes.len()..end));
                return Ok(Received::Output);
            }
            Ok(FromInit::Report(report)) => Received::Report(report),
            Err(_) => Received::Bad,
        };
        batch.buf.truncate(start);
        Ok(received)
    }

    /// The next report, with the output before it written through `writer`
    /// (on `pool`; dropped with no writer); `None` once the init has
    /// exited (EOF).
    pub(super) async fn next_report(
        &mut self,
        writer: Option<&Arc<OutputWriter>>,
        pool: &Pool,
    ) -> Option<Report> {
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return None;
            };
            // Room for one batch in jwd's memory before reading any.
            let Ok(_budget) = WRITE_BUDGET.acquire().await else {
                return None;
            };
            let mut batch = Batch::default();
            let outcome = loop {
                match guard.try_io(|fd| Self::receive(fd.get_ref(), &mut batch)) {
                    Ok(Ok(Received::Output)) if batch.buf.len() < BATCH => {}
                    Ok(Ok(Received::Output)) => break None,
                    Ok(Ok(Received::Report(r))) => break Some(Some(r)),
                    Ok(Ok(Received::Eof)) => break Some(None),
                    Ok(Ok(Received::Bad)) => {}
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Ok(Err(_)) => break Some(None),
                    Err(_would_block) => break None,
                }
            };
            drop(guard);
            if let (Some(writer), false) = (writer, batch.spans.is_empty()) {
                let writer = writer.clone();
                pool.run(move || {
                    for (stream, range) in &batch.spans {
                        writer.append(*stream, &batch.buf[range.clone()]);
                    }
                })
                .await;
            }
            if let Some(end) = outcome {
                return end;
            }
        }
    }
}
