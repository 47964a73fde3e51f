//! A job's input on jwd's side: what the keeper handed over (its copy of
//! the input pipe's write end, or the terminal's master), the one writer
//! attached to it (`Attachment`), and signals to the job.
//!
//! jwd writes input itself, without waiting: the descriptor is
//! non-blocking and the writer sleeps on its readiness, so a job that does
//! not read its input costs a sleeping task, never a thread. Resizes go to
//! the terminal's master (TIOCSWINSZ), which signals SIGWINCH to the job's
//! foreground process group. The end of input closes the pipe (jwd's copy
//! here, the keeper's through the channel) or, on a terminal, types its
//! end-of-file character, as a user at it would.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::termios::{SpecialCodeIndex, Termios};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::channel::{InputKind, ToInit};
use super::engine::Manager;
use super::error::JobError;
use super::link;
use super::registry::Job;
use crate::protocol::{JobId, JobInfo, WindowSize};

/// A job's input as jwd holds it.
#[derive(Debug, Default)]
pub(super) enum InputState {
    /// The keeper has not said yet (an adopted job, just reconnected).
    #[default]
    Unknown,
    /// The job reads /dev/null.
    Null,
    /// Open: jwd's copy of the write end or master.
    Open {
        fd: Arc<OwnedFd>,
        terminal: bool,
        /// A writer is attached.
        attached: bool,
    },
    /// The end of input was given, or nobody reads it any more.
    Closed,
    /// The job has ended.
    Ended,
}

/// A job's input and the bytes written to it through this jwd.
#[derive(Debug, Default)]
pub(super) struct JobInput {
    pub(super) state: InputState,
    pub(super) written: u64,
    /// The last byte written (a terminal's end of input depends on it).
    pub(super) last: Option<u8>,
    /// The writer that attached last through this jwd (0: none yet).
    pub(super) last_writer: u64,
}

impl JobInput {
    /// The input the keeper described (`fd`: jwd's copy, when open).
    pub(super) fn from_keeper(kind: InputKind, fd: Option<OwnedFd>) -> InputState {
        match (kind, fd) {
            (InputKind::Pipe | InputKind::Terminal, Some(fd)) => {
                // Shared with the keeper, which only holds it (a pipe) or
                // reads it without waiting too (a terminal's master).
                if rustix::io::ioctl_fionbio(&fd, true).is_err() {
                    return InputState::Closed;
                }
                InputState::Open {
                    fd: Arc::new(fd),
                    terminal: kind == InputKind::Terminal,
                    attached: false,
                }
            }
            (InputKind::Null, _) => InputState::Null,
            _ => InputState::Closed,
        }
    }

    /// The job has ended: its input goes.
    pub(super) fn end(&mut self) {
        self.state = InputState::Ended;
    }
}

/// The one writer of a job's input. Dropping it detaches: the input stays
/// open for the next writer.
pub struct Attachment {
    job: Arc<Job>,
    fd: AsyncFd<Arc<OwnedFd>>,
    terminal: bool,
    /// This writer's number (random, never 0), and the one that attached
    /// before it through this jwd (0: none).
    writer: u64,
    previous_writer: u64,
}

/// A writer's number: random, so that no writer of another jwd (before a
/// restart) has it; never 0.
fn writer_number() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty());
    u64::from_le_bytes(bytes).max(1)
}

