//! The output store: a job's stdout and stderr in spill files on disk, one
//! writer, any number of readers from any offset, live.
//!
//! Per job directory:
//! - `stdout`, `stderr`: the bytes, exactly as the job wrote them;
//! - `index`: the capture order across the two, as little-endian u32
//!   records (bit 31: the stream, 0 stdout / 1 stderr; bits 0-30: a run
//!   length). Consecutive reads from the same stream extend the last record
//!   in place, so a job that writes only stdout has a one-record index.
//!
//! Writes are `pwrite`s into the page cache, not stores into a shared
//! mapping: with a mapping, a full disk surfaces as SIGBUS in the server
//! instead of an ENOSPC it can count and survive, and a growing file would
//! need remapping. Readers get spans (stream, offset, length) and read them
//! with `pread` here or io_uring in the server, so a slow reader costs disk
//! reads, never server memory.
//!
//! Progress (committed lengths, and whether the writer is done) is
//! published through a `watch` channel: a caught-up follower sleeps on it
//! and is woken by the writer's next commit. No polling anywhere.
//!
//! The server takes everything the job's init relays whatever happens to
//! the files: past the output cap, or once the disk is full, bytes are
//! received and dropped (and counted), so a job never blocks because of
//! its output.
//!
//! Readers are also served from a read-only mapping of each file, shared
//! by a job's readers (`Output::mapping`), when the bytes are in the page
//! cache.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::protocol::{OutputInfo, OutputStream};

/// File names inside a job's directory.
pub const STDOUT_FILE: &str = "stdout";
pub const STDERR_FILE: &str = "stderr";
pub const INDEX_FILE: &str = "index";

const RECORD: u64 = 4;
const STDERR_BIT: u32 = 1 << 31;
const MAX_RUN: u64 = (STDERR_BIT - 1) as u64;

/// Creates an output file of a new job.
fn create(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // Owner-only: jwd's (root's), whatever the process umask.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// The path of one output file in a job directory.
pub fn output_path(job_dir: &Path, which: OutputStream) -> PathBuf {
    job_dir.join(match which {
        OutputStream::Stdout => STDOUT_FILE,
        OutputStream::Stderr => STDERR_FILE,
    })
}

/// What has been committed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Committed bytes of stdout and stderr.
    pub lens: [u64; 2],
    /// Committed bytes of the index.
    pub index_len: u64,
    /// Bytes read from the job and not kept.
    pub dropped: u64,
    /// The writer is done: no byte will be added.
    pub closed: bool,
}

/// One job's output: where it is and how far it got.
#[derive(Debug)]
pub struct Output {
    dir: PathBuf,
    progress: watch::Sender<Progress>,
    /// The latest read-only mapping of each stream, shared by its readers
    /// while any holds it (no descriptor is kept: a mapping needs none).
    maps: Mutex<[std::sync::Weak<Mmap>; 2]>,
}

/// A read-only mapping of an output file.
pub type Mmap = memmap2::Mmap;

/// The smallest mapping window: mappings grow by doubling past it, so a
/// growing file is remapped a few dozen times at most.
const MIN_MAP: u64 = 64 << 20;

impl Output {
    /// The counts for a job's status.
    pub fn info(&self) -> OutputInfo {
        let p = *self.progress.borrow();
        OutputInfo {
            stdout_bytes: p.lens[0],
            stderr_bytes: p.lens[1],
            dropped_bytes: p.dropped,
        }
    }

    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of one stream (it exists once the stream has a byte).
    pub fn path(&self, which: OutputStream) -> PathBuf {
        output_path(&self.dir, which)
    }

