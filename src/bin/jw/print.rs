//! The text forms of `jw list` (a table) and `jw status` (one field a line).

use jw::protocol::{JobInfo, Limits};
use jw::text::{printable, shorten};
use jw::units::format_bytes;

use crate::server_text::size_text;
use crate::text::{command_text, describe_end, duration_text, exit_text, span_text, time_text};

/// `jw list`: one line per job under a header.
pub(crate) fn print_table(jobs: &[JobInfo]) {
    println!(
        "{:<36}  {:<16}  {:<10}  {:<8}  {:<8}  {:<20}  {:>9}  COMMAND",
        "ID", "NAME", "OWNER", "STATE", "EXIT", "STARTED", "DURATION"
    );
    for j in jobs {
        let mut started = time_text(j.started_at_ms);
        started.truncate(19);
        let command = command_text(j);
        let command = shorten(&command, 60);
        println!(
            "{:<36}  {:<16}  {:<10}  {:<8}  {:<8}  {:<20}  {:>9}  {}",
            j.id,
            j.name
                .as_deref()
                .map(printable)
                .unwrap_or_else(|| "-".into()),
            printable(&j.owner),
            j.state.as_str(),
            exit_text(j),
            started.replace('T', " "),
            duration_text(j),
            command
        );
    }
}

/// `jw status`: the job's fields, usage and output.
pub(crate) fn print_status(info: &JobInfo) {
    let u = &info.usage;
    println!("id:        {}", info.id);
    if let Some(name) = &info.name {
        println!("name:      {}", printable(name));
    }
    println!("owner:     {}", printable(&info.owner));
    println!("command:   {}", command_text(info));
    println!("state:     {}", describe_end(info));
    println!("started:   {}", time_text(info.started_at_ms));
    if let Some(end) = info.ended_at_ms {
        println!("ended:     {}", time_text(end));
    }
    println!("duration:  {}", duration_text(info));
    println!("limits:    {}", limits_text(&info.limits));
    match info.timeout_ms {
        Some(ms) if info.timed_out => println!("timeout:   {}, timed out", span_text(ms)),
        Some(ms) => println!("timeout:   {}", span_text(ms)),
        None if info.timed_out => println!("timeout:   timed out"),
        None => println!("timeout:   none"),
    }
    println!(
        "cpu:       {:.3}s user, {:.3}s system",
        u.cpu_user_us as f64 / 1e6,
        u.cpu_system_us as f64 / 1e6
    );
    println!("memory:    {} peak", format_bytes(u.memory_peak_bytes));
    println!(
        "io:        {} read, {} written",
        format_bytes(u.io_read_bytes),
        format_bytes(u.io_write_bytes)
    );
    if info.state.is_active() {
        println!("pids:      {}", u.pids_current);
    }
    let o = &info.output;
    println!(
        "output:    {} stdout, {} stderr",
        format_bytes(o.stdout_bytes),
        format_bytes(o.stderr_bytes)
    );
    if o.dropped_bytes > 0 {
        println!(
            "           incomplete: {} dropped (output cap or full disk)",
            format_bytes(o.dropped_bytes)
        );
    }
}

/// A job's limits as the flags that set them, `unlimited` for those it
/// has none of.
fn limits_text(l: &Limits) -> String {
    let unlimited = || "unlimited".to_string();
    let rate = |r: Option<u64>| {
        r.map(|b| format!("{}/s", size_text(b)))
            .unwrap_or_else(unlimited)
    };
    let cpu = l
        .cpu_millicores
        .map(|m| {
            let cores = format!("{:.3}", f64::from(m) / 1000.0);
            let cores = cores.trim_end_matches('0').trim_end_matches('.');
            format!("{cores} cores")
        })
        .unwrap_or_else(unlimited);
    format!(
        "memory {}, cpu {cpu}, pids {}, io read {}, io write {}, max output {}",
        l.memory_bytes.map(size_text).unwrap_or_else(unlimited),
        l.pids.map(|p| p.to_string()).unwrap_or_else(unlimited),
        rate(l.io_read_bps),
        rate(l.io_write_bps),
        l.output_bytes.map(size_text).unwrap_or_else(unlimited),
    )
}
