//! The durable status record of a job: `status` in its directory, written
//! atomically (temp file, fsync, rename, fsync of the directory) when the
//! job starts and when it ends, so a crash leaves either the old or the new
//! record, never a torn one.

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
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(STATUS_FILE))?;
    std::fs::File::open(dir)?.sync_all()
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