    /// A read-only mapping of stream `which` that covers its committed
    /// bytes up to `end` (pass a committed offset: only committed bytes may
    /// be touched). The mapping is shared with the job's other readers
    /// while any of them holds it.
    ///
    /// A window may reach past the end of the file, which is allowed and
    /// lets the same mapping serve a growing file: the pages past the end
    /// are never touched, since readers only read committed spans, and the
    /// files only grow (nothing in jw truncates them).
    pub fn mapping(&self, which: OutputStream, end: u64) -> std::io::Result<Arc<Mmap>> {
        let s = which.index();
        let mut maps = self.maps.lock().expect("output maps lock");
        let current = maps[s].upgrade();
        if let Some(map) = &current {
            if map.len() as u64 >= end {
                return Ok(map.clone());
            }
        }
        let previous = current.as_ref().map_or(0, |m| m.len() as u64);
        let len = end.max(previous.saturating_mul(2)).max(MIN_MAP);
        let len = usize::try_from(len).map_err(std::io::Error::other)?;
        let file = File::open(self.path(which))?;
        // SAFETY: the mapping is read-only and jw never truncates or writes
        // into the committed part of an output file, so the bytes a reader
        // is given never change under it and never lie past the end of the
        // file (which would fault). The file may be unlinked while mapped
        // (job removal); the mapping keeps its inode.
        let map = Arc::new(unsafe { memmap2::MmapOptions::new().len(len).map(&file)? });
        maps[s] = Arc::downgrade(&map);
        Ok(map)
    }

    /// The output of a new job, and its writer, which keeps at most `cap`
    /// bytes, and no more than `user` has room for. No file exists until
    /// the job writes to it: a quiet job costs no files and no descriptors.
    pub fn create(
        dir: &Path,
        cap: u64,
        user: Option<Arc<UserOutput>>,
    ) -> std::io::Result<(Arc<Output>, Arc<OutputWriter>)> {
        let output = Arc::new(Output {
            dir: dir.to_path_buf(),
            progress: watch::Sender::new(Progress::default()),
            maps: Mutex::default(),
        });
        let writer = Arc::new(OutputWriter {
            output: output.clone(),
            cap,
            user,
            state: Mutex::new(WriterState {
                files: [None, None],
                index: None,
                last: None,
                disk_failed: false,
            }),
        });
        Ok((output, writer))
    }

    /// Opens the output of a job that is not running (after a restart):
    /// closed, with lengths from the files. Data the index does not cover
    /// (written just before a crash) is indexed at the end, so nothing on
    /// disk is lost to readers.
    pub fn open_closed(dir: &Path, dropped: u64) -> std::io::Result<Arc<Output>> {
        use std::os::unix::fs::OpenOptionsExt;
        let len = |name: &str| {
            std::fs::metadata(dir.join(name))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        let lens = [len(STDOUT_FILE), len(STDERR_FILE)];
        let index_path = dir.join(INDEX_FILE);
        let index_len = len(INDEX_FILE) / RECORD * RECORD;
        let mut covered = [0u64; 2];
        if index_len > 0 {
            let bytes = std::fs::read(&index_path)?;
            for rec in bytes[..index_len as usize].chunks_exact(RECORD as usize) {
                let rec = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
                covered[usize::from(rec & STDERR_BIT != 0)] += u64::from(rec & !STDERR_BIT);
            }
        }
        let mut index_len = index_len;
        if covered != lens {
            let index = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&index_path)?;
            index.set_len(index_len)?;
            for i in 0..2 {
                // An index ahead of the data (impossible by write order) is
                // trusted no further than the data.
                let mut missing = lens[i].saturating_sub(covered[i]);
                while missing > 0 {
                    let run = missing.min(MAX_RUN);
                    let rec = run as u32 | if i == 1 { STDERR_BIT } else { 0 };
                    index.write_all_at(&rec.to_le_bytes(), index_len)?;
                    index_len += RECORD;
                    missing -= run;
                }
            }
        }
        Ok(Arc::new(Output {
            dir: dir.to_path_buf(),
            progress: watch::Sender::new(Progress {
                lens,
                index_len,
                dropped,
                closed: true,
            }),
            maps: Mutex::default(),
        }))
    }

