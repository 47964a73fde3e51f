//! The cpu controller: a CPU bandwidth limit as a CFS quota per period, and
//! the job's CPU time from cgroup2's cpu.stat.

use std::path::Path;

use crate::job::cgroup::{fs, parse, CgroupError};
use crate::protocol::{Limits, Usage};

/// The CFS period jw uses for CPU limits: 100 ms, the kernel's default.
pub const PERIOD_US: u64 = 100_000;

/// The quota per `PERIOD_US` that gives `millicores` thousandths of a core.
fn quota_us(millicores: u32) -> u64 {
    u64::from(millicores) * PERIOD_US / 1000
}

/// v2: `cpu.max` holds "quota period".
pub fn apply_v2(leaf: &Path, limits: &Limits) -> Result<(), CgroupError> {
    if let Some(millicores) = limits.cpu_millicores {
        let quota = quota_us(millicores);
        fs::write(&leaf.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
    }
    Ok(())
}

/// v1: the period, then the quota, each in its own file.
pub fn apply_v1(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    if let Some(millicores) = limits.cpu_millicores {
        fs::write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
        fs::write(
            &dir.join("cpu.cfs_quota_us"),
            &quota_us(millicores).to_string(),
        )?;
    }
    Ok(())
}

/// The job's user and system CPU time from a cgroup2 cpu.stat (present
/// without the cpu controller too, so both layouts read it from the leaf).
pub fn usage(leaf: &Path) -> Usage {
    let cpu = fs::read_optional(&leaf.join("cpu.stat")).unwrap_or_default();
    Usage {
        cpu_user_us: parse::keyed(&cpu, "user_usec").unwrap_or(0),
        cpu_system_us: parse::keyed(&cpu, "system_usec").unwrap_or(0),
        ..Usage::default()
    }
}
