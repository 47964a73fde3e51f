//! `jw-load pty`: keystroke round trip. A command (`cat`, `jw run -it --
//! cat`, `ssh -tt HOST cat`) runs in a fresh local pseudo-terminal; once it
//! is ready, one byte at a time is typed and timed until the terminal shows
//! it again, echoed by whichever terminal echoes it: the local one for a
//! plain `cat`, the remote one for jw and ssh, which put the local terminal
//! in raw mode.
//!
//! Ready means: a probe byte came back, then nothing more arrived and the
//! terminal's modes stayed the same for `QUIET`, and the modes are those
//! the probe was typed under. The last part matters for jw and ssh: a probe
//! typed before they make the terminal raw is echoed locally at once, and
//! again from the far side later.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rustix::termios::LocalModes;
use serde_json::json;

use crate::pty_child::PtyChild;
use crate::report::{fmt_us, percentiles};

/// The probe byte (never one of the timed keys).
const PROBE: u8 = b'.';
/// How often the probe is typed until it comes back.
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// How long the command has to become ready.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Silence (no output, no mode change) that ends the drain after a probe.
const QUIET: Duration = Duration::from_secs(1);
/// How long one key may take to come back.
const ECHO_WITHIN: Duration = Duration::from_secs(10);
/// How long the command has to exit after SIGHUP before SIGKILL.
const END_GRACE: Duration = Duration::from_secs(5);
/// Keys one run may type: a terminal in canonical mode holds one line of
/// 4095 bytes, and `cat` reads nothing before a newline (which would make
/// it print the line, keys and all), so the keys and probes must fit.
const MAX_KEYS: usize = 3500;
/// The terminal's size.
const ROWS: u16 = 24;
const COLS: u16 = 80;

/// What `jw-load pty` is asked to do.
pub(crate) struct PtyPlan {
    /// Timed round trips.
    pub(crate) count: usize,
    /// Untimed round trips before them.
    pub(crate) warmup: usize,
    /// Whether to wait for the command to turn the terminal's echo off
    /// before probing.
    pub(crate) raw: bool,
    /// The program and its arguments.
    pub(crate) command: Vec<String>,
}

/// Runs the scenario; the report.
pub(crate) fn pty(plan: &PtyPlan) -> Result<serde_json::Value, String> {
    check_plan(plan.count, plan.warmup)?;
    let mut child = PtyChild::spawn(&plan.command, ROWS, COLS)?;
    let measured = measure(&child, plan);
    let ended = child.end(END_GRACE);
    let (ready, h) = measured?;
    let status = ended?;
    eprintln!(
        "pty: {} round trips through `{}`: p50 {} p90 {} p99 {} max {} (ready after {} ms)",
        h.len(),
        child.name(),
        fmt_us(h.value_at_quantile(0.5)),
        fmt_us(h.value_at_quantile(0.9)),
        fmt_us(h.value_at_quantile(0.99)),
        fmt_us(h.max()),
        ready.as_millis()
    );
    Ok(json!({
        "scenario": "pty",
        "command": plan.command,
        "count": h.len(),
        "warmup": plan.warmup,
        "raw": plan.raw,
        "ready_ms": ready.as_millis() as u64,
        "round_trip": percentiles(&h),
        "exit": status.to_string(),
    }))
}

/// Refuses counts the terminal cannot hold.
fn check_plan(count: usize, warmup: usize) -> Result<(), String> {
    if count == 0 {
        return Err("--count must be at least 1".into());
    }
    if count.saturating_add(warmup) > MAX_KEYS {
        return Err(format!(
            "--count plus --warmup is {}, more than {MAX_KEYS}: a terminal line holds 4095 \
             bytes and `cat` sees none before a newline; run several times instead",
            count.saturating_add(warmup)
        ));
    }
    Ok(())
}

/// The key typed for round trip `i`: the letters a to z, over and over.
fn key(i: usize) -> u8 {
    b'a' + (i % 26) as u8
}

/// Waits for the command to be ready, then times the round trips: how
/// long it took to be ready, and the histogram (µs) of the timed ones.
fn measure(child: &PtyChild, plan: &PtyPlan) -> Result<(Duration, Histogram<u64>), String> {
    let (ready, modes) = wait_ready(child, plan.raw)?;
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..plan.warmup + plan.count {
        let key = key(i);
        let sent = Instant::now();
        child
            .write_byte(key, ECHO_WITHIN)
            .map_err(|e| format!("byte {i} ('{}'): {e}", key as char))?;
        wait_for(child, key, ECHO_WITHIN)
            .map_err(|e| format!("byte {i} ('{}'): {e}", key as char))?;
        if i >= plan.warmup {
            h.record(sent.elapsed().as_micros() as u64).ok();
        }
    }
    if child.local_modes()? != modes {
        return Err(format!(
            "`{}` changed the terminal's modes while keys were timed: it was not ready yet \
             (some keys were echoed by the local terminal); nothing measured",
            child.name()
        ));
    }
    Ok((ready, h))
}

/// Reads until `byte` shows up; anything else is passed over.
fn wait_for(child: &PtyChild, byte: u8, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no echo within {} s from `{}`",
                within.as_secs_f64(),
                child.name()
            ));
        }
        let n = child.read_within(&mut buf, left)?;
        if buf[..n].contains(&byte) {
            return Ok(());
        }
    }
}

