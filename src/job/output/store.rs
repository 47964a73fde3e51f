//! The single writer of a job's output: the job's keeper (its init,
//! `init/keeper.rs`) moves what the command writes from its pipes into the
//! spill files with splice(2) (no copy through the keeper's memory, and no
//! buffer: a keeper lives as long as its job, thousands at once) and
//! records the order index and its times (`times.rs`), within the job's
//! cap, the grant jwd gave it, and the disk. A file system without splice gets a read and a `pwrite`
//! through a small buffer instead. It runs in the keeper, not in jwd:
//! output lands on disk whether jwd is there or not.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

use super::times::{now_us, RunTime, TIMES_FILE, TIME_RECORD, TIME_STEP_US};
use super::{Progress, INDEX_FILE, MAX_RUN, RECORD, STDERR_BIT, STDERR_FILE, STDOUT_FILE};
use crate::protocol::OutputStream;

/// The keeper's writer of one job's output.
pub struct Store {
    /// The job's directory (O_PATH): files are made in it by name, so the
    /// keeper needs no path into a directory its own mount namespace hides.
    dir: OwnedFd,
    /// Opened (created) at the first byte of each.
    files: [Option<File>; 2],
    index: Option<File>,
    times: Option<File>,
    /// The last index record.
    last: Option<Run>,
    written: Progress,
    /// The job's own cap (`--max-output`).
    cap: u64,
    /// What jwd allows in all (the owner's share); at most `cap` counts.
    granted: u64,
    disk_failed: bool,
    /// Read and `pwrite` instead of splice (the file system refused it).
    copy: bool,
    /// A run's bytes this long after its time begin a new run.
    time_step_us: u64,
}

/// The last record of the order index, which grows while the same stream
/// is read.
#[derive(Debug, Clone, Copy)]
struct Run {
    stream: usize,
    /// Its offset in the index.
    at: u64,
    len: u64,
    /// When it began (Unix microseconds): also the latest time recorded.
    time_us: u64,
}

/// What one move from a pipe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// This many bytes left the pipe (kept or dropped).
    Bytes(usize),
    /// Nothing in the pipe now.
    Empty,
    /// The pipe's writers are gone and it is empty.
    End,
}

/// The least room the order index and its times get, whatever the cap.
const INDEX_ALLOWANCE_MIN: u64 = 64 * 1024;

/// The most one move takes from a pipe: a pipe's default capacity.
pub const MOVE_MAX: usize = 64 * 1024;

/// Creates an output file of a job, owner-only (root's), in `dir`.
fn create(dir: &OwnedFd, name: &str) -> std::io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(File::from(fd))
}

impl Store {
    /// The writer of a new job's output in `dir`; no file exists until the
    /// job writes to it (a quiet job costs no files).
    pub fn new(dir: OwnedFd, cap: u64, granted: u64) -> Store {
        Store {
            dir,
            files: [None, None],
            index: None,
            times: None,
            last: None,
            written: Progress::default(),
            cap,
            granted,
            disk_failed: false,
            copy: false,
            time_step_us: TIME_STEP_US,
        }
    }

    /// Runs never split by time (tests that count index records, on a
    /// machine that may pause between two writes).
    #[cfg(test)]
    pub fn no_time_steps(&mut self) {
        self.time_step_us = u64::MAX;
    }

    /// Uses the read-and-`pwrite` path from now on, as on a file system
    /// without splice (for tests of that path).
    #[cfg(test)]
    pub fn copy_only(&mut self) {
        self.copy = true;
    }

    /// Whether it copies rather than splices.
    #[cfg(test)]
    pub fn copies(&self) -> bool {
        self.copy
    }

    /// Moves what one of the command's pipes holds now (up to
    /// [`MOVE_MAX`]) into stream `which`: spliced as far as the cap, the
    /// grant and the disk allow; past them read into `scratch` and dropped
    /// (counted). The pipe must be non-blocking.
    pub fn take_from(
        &mut self,
        which: OutputStream,
        pipe: std::os::fd::BorrowedFd<'_>,
        scratch: &mut [u8],
    ) -> std::io::Result<Moved> {
        let s = which.index();
        let room = self.room();
        if room > 0 && !self.disk_failed && !self.copy {
            let len = room.min(MOVE_MAX as u64) as usize;
            match self.splice(s, pipe, len) {
                Ok(0) => return Ok(Moved::End),
                Ok(n) => {
                    if self.index_run(s, n as u64).is_err() {
                        // The bytes are in the file but not in the order:
                        // they do not count.
                        self.disk_failed = true;
                        self.written.dropped += n as u64;
                    } else {
                        self.written.lens[s] += n as u64;
                    }
                    return Ok(Moved::Bytes(n));
                }
                Err(rustix::io::Errno::AGAIN) => return Ok(Moved::Empty),
                Err(rustix::io::Errno::INTR) => return Ok(Moved::Bytes(0)),
                // The file system cannot splice: copy from now on.
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => self.copy = true,
                // Full disk, I/O error: the bytes are still in the pipe;
                // read and dropped below from now on.
                Err(_) => self.disk_failed = true,
            }
        }
        match rustix::io::read(pipe, &mut *scratch) {
            Ok(0) => Ok(Moved::End),
            Ok(n) => {
                self.append(which, &scratch[..n]);
                Ok(Moved::Bytes(n))
            }
            Err(rustix::io::Errno::AGAIN) => Ok(Moved::Empty),
            Err(rustix::io::Errno::INTR) => Ok(Moved::Bytes(0)),
            Err(e) => Err(e.into()),
        }
    }

