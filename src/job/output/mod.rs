//! The output store: a job's stdout and stderr in spill files on disk, one
//! writer, any number of readers from any offset, live.
//!
//! Per job directory:
//! - `stdout`, `stderr`: the bytes, exactly as the job wrote them;
//! - `index`: the capture order across the two, as little-endian u32
//!   records (bit 31: the stream, 0 stdout / 1 stderr; bits 0-30: a run
//!   length). Consecutive reads from the same stream extend the last record
//!   in place, so a job that writes only stdout has a one-record index;
//!   a run that goes on past `times::TIME_STEP_US` gets a new record;
//! - `times`: when each run of the index began, and where (`times.rs`),
//!   for `--since`, `--timestamps`, and to begin reading anywhere without
//!   walking the index from its start.
//!
//! The writer is the job's keeper (its init), not jwd (`store.rs`): it
//! `pwrite`s into the page cache and tells jwd the committed lengths in a
//! small message on the job's channel, so output lands on disk while jwd
//! is away, and jwd (or a restarted jwd) serves it from the files. Writes
//! are `pwrite`s, not stores into a shared mapping: with a mapping, a full disk surfaces as SIGBUS in the server
//! instead of an ENOSPC it can count and survive, and a growing file would
//! need remapping. Readers (`reader.rs`) get spans (stream, offset,
//! length); `serve.rs` gives each span's bytes from a shared read-only
//! mapping when they are in the page cache, else reads them with io_uring,
//! so a slow reader costs disk reads, never server memory.
//!
//! Progress (committed lengths, and whether the writer is done) is
//! published in jwd through a `watch` channel as the keeper reports it: a
//! caught-up follower sleeps on it and is woken by the next report. No
//! polling anywhere.
//!
//! The keeper takes everything the command writes whatever happens to the
//! files: past the output cap or its grant, or once the disk is full,
//! bytes are read and dropped (and counted), so a job never blocks because
//! of its output.
//!
//! Order: the keeper polls both pipes at once and reads whichever is
//! ready as soon as it is, so the index holds the order in which it
//! captured the bytes. Two pipes carry no order between them: writes to
//! stdout and stderr closer together than the keeper's wake-up may come
//! out stream by stream (as with docker). `2>&1` in the command, or a
//! terminal, keeps the exact order (one stream).
//!
//! Files: `store.rs` the keeper's writer, `times.rs` the time index,
//! `user.rs` the per-user output cap and the grants that share it,
//! `reader.rs` where a reader is, `seek.rs` where it begins (the last
//! lines, a time), `serve.rs` how its bytes are fetched; here the job's
//! `Output` (paths, progress, the shared mappings).

mod reader;
mod seek;
mod serve;
mod store;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_seek;
mod times;
mod user;

use reader::IndexCursor;
pub use reader::{OutputReader, Span};
pub use seek::Begin;
pub use serve::{MappedSpan, Serve};
pub use store::{Moved, Store, MOVE_MAX};
pub use times::{RunTime, TIMES_FILE};
pub use user::{Grant, UserOutput};

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::protocol::{OutputInfo, OutputStream};

/// File names inside a job's directory.
pub const STDOUT_FILE: &str = "stdout";
pub const STDERR_FILE: &str = "stderr";
pub const INDEX_FILE: &str = "index";

pub(super) const RECORD: u64 = 4;
pub(super) const STDERR_BIT: u32 = 1 << 31;
pub(super) const MAX_RUN: u64 = (STDERR_BIT - 1) as u64;

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
    pub(super) dir: PathBuf,
    pub(super) progress: watch::Sender<Progress>,
    /// The latest read-only mapping of each stream, shared by its readers
    /// while any holds it (no descriptor is kept: a mapping needs none).
    pub(super) maps: Mutex<[std::sync::Weak<Mmap>; 2]>,
}

/// A read-only mapping of an output file.
pub type Mmap = memmap2::Mmap;

