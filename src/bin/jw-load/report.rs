//! How figures are shown: latency percentiles in the JSON report, µs/ms in
//! the summary lines, and the report printed at the end.

use hdrhistogram::Histogram;
use serde_json::json;

/// p50/p90/p99/max of a latency histogram (µs) for the JSON report.
pub(crate) fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    json!({
        "p50_us": h.value_at_quantile(0.5),
        "p90_us": h.value_at_quantile(0.9),
        "p99_us": h.value_at_quantile(0.99),
        "max_us": h.max(),
    })
}

/// Microseconds for a summary line: µs below 1 ms, else ms.
pub(crate) fn fmt_us(us: u64) -> String {
    if us >= 1000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

/// The report on stdout: one line of JSON with `--json`, else pretty JSON.
pub(crate) fn print(report: &serde_json::Value, one_line: bool) {
    if one_line {
        println!("{report}");
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
    }
}
