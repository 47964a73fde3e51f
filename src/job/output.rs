//! Output capture: the job's stdout and stderr pipes, drained into one file
//! each under the job's directory.
//!
//! The server drains the pipes as fast as the job writes, whatever happens
//! to the files: past the output cap, or when the disk is full, bytes are
//! read and dropped (and counted), so a job never blocks on a full pipe
//! because of its output.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::protocol::{OutputInfo, OutputStream};

/// File names inside a job's directory.
pub const STDOUT_FILE: &str = "stdout";
pub const STDERR_FILE: &str = "stderr";

/// Read size from the job's pipes: the default pipe capacity.
const PUMP_BUF: usize = 64 * 1024;

/// Byte counts of one job's output, shared by its two pumps.
#[derive(Debug)]
pub struct OutputCounters {
    stdout: AtomicU64,
    stderr: AtomicU64,
    dropped: AtomicU64,
    cap: u64,
    disk_error_logged: AtomicBool,
}

impl OutputCounters {
    pub fn new(cap: u64) -> Self {
        OutputCounters {
            stdout: AtomicU64::new(0),
            stderr: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            cap,
            disk_error_logged: AtomicBool::new(false),
        }
    }

    pub fn info(&self) -> OutputInfo {
        OutputInfo {
            stdout_bytes: self.stdout.load(Ordering::Acquire),
            stderr_bytes: self.stderr.load(Ordering::Acquire),
            dropped_bytes: self.dropped.load(Ordering::Acquire),
        }
    }

    fn kept(&self, which: OutputStream) -> &AtomicU64 {
        match which {
            OutputStream::Stdout => &self.stdout,
            OutputStream::Stderr => &self.stderr,
        }
    }

    /// How many of `len` new bytes fit under the cap. Only the two pumps
    /// add, each to its own counter, so a small overshoot race between them
    /// is bounded by one read; the cap check uses the sum.
    fn admit(&self, len: usize) -> usize {
        let used = self.stdout.load(Ordering::Acquire) + self.stderr.load(Ordering::Acquire);
        self.cap.saturating_sub(used).min(len as u64) as usize
    }
}

/// Paths of a job's output files.
pub fn output_path(job_dir: &Path, which: OutputStream) -> PathBuf {
    job_dir.join(match which {
        OutputStream::Stdout => STDOUT_FILE,
        OutputStream::Stderr => STDERR_FILE,
    })
}

/// Creates a non-blocking pipe for one of the job's outputs: the read end
/// for the pump, the write end for the job.
pub fn output_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    rustix::fs::fcntl_setfl(&read, rustix::fs::OFlags::NONBLOCK)?;
    Ok((read, write))
}

/// Drains one pipe into its file until every writer has closed it.
pub async fn pump(
    pipe: OwnedFd,
    mut file: File,
    which: OutputStream,
    counters: Arc<OutputCounters>,
) -> std::io::Result<()> {
    let pipe = super::async_readable(pipe)?;
    let mut buf = vec![0u8; PUMP_BUF];
    let mut disk_ok = true;
    loop {
        let mut guard = pipe.readable().await?;
        let n =
            match guard.try_io(|fd| rustix::io::read(fd.get_ref(), &mut buf).map_err(Into::into)) {
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            };
        let keep = if disk_ok { counters.admit(n) } else { 0 };
        if keep > 0 {
            match file.write_all(&buf[..keep]) {
                Ok(()) => {
                    counters
                        .kept(which)
                        .fetch_add(keep as u64, Ordering::AcqRel);
                }
                Err(e) => {
                    disk_ok = false;
                    if !counters.disk_error_logged.swap(true, Ordering::AcqRel) {
                        tracing::warn!(error = %e, "cannot store job output; dropping the rest");
                    }
                    counters.dropped.fetch_add(keep as u64, Ordering::AcqRel);
                }
            }
        }
        counters
            .dropped
            .fetch_add((n - keep) as u64, Ordering::AcqRel);
    }
}
