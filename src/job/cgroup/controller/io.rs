//! The io (v2) and blkio (v1) controllers: read and write bandwidth limits
//! on every block device, and the bytes the job read and wrote.

use std::path::Path;

use crate::job::cgroup::{fs, BlockDevice, CgroupError};
use crate::protocol::{Limits, Usage};

/// v2: one `io.max` line per device, "MAJ:MIN rbps=N wbps=N".
pub fn apply_v2(leaf: &Path, limits: &Limits, devices: &[BlockDevice]) -> Result<(), CgroupError> {
    if limits.io_read_bps.is_none() && limits.io_write_bps.is_none() {
        return Ok(());
    }
    for dev in devices {
        let mut line = dev.majmin.clone();
        if let Some(r) = limits.io_read_bps {
            line.push_str(&format!(" rbps={r}"));
        }
        if let Some(w) = limits.io_write_bps {
            line.push_str(&format!(" wbps={w}"));
        }
        fs::write(&leaf.join("io.max"), &line)?;
    }
    Ok(())
}

/// v1: one "MAJ:MIN N" line per device in each throttle file.
pub fn apply_v1(dir: &Path, limits: &Limits, devices: &[BlockDevice]) -> Result<(), CgroupError> {
    for (bps, file) in [
        (limits.io_read_bps, "blkio.throttle.read_bps_device"),
        (limits.io_write_bps, "blkio.throttle.write_bps_device"),
    ] {
        if let Some(bps) = bps {
            for dev in devices {
                fs::write(&dir.join(file), &format!("{} {bps}", dev.majmin))?;
            }
        }
    }
    Ok(())
}

/// Bytes read and written over all devices in a v2 io.stat
/// ("MAJ:MIN rbytes=N wbytes=N rios=N ..." per device).
pub fn parse_io_stat(text: &str) -> (u64, u64) {
    let (mut read, mut written) = (0, 0);
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=") {
            read += v.parse::<u64>().unwrap_or(0);
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            written += v.parse::<u64>().unwrap_or(0);
        }
    }
    (read, written)
}

/// Bytes read and written over all devices in a v1
/// blkio.throttle.io_service_bytes_recursive ("MAJ:MIN Read N" and
/// "MAJ:MIN Write N" lines, plus a "Total N" line).
pub fn parse_blkio(text: &str) -> (u64, u64) {
    let (mut read, mut written) = (0, 0);
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (_, op, n) = (parts.next(), parts.next(), parts.next());
        let n: u64 = n.and_then(|n| n.parse().ok()).unwrap_or(0);
        match op {
            Some("Read") => read += n,
            Some("Write") => written += n,
            _ => {}
        }
    }
    (read, written)
}

/// v2: adds the leaf's io.stat bytes to `usage`.
pub fn usage_v2(leaf: &Path, usage: &mut Usage) {
    if let Some(text) = fs::read_optional(&leaf.join("io.stat")) {
        let (read, written) = parse_io_stat(&text);
        usage.io_read_bytes += read;
        usage.io_write_bytes += written;
    }
}

/// v1: adds the blkio cgroup's serviced bytes to `usage`.
pub fn usage_v1(dir: &Path, usage: &mut Usage) {
    if let Some(text) = fs::read_optional(&dir.join("blkio.throttle.io_service_bytes_recursive")) {
        let (read, written) = parse_blkio(&text);
        usage.io_read_bytes += read;
        usage.io_write_bytes += written;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_stat_sums_every_device() {
        let text = "8:0 rbytes=4096 wbytes=512 rios=1 wios=1 dbytes=0 dios=0\n\
                    254:0 rbytes=100 wbytes=7 rios=2 wios=1 dbytes=0 dios=0\n";
        assert_eq!(parse_io_stat(text), (4196, 519));
        assert_eq!(parse_io_stat(""), (0, 0));
    }

    #[test]
    fn blkio_sums_reads_and_writes_not_totals() {
        let text = "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 4608\n8:0 Total 4608\n\
                    254:0 Read 100\n254:0 Write 7\nTotal 4715\n";
        assert_eq!(parse_blkio(text), (4196, 519));
    }
}
