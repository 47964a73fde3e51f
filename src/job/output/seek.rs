//! Where a reader begins: at the last N lines of the output it reads (in
//! capture order), or at the first run captured at or after a time.
//!
//! The last lines are found from the end: the order index is walked
//! backwards and the spill files read backwards in bounded chunks through
//! the serve path (a mapping when resident, else io_uring reads), counting
//! newlines, so the tail of a huge output costs the bytes of the tail. A
//! time is found by bisection of the time index (`times.rs`). Both end at
//! a `Begin`: an index record with its stream offsets (taken from the
//! record's time, not from a walk of the index from its start) and the
//! offsets to read from.

use std::path::Path;

use super::times::{Bisect, RunTime, TIMES_FILE, TIME_RECORD};
use super::{Serve, Span, INDEX_FILE, RECORD, STDERR_BIT};
use crate::protocol::OutputStream;
use crate::uring;

/// Bytes of output read at a time when counting lines backwards.
const CHUNK: u64 = 64 * 1024;
/// Index records read at a time.
const BATCH: u64 = 1024;

/// Where a reader begins: index record `at` (a byte offset in the index),
/// the stream offsets where that record begins, and where to read each
/// stream from (at or after them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Begin {
    pub(super) at: u64,
    pub(super) base: [u64; 2],
    pub(super) offsets: [u64; 2],
}

impl Begin {
    /// Bytes of both outputs before the beginning, in capture order.
    fn position(&self) -> u64 {
        self.offsets[0].saturating_add(self.offsets[1])
    }

    /// The later of two beginnings.
    pub fn later(self, other: Begin) -> Begin {
        if other.position() > self.position() {
            other
        } else {
            self
        }
    }
}

/// An error for output without times (see `times.rs`).
fn no_times() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "the job's output has no times (it was captured by an older jw-init): \
         read it without --since and --timestamps (--tail and offsets work)",
    )
}

/// Counts lines backwards over chunks given from the end of an output to
/// its start: finds where the last `lines` lines begin. A newline that is
/// the output's last byte ends the last line; a last line without one
/// counts as a line.
#[derive(Debug)]
pub(super) struct LineCounter {
    /// Newlines still to pass.
    left: u64,
    /// No byte seen yet (the next is the output's last).
    first: bool,
}

impl LineCounter {
    pub(super) fn new(lines: u64) -> LineCounter {
        LineCounter {
            left: lines,
            first: true,
        }
    }

    /// The next chunk back: `Some(i)` when the last lines begin at
    /// `chunk[i]` (`i` may be `chunk.len()`: at the start of what followed).
    pub(super) fn feed_back(&mut self, chunk: &[u8]) -> Option<usize> {
        let mut end = chunk.len();
        if self.first && end > 0 {
            self.first = false;
            if chunk[end - 1] == b'\n' {
                end -= 1;
            }
        }
        if self.left == 0 {
            return Some(chunk.len());
        }
        while let Some(nl) = chunk[..end].iter().rposition(|&b| b == b'\n') {
            self.left -= 1;
            if self.left == 0 {
                return Some(nl + 1);
            }
            end = nl;
        }
        None
    }
}

/// The index and time files, read with io_uring in batches.
struct IndexFiles {
    index: Option<uring::File>,
    times: Option<uring::File>,
    /// Index records `first..first + len/4`.
    batch: Vec<u8>,
    first: u64,
}