/// The smallest mapping window: mappings grow by doubling past it, so a
/// growing file is remapped a few dozen times at most.
pub(super) const MIN_MAP: u64 = 64 << 20;

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

    /// The output of a running job in `dir`, as its keeper reports it
    /// (`publish`); nothing written yet.
    pub fn live(dir: &Path) -> Arc<Output> {
        Self::with(dir, Progress::default())
    }

    /// What the keeper reported it has written: committed from now on.
    /// Figures only grow (a report older than one already seen changes
    /// nothing).
    pub fn publish(&self, written: Progress) {
        self.progress.send_if_modified(|p| {
            let next = Progress {
                lens: [
                    p.lens[0].max(written.lens[0]),
                    p.lens[1].max(written.lens[1]),
                ],
                index_len: p.index_len.max(written.index_len),
                dropped: p.dropped.max(written.dropped),
                closed: p.closed,
            };
            let changed = next != *p;
            *p = next;
            changed
        });
    }

    /// No more bytes will come: wakes every follower for the last time.
    pub fn close(&self) {
        self.progress.send_modify(|p| p.closed = true);
    }

    /// Opens the output of a job that is not running (after a restart):
    /// closed, with lengths from the files. Data the index does not cover
    /// (written just before a crash) is indexed at the end, so nothing on
    /// disk is lost to readers.
    pub fn open_closed(dir: &Path, dropped: u64) -> std::io::Result<Arc<Output>> {
        use std::os::unix::fs::OpenOptionsExt;
        let found = Found::scan(dir)?;
        let lens = found.lens;
        let mut index_len = found.index_len;
        if found.covered != lens {
            let index = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(dir.join(INDEX_FILE))?;
            index.set_len(index_len)?;
            for (i, (len, covered)) in lens.iter().zip(found.covered).enumerate() {
                // An index ahead of the data (impossible by write order) is
                // trusted no further than the data.
                let mut missing = len.saturating_sub(covered);
                while missing > 0 {
                    let run = missing.min(MAX_RUN);
                    let rec = run as u32 | if i == 1 { STDERR_BIT } else { 0 };
                    index.write_all_at(&rec.to_le_bytes(), index_len)?;
                    index_len += RECORD;
                    missing -= run;
                }
            }
        }
        Ok(Self::with(
            dir,
            Progress {
                lens,
                index_len,
                dropped,
                closed: true,
            },
        ))
    }

    /// Opens the output of a running job a restarted jwd adopted: what the
    /// index covers is committed (the keeper writes the bytes before their
    /// index record), and its keeper's reports take it from there.
    pub fn open_live(dir: &Path, dropped: u64) -> std::io::Result<Arc<Output>> {
        let mut progress = Found::scan(dir)?.committed();
        progress.dropped = dropped;
        Ok(Self::with(dir, progress))
    }

    /// What the job's files hold that the index covers: committed by the
    /// keeper, whether or not it lived to report it.
    pub fn on_disk(&self) -> std::io::Result<Progress> {
        Ok(Found::scan(&self.dir)?.committed())
    }

    fn with(dir: &Path, progress: Progress) -> Arc<Output> {
        Arc::new(Output {
            dir: dir.to_path_buf(),
            progress: watch::Sender::new(progress),
            maps: Mutex::default(),
        })
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
            index: None,
            times: None,
            timestamps: false,
            not_before: None,
            want: [stdout, stderr],
            rx,
            limit,
            cursor: IndexCursor::default(),
            walked_far: false,
        })
    }
}

/// What a job's output files hold, as found on disk.
struct Found {
    /// The files' lengths.
    lens: [u64; 2],
    /// The index's whole records, in bytes.
    index_len: u64,
    /// The bytes of each stream the index covers.
    covered: [u64; 2],
}

impl Found {
    /// The committed part, as progress (nothing dropped, not closed).
    fn committed(&self) -> Progress {
        Progress {
            lens: [0, 1].map(|i| self.covered[i].min(self.lens[i])),
            index_len: self.index_len,
            dropped: 0,
            closed: false,
        }
    }

    fn scan(dir: &Path) -> std::io::Result<Found> {
        let len = |name: &str| {
            std::fs::metadata(dir.join(name))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        let lens = [len(STDOUT_FILE), len(STDERR_FILE)];
        let index_len = len(INDEX_FILE) / RECORD * RECORD;
        let mut covered = [0u64; 2];
        if index_len > 0 {
            let bytes = std::fs::read(dir.join(INDEX_FILE))?;
            let whole = (bytes.len() as u64 / RECORD * RECORD).min(index_len) as usize;
            for rec in bytes[..whole].chunks_exact(RECORD as usize) {
                let rec = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
                covered[usize::from(rec & STDERR_BIT != 0)] += u64::from(rec & !STDERR_BIT);
            }
        }
        Ok(Found {
            lens,
            index_len,
            covered,
        })
    }
}