    /// Splices up to `len` bytes from `pipe` to the end of stream `s`.
    fn splice(
        &mut self,
        s: usize,
        pipe: std::os::fd::BorrowedFd<'_>,
        len: usize,
    ) -> rustix::io::Result<usize> {
        let file = match &self.files[s] {
            Some(f) => f,
            None => {
                let name = [STDOUT_FILE, STDERR_FILE][s];
                let f = create(&self.dir, name).map_err(|e| {
                    rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO)
                })?;
                &*self.files[s].insert(f)
            }
        };
        let mut offset = self.written.lens[s];
        rustix::pipe::splice(
            pipe,
            None,
            file,
            Some(&mut offset),
            len,
            rustix::pipe::SpliceFlags::NONBLOCK,
        )
    }

    /// Opens `path` for a writer (tests, and the keeper's fallback).
    pub fn open_dir(path: &std::path::Path) -> std::io::Result<OwnedFd> {
        use rustix::fs::{Mode, OFlags};
        Ok(rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    /// The job's directory.
    pub fn dir(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.dir.as_fd()
    }

    /// jwd's new grant: the bytes the job may keep in all. Returns whether
    /// it leaves room (a grant no larger than what is kept is jwd's "no
    /// more": the owner's cap is reached).
    pub fn grant(&mut self, total: u64) -> bool {
        self.granted = total;
        total > self.kept()
    }

    fn kept(&self) -> u64 {
        self.written.lens[0] + self.written.lens[1]
    }

    /// The bytes of the order index and its times: a run costs 28 bytes
    /// whatever its length, so a job that switches streams at every byte
    /// writes 28 bytes of them per byte of output.
    fn index_bytes(&self) -> u64 {
        self.written.index_len / RECORD * (RECORD + TIME_RECORD)
    }

    /// What the job may still keep: within its cap and its grant. The
    /// index has an allowance of its own, the cap again (at least 64 KiB:
    /// 2,340 runs): past it the output is dropped, so a job's files never
    /// pass twice its `--max-output` (plus 64 KiB), however it writes,
    /// while one that writes as jobs do (runs longer than 28 bytes) keeps
    /// its whole cap of output.
    fn index_full(&self) -> bool {
        self.index_bytes() >= self.cap.max(INDEX_ALLOWANCE_MIN)
    }

    fn room(&self) -> u64 {
        if self.index_full() {
            return 0;
        }
        self.cap.min(self.granted).saturating_sub(self.kept())
    }

    /// Whether the job's own cap leaves room but its grant does not: what
    /// it writes next waits for jwd's next grant (or is dropped if jwd is
    /// not there, or says no more).
    pub fn needs_grant(&self) -> bool {
        let kept = self.kept();
        self.granted < self.cap && kept >= self.granted && !self.index_full()
    }

    /// What has been written so far (never `closed`).
    pub fn progress(&self) -> Progress {
        self.written
    }

    /// Appends what the job wrote to one stream; keeps what fits under the
    /// cap, the grant and the disk, drops and counts the rest.
    pub fn append(&mut self, which: OutputStream, bytes: &[u8]) {
        let s = which.index();
        let room = self.room();
        let mut keep = if self.disk_failed {
            0
        } else {
            room.min(bytes.len() as u64) as usize
        };
        if keep > 0 {
            let offset = self.written.lens[s];
            let file = match &self.files[s] {
                Some(f) => Ok(f),
                None => {
                    let name = [STDOUT_FILE, STDERR_FILE][s];
                    create(&self.dir, name).map(|f| &*self.files[s].insert(f))
                }
            };
            if file
                .and_then(|f| f.write_all_at(&bytes[..keep], offset))
                .is_err()
            {
                // A partial write leaves bytes past the committed length;
                // they are overwritten or ignored, never read.
                self.disk_failed = true;
                keep = 0;
            }
        }
        if keep > 0 && self.index_run(s, keep as u64).is_err() {
            self.disk_failed = true;
            keep = 0;
        }
        self.written.lens[s] += keep as u64;
        self.written.dropped += (bytes.len() - keep) as u64;
    }

    /// Records a run of `len` bytes of stream `s` in the index: the last
    /// record grows, or a new one begins with its time (written first, so
    /// that every index record has one).
    fn index_run(&mut self, s: usize, len: u64) -> std::io::Result<()> {
        let bit = if s == 1 { STDERR_BIT } else { 0 };
        // The clock read costs no system call (vDSO); a stepped-back clock
        // is held at the last time.
        let now = now_us();
        if self.index.is_none() {
            self.index = Some(create(&self.dir, INDEX_FILE)?);
        }
        match self.last {
            Some(run)
                if run.stream == s
                    && run.len + len <= MAX_RUN
                    && now < run.time_us.saturating_add(self.time_step_us) =>
            {
                let rec = (run.len + len) as u32 | bit;
                let index = self.index.as_ref().expect("opened above");
                index.write_all_at(&rec.to_le_bytes(), run.at)?;
                self.last = Some(Run {
                    len: run.len + len,
                    ..run
                });
            }
            _ => {
                let at = self.written.index_len;
                let time_us = now.max(self.last.map_or(0, |r| r.time_us));
                let time = RunTime {
                    time_us,
                    base: self.written.lens,
                };
                let times = match &self.times {
                    Some(f) => f,
                    None => self.times.insert(create(&self.dir, TIMES_FILE)?),
                };
                times.write_all_at(&time.encode(), at / RECORD * TIME_RECORD)?;
                let rec = len as u32 | bit;
                let index = self.index.as_ref().expect("opened above");
                index.write_all_at(&rec.to_le_bytes(), at)?;
                self.last = Some(Run {
                    stream: s,
                    at,
                    len,
                    time_us,
                });
                self.written.index_len += RECORD;
            }
        }
        Ok(())
    }

    /// Whether a write failed (full disk): the rest is dropped and counted.
    pub fn disk_failed(&self) -> bool {
        self.disk_failed
    }
}
