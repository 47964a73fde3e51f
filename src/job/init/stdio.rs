//! The command's stdio, as the init makes it before the fork. Output: two
//! pipes whose read ends the keeper keeps (stdout, stderr), or, with a
//! terminal, the terminal's master (one stream, stdout). Input:
//! `/dev/null` (the init's own fd 0, inherited), a pipe whose write end
//! the keeper holds and hands to jwd, or a pseudo-terminal allocated in
//! the job's own devpts (its master kept, its slave the command's
//! controlling terminal on fds 0, 1 and 2, sized before the command runs).
//!
//! The keeper keeps its copy of the write end (or master) for the job's
//! life, so a jwd that goes away does not close the job's input or hang
//! up its terminal; jwd gets a copy on every connection (`Endpoint::
//! send_input`) and writes into it itself: no input byte passes through
//! the keeper.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::pty::OpenptFlags;

use super::{At, Failure};
use crate::job::channel::{InputKind, Stage};
use crate::protocol::Stdin;

/// The keeper's side of the job's input.
pub(super) struct Input {
    kind: InputKind,
    /// The pipe's write end or the terminal's master, while open.
    fd: Option<OwnedFd>,
    /// A terminal's slave, held for the job's life (never its controlling
    /// terminal): the terminal never hangs up while the job lives, so
    /// what a job writes after it closed and reopened its terminal
    /// (`/dev/tty`) is kept, and jwd's writes wait for room rather than
    /// meet a terminal nobody holds.
    _slave: Option<OwnedFd>,
}

/// The command's side: what becomes its fds 0, 1 and 2.
pub(super) struct Stdio {
    /// Its stdin (`None`: the init's own, /dev/null).
    pub(super) stdin: Option<OwnedFd>,
    /// Its stdout and stderr: the output pipes' write ends, or the
    /// terminal's slave twice.
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
    /// stdin is a terminal, to become the command's controlling terminal.
    pub(super) terminal: bool,
}

impl Input {
    /// What the job's input is now.
    pub(super) fn kind(&self) -> InputKind {
        self.kind
    }

    /// The descriptor jwd gets a copy of, while the input is open.
    pub(super) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// The end of a pipe's input: the command reads EOF once the pipe is
    /// empty and jwd has let go of its copy. A terminal stays (its end of
    /// input is a character jwd types).
    pub(super) fn close(&mut self) {
        if self.kind == InputKind::Pipe {
            self.fd = None;
            self.kind = InputKind::Closed;
        }
    }
}

/// No input: the command reads /dev/null.
pub(super) fn null() -> Input {
    Input {
        kind: InputKind::Null,
        fd: None,
        _slave: None,
    }
}

/// A pipe for the job's input: the read end for the command (close-on-
/// exec until its dup2 to fd 0), the write end kept.
pub(super) fn pipe() -> Result<(Input, OwnedFd), Failure> {
    let (read, write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).at(Stage::Input)?;
    Ok((
        Input {
            kind: InputKind::Pipe,
            fd: Some(write),
            _slave: None,
        },
        read,
    ))
}

/// A pseudo-terminal of the job's own devpts (mounted by `mounts.rs`),
/// sized `rows` x `cols`, its slave owned by the job's user (mode 0620,
/// as login and sshd leave a terminal). Returns the keeper's side (the
/// master) and the slave.
pub(super) fn terminal(
    rows: u16,
    cols: u16,
    uid: u32,
    gid: u32,
) -> Result<(Input, OwnedFd), Failure> {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags).at(Stage::Terminal)?;
    rustix::pty::unlockpt(&master).at(Stage::Terminal)?;
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&master, size).at(Stage::Terminal)?;
    // The slave without a path lookup (TIOCGPTPEER): the one of this master.
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags).at(Stage::Terminal)?;
    let uid = rustix::process::Uid::from_raw(uid);
    let gid = rustix::process::Gid::from_raw(gid);
    rustix::fs::fchown(&slave, Some(uid), Some(gid)).at(Stage::Terminal)?;
    rustix::fs::fchmod(&slave, rustix::fs::Mode::from_raw_mode(0o620)).at(Stage::Terminal)?;
    Ok((
        Input {
            kind: InputKind::Terminal,
            fd: Some(master),
            _slave: Some(slave.try_clone().at(Stage::Terminal)?),
        },
        slave,
    ))
}

/// The read ends the keeper takes the command's output from: stdout's,
/// stderr's (none with a terminal: both are the terminal).
pub(super) struct Readers(pub(super) [Option<OwnedFd>; 2]);

/// A close-on-exec pipe (the command gets its end by dup2, which clears
/// the flag).
fn output_pipe() -> Result<(OwnedFd, OwnedFd), Failure> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).at(Stage::Pipes)
}

/// The job's stdio as `stdin` asks: the keeper's input, the command's
/// fds, the keeper's output readers.
pub(super) fn open(stdin: &Stdin, uid: u32, gid: u32) -> Result<(Input, Stdio, Readers), Failure> {
    if let Stdin::Terminal(size) = *stdin {
        let (input, slave) = terminal(size.rows, size.cols, uid, gid)?;
        let reader = input
            .fd()
            .map(|m| m.try_clone_to_owned())
            .transpose()
            .at(Stage::Terminal)?;
        let stdio = Stdio {
            stdout: slave.try_clone().at(Stage::Terminal)?,
            stderr: slave.try_clone().at(Stage::Terminal)?,
            stdin: Some(slave),
            terminal: true,
        };
        return Ok((input, stdio, Readers([reader, None])));
    }
    let (out_read, stdout) = output_pipe()?;
    let (err_read, stderr) = output_pipe()?;
    let (input, read) = match stdin {
        Stdin::Pipe => {
            let (input, read) = pipe()?;
            (input, Some(read))
        }
        _ => (null(), None),
    };
    let stdio = Stdio {
        stdin: read,
        stdout,
        stderr,
        terminal: false,
    };
    Ok((input, stdio, Readers([Some(out_read), Some(err_read)])))
}