/// Types the probe until it comes back and the terminal settles under the
/// modes the probe was typed in; how long that took, and those modes.
fn wait_ready(child: &PtyChild, raw: bool) -> Result<(Duration, LocalModes), String> {
    let start = Instant::now();
    let deadline = start + READY_WITHIN;
    if raw {
        wait_echo_off(child, deadline)?;
    }
    let late = || {
        format!(
            "`{}` was not ready within {} s (a probe byte typed every {} ms never came back \
             with the terminal quiet for {} s)",
            child.name(),
            READY_WITHIN.as_secs(),
            PROBE_EVERY.as_millis(),
            QUIET.as_secs()
        )
    };
    let mut buf = [0u8; 4096];
    loop {
        let typed_under = child.local_modes()?;
        // The probe, again every PROBE_EVERY, until one comes back.
        'probe: loop {
            if Instant::now() >= deadline {
                return Err(late());
            }
            child.write_byte(PROBE, ECHO_WITHIN)?;
            let next = Instant::now() + PROBE_EVERY;
            while let Some(left) = next.checked_duration_since(Instant::now()) {
                let n = child.read_within(&mut buf, left)?;
                if buf[..n].contains(&PROBE) {
                    break 'probe;
                }
            }
        }
        // Drain: read until quiet.
        let mut settle = Settle::new(Instant::now(), typed_under);
        loop {
            let now = Instant::now();
            if settle.settled(now, QUIET) {
                break;
            }
            if now >= deadline {
                return Err(late());
            }
            let n = child.read_within(&mut buf, Duration::from_millis(50))?;
            settle.observe(Instant::now(), n > 0, child.local_modes()?);
        }
        if !settle.changed() {
            return Ok((start.elapsed(), typed_under));
        }
    }
}

/// Waits until the command has turned the terminal's echo off, reading
/// (and dropping) what it shows meanwhile.
fn wait_echo_off(child: &PtyChild, deadline: Instant) -> Result<(), String> {
    let mut buf = [0u8; 4096];
    while child.local_modes()?.contains(LocalModes::ECHO) {
        if Instant::now() >= deadline {
            return Err(format!(
                "`{}` did not turn the terminal's echo off within {} s (--raw is for \
                 commands that do, like `jw run -t` and `ssh -tt`)",
                child.name(),
                READY_WITHIN.as_secs()
            ));
        }
        child.read_within(&mut buf, Duration::from_millis(10))?;
    }
    Ok(())
}

/// Tracks the drain after a probe: when the terminal last showed output
/// or changed modes, and whether its modes differ from the probe's.
struct Settle<M> {
    first: M,
    last: M,
    active: Instant,
}

impl<M: PartialEq + Copy> Settle<M> {
    fn new(now: Instant, modes: M) -> Self {
        Settle {
            first: modes,
            last: modes,
            active: now,
        }
    }

    /// One look at the terminal at `now`: whether output came, its modes.
    fn observe(&mut self, now: Instant, output: bool, modes: M) {
        if output || modes != self.last {
            self.active = now;
            self.last = modes;
        }
    }

    /// Whether nothing has happened for `quiet` up to `now`.
    fn settled(&self, now: Instant, quiet: Duration) -> bool {
        now.saturating_duration_since(self.active) >= quiet
    }

    /// Whether the modes now differ from those the probe was typed under.
    fn changed(&self) -> bool {
        self.last != self.first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cycle_through_the_letters_and_never_the_probe() {
        assert_eq!(key(0), b'a');
        assert_eq!(key(25), b'z');
        assert_eq!(key(26), b'a');
        assert!((0..100)
            .map(key)
            .all(|k| k.is_ascii_lowercase() && k != PROBE));
    }

    #[test]
    fn plans_must_fit_a_terminal_line() {
        assert!(check_plan(2000, 20).is_ok());
        assert!(check_plan(MAX_KEYS, 0).is_ok());
        assert!(check_plan(0, 5).is_err());
        let err = check_plan(MAX_KEYS, 1).unwrap_err();
        assert!(err.contains("--count plus --warmup"), "{err}");
        assert!(check_plan(usize::MAX, usize::MAX).is_err());
    }

    #[test]
    fn settles_after_quiet_and_reports_a_mode_change() {
        let t0 = Instant::now();
        let s = |ms| t0 + Duration::from_millis(ms);
        let quiet = Duration::from_millis(1000);
        let mut settle = Settle::new(t0, 1u32);
        assert!(!settle.settled(s(999), quiet));
        assert!(settle.settled(s(1000), quiet));
        // Output restarts the quiet period; so does a mode change.
        settle.observe(s(500), true, 1);
        assert!(!settle.settled(s(1000), quiet));
        assert!(!settle.changed());
        settle.observe(s(800), false, 2);
        assert!(!settle.settled(s(1500), quiet));
        assert!(settle.settled(s(1800), quiet));
        assert!(settle.changed());
        // Silence without a change does not restart it.
        settle.observe(s(1900), false, 2);
        assert!(settle.settled(s(1900), quiet));
    }

    #[test]
    fn a_mode_changed_and_changed_back_is_unchanged() {
        let t0 = Instant::now();
        let mut settle = Settle::new(t0, 7u32);
        settle.observe(t0 + Duration::from_millis(10), false, 8);
        settle.observe(t0 + Duration::from_millis(20), false, 7);
        assert!(!settle.changed());
    }
}