    /// A reader of the selected streams from the given offsets. `follow`
    /// keeps it going until the writer is done; otherwise it stops at what
    /// was committed when it was made.
    pub fn reader(
        self: &Arc<Self>,
        stdout: Option<u64>,
        stderr: Option<u64>,
        follow: bool,
    ) -> std::io::Result<OutputReader> {
        let rx = self.progress.subscribe();
        let limit = (!follow).then(|| *rx.borrow());
        Ok(OutputReader {
            dir: self.dir.clone(),
            files: [None, None],
            index: None,
            want: [stdout, stderr],
            rx,
            limit,
            cursor: IndexCursor::default(),
        })
    }
}

struct WriterState {
    /// Opened (created) at the first byte of each.
    files: [Option<File>; 2],
    index: Option<File>,
    /// The last index record: (its stream, its offset in the index, its run).
    last: Option<(usize, u64, u64)>,
    disk_failed: bool,
}

/// One user's output kept over all their jobs, against the server's cap
/// for it (`jwd --max-output-per-user`). Writers take room before they
/// write; removing a job gives its bytes back.
#[derive(Debug)]
pub struct UserOutput {
    kept: AtomicU64,
    cap: u64,
}

impl UserOutput {
    pub fn new(cap: u64, kept: u64) -> Arc<UserOutput> {
        Arc::new(UserOutput {
            kept: AtomicU64::new(kept),
            cap,
        })
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Bytes kept now.
    pub fn kept(&self) -> u64 {
        self.kept.load(Ordering::Acquire)
    }

    pub fn is_full(&self) -> bool {
        self.kept() >= self.cap
    }

    /// Takes room for up to `want` bytes; returns how many it got.
    fn take(&self, want: u64) -> u64 {
        let mut got = 0;
        let _ = self
            .kept
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |kept| {
                got = want.min(self.cap.saturating_sub(kept));
                Some(kept + got)
            });
        got
    }

    /// Gives back `bytes` (a job removed, or a write that failed).
    pub fn give_back(&self, bytes: u64) {
        let _ = self
            .kept
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |kept| {
                Some(kept.saturating_sub(bytes))
            });
    }
}

/// The single writer of a job's output.
pub struct OutputWriter {
    output: Arc<Output>,
    cap: u64,
    /// The owner's output over all their jobs, if the server caps it.
    user: Option<Arc<UserOutput>>,
    state: Mutex<WriterState>,
}

impl OutputWriter {
    /// Appends what the job wrote to one stream; keeps what fits under the
    /// cap and the disk, drops and counts the rest.
    pub fn append(&self, which: OutputStream, bytes: &[u8]) {
        let s = which.index();
        let mut state = self.state.lock().expect("output writer lock");
        let p = *self.output.progress.borrow();
        let room = self.cap.saturating_sub(p.lens[0] + p.lens[1]);
        let mut keep = if state.disk_failed {
            0
        } else {
            room.min(bytes.len() as u64) as usize
        };
        if let Some(user) = &self.user {
            keep = user.take(keep as u64) as usize;
        }
        let taken = keep as u64;
        if keep > 0 {
            let file = match &state.files[s] {
                Some(f) => Ok(f),
                None => create(&output_path(&self.output.dir, which))
                    .map(|f| &*state.files[s].insert(f)),
            };
            if let Err(e) = file.and_then(|f| f.write_all_at(&bytes[..keep], p.lens[s])) {
                // A partial write leaves bytes past the committed length;
                // they are overwritten or ignored, never read.
                self.disk_failure(&mut state, &e);
                keep = 0;
            }
        }
        let mut index_len = p.index_len;
        if keep > 0 {
            if let Err(e) =
                Self::index_run(&self.output.dir, &mut state, s, keep as u64, &mut index_len)
            {
                self.disk_failure(&mut state, &e);
                keep = 0;
            }
        }
        if let (Some(user), true) = (&self.user, (keep as u64) < taken) {
            user.give_back(taken - keep as u64);
        }
        let dropped = (bytes.len() - keep) as u64;
        self.output.progress.send_modify(|p| {
            p.lens[s] += keep as u64;
            p.index_len = index_len;
            p.dropped += dropped;
        });
    }