impl Manager {
    /// Attaches the caller as the writer of job `id`'s input (`owner`:
    /// whose jobs the caller may see; `None` for all).
    pub fn attach(&self, id: JobId, owner: Option<&str>) -> Result<Attachment, JobError> {
        let job = self.get(id, owner)?;
        if !job.info.borrow().state.is_active() {
            return Err(JobError::Ended(id));
        }
        let mut input = job.input.lock().expect("input lock");
        let writer = writer_number();
        let (fd, terminal) = match &mut input.state {
            InputState::Open { attached: true, .. } => return Err(JobError::InputBusy(id)),
            InputState::Open {
                fd,
                terminal,
                attached,
            } => {
                *attached = true;
                (fd.clone(), *terminal)
            }
            InputState::Closed => return Err(JobError::InputClosed(id)),
            InputState::Ended => return Err(JobError::Ended(id)),
            InputState::Unknown | InputState::Null => return Err(JobError::NoInput(id)),
        };
        let previous_writer = std::mem::replace(&mut input.last_writer, writer);
        drop(input);
        let detach = |e| {
            if let InputState::Open { attached, .. } =
                &mut job.input.lock().expect("input lock").state
            {
                *attached = false;
            }
            JobError::Input { id, source: e }
        };
        // SAFETY: `fd` is moved into the AsyncFd, which owns this Arc until
        // it is dropped, so the descriptor stays open and means the same
        // file for the registration's whole life.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::WRITABLE) }
            .map_err(|e| detach(e.into()))?;
        Ok(Attachment {
            job: job.clone(),
            fd,
            terminal,
            writer,
            previous_writer,
        })
    }

    /// Sends `signal` (1 to 31) to job `id`'s command, or with `all` to
    /// every process of the job. Returns the job's status.
    pub fn signal(
        &self,
        id: JobId,
        owner: Option<&str>,
        signal: i32,
        all: bool,
    ) -> Result<JobInfo, JobError> {
        if !(1..=31).contains(&signal) {
            return Err(JobError::BadSignal(signal));
        }
        let job = self.get(id, owner)?;
        let control = job.control.lock().expect("control lock").clone();
        let Some(control) = control else {
            return Err(JobError::Ended(id));
        };
        let message = if all {
            ToInit::SignalAll(signal)
        } else {
            ToInit::Signal(signal)
        };
        link::send(control.channel.as_fd(), message).map_err(|e| match e {
            rustix::io::Errno::PIPE | rustix::io::Errno::CONNRESET => JobError::Ended(id),
            e => JobError::Io {
                what: format!("cannot ask job {id}'s keeper to send the signal"),
                source: e.into(),
            },
        })?;
        Ok(job.info())
    }
}

impl Attachment {
    /// Whether the job's input is a terminal.
    pub fn terminal(&self) -> bool {
        self.terminal
    }

    /// Bytes written to the job's input through this jwd so far.
    pub fn offset(&self) -> u64 {
        self.job.input.lock().expect("input lock").written
    }

    /// This writer's number.
    pub fn writer(&self) -> u64 {
        self.writer
    }

    /// The number of the writer attached before this one through this jwd
    /// (0: none): a client that finds its own knows nobody else wrote in
    /// between, so `offset` counts only its bytes.
    pub fn previous_writer(&self) -> u64 {
        self.previous_writer
    }

    /// Writes some of `data` (not empty) into the job's input, waiting for
    /// room; returns how much went in. `InputClosed` once the input has no
    /// reader (the job ended or closed its stdin, as `head` does): nobody
    /// will read it again, so it is closed.
    pub async fn write(&self, data: &[u8]) -> Result<usize, JobError> {
        let n = self.put(data).await?;
        let mut input = self.job.input.lock().expect("input lock");
        input.written += n as u64;
        if n > 0 {
            input.last = Some(data[n - 1]);
        }
        Ok(n)
    }

