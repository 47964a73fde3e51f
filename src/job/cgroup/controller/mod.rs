//! One file per controller, each knowing its files in both formats: how to
//! write a job's limits into a v2 leaf or a v1 cgroup, and how to read its
//! counters back. The layouts decide where the directories are; the
//! controllers only what goes in them.

pub mod cpu;
pub mod io;
pub mod kill;
pub mod memory;
pub mod pids;

use std::path::Path;

use super::{BlockDevice, CgroupError};
use crate::protocol::{Limits, Usage};

/// The controllers jw needs in a cgroup2 hierarchy that carries limits.
pub const V2: [&str; 4] = ["cpu", "memory", "io", "pids"];

/// The v1 controllers that carry jw's limits in the hybrid layout, in the
/// order the hybrid layout keeps their directories.
pub const V1: [&str; 4] = ["cpu", "memory", "blkio", "pids"];

/// Writes every limit into a v2 leaf before any process is in it.
pub fn apply_v2(leaf: &Path, limits: &Limits, devices: &[BlockDevice]) -> Result<(), CgroupError> {
    cpu::apply_v2(leaf, limits)?;
    memory::apply_v2(leaf, limits)?;
    io::apply_v2(leaf, limits, devices)?;
    pids::apply(leaf, limits)
}

/// Memory, I/O and pids figures from a v2 leaf.
pub fn usage_v2(leaf: &Path, usage: &mut Usage) {
    usage.memory_peak_bytes = memory::peak_v2(leaf);
    io::usage_v2(leaf, usage);
    usage.pids_current = pids::current(leaf);
}
