//! The single writer of a job's output (`pwrite` into the spill files and
//! the order index, within the job's cap, the owner's cap and the disk),
//! and the owner's output kept over all their jobs.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::protocol::OutputStream;

pub(super) struct WriterState {
    /// Opened (created) at the first byte of each.
    pub(super) files: [Option<File>; 2],
    pub(super) index: Option<File>,
    /// The last index record: (its stream, its offset in the index, its run).
    pub(super) last: Option<(usize, u64, u64)>,
    pub(super) disk_failed: bool,
}

/// One user's output kept over all their jobs, against the server's cap
/// for it (`jwd --max-output-per-user`). Writers take room before they
/// write; removing a job gives its bytes back.
#[derive(Debug)]
pub struct UserOutput {
    pub(super) kept: AtomicU64,
    pub(super) cap: u64,
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
    pub(super) fn take(&self, want: u64) -> u64 {
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
    pub(super) output: Arc<Output>,
    pub(super) cap: u64,
    /// The owner's output over all their jobs, if the server caps it.
    pub(super) user: Option<Arc<UserOutput>>,
    pub(super) state: Mutex<WriterState>,
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