    /// `write`, without counting the bytes as the job's input.
    async fn put(&self, data: &[u8]) -> Result<usize, JobError> {
        let id = self.job.id;
        loop {
            let mut guard = self
                .fd
                .writable()
                .await
                .map_err(|source| JobError::Input { id, source })?;
            // A hung-up descriptor (nothing holds the other side: the
            // job's processes are gone) stays "ready" for good while
            // writes would block: without this, a loop that never waits.
            let hung_up = guard.ready().is_write_closed();
            match guard.try_io(|fd| rustix::io::write(fd.get_ref(), data).map_err(Into::into)) {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::EIO)) => {
                    self.job.input.lock().expect("input lock").state = InputState::Closed;
                    return Err(JobError::InputClosed(id));
                }
                Ok(Err(source)) => return Err(JobError::Input { id, source }),
                Err(_would_block) if hung_up => {
                    self.job.input.lock().expect("input lock").state = InputState::Closed;
                    return Err(JobError::InputClosed(id));
                }
                // Readiness was cleared: the next wait is for room.
                Err(_would_block) => {}
            }
        }
    }

    /// Writes all of `data`.
    pub async fn write_all(&self, mut data: &[u8]) -> Result<(), JobError> {
        while !data.is_empty() {
            let n = self.write(data).await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// The job's terminal has a new size (nothing for a pipe).
    pub fn resize(&self, size: WindowSize) -> Result<(), JobError> {
        if !self.terminal {
            return Ok(());
        }
        let winsize = rustix::termios::Winsize {
            ws_row: size.rows,
            ws_col: size.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(self.fd.get_ref(), winsize).map_err(|e| JobError::Input {
            id: self.job.id,
            source: e.into(),
        })
    }

    /// The end of the job's input, after what was written: a pipe is
    /// closed (the job reads EOF once it has read the rest); a terminal
    /// gets its end-of-file character. Returns the bytes written in all.
    pub async fn close(self) -> Result<u64, JobError> {
        let id = self.job.id;
        if self.terminal {
            let last = self.job.input.lock().expect("input lock").last;
            let termios =
                rustix::termios::tcgetattr(self.fd.get_ref()).map_err(|e| JobError::Input {
                    id,
                    source: e.into(),
                })?;
            // Typed, not written: the job's input bytes do not count them.
            for _ in 0..eof_presses(&termios, last) {
                let eof = termios.special_codes[SpecialCodeIndex::VEOF];
                while self.put(&[eof]).await? == 0 {}
            }
            return Ok(self.offset());
        }
        let control = self.job.control.lock().expect("control lock").clone();
        if let Some(control) = control {
            link::send(control.channel.as_fd(), ToInit::CloseInput).map_err(|e| {
                JobError::Input {
                    id,
                    source: e.into(),
                }
            })?;
        }
        let mut input = self.job.input.lock().expect("input lock");
        input.state = InputState::Closed;
        Ok(input.written)
    }
}

/// How many times the end-of-file character must be typed for a program
/// reading the terminal to see the end of its input: once at the start of
/// a line; after a partial line, once to hand the line over and once more
/// for the end (in canonical mode the first only ends the read). None if
/// the job turned the character off.
fn eof_presses(termios: &Termios, last: Option<u8>) -> usize {
    use rustix::termios::InputModes;
    let c = &termios.special_codes;
    let eof = c[SpecialCodeIndex::VEOF];
    if eof == 0 {
        return 0;
    }
    let line_end = |b: u8| {
        b == b'\n'
            || b == eof
            || (b == b'\r' && termios.input_modes.contains(InputModes::ICRNL))
            || (b != 0 && (b == c[SpecialCodeIndex::VEOL] || b == c[SpecialCodeIndex::VEOL2]))
    };
    match last {
        Some(b) if !line_end(b) => 2,
        _ => 1,
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if let InputState::Open { attached, .. } =
            &mut self.job.input.lock().expect("input lock").state
        {
            *attached = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings a new terminal has (as the kernel gives them).
    fn cooked() -> Termios {
        let (_master, slave) = {
            let flags = rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY;
            let master = rustix::pty::openpt(flags).unwrap();
            rustix::pty::unlockpt(&master).unwrap();
            let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags).unwrap();
            (master, slave)
        };
        rustix::termios::tcgetattr(&slave).unwrap()
    }

    #[test]
    fn the_end_of_input_is_typed_twice_after_a_partial_line() {
        let t = cooked();
        assert_eq!(eof_presses(&t, None), 1);
        assert_eq!(eof_presses(&t, Some(b'\n')), 1);
        assert_eq!(eof_presses(&t, Some(b'\r')), 1, "ICRNL: Enter ends a line");
        assert_eq!(eof_presses(&t, Some(4)), 1);
        assert_eq!(eof_presses(&t, Some(b'c')), 2);
        let mut off = t.clone();
        off.special_codes[SpecialCodeIndex::VEOF] = 0;
        assert_eq!(eof_presses(&off, Some(b'c')), 0, "turned off by the job");
    }
}
