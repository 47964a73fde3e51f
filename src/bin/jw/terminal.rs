//! The local terminal: its window size, raw mode, and putting it back the
//! way it was on every way out of jw (`restore`: from `main`, before
//! `std::process::exit`, from the panic hook). Signals that would end jw
//! (SIGINT, SIGTERM, SIGHUP, SIGQUIT) are caught while it is raw
//! (`relay.rs`), so jw still leaves through `main`.

use std::io::IsTerminal;
use std::sync::Mutex;

use jw::protocol::WindowSize;
use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, OptionalActions, Termios};

use crate::failure::Failure;

/// The terminal's settings before raw mode, while it is raw.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// The size given to a job's terminal when stdin is not a terminal.
pub(crate) const DEFAULT_SIZE: WindowSize = WindowSize { rows: 24, cols: 80 };

/// Whether jw's stdin is a terminal.
pub(crate) fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// The size of the terminal on stdin; `DEFAULT_SIZE` when stdin is not one.
pub(crate) fn window_size() -> WindowSize {
    match tcgetwinsize(std::io::stdin()) {
        Ok(ws) if stdin_is_terminal() => WindowSize {
            rows: ws.ws_row,
            cols: ws.ws_col,
        },
        _ => DEFAULT_SIZE,
    }
}

/// Puts the terminal on stdin in raw mode (no echo, no line editing, no
/// signals from keys, no output processing), until `restore`.
pub(crate) fn enter_raw() -> Result<(), Failure> {
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin)
        .map_err(|e| Failure::new(format!("cannot read the terminal's settings: {e}")))?;
    let mut raw = saved.clone();
    raw.make_raw();
    // Saved first: from here on every way out restores it.
    *lock() = Some(saved);
    tcsetattr(&stdin, OptionalActions::Now, &raw).map_err(|e| {
        restore();
        Failure::new(format!("cannot put the terminal in raw mode: {e}"))
    })
}

/// Puts the terminal back as it was before `enter_raw`; nothing if it is
/// not raw. Safe to call any number of times, from anywhere.
pub(crate) fn restore() {
    if let Some(saved) = lock().take() {
        let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, &saved);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<Termios>> {
    // A panic while holding the lock leaves nothing half-done.
    SAVED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Restores the terminal before a panic's message is printed.
pub(crate) fn restore_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        default(info);
    }));
}

/// Restores the terminal, then exits with `code` (which runs no
/// destructor).
pub(crate) fn exit(code: i32) -> ! {
    restore();
    std::process::exit(code)
}
