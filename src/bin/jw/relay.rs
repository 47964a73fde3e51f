//! Signals jw receives while it follows a job, passed on to the job through
//! the current connection (a new one after a reconnect): SIGINT, SIGTERM,
//! SIGHUP and SIGQUIT as `Signal` requests, SIGWINCH as `Resize` of the
//! job's terminal. For plain `jw run` (no -i/-t), SIGINT, SIGTERM, SIGHUP
//! and SIGPIPE stop the job instead, and for the last three jw then exits
//! 128+N. Catching them also keeps them from ending jw with the terminal
//! left raw.

use std::future::Future;
use std::io::Write;

use jw::client::{AttachControl, Client, ClientError};
use jw::protocol::{ErrorCode, JobId};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::failure::Failure;
use crate::signame::signal_name;
use crate::terminal;

/// What SIGINT, SIGTERM, SIGHUP and SIGPIPE jw receives do to the job.
#[derive(Clone, Copy)]
pub(crate) enum Interrupt {
    /// Stop it with this grace period; a second one kills it at once.
    /// SIGQUIT is sent on.
    Stop { grace_ms: u32 },
    /// Send SIGINT, SIGTERM, SIGHUP and SIGQUIT on to the job's command;
    /// SIGPIPE ends jw (the job, tied to jw, is stopped by jwd).
    Forward,
}

/// SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGPIPE, caught from `catch` on.
pub(crate) struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
    quit: Signal,
    pipe: Signal,
}

/// A relay running: its task, and the signal (TERM, HUP, PIPE) that made
/// it stop the job because jw is asked to go away, if one did.
pub(crate) struct Relay {
    task: JoinHandle<()>,
    leaving: watch::Receiver<Option<i32>>,
}

impl Relay {
    /// Stops passing signals on.
    pub(crate) fn abort(&self) {
        self.task.abort();
    }

    /// The signal that asked jw to go away, if one did.
    pub(crate) fn leaving(&self) -> Option<i32> {
        *self.leaving.borrow()
    }
}

fn caught(kind: SignalKind) -> Result<Signal, Failure> {
    signal(kind).map_err(|e| Failure::new(format!("cannot catch signals: {e}")))
}

impl Signals {
    /// Catches the four from now on (before the job starts, so none is
    /// missed nor ends jw).
    pub(crate) fn catch() -> Result<Signals, Failure> {
        Ok(Signals {
            interrupt: caught(SignalKind::interrupt())?,
            terminate: caught(SignalKind::terminate())?,
            hangup: caught(SignalKind::hangup())?,
            quit: caught(SignalKind::quit())?,
            pipe: caught(SignalKind::pipe())?,
        })
    }

    /// The number of the next signal caught.
    async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.interrupt.recv() => libc::SIGINT,
            _ = self.terminate.recv() => libc::SIGTERM,
            _ = self.hangup.recv() => libc::SIGHUP,
            _ = self.quit.recv() => libc::SIGQUIT,
            _ = self.pipe.recv() => libc::SIGPIPE,
        }
    }

    /// Runs `work` (connecting, starting, attaching: before there is a job
    /// to pass signals on to) unless a signal comes first: then jw ends as
    /// the signal would have ended it, with 128 + its number.
    pub(crate) async fn unless_interrupted<T>(&mut self, work: impl Future<Output = T>) -> T {
        tokio::select! {
            out = work => out,
            number = self.next() => terminal::exit(128 + number),
        }
    }

    /// Passes the signals on to job `id` until the relay is aborted.
    pub(crate) fn relay(
        mut self,
        id: JobId,
        connection: watch::Receiver<Client>,
        interrupt: Interrupt,
    ) -> Relay {
        let (leave, leaving) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut stops = 0;
            loop {
                let number = self.next().await;
                match interrupt {
                    Interrupt::Stop { grace_ms } if number != libc::SIGQUIT => {
                        if number != libc::SIGINT {
                            leave.send_if_modified(|first| {
                                first.get_or_insert(number);
                                true
                            });
                        }
                        stops += 1;
                        let (what, ms) = if stops == 1 {
                            ("stopping", grace_ms)
                        } else {
                            ("killing", 0)
                        };
                        // Stderr may be the pipe that broke: not a reason
                        // to end before the stop is asked for.
                        let _ = writeln!(std::io::stderr(), "jw: {what} job {id}");
                        tokio::spawn(stop(connection.clone(), id, ms));
                    }
                    Interrupt::Forward if number == libc::SIGPIPE => {
                        terminal::exit(128 + number);
                    }
                    _ => {
                        tokio::spawn(forward(connection.clone(), id, number));
                    }
                }
            }
        });
        Relay { task, leaving }
    }
}

/// `op` on the current connection; on the next one if that one is lost,
/// until the follow that replaces connections ends.
async fn on_current<T, F, Fut>(
    mut connection: watch::Receiver<Client>,
    op: F,
) -> Result<T, ClientError>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    loop {
        let client = connection.borrow_and_update().clone();
        match op(client).await {
            Err(e) if e.is_connection_lost() => {
                if connection.changed().await.is_err() {
                    return Err(e);
                }
            }
            other => return other,
        }
    }
}

/// Stops the job (`jw run`'s Ctrl-C, SIGTERM, SIGHUP, SIGPIPE).
pub(crate) async fn stop(connection: watch::Receiver<Client>, id: JobId, grace_ms: u32) {
    match on_current(connection, |c| async move { c.stop(id, grace_ms).await }).await {
        Ok(_) => {}
        Err(e) if e.is_connection_lost() => {
            let _ = writeln!(
                std::io::stderr(),
                "jw: cannot stop job {id}: {e}; stop it with `jw stop {id}`"
            );
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "jw: cannot stop job {id}: {e}");
        }
    }
}

/// Sends signal `number` to the job's command; a job that already ended
/// needs nothing.
async fn forward(connection: watch::Receiver<Client>, id: JobId, number: i32) {
    let sent = on_current(
        connection,
        |c| async move { c.signal(id, number, false).await },
    )
    .await;
    match sent {
        Ok(_) => {}
        Err(e) if e.code() == Some(ErrorCode::FAILED_PRECONDITION) => {}
        Err(e) => eprintln!(
            "jw: cannot send {} to job {id}: {e}; send it with `jw kill -s {number} {id}`",
            signal_name(number).unwrap_or("the signal")
        ),
    }
}

/// Catches SIGWINCH from now on and sends the terminal's new size to the
/// attachment in `control` (the latest one after a reconnect), until the
/// task is aborted.
pub(crate) fn relay_window_changes(
    mut control: watch::Receiver<Option<AttachControl>>,
) -> Result<JoinHandle<()>, Failure> {
    let mut changes = caught(SignalKind::window_change())?;
    Ok(tokio::spawn(async move {
        while changes.recv().await.is_some() {
            let current = control.borrow_and_update().clone();
            if let Some(control) = current {
                // A lost connection is the input's to resume; the next
                // change goes to the new attachment.
                let _ = control.resize(terminal::window_size()).await;
            }
        }
    }))
}
