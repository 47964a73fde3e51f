//! An interactive session with a job (`jw run -i`, `jw attach`): local
//! input to the job's input, its output followed to its end, signals and
//! window size changes passed on, the local terminal raw while the job has
//! a terminal and stdin is one; detaching with the detach keys.

use std::time::Duration;

use jw::client::{Attachment, Client};
use jw::protocol::JobId;
use tokio::sync::watch;

use crate::args::Cli;
use crate::detach::DetachKeys;
use crate::ending::report_end;
use crate::failure::Failure;
use crate::follow::{follow, Follow};
use crate::input::{forward_input, Input};
use crate::local_input::read_stdin;
use crate::output::Offsets;
use crate::relay::{relay_window_changes, Interrupt, Signals};
use crate::terminal;

/// How long a detach waits to send its `Cancel`.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

/// What a session starts from.
pub(crate) struct Session {
    pub(crate) id: JobId,
    pub(crate) attachment: Attachment,
    /// Where to follow the output from.
    pub(crate) from: Offsets,
    pub(crate) keys: DetachKeys,
    /// Caught before the job started or was attached.
    pub(crate) signals: Signals,
}

/// Runs the session on the connection in `current` until the job ends
/// (its exit code) or the user detaches (0).
pub(crate) async fn run_session(
    cli: &Cli,
    session: Session,
    current: &watch::Sender<Client>,
) -> Result<u8, Failure> {
    let Session {
        id,
        attachment,
        from,
        keys,
        signals,
    } = session;
    let local_terminal = attachment.terminal() && terminal::stdin_is_terminal();
    let (controls, latest) = watch::channel(Some(attachment.control()));
    let latest_control = controls.subscribe();
    let winch = if local_terminal {
        Some(relay_window_changes(latest)?)
    } else {
        None
    };
    let relay = signals.relay(id, current.subscribe(), Interrupt::Forward);
    if local_terminal {
        terminal::enter_raw()?;
    }
    let local = read_stdin(local_terminal.then_some(keys))?;
    let input = tokio::spawn(forward_input(
        Input {
            attachment,
            connection: current.subscribe(),
            controls,
            reconnect_timeout: cli.reconnect_timeout,
        },
        local.chunks,
    ));
    let what = Follow {
        id,
        offsets: from,
        follow: true,
    };
    let detach = local.detach;
    let ended = tokio::select! {
        result = follow(cli, what, current) => Some(result),
        Ok(()) = detach => None,
    };
    relay.abort();
    if let Some(winch) = winch {
        winch.abort();
    }
    let Some(result) = ended else {
        // Cancel on the input's latest attachment (a reconnect makes a new
        // one), after any frame the input is writing; not waiting long
        // for a jwd that does not read: leaving closes the connection,
        // which detaches too.
        let control = latest_control.borrow().clone();
        if let Some(control) = control {
            let _ = tokio::time::timeout(CANCEL_WAIT, control.cancel()).await;
        }
        input.abort();
        terminal::restore();
        eprintln!("detached from job {id}; `jw attach {id}` to return");
        return Ok(0);
    };
    input.abort();
    terminal::restore();
    Ok(report_end(&result?))
}
