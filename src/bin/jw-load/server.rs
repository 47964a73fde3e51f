//! Probes of the jwd process given by `--server-pid`: its CPU time and
//! RssAnon, open fds and child processes, read from /proc.

use serde_json::json;

/// CPU time (user+system, seconds) and RssAnon (bytes) of a process.
pub(crate) fn process_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())?
        * 1024;
    Some((cpu, rss))
}

/// jwd's CPU time and RssAnon at the start of a scenario.
pub(crate) struct ServerMeter {
    pid: Option<u32>,
    start: Option<(f64, u64)>,
}

impl ServerMeter {
    pub(crate) fn new(pid: Option<u32>) -> Self {
        ServerMeter {
            pid,
            start: pid.and_then(process_usage),
        }
    }

    /// (cpu seconds used since new, rss before, rss now)
    fn delta(&self) -> Option<(f64, u64, u64)> {
        let (cpu0, rss0) = self.start?;
        let (cpu1, rss1) = process_usage(self.pid?)?;
        Some((cpu1 - cpu0, rss0, rss1))
    }

    /// Adds jwd's CPU time and RssAnon since `new` to `report` (as
    /// `"server"`), per job and per GiB delivered where the report counts
    /// them; nothing without `--server-pid`.
    pub(crate) fn add_to(&self, report: &mut serde_json::Value) {
        if let Some((cpu, rss0, rss1)) = self.delta() {
            let server = json!({
                "cpu_seconds": cpu,
                "rss_anon_before": rss0,
                "rss_anon_after": rss1,
                "cpu_ms_per_job": report.get("jobs").and_then(|j| j.as_u64()).map(|j| cpu * 1000.0 / j as f64),
                "cpu_seconds_per_gib": report.get("bytes_delivered").and_then(|b| b.as_u64()).map(|b| cpu / (b as f64 / (1u64 << 30) as f64)),
            });
            report["server"] = server;
        }
    }
}

/// How many entries a directory has (jwd's fds: `/proc/PID/fd`).
pub(crate) fn count_dir(path: &str) -> Option<usize> {
    std::fs::read_dir(path).ok().map(|d| d.count())
}

/// Processes whose parent is `pid` (jwd's job inits).
pub(crate) fn children(pid: u32) -> Option<usize> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let mut n = text.split_whitespace().count();
    // Threads other than the main one have children lists too.
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(Result::ok)
    {
        if task.file_name().to_str() != Some(&pid.to_string()) {
            if let Ok(t) = std::fs::read_to_string(task.path().join("children")) {
                n += t.split_whitespace().count();
            }
        }
    }
    Some(n)
}
