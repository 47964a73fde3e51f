//! The status record of a job: `status` in its directory, created when the
//! job starts and rewritten when it ends.
//!
//! The record is a little-endian u32 length and that many bytes of postcard,
//! written with one `pwrite` at offset 0 and never longer than a page: the
//! kernel copies a write of one page into the page cache whole, so a crash
//! of jwd leaves the old record or the new one, never a mix, and a reader
//! ignores whatever a longer old record left past the new one's end. That
//! costs one inode per job and no rename; a temporary file and a rename per
//! write made ext4's inode allocator (which skips recently freed inodes) a
//! fifth of jwd's CPU per start.
//!
//! Not fsynced, like the output files: what survives is what the page cache
//! holds, which is everything across a crash or restart of jwd; a crash of
//! the host loses the changes the kernel had not written back yet (its
//! dirty-expire interval, 30 s by default), and a job whose record did not
//! reach the disk is not listed afterwards. Seven fsyncs per job (record at
//! start and end, three output files) were a quarter of jwd's CPU per job
//! and the ceiling on jobs per second; no other job runner pays them.

use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::protocol::{JobInfo, JobInfoV2};

pub const STATUS_FILE: &str = "status";
const FORMAT_VERSION: u32 = 4;
/// Most bytes a record may take: one page, so its write is never split.
const MAX_RECORD: usize = 4096;

/// What a restarted jwd needs besides the `JobInfo` to go on stopping a
/// job as its start asked (the timeout is in the `JobInfo`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopTerms {
    /// Its tie to the clients that hold it.
    pub tie_ms: Option<u32>,
    /// The grace of the engine's stops (`None`: the default).
    pub grace_ms: Option<u32>,
}

/// Version 4.
#[derive(Serialize, Deserialize)]
struct Record {
    version: u32,
    info: JobInfo,
    terms: StopTerms,
}

/// Version 3: without the terms.
#[derive(Deserialize)]
struct RecordV3 {
    _version: u32,
    info: JobInfo,
}

/// Versions 1 and 2: the `JobInfo` of protocol versions 1 and 2.
#[derive(Deserialize)]
struct RecordV2 {
    version: u32,
    info: JobInfoV2,
}

fn invalid(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

/// The bytes of a record: length, then postcard.
fn encode(info: &JobInfo, terms: StopTerms) -> std::io::Result<Vec<u8>> {
    let record = Record {
        version: FORMAT_VERSION,
        info: info.clone(),
        terms,
    };
    let mut bytes = postcard::to_extend(&record, vec![0u8; 4]).map_err(std::io::Error::other)?;
    let len = (bytes.len() - 4) as u32;
    bytes[..4].copy_from_slice(&len.to_le_bytes());
    Ok(bytes)
}

/// Writes `info` and `terms` as the job's status record (creating it the
/// first time).
pub fn write(dir: &Path, info: &JobInfo, terms: StopTerms) -> std::io::Result<()> {
    let bytes = encode(info, terms)?;
    let path = dir.join(STATUS_FILE);
    if bytes.len() > MAX_RECORD {
        // Long argument lists: one write could be split, so replace the
        // file instead (a temporary file and a rename).
        let tmp = dir.join(".status.tmp");
        owner_only()
            .truncate(true)
            .open(&tmp)?
            .write_all_at(&bytes, 0)?;
        return std::fs::rename(&tmp, &path);
    }
    owner_only()
        .truncate(false)
        .open(&path)?
        .write_all_at(&bytes, 0)
}

/// Opens for writing, creating the file 0600 (a record holds the user's
/// command line).
fn owner_only() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).mode(0o600);
    options
}

/// Reads a job's status record.
pub fn read(dir: &Path) -> std::io::Result<(JobInfo, StopTerms)> {
    let bytes = std::fs::read(dir.join(STATUS_FILE))?;
    decode(&bytes)
}

fn decode(bytes: &[u8]) -> std::io::Result<(JobInfo, StopTerms)> {
    let none = StopTerms::default();
    // Version 1 (jw before the length prefix): the whole file is postcard.
    if let Ok(RecordV2 { version: 1, info }) = postcard::from_bytes::<RecordV2>(bytes) {
        return Ok((info.into(), none));
    }
    let len = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| invalid("status record shorter than its length"))?;
    let body = bytes
        .get(4..4 + len)
        .ok_or_else(|| invalid("status record shorter than its length"))?;
    if let Ok(RecordV2 { version: 2, info }) = postcard::from_bytes::<RecordV2>(body) {
        return Ok((info.into(), none));
    }
    let bad = |e: postcard::Error| invalid(e.to_string());
    let (version, _) = postcard::take_from_bytes::<u32>(body).map_err(bad)?;
    match version {
        3 => {
            let record: RecordV3 = postcard::from_bytes(body).map_err(bad)?;
            Ok((record.info, none))
        }
        FORMAT_VERSION => {
            let record: Record = postcard::from_bytes(body).map_err(bad)?;
            Ok((record.info, record.terms))
        }
        other => Err(invalid(format!(
            "status record version {other} is not {FORMAT_VERSION} or older"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{JobId, JobState};

    const T: StopTerms = StopTerms {
        tie_ms: Some(60_000),
        grace_ms: Some(2000),
    };

    fn info(args: Vec<String>) -> JobInfo {
        JobInfo {
            started_at_ms: 1,
            ..JobInfo::running(JobId::from_random([7; 16]), "alice", "sh", args)
        }
    }

    #[test]
    fn a_shorter_record_over_a_longer_one_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let long = info(vec!["x".repeat(500)]);
        write(dir.path(), &long, T).unwrap();
        let mut short = info(vec![]);
        short.state = JobState::Exited;
        short.exit_code = Some(3);
        write(dir.path(), &short, T).unwrap();
        assert_eq!(read(dir.path()).unwrap(), (short, T));
    }

    #[test]
    fn records_longer_than_a_page_replace_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &info(vec![]), T).unwrap();
        let huge = info(vec!["y".repeat(100_000)]);
        write(dir.path(), &huge, T).unwrap();
        assert_eq!(read(dir.path()).unwrap(), (huge, T));
        let short = info(vec!["z".into()]);
        write(dir.path(), &short, T).unwrap();
        assert_eq!(read(dir.path()).unwrap(), (short, T));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }

    #[test]
    fn torn_or_foreign_records_are_errors() {
        let bytes = encode(&info(vec![]), T).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&bytes).is_ok());
        let mut other = bytes.clone();
        other[4] = 9; // a future version
        assert!(decode(&other).is_err());
    }

    #[test]
    fn version_1_records_still_read() {
        let old = info(vec!["a".into()]);
        let bytes = postcard::to_allocvec(&Record {
            version: 1,
            info: old.clone(),
            terms: T,
        })
        .unwrap();
        assert_eq!(decode(&bytes).unwrap().0, old);
    }

    #[test]
    fn version_3_records_read_without_terms() {
        #[derive(Serialize)]
        struct V3 {
            version: u32,
            info: JobInfo,
        }
        let old = info(vec!["a".into()]);
        let mut bytes = postcard::to_extend(
            &V3 {
                version: 3,
                info: old.clone(),
            },
            vec![0u8; 4],
        )
        .unwrap();
        let len = (bytes.len() - 4) as u32;
        bytes[..4].copy_from_slice(&len.to_le_bytes());
        assert_eq!(decode(&bytes).unwrap(), (old, StopTerms::default()));
    }
}
