//! The block devices that I/O limits apply to.
//!
//! Limits go on every whole block device of the host listed in /sys/block,
//! with the device's own MAJ:MIN from /sys/block/NAME/dev. Excluded: loop
//! devices (their I/O is accounted again on the backing disk), RAM disks and
//! zram (memory, not disk). Device-mapper, md and btrfs multi-device setups
//! are included as they are: throttling applies where a bio is submitted,
//! and a job's I/O to an LVM volume is submitted to its dm device, whose
//! MAJ:MIN (e.g. 253:N) has nothing to do with the disk's major.
//! Partitions are not listed: the kernel throttles at the whole disk.

use std::path::Path;

/// One block device: its name and "MAJ:MIN".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    pub name: String,
    pub majmin: String,
}

const SKIP_PREFIXES: [&str; 3] = ["loop", "ram", "zram"];

/// Lists the devices under `sys_block` (normally /sys/block).
pub fn block_devices(sys_block: &Path) -> Vec<BlockDevice> {
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Vec::new();
    };
    let mut devices: Vec<BlockDevice> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if SKIP_PREFIXES.iter().any(|p| name.starts_with(p)) {
                return None;
            }
            let majmin = std::fs::read_to_string(e.path().join("dev")).ok()?;
            let majmin = majmin.trim().to_string();
            let valid = majmin
                .split_once(':')
                .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
            valid.then_some(BlockDevice { name, majmin })
        })
        .collect();
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    devices
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_loop_ram_and_zram_and_reads_majmin() {
        let dir = tempfile::tempdir().unwrap();
        for (name, dev) in [
            ("vda", "254:0"),
            ("loop0", "7:0"),
            ("zram0", "252:0"),
            ("dm-0", "253:0"),
            ("ram1", "1:1"),
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("dev"), format!("{dev}\n")).unwrap();
        }
        std::fs::create_dir(dir.path().join("broken")).unwrap();
        let got = block_devices(dir.path());
        let names: Vec<_> = got
            .iter()
            .map(|d| (d.name.as_str(), d.majmin.as_str()))
            .collect();
        assert_eq!(names, [("dm-0", "253:0"), ("vda", "254:0")]);
    }
}
