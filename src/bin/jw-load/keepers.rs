//! The memory of jobs' keepers (their PID 1, jw-init): the keeper's pid
//! from `<data-dir>/jobs/<id>/keeper`, its RssAnon from /proc/PID/status
//! and its Pss and Pss_Anon from /proc/PID/smaps_rollup.

use std::path::Path;

use jw::protocol::JobId;
use serde_json::json;

/// One keeper's memory, in bytes.
struct KeeperMemory {
    rss_anon: u64,
    pss: u64,
    pss_anon: u64,
}

/// The keeper pid recorded for `job` (the record's first word).
pub(crate) fn keeper_pid(data_dir: &Path, job: JobId) -> Option<u32> {
    let path = data_dir.join("jobs").join(job.to_string()).join("keeper");
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A `Name:   N kB` line of a /proc file, in bytes.
fn kb_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

fn measure(pid: u32) -> Option<KeeperMemory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some(KeeperMemory {
        rss_anon: kb_field(&status, "RssAnon")?,
        pss: kb_field(&rollup, "Pss")?,
        pss_anon: kb_field(&rollup, "Pss_Anon")?,
    })
}

/// min/median/max of some byte counts.
fn spread(mut values: Vec<u64>) -> serde_json::Value {
    values.sort_unstable();
    match values.len() {
        0 => json!(null),
        n => json!({"min": values[0], "median": values[n / 2], "max": values[n - 1]}),
    }
}

/// The keepers' memory per keeper (min/median/max of RssAnon, Pss and
/// Pss_Anon, bytes) and how many keepers could not be measured; prints a
/// summary line.
pub(crate) fn keeper_memory(data_dir: &Path, jobs: &[JobId]) -> serde_json::Value {
    let measured: Vec<KeeperMemory> = jobs
        .iter()
        .filter_map(|id| measure(keeper_pid(data_dir, *id)?))
        .collect();
    let unmeasured = jobs.len() - measured.len();
    let rss = spread(measured.iter().map(|m| m.rss_anon).collect());
    let pss = spread(measured.iter().map(|m| m.pss).collect());
    let pss_anon = spread(measured.iter().map(|m| m.pss_anon).collect());
    let show = |v: &serde_json::Value| format!("{}/{}/{} B", v["min"], v["median"], v["max"]);
    eprintln!(
        "keepers: {} measured ({unmeasured} not); per keeper min/median/max RssAnon {}, Pss {}, Pss_Anon {}",
        measured.len(),
        show(&rss),
        show(&pss),
        show(&pss_anon),
    );
    json!({
        "measured": measured.len(),
        "unmeasured": unmeasured,
        "rss_anon_bytes": rss,
        "pss_bytes": pss,
        "pss_anon_bytes": pss_anon,
    })
}
