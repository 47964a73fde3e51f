//! The text forms of `jw list` (a table) and `jw status` (one field a line).

use jw::protocol::JobInfo;
use jw::text::{printable, shorten};
use jw::units::format_bytes;

use crate::text::{command_text, describe_end, duration_text, exit_text, time_text};

/// `jw list`: one line per job under a header.
pub(crate) fn print_table(jobs: &[JobInfo]) {
    println!(
        "{:<36}  {:<10}  {:<8}  {:<8}  {:<20}  {:>9}  COMMAND",
        "ID", "OWNER", "STATE", "EXIT", "STARTED", "DURATION"
    );
    for j in jobs {
        let mut started = time_text(j.started_at_ms);
        started.truncate(19);
        let command = command_text(j);
        let command = shorten(&command, 60);
        println!(
            "{:<36}  {:<10}  {:<8}  {:<8}  {:<20}  {:>9}  {}",
            j.id,
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
    println!("owner:     {}", printable(&info.owner));
    println!("command:   {}", command_text(info));
    println!("state:     {}", describe_end(info));
    println!("started:   {}", time_text(info.started_at_ms));
    if let Some(end) = info.ended_at_ms {
        println!("ended:     {}", time_text(end));
    }
    println!("duration:  {}", duration_text(info));
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
