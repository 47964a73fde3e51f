//! jwd's messages about a refused request, said again in the units the
//! user typed: cores instead of millicores, `256M` instead of bytes, and
//! the flag instead of the protocol's field.

use jw::units::format_bytes;

/// A size as the user types it (`64M`, `1.5G`; plain bytes below 1 KiB).
pub(crate) fn size_text(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else {
        format_bytes(bytes)
    }
}

/// Cores from thousandths of a core: `1.5`, `2`, `0.01`.
fn cores_text(millicores: u64) -> String {
    let text = format!("{:.3}", millicores as f64 / 1000.0);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// jwd's `invalid FIELD: V UNIT is outside the accepted range MIN UNIT to
/// MAX UNIT` in the user's units, naming the flag; `None` for any other
/// message.
pub(crate) fn in_user_units(message: &str) -> Option<String> {
    let rest = message.strip_prefix("invalid ")?;
    let (field, rest) = rest.split_once(": ")?;
    let (value, rest) = rest.split_once(" is outside the accepted range ")?;
    let (min, max) = rest.split_once(" to ")?;
    let number = |text: &str| -> Option<u64> { text.split(' ').next()?.parse().ok() };
    let (value, min, max) = (number(value)?, number(min)?, number(max)?);
    let (flag, shown, low, high, whose) = match field {
        "cpu" => (
            "--cpu",
            cores_text(value),
            format!("{} cores", cores_text(min)),
            format!("{} cores", cores_text(max)),
            " on this host",
        ),
        "memory" => (
            "--memory",
            size_text(value),
            size_text(min),
            size_text(max),
            " (this host's memory)",
        ),
        "io_read" | "io_write" => (
            if field == "io_read" {
                "--io-read"
            } else {
                "--io-write"
            },
            format!("{}/s", size_text(value)),
            format!("{}/s", size_text(min)),
            format!("{}/s", size_text(max)),
            "",
        ),
        "pids" => (
            "--pids",
            value.to_string(),
            min.to_string(),
            max.to_string(),
            "",
        ),
        "output" => (
            "--max-output",
            size_text(value),
            size_text(min),
            size_text(max),
            " on this server (jwd --max-output)",
        ),
        _ => return None,
    };
    Some(if value > max {
        format!("{flag} {shown}: at most {high}{whose}")
    } else {
        format!("{flag} {shown}: at least {low}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_said_in_the_users_units() {
        let cpu = "invalid cpu: 1000000 millicores is outside the accepted range 10 millicores \
                   to 2000 millicores";
        assert_eq!(
            in_user_units(cpu).unwrap(),
            "--cpu 1000: at most 2 cores on this host"
        );
        let low = "invalid cpu: 5 millicores is outside the accepted range 10 millicores to \
                   2000 millicores";
        assert_eq!(
            in_user_units(low).unwrap(),
            "--cpu 0.005: at least 0.01 cores"
        );
        let memory = format!(
            "invalid memory: {} bytes is outside the accepted range {} bytes to {} bytes",
            1u64 << 40,
            1 << 20,
            8u64 << 30
        );
        assert_eq!(
            in_user_units(&memory).unwrap(),
            "--memory 1.0T: at most 8.0G (this host's memory)"
        );
        assert_eq!(in_user_units("invalid command: is empty"), None);
        assert_eq!(in_user_units("no such job"), None);
    }
}
