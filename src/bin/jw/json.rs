//! The `--json` form of a job (`jw status --json`, `jw list --json`).

use jw::protocol::JobInfo;

use crate::text::time_text;

/// One job as a JSON object; times both as RFC 3339 and as milliseconds.
pub(crate) fn job_json(info: &JobInfo) -> serde_json::Value {
    let u = &info.usage;
    serde_json::json!({
        "id": info.id.to_string(),
        "owner": info.owner,
        "command": info.command,
        "args": info.args,
        "state": info.state.as_str(),
        "exit_code": info.exit_code,
        "signal": info.signal,
        "oom_killed": info.oom_killed,
        "stopped": info.stopped,
        "started_at": time_text(info.started_at_ms),
        "ended_at": info.ended_at_ms.map(time_text),
        "started_at_ms": info.started_at_ms,
        "ended_at_ms": info.ended_at_ms,
        "usage": {
            "cpu_user_us": u.cpu_user_us,
            "cpu_system_us": u.cpu_system_us,
            "memory_peak_bytes": u.memory_peak_bytes,
            "io_read_bytes": u.io_read_bytes,
            "io_write_bytes": u.io_write_bytes,
            "pids_current": u.pids_current,
        },
        "output": {
            "stdout_bytes": info.output.stdout_bytes,
            "stderr_bytes": info.output.stderr_bytes,
            "dropped_bytes": info.output.dropped_bytes,
        },
        "error": info.error,
        "name": info.name,
        "limits": {
            "cpu_millicores": info.limits.cpu_millicores,
            "memory_bytes": info.limits.memory_bytes,
            "io_read_bps": info.limits.io_read_bps,
            "io_write_bps": info.limits.io_write_bps,
            "pids": info.limits.pids,
            "output_bytes": info.limits.output_bytes,
        },
        "timeout_ms": info.timeout_ms,
        "timed_out": info.timed_out,
    })
}