    /// Records a run of `len` bytes of stream `s` in the index.
    fn index_run(
        dir: &Path,
        state: &mut WriterState,
        s: usize,
        len: u64,
        index_len: &mut u64,
    ) -> std::io::Result<()> {
        let bit = if s == 1 { STDERR_BIT } else { 0 };
        let index = match &state.index {
            Some(f) => f,
            None => state.index.insert(create(&dir.join(INDEX_FILE))?),
        };
        match state.last {
            Some((ls, at, run)) if ls == s && run + len <= MAX_RUN => {
                let rec = (run + len) as u32 | bit;
                index.write_all_at(&rec.to_le_bytes(), at)?;
                state.last = Some((s, at, run + len));
            }
            _ => {
                let rec = len as u32 | bit;
                index.write_all_at(&rec.to_le_bytes(), *index_len)?;
                state.last = Some((s, *index_len, len));
                *index_len += RECORD;
            }
        }
        Ok(())
    }

    fn disk_failure(&self, state: &mut WriterState, e: &std::io::Error) {
        if !state.disk_failed {
            state.disk_failed = true;
            tracing::warn!(dir = %self.output.dir.display(), error = %e, "cannot store job output; the rest of it is dropped and counted");
        }
    }

    /// No more bytes will come: wakes every follower for the last time.
    /// (No fsync: see `record.rs` for what survives what.)
    pub fn close(&self) {
        let _state = self.state.lock().expect("output writer lock");
        self.output.progress.send_modify(|p| p.closed = true);
    }
}

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
struct IndexCursor {
    /// Byte offset of the current record in the index.
    at: u64,
    /// Stream offsets at the start of the current record.
    base: [u64; 2],
}

/// One reader of a job's output. Its files are opened when it first has
/// something to read from them, and closed by `release` (an idle follower
/// should not hold descriptors).
pub struct OutputReader {
    dir: PathBuf,
    files: [Option<File>; 2],
    index: Option<File>,
    /// Next offset per selected stream.
    want: [Option<u64>; 2],
    rx: watch::Receiver<Progress>,
    /// For a non-follow reader: the progress when it was made.
    limit: Option<Progress>,
    cursor: IndexCursor,
}

impl OutputReader {
    /// The next span of at most `max` bytes: at once if there is one,
    /// after the writer's next commit if a follower is caught up, `None` at
    /// the end. The reader moves past the span: read it with `read_span`
    /// (or from `file`) before asking for the next.
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

    /// The file of a selected stream, opened if it is not yet. Call it for
    /// a stream a span came from: the file exists from its first byte on.
    pub fn file(&mut self, which: OutputStream) -> std::io::Result<&File> {
        let s = which.index();
        if self.want[s].is_none() {
            return Err(std::io::Error::other("stream not selected"));
        }
        match &mut self.files[s] {
            Some(f) => Ok(f),
            slot => Ok(slot.insert(File::open(output_path(&self.dir, which))?)),
        }
    }

    /// Closes the reader's files; they are opened again when needed.
    pub fn release(&mut self) {
        self.files = [None, None];
        self.index = None;
    }

    /// Reads a span into `buf` (cleared first) with `pread`.
    pub fn read_span(&mut self, span: &Span, buf: &mut Vec<u8>) -> std::io::Result<()> {
        let file = self.file(span.stream)?;
        buf.clear();
        buf.resize(span.len as usize, 0);
        file.read_exact_at(buf, span.offset)
    }

    /// Where the reader is in each selected stream.
    pub fn offsets(&self) -> [Option<u64>; 2] {
        self.want
    }

