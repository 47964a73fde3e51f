//! Serving a job's output to one reader, the way jwd sends it: spans in
//! capture order, each one's bytes from a read-only mapping of the spill
//! file when they are in the page cache (the sender reads them there as it
//! encrypts: no copy), else read with io_uring into the caller's buffer (a
//! page fault on the mapping would stall the runtime's thread, and every
//! connection on it, on the disk).
//!
//! The mappings (shared with the job's other readers) and the io_uring
//! files are taken when there is something to read and dropped once the
//! reader has waited `IDLE_RELEASE` for more: a follower of a quiet job
//! holds nothing. Runs on an io_uring runtime (`crate::uring`).

use std::sync::Arc;
use std::time::Duration;

use super::{Mmap, Output, OutputReader, Span};
use crate::protocol::OutputStream;
use crate::uring;

/// How long a caught-up reader waits before it lets go of its mappings and
/// files.
const IDLE_RELEASE: Duration = Duration::from_secs(1);
/// The largest span `resident` checks (the protocol's chunk).
const MAX_SPAN: u64 = crate::protocol::MAX_CHUNK as u64;

/// A span's bytes in a mapping shared by the job's readers.
pub struct MappedSpan {
    pub map: Arc<Mmap>,
    pub start: usize,
    pub len: usize,
}

impl MappedSpan {
    pub fn bytes(&self) -> &[u8] {
        &self.map[self.start..self.start + self.len]
    }
}

/// One reader's serving state.
pub struct Serve {
    pub(super) output: Arc<Output>,
    pub(super) reader: OutputReader,
    maps: [Option<Arc<Mmap>>; 2],
    files: [Option<uring::File>; 2],
    /// Whether the mappings and files were let go (the reader was idle).
    released: bool,
    /// Every span through io_uring reads, none from the mapping (tests of
    /// that path; on a host the page cache decides).
    always_read: bool,
}

impl Serve {
    /// Serves `output` from the given offsets (`None`: that stream is not
    /// wanted); `follow` waits for more until the job's output is closed.
    pub fn new(
        output: &Arc<Output>,
        stdout: Option<u64>,
        stderr: Option<u64>,
        follow: bool,
    ) -> std::io::Result<Serve> {
        Ok(Serve {
            output: output.clone(),
            reader: output.reader(stdout, stderr, follow)?,
            maps: [None, None],
            files: [None, None],
            released: true,
            always_read: false,
        })
    }

    /// Begins at `begin` (`seek.rs`), before the first span.
    pub fn begin(&mut self, begin: &super::Begin) {
        self.reader.begin_at(begin);
    }

    /// Dates the spans: `Span::time_us` on the first of each run.
    pub fn timestamps(&mut self) {
        self.reader.timestamps();
    }

    /// Reads every span with io_uring, never from the mapping.
    #[cfg(test)]
    pub(super) fn always_read(&mut self) {
        self.always_read = true;
    }

    /// Whether everything this reader will ever serve has been served.
    pub fn is_done(&self) -> bool {
        self.reader.is_done()
    }

    /// Waits until the writer commits something or closes (see
    /// `OutputReader::changed`: wait on it beside something else).
    pub async fn changed(&mut self) {
        self.reader.changed().await
    }

    /// The next span of at most `max` bytes; `None` at the end. A reader
    /// that waits longer than `IDLE_RELEASE` lets go of its mappings and
    /// files meanwhile. Cancel-safe.
    pub async fn next_span(&mut self, max: u64) -> std::io::Result<Option<Span>> {
        loop {
            let next = if self.released {
                self.reader.next_span(max).await
            } else {
                match tokio::time::timeout(IDLE_RELEASE, self.reader.next_span(max)).await {
                    Ok(next) => next,
                    Err(_idle) => {
                        self.release();
                        continue;
                    }
                }
            };
            if let Ok(Some(_)) = next {
                self.released = false;
            }
            return next;
        }
    }

    /// The bytes of `span` (the last one `next_span` gave): `Some` mapped
    /// span when they are all in the page cache, else `None` with them
    /// appended to `buf` by io_uring reads.
    pub async fn fill(
        &mut self,
        span: &Span,
        buf: Vec<u8>,
    ) -> std::io::Result<(Vec<u8>, Option<MappedSpan>)> {
        let s = span.stream.index();
        let end = span.offset + span.len;
        if !self.always_read {
            if self.maps[s].as_ref().is_none_or(|m| (m.len() as u64) < end) {
                self.maps[s] = Some(self.output.mapping(span.stream, end)?);
            }
            let map = self.maps[s].as_ref().expect("mapped above");
            if resident(map, span.offset, span.len) {
                let mapped = MappedSpan {
                    map: map.clone(),
                    start: span.offset as usize,
                    len: span.len as usize,
                };
                return Ok((buf, Some(mapped)));
            }
        }
        let file = self.file(span.stream).await?;
        let buf = file
            .read_exact_at(span.offset, span.len as usize, buf)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => std::io::Error::new(
                    e.kind(),
                    "the output file is shorter than its committed length",
                ),
                _ => e,
            })?;
        Ok((buf, None))
    }

    async fn file(&mut self, which: OutputStream) -> std::io::Result<&uring::File> {
        let slot = &mut self.files[which.index()];
        if slot.is_none() {
            *slot = Some(uring::File::open(&self.output.path(which)).await?);
        }
        Ok(slot.as_ref().expect("opened above"))
    }

    pub(super) fn release(&mut self) {
        self.maps = [None, None];
        self.files = [None, None];
        self.reader.release();
        self.released = true;
    }
}

/// Whether every page of `[offset, offset + len)` of a mapped output file
/// is in the page cache (mincore), so reading it through the mapping
/// cannot wait for the disk.
fn resident(map: &Mmap, offset: u64, len: u64) -> bool {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p.max(4096) as u64);
    let start = offset / page * page;
    let pages = (offset + len - start).div_ceil(page) as usize;
    let mut vec = [0u8; (MAX_SPAN / 4096) as usize + 2];
    if len == 0 || pages > vec.len() || offset + len > map.len() as u64 {
        return false;
    }
    let first = map[start as usize..].as_ptr();
    // SAFETY: `first` is page-aligned (the mapping starts on a page and
    // `start` is a multiple of the page size) and the range lies inside the
    // mapping, which `map` keeps alive; mincore only writes one byte per
    // page into `vec`, which has room for `pages`.
    let rc = unsafe {
        libc::mincore(
            first as *mut libc::c_void,
            (offset + len - start) as usize,
            vec.as_mut_ptr(),
        )
    };
    rc == 0 && vec[..pages].iter().all(|b| b & 1 == 1)
}
