//! One reader of a job's output: spans (stream, offset, length) in the
//! capture order, from any offset or place (`seek.rs`), live, dated when
//! asked; it sleeps on the writer's progress when caught up.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use tokio::sync::watch;

use super::times::TIME_RECORD;
use super::*;
use crate::protocol::OutputStream;

/// A piece of output to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub stream: OutputStream,
    /// Offset within that stream.
    pub offset: u64,
    pub len: u64,
    /// For a reader asked for times: the time the run that holds the span
    /// began, on the first span of each run (`None` on the others, and
    /// for a run without a known time).
    pub time_us: Option<u64>,
}

/// Where a "both streams" reader is in the index.
#[derive(Debug, Default)]
pub(super) struct IndexCursor {
    /// Byte offset of the current record in the index.
    pub(super) at: u64,
    /// Stream offsets at the start of the current record.
    pub(super) base: [u64; 2],
    /// The current record's time was given with a span.
    pub(super) dated: bool,
}

/// One reader of a job's output: where it is, not the bytes (`Serve`
/// fetches those). Its index file is opened when it first needs it and
/// closed by `release` (an idle follower should not hold descriptors).
pub struct OutputReader {
    pub(super) dir: PathBuf,
    pub(super) index: Option<File>,
    pub(super) times: Option<File>,
    /// Spans carry their run's time (the index is walked even for one
    /// stream).
    pub(super) timestamps: bool,
    /// For a reader since a time (`Serve::since`): runs captured before it
    /// are skipped, until the first run at or after it (times never go
    /// backwards). A follower placed at the end needs it: what the job
    /// writes next may still come before the time.
    pub(super) not_before: Option<u64>,
    /// Next offset per selected stream.
    pub(super) want: [Option<u64>; 2],
    pub(super) rx: watch::Receiver<Progress>,
    /// For a non-follow reader: the progress when it was made.
    pub(super) limit: Option<Progress>,
    pub(super) cursor: IndexCursor,
    /// The last walk of the index stopped at `WALK_MAX` records without a
    /// span: not caught up, just a turn to give the thread back.
    pub(super) walked_far: bool,
}

/// Most index records one walk passes without finding a span (16 batches):
/// a reader of one stream of an output in a million tiny runs, or one
/// waiting for a time, gives its runtime thread back in between.
const WALK_MAX: u64 = 16 * 1024;

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
            if std::mem::take(&mut self.walked_far) {
                tokio::task::yield_now().await;
                continue;
            }
            if self.limit.is_some() || p.closed {
                return Ok(None);
            }
            if self.rx.changed().await.is_err() {
                // The writer is gone without closing (the job's record was
                // removed): nothing more will come; what it committed is
                // the end.
                self.limit = Some(*self.rx.borrow());
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

    /// Closes the reader's index files; they are opened again when needed.
    pub fn release(&mut self) {
        self.index = None;
        self.times = None;
    }

    /// Dates spans from now on (`Span::time_us`).
    pub fn timestamps(&mut self) {
        self.timestamps = true;
    }

    /// What the reader reads up to: its snapshot, or the writer's latest.
    pub fn progress(&self) -> Progress {
        self.limit.unwrap_or_else(|| *self.rx.borrow())
    }

    /// Which streams the reader reads.
    pub fn selected(&self) -> [bool; 2] {
        self.want.map(|w| w.is_some())
    }

    /// Moves the reader to `begin` (before its first span).
    pub fn begin_at(&mut self, begin: &super::Begin) {
        for s in 0..2 {
            if self.want[s].is_some() {
                self.want[s] = Some(begin.offsets[s]);
            }
        }
        self.cursor = IndexCursor {
            at: begin.at,
            base: begin.base,
            dated: false,
        };
    }

    pub(super) fn try_span(&mut self, p: &Progress, max: u64) -> std::io::Result<Option<Span>> {
        let max = max.max(1);
        match self.want {
            [Some(_), Some(_)] => self.try_span_both(p, max),
            _ if self.timestamps || self.not_before.is_some() => self.try_span_both(p, max),
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
                                time_us: None,
                            }));
                        }
                    }
                }
                Ok(None)
            }
        }
    }

    /// Walks the index in capture order, skipping what lies before the
    /// requested offsets (and the records of a stream not read).
    pub(super) fn try_span_both(
        &mut self,
        p: &Progress,
        max: u64,
    ) -> std::io::Result<Option<Span>> {
        let mut batch = [0u8; 4096];
        let mut walked = 0;
        loop {
            if self.cursor.at >= p.index_len {
                return Ok(None);
            }
            if walked >= WALK_MAX {
                self.walked_far = true;
                return Ok(None);
            }
            walked += batch.len() as u64 / RECORD;
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
                let run = u64::from(rec & !STDERR_BIT);
                // Saturating: a damaged file must not overflow.
                let end = start.saturating_add(run).min(p.lens[s]);
                let next = self.want[s].unwrap_or(u64::MAX);
                if next < end && self.before_time()? {
                    // Captured before the time asked for: skipped, as it
                    // grows too.
                    self.want[s] = Some(end);
                } else if next < end {
                    let from = next.max(start);
                    let len = (end - from).min(max);
                    self.want[s] = Some(from + len);
                    let time_us = self.run_time()?;
                    return Ok(Some(Span {
                        stream: OutputStream::ALL[s],
                        offset: from,
                        len,
                        time_us,
                    }));
                }
                if end < start.saturating_add(run) {
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
                self.cursor.dated = false;
            }
        }
    }

    /// The time of the current record, once per record, for a reader that
    /// dates its spans. Read in place like the index (24 bytes just
    /// written, in the page cache); a record without a time (see
    /// `times.rs`) gives `None`.
    fn run_time(&mut self) -> std::io::Result<Option<u64>> {
        if !self.timestamps || self.cursor.dated {
            return Ok(None);
        }
        self.cursor.dated = true;
        self.record_time()
    }

    /// Whether the current record was captured before `not_before`; the
    /// first that was not (or has no time: a crash's, read as in `since`)
    /// ends the skipping.
    fn before_time(&mut self) -> std::io::Result<bool> {
        let Some(since) = self.not_before else {
            return Ok(false);
        };
        if self.record_time()?.is_some_and(|t| t < since) {
            return Ok(true);
        }
        self.not_before = None;
        Ok(false)
    }

    /// The time of the current record, if it has one.
    fn record_time(&mut self) -> std::io::Result<Option<u64>> {
        if self.times.is_none() {
            match File::open(self.dir.join(TIMES_FILE)) {
                Ok(f) => self.times = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let times = self.times.as_ref().expect("opened above");
        let mut rec = [0u8; TIME_RECORD as usize];
        match times.read_exact_at(&mut rec, self.cursor.at / RECORD * TIME_RECORD) {
            Ok(()) => Ok(Some(RunTime::decode(&rec).time_us)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }
}