    fn try_span(&mut self, p: &Progress, max: u64) -> std::io::Result<Option<Span>> {
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
    fn try_span_both(&mut self, p: &Progress, max: u64) -> std::io::Result<Option<Span>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(reader: &mut OutputReader) -> Vec<(OutputStream, u64, Vec<u8>)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut out = Vec::new();
            while let Some(span) = reader.next_span(3).await.unwrap() {
                let mut buf = Vec::new();
                reader.read_span(&span, &mut buf).unwrap();
                out.push((span.stream, span.offset, buf));
            }
            out
        })
    }

    fn concat(chunks: &[(OutputStream, u64, Vec<u8>)], which: OutputStream) -> Vec<u8> {
        chunks
            .iter()
            .filter(|c| c.0 == which)
            .flat_map(|c| c.2.clone())
            .collect()
    }

    #[test]
    fn both_streams_come_back_in_capture_order() {
        let dir = tempfile::tempdir().unwrap();
        let (output, writer) = Output::create(dir.path(), 1 << 20, None).unwrap();
        writer.append(OutputStream::Stdout, b"out1\n");
        writer.append(OutputStream::Stdout, b"out2\n");
        writer.append(OutputStream::Stderr, b"err1\n");
        writer.append(OutputStream::Stdout, b"out3\n");
        writer.close();
        let chunks = drain(&mut output.reader(Some(0), Some(0), false).unwrap());
        // Merge consecutive chunks of one stream: the runs must alternate
        // exactly as they were written.
        let mut runs: Vec<(OutputStream, Vec<u8>)> = Vec::new();
        for (s, _, b) in chunks {
            match runs.last_mut() {
                Some((ls, lb)) if *ls == s => lb.extend(b),
                _ => runs.push((s, b)),
            }
        }
        assert_eq!(
            runs,
            vec![
                (OutputStream::Stdout, b"out1\nout2\n".to_vec()),
                (OutputStream::Stderr, b"err1\n".to_vec()),
                (OutputStream::Stdout, b"out3\n".to_vec()),
            ]
        );
        // Index: stdout run 10, stderr 5, stdout 5.
        assert_eq!(
            std::fs::metadata(dir.path().join(INDEX_FILE))
                .unwrap()
                .len(),
            12
        );
    }

    #[test]
    fn offsets_skip_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let (output, writer) = Output::create(dir.path(), 1 << 20, None).unwrap();
        writer.append(OutputStream::Stdout, b"abcdef");
        writer.append(OutputStream::Stderr, b"ABCDEF");
        writer.append(OutputStream::Stdout, b"ghi");
        writer.close();
        let chunks = drain(&mut output.reader(Some(4), Some(5), false).unwrap());
        assert_eq!(concat(&chunks, OutputStream::Stdout), b"efghi");
        assert_eq!(concat(&chunks, OutputStream::Stderr), b"F");
        assert_eq!(chunks[0].1, 4);
        let only_err = drain(&mut output.reader(None, Some(2), false).unwrap());
        assert_eq!(concat(&only_err, OutputStream::Stderr), b"CDEF");
        let past_end = drain(&mut output.reader(Some(100), None, false).unwrap());
        assert!(past_end.is_empty());
    }

    #[test]
    fn cap_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let (output, writer) = Output::create(dir.path(), 8, None).unwrap();
        writer.append(OutputStream::Stdout, b"12345");
        writer.append(OutputStream::Stderr, b"67890");
        writer.append(OutputStream::Stdout, b"xyz");
        writer.close();
        let info = output.info();
        assert_eq!(
            (info.stdout_bytes, info.stderr_bytes, info.dropped_bytes),
            (5, 3, 5)
        );
        let chunks = drain(&mut output.reader(Some(0), Some(0), false).unwrap());
        assert_eq!(concat(&chunks, OutputStream::Stderr), b"678");
    }

    #[test]
    fn a_users_cap_is_shared_by_their_jobs_and_room_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let user = UserOutput::new(10, 0);
        let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a_dir).unwrap();
        std::fs::create_dir(&b_dir).unwrap();
        let (a, wa) = Output::create(&a_dir, 1 << 20, Some(user.clone())).unwrap();
        let (b, wb) = Output::create(&b_dir, 1 << 20, Some(user.clone())).unwrap();
        wa.append(OutputStream::Stdout, b"123456");
        wb.append(OutputStream::Stdout, b"abcdef");
        let (ia, ib) = (a.info(), b.info());
        assert_eq!((ia.stdout_bytes, ia.dropped_bytes), (6, 0));
        assert_eq!((ib.stdout_bytes, ib.dropped_bytes), (4, 2));
        assert!(user.is_full());
        // A job removed gives its bytes back to the user's other jobs.
        user.give_back(ia.stdout_bytes);
        wb.append(OutputStream::Stderr, b"ghijklmn");
        assert_eq!(b.info().stderr_bytes, 6);
        assert_eq!(user.kept(), 10);
    }

    #[test]
    fn files_exist_from_the_first_byte_and_readers_reopen_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let (output, writer) = Output::create(dir.path(), 1 << 20, None).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut reader = output.reader(Some(0), Some(0), true).unwrap();
        writer.append(OutputStream::Stderr, b"e");
        assert!(dir.path().join(STDERR_FILE).exists());
        assert!(dir.path().join(INDEX_FILE).exists());
        assert!(!dir.path().join(STDOUT_FILE).exists());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let next = |reader: &mut OutputReader| {
            let span = rt.block_on(reader.next_span(16)).unwrap().unwrap();
            let mut buf = Vec::new();
            reader.read_span(&span, &mut buf).unwrap();
            (span.stream, buf)
        };
        assert_eq!(next(&mut reader), (OutputStream::Stderr, b"e".to_vec()));
        reader.release();
        writer.append(OutputStream::Stdout, b"o");
        assert_eq!(next(&mut reader), (OutputStream::Stdout, b"o".to_vec()));
        assert!(reader.file(OutputStream::Stdout).is_ok());
        let mut only_out = output.reader(Some(0), None, false).unwrap();
        assert!(only_out.file(OutputStream::Stderr).is_err(), "not selected");
    }

    #[test]
    fn non_follow_reader_stops_at_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (output, writer) = Output::create(dir.path(), 1 << 20, None).unwrap();
        writer.append(OutputStream::Stdout, b"before");
        let mut reader = output.reader(Some(0), None, false).unwrap();
        writer.append(OutputStream::Stdout, b"after");
        assert_eq!(concat(&drain(&mut reader), OutputStream::Stdout), b"before");
    }

    #[test]
    fn reopened_output_indexes_unindexed_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (_, writer) = Output::create(dir.path(), 1 << 20, None).unwrap();
        writer.append(OutputStream::Stdout, b"indexed");
        drop(writer);
        // As if the server died between a data write and its index write.
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.path().join(STDERR_FILE))
            .unwrap();
        f.write_all_at(b"tail", 0).unwrap();
        let output = Output::open_closed(dir.path(), 0).unwrap();
        let p = output.progress();
        assert!(p.closed);
        assert_eq!(p.lens, [7, 4]);
        let chunks = drain(&mut output.reader(Some(0), Some(0), false).unwrap());
        assert_eq!(concat(&chunks, OutputStream::Stdout), b"indexed");
        assert_eq!(concat(&chunks, OutputStream::Stderr), b"tail");
    }

    #[test]
    fn follower_wakes_on_commit_and_ends_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let (output, writer) = Output::create(dir.path(), 1 << 20, None).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut reader = output.reader(Some(0), Some(0), true).unwrap();
            let w = writer.clone();
            let feeder = tokio::spawn(async move {
                for i in 0..50u8 {
                    w.append(
                        if i % 2 == 0 {
                            OutputStream::Stdout
                        } else {
                            OutputStream::Stderr
                        },
                        &[i],
                    );
                    tokio::task::yield_now().await;
                }
                w.close();
            });
            let mut got = Vec::new();
            while let Some(span) = reader.next_span(1024).await.unwrap() {
                let mut buf = Vec::new();
                reader.read_span(&span, &mut buf).unwrap();
                got.extend(buf);
            }
            feeder.await.unwrap();
            assert_eq!(got, (0..50u8).collect::<Vec<_>>());
        });
    }
}
