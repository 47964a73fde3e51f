//! One reader of a job's output: spans (stream, offset, length) in the
//! capture order, from any offset, live; it sleeps on the writer's progress
//! when caught up.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use tokio::sync::watch;

use super::*;
use crate::protocol::OutputStream;

/// A piece of output to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub stream: OutputStream,
    /// Offset within that stream.
    pub offset: u64,
    pub len: u64,
}

/// Where a "both streams" reader is in the index.
#[derive(Debug, Default)]
pub(super) struct IndexCursor {
    /// Byte offset of the current record in the index.
    pub(super) at: u64,
    /// Stream offsets at the start of the current record.
    pub(super) base: [u64; 2],
}

/// One reader of a job's output: where it is, not the bytes (`Serve`
/// fetches those). Its index file is opened when it first needs it and
/// closed by `release` (an idle follower should not hold descriptors).
pub struct OutputReader {
    pub(super) dir: PathBuf,
    pub(super) index: Option<File>,
    /// Next offset per selected stream.
    pub(super) want: [Option<u64>; 2],
    pub(super) rx: watch::Receiver<Progress>,
    /// For a non-follow reader: the progress when it was made.
    pub(super) limit: Option<Progress>,
    pub(super) cursor: IndexCursor,
}

impl OutputReader {
    /// The next span of at most `max` bytes: at once if there is one,
    /// after the writer's next commit if a follower is caught up, `None` at
    /// the end. The reader moves past the span: read it (`Serve::fill`)
    /// before asking for the next.
    pub async fn next_span(&mut self, max: u64) -> std::io::Result<Option<Span>> {
        loop {
            let p = match self.limit {
                Some(limit) => limit,
                None => *self.rx.borrow_and_update(),
            };
            if let Some(span) = self.try_span(&p, max)? {
                return Ok(Some(span));
            }
            if self.limit.is_some() || p.closed {
                return Ok(None);
            }
            if self.rx.changed().await.is_err() {
                // The writer is gone without closing (the job's record was
                // removed): nothing more will come.
                let p = *self.rx.borrow();
                return self.try_span(&p, max);
            }
        }
    }

    /// Whether the reader has delivered everything it ever will: the
    /// writer is done (or this is a non-follow snapshot) and every selected
    /// stream was read to its end.
    pub fn is_done(&self) -> bool {
        let p = self.limit.unwrap_or_else(|| *self.rx.borrow());
        let finished = self.limit.is_some() || p.closed;
        finished && (0..2).all(|s| self.want[s].is_none_or(|w| w >= p.lens[s]))
    }

    /// Waits until the writer commits something or closes. Never returns
    /// when nothing more can change: for a non-follow reader (a snapshot),
    /// or once the writer is gone. A caller waits on this beside something
    /// else (credit, cancellation), never alone; it returning at once there
    /// made a reader without credit spin on its thread forever.
    pub async fn changed(&mut self) {
        if self.limit.is_none() && self.rx.changed().await.is_ok() {
            return;
        }
        std::future::pending::<()>().await
    }

    /// Closes the reader's index file; it is opened again when needed.
    pub fn release(&mut self) {
        self.index = None;
    }

    pub(super) fn try_span(&mut self, p: &Progress, max: u64) -> std::io::Result<Option<Span>> {
        let max = max.max(1);
        match self.want {
            [Some(_), Some(_)] => self.try_span_both(p, max),
            _ => {
                for s in 0..2 {
                    if let Some(next) = self.want[s] {
                        if next < p.lens[s] {
                            let len = (p.lens[s] - next).min(max);
                            self.want[s] = Some(next + len);
                            return Ok(Some(Span {
                                stream: OutputStream::ALL[s],
                                offset: next,
                                len,
                            }));
                        }
                    }
                }
                Ok(None)
            }
        }
    }

    /// Walks the index in capture order, skipping what lies before the
    /// requested offsets.
    pub(super) fn try_span_both(
        &mut self,
        p: &Progress,
        max: u64,
    ) -> std::io::Result<Option<Span>> {
        let mut batch = [0u8; 4096];
        loop {
            if self.cursor.at >= p.index_len {
                return Ok(None);
            }
            let index = match &self.index {
                Some(f) => f,
                None => self.index.insert(File::open(self.dir.join(INDEX_FILE))?),
            };
            let n = ((p.index_len - self.cursor.at) as usize).min(batch.len());
            index.read_exact_at(&mut batch[..n], self.cursor.at)?;
            for rec in batch[..n].chunks_exact(RECORD as usize) {
                let rec = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
                let s = usize::from(rec & STDERR_BIT != 0);
                let start = self.cursor.base[s];
                // The last record may be extended by the writer after the
                // progress we hold: trust it only up to the committed length.
                let end = (start + u64::from(rec & !STDERR_BIT)).min(p.lens[s]);
                let next = self.want[s].expect("both selected");
                if next < end {
                    let from = next.max(start);
                    let len = (end - from).min(max);
                    self.want[s] = Some(from + len);
                    return Ok(Some(Span {
                        stream: OutputStream::ALL[s],
                        offset: from,
                        len,
                    }));
                }
                if end < start + u64::from(rec & !STDERR_BIT) {
                    // The rest of this record is not committed yet.
                    return Ok(None);
                }
                if self.cursor.at + RECORD >= p.index_len && !p.closed {
                    // The last record grows in place while the writer runs:
                    // stay on it.
                    return Ok(None);
                }
                self.cursor.base[s] = end;
                self.cursor.at += RECORD;
            }
        }
    }
}