async fn open_if_any(path: &Path) -> std::io::Result<Option<uring::File>> {
    match uring::File::open(path).await {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl IndexFiles {
    async fn open(dir: &Path) -> std::io::Result<IndexFiles> {
        Ok(IndexFiles {
            index: open_if_any(&dir.join(INDEX_FILE)).await?,
            times: open_if_any(&dir.join(TIMES_FILE)).await?,
            batch: Vec::new(),
            first: 0,
        })
    }

    /// Index record `i` of `records` (committed): its stream and run;
    /// reads a batch around it, after it when `forward`, else before.
    async fn record(
        &mut self,
        i: u64,
        records: u64,
        forward: bool,
    ) -> std::io::Result<(usize, u64)> {
        let held = self.batch.len() as u64 / RECORD;
        if i < self.first || i >= self.first + held {
            let first = if forward {
                i
            } else {
                (i + 1).saturating_sub(BATCH)
            };
            let n = BATCH.min(records - first);
            let index = self
                .index
                .as_ref()
                .ok_or_else(|| std::io::Error::other("the output's index is missing"))?;
            let buf = std::mem::take(&mut self.batch);
            let mut buf = buf;
            buf.clear();
            self.batch = index
                .read_exact_at(first * RECORD, (n * RECORD) as usize, buf)
                .await?;
            self.first = first;
        }
        let k = ((i - self.first) * RECORD) as usize;
        let rec = u32::from_le_bytes([
            self.batch[k],
            self.batch[k + 1],
            self.batch[k + 2],
            self.batch[k + 3],
        ]);
        Ok((
            usize::from(rec & STDERR_BIT != 0),
            u64::from(rec & !STDERR_BIT),
        ))
    }

    /// The time of index record `j`, if it has one.
    async fn time(&self, j: u64) -> std::io::Result<Option<RunTime>> {
        let Some(times) = &self.times else {
            return Ok(None);
        };
        let len = TIME_RECORD as usize;
        match times.read_exact_at(j * TIME_RECORD, len, Vec::new()).await {
            Ok(rec) => Ok(Some(RunTime::decode(&rec))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// How many of the first `records` index records have a time: all of
    /// them as a rule, fewer after a crash (bisected), none for output
    /// of an older keeper.
    async fn dated(&self, records: u64) -> std::io::Result<u64> {
        if records == 0 || self.time(records - 1).await?.is_some() {
            return Ok(records);
        }
        let (mut lo, mut hi) = (0, records - 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.time(mid).await?.is_some() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The stream offsets where index record `j` begins: from its time,
    /// else from the nearest earlier time and the index after it.
    async fn base_of(&mut self, j: u64, records: u64) -> std::io::Result<[u64; 2]> {
        if let Some(t) = self.time(j).await? {
            return Ok(t.base);
        }
        let dated = self.dated(j).await?;
        let (mut k, mut base) = match dated.checked_sub(1) {
            Some(d) => (d, self.time(d).await?.map_or([0, 0], |t| t.base)),
            None => (0, [0, 0]),
        };
        while k < j {
            let (s, run) = self.record(k, records, true).await?;
            base[s] = base[s].saturating_add(run);
            k += 1;
            if k % BATCH == 0 {
                tokio::task::yield_now().await;
            }
        }
        Ok(base)
    }
}

impl Serve {
    /// The beginning at the end of what the reader would read now: its
    /// last index record, with every committed byte behind.
    async fn end(&mut self, files: &mut IndexFiles) -> std::io::Result<Begin> {
        let p = self.reader.progress();
        let records = p.index_len / RECORD;
        let Some(last) = records.checked_sub(1) else {
            return Ok(Begin::default());
        };
        Ok(Begin {
            at: last * RECORD,
            base: files.base_of(last, records).await?,
            offsets: p.lens,
        })
    }

    /// Where the last `lines` lines of the streams this reader reads
    /// begin, together in capture order (the whole output if it has
    /// fewer).
    pub async fn tail(&mut self, lines: u64) -> std::io::Result<Begin> {
        let mut files = IndexFiles::open(self.output.dir()).await?;
        if lines == 0 {
            return self.end(&mut files).await;
        }
        let p = self.reader.progress();
        let selected = self.reader.selected();
        let records = p.index_len / RECORD;
        let Some(last) = records.checked_sub(1) else {
            return Ok(Begin::default());
        };
        let last_base = files.base_of(last, records).await?;
        let mut counter = LineCounter::new(lines);
        // Where each stream stands after the record being looked at.
        let mut pos = p.lens;
        let mut buf = Vec::new();
        for i in (0..records).rev() {
            let (s, run) = files.record(i, records, false).await?;
            let end = pos[s];
            // The last record may have grown past the reader's progress:
            // its start comes from its time, the others' from their runs.
            let start = if i == last {
                last_base[s].min(end)
            } else {
                end.saturating_sub(run)
            };
            let mut e = end;
            while selected[s] && e > start {
                let b = e.saturating_sub(CHUNK).max(start);
                let span = Span {
                    stream: OutputStream::ALL[s],
                    offset: b,
                    len: e - b,
                    time_us: None,
                };
                let (read, mapped) = self.fill(&span, std::mem::take(&mut buf)).await?;
                let found = match &mapped {
                    Some(m) => counter.feed_back(m.bytes()),
                    None => counter.feed_back(&read),
                };
                buf = read;
                buf.clear();
                if let Some(k) = found {
                    let mut base = pos;
                    base[s] = start;
                    let mut offsets = pos;
                    offsets[s] = b + k as u64;
                    return Ok(Begin {
                        at: i * RECORD,
                        base,
                        offsets,
                    });
                }
                e = b;
                tokio::task::yield_now().await;
            }
            pos[s] = start;
        }
        Ok(Begin::default())
    }

    /// Where the first run captured at or after `since_us` (Unix
    /// microseconds) begins; the end if none is (a follower gets what
    /// comes next, from its first run at or after the time). An error for
    /// output without times.
    pub async fn since(&mut self, since_us: u64) -> std::io::Result<Begin> {
        // What a follower gets next may still be older than the time.
        self.reader.not_before = Some(since_us);
        let mut files = IndexFiles::open(self.output.dir()).await?;
        let records = self.reader.progress().index_len / RECORD;
        if records == 0 {
            return Ok(Begin::default());
        }
        let dated = files.dated(records).await?;
        if dated == 0 {
            return Err(no_times());
        }
        let mut search = Bisect::new(dated, since_us);
        while let Some(j) = search.probe() {
            let time = files.time(j).await?.ok_or_else(no_times)?;
            search.answer(j, time.time_us);
        }
        let j = search.found();
        if j < dated {
            let t = files.time(j).await?.ok_or_else(no_times)?;
            return Ok(Begin {
                at: j * RECORD,
                base: t.base,
                offsets: t.base,
            });
        }
        if dated < records {
            // Runs without a time after the last dated one (a crash's):
            // they may be later, so they are read.
            let base = files.base_of(dated, records).await?;
            return Ok(Begin {
                at: dated * RECORD,
                base,
                offsets: base,
            });
        }
        self.end(&mut files).await
    }

    /// Fails for output that has runs and no times (an older keeper's).
    pub async fn check_times(&mut self) -> std::io::Result<()> {
        let files = IndexFiles::open(self.output.dir()).await?;
        let records = self.reader.progress().index_len / RECORD;
        if records > 0 && files.dated(records).await? == 0 {
            return Err(no_times());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the last `n` lines of `text` begin, fed back in chunks of
    /// `size`.
    fn tail_of(text: &[u8], n: u64, size: usize) -> usize {
        let mut counter = LineCounter::new(n);
        let mut end = text.len();
        while end > 0 {
            let start = end.saturating_sub(size);
            if let Some(k) = counter.feed_back(&text[start..end]) {
                return start + k;
            }
            end = start;
        }
        0
    }

    #[test]
    fn lines_are_counted_backwards_across_chunks() {
        let text = b"one\ntwo\nthree\nfour\n";
        for size in [1, 2, 3, 5, 64] {
            assert_eq!(&text[tail_of(text, 2, size)..], b"three\nfour\n", "{size}");
            assert_eq!(&text[tail_of(text, 1, size)..], b"four\n", "{size}");
            assert_eq!(&text[tail_of(text, 4, size)..], text, "{size}");
            assert_eq!(&text[tail_of(text, 9, size)..], text, "more than there are");
            assert_eq!(tail_of(text, 0, size), text.len(), "none");
        }
    }

    #[test]
    fn a_last_line_without_newline_counts() {
        let text = b"one\ntwo\nthree";
        for size in [1, 4, 64] {
            assert_eq!(&text[tail_of(text, 2, size)..], b"two\nthree");
            assert_eq!(&text[tail_of(text, 1, size)..], b"three");
        }
    }

    #[test]
    fn empty_lines_are_lines() {
        let text = b"a\n\n\nb\n";
        assert_eq!(&text[tail_of(text, 2, 1)..], b"\nb\n");
        assert_eq!(tail_of(b"\n", 1, 1), 0, "one empty line");
        assert_eq!(tail_of(b"", 3, 1), 0);
    }

    #[test]
    fn the_later_beginning_wins() {
        let a = Begin {
            at: 4,
            base: [3, 0],
            offsets: [5, 2],
        };
        let b = Begin {
            at: 8,
            base: [5, 2],
            offsets: [5, 4],
        };
        assert_eq!(a.later(b), b);
        assert_eq!(b.later(a), b);
    }
}
