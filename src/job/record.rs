//! The status record of a job: `status` in its directory, replaced
//! atomically (temp file, rename) when the job starts and when it ends, so
//! a crash of jwd leaves either the old or the new record, never a torn one.
//!
//! Not fsynced, like the output files: what survives is what the page cache
//! holds, which is everything across a crash or restart of jwd; a crash of
//! the host loses the changes the kernel had not written back yet (its
//! dirty-expire interval, 30 s by default), and a job whose record did not
//! reach the disk is not listed afterwards. Seven fsyncs per job (record at
//! start and end, three output files) were a quarter of jwd's CPU per job
//! and the ceiling on jobs per second; no other job runner pays them.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::protocol::JobInfo;

pub const STATUS_FILE: &str = "status";
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Record {
    version: u32,
    info: JobInfo,
}

/// Writes `info` as the job's status record.
pub fn write(dir: &Path, info: &JobInfo) -> std::io::Result<()> {
    let bytes = postcard::to_allocvec(&Record {
        version: FORMAT_VERSION,
        info: info.clone(),
    })
    .map_err(std::io::Error::other)?;
    let tmp = dir.join(".status.tmp");
    std::fs::File::create(&tmp)?.write_all(&bytes)?;
    std::fs::rename(&tmp, dir.join(STATUS_FILE))
}

/// Reads a job's status record.
pub fn read(dir: &Path) -> std::io::Result<JobInfo> {
    let bytes = std::fs::read(dir.join(STATUS_FILE))?;
    let record: Record = postcard::from_bytes(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if record.version != FORMAT_VERSION {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "status record version {} is not {FORMAT_VERSION}",
                record.version
            ),
        ));
    }
    Ok(record.info)
}
