//! The init's life after a successful exec: relay the command's stdout
//! and stderr to jwd as messages on the channel, forward signals, reap
//! orphans, and once the command has ended, relay what is left, report its
//! status and exit with it.
//!
//! Relaying through the init, rather than handing jwd the pipes, keeps jwd
//! at one descriptor per running job. The relay allocates nothing after
//! its one buffer: the command's bytes are read straight into the message
//! that carries them.

use std::os::fd::OwnedFd;

use rustix::event::{PollFd, PollFlags};
use rustix::process::Pid;

use super::endpoint::{Control, Endpoint};
use super::signals::{self, Signals};
use super::{exit, At, Failure};
use crate::job::channel::{OutputBuffer, Report, Stage};
use crate::protocol::OutputStream;

const STREAMS: [OutputStream; 2] = [OutputStream::Stdout, OutputStream::Stderr];

/// The read ends of the command's stdout and stderr pipes, in that order.
pub(super) struct Readers([OwnedFd; 2]);

/// The write ends, the command's fds 1 and 2 to be.
pub(super) struct Writers {
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
}

/// The command's output pipes, close-on-exec (the command gets its ends
/// by dup2, which clears the flag).
pub(super) fn pipes() -> Result<(Readers, Writers), Failure> {
    let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).at(Stage::Pipes);
    let (out_read, stdout) = pipe()?;
    let (err_read, stderr) = pipe()?;
    Ok((Readers([out_read, err_read]), Writers { stdout, stderr }))
}

/// Relays up to `reads` chunks of what is in one output pipe now (one per
/// wake-up keeps the other pipe and the signals served; a pipe holds at
/// most 1 MiB, 16 chunks, when the command has ended). Returns false at
/// EOF.
fn relay_pipe(
    channel: &Endpoint,
    pipe: &OwnedFd,
    stream: OutputStream,
    buf: &mut OutputBuffer,
    reads: usize,
) -> bool {
    let mut left = reads;
    while left > 0 {
        match rustix::io::read(pipe, buf.payload()) {
            Ok(0) => return false,
            Ok(n) => {
                channel.send(buf.message(stream, n));
                left -= 1;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => return true,
            Err(_) => return false,
        }
    }
    true
}

/// The exit code of an init whose command ended with `wait_status`, as a
/// shell reports it (`protocol::shell_code`).
fn exit_code(wait_status: i32) -> i32 {
    let exited = libc::WIFEXITED(wait_status).then(|| libc::WEXITSTATUS(wait_status));
    let signal = libc::WIFSIGNALED(wait_status).then(|| libc::WTERMSIG(wait_status));
    i32::from(crate::protocol::shell_code(exited, signal))
}

/// Relays until the command `command` has ended, then exits.
pub(super) fn run(channel: &Endpoint, command: Pid, signals: &Signals, readers: Readers) -> ! {
    let mut buf = OutputBuffer::default();
    let mut pipes = readers.0.map(|fd| {
        // A pipe that stays blocking only costs the other stream its turn.
        let _ = rustix::io::ioctl_fionbio(&fd, true);
        Some(fd)
    });
    loop {
        let mut fds = [
            PollFd::new(signals, PollFlags::IN),
            PollFd::new(channel, PollFlags::IN),
            PollFd::new(signals, PollFlags::empty()),
            PollFd::new(signals, PollFlags::empty()),
        ];
        // Where each open pipe sits in `fds`; a closed one is not polled.
        let mut slot = [None; 2];
        let mut polled = 2;
        for (i, pipe) in pipes.iter().enumerate() {
            if let Some(pipe) = pipe {
                fds[polled] = PollFd::new(pipe, PollFlags::IN);
                slot[i] = Some(polled);
                polled += 1;
            }
        }
        if rustix::event::poll(&mut fds[..polled], None).is_err() {
            continue; // EINTR
        }
        let ready = |i: usize| !fds[i].revents().is_empty();
        let pipe_ready = slot.map(|s| s.is_some_and(ready));
        let (signal_ready, channel_ready) = (ready(0), ready(1));
        for (i, stream) in STREAMS.into_iter().enumerate() {
            let open = match (&pipes[i], pipe_ready[i]) {
                (Some(pipe), true) => relay_pipe(channel, pipe, stream, &mut buf, 1),
                _ => true,
            };
            if !open {
                pipes[i] = None;
            }
        }
        if channel_ready {
            match channel.control() {
                Control::Signal(sig) => signals::forward(command, sig),
                Control::Nothing => {}
                // jwd is gone: nobody will read the output or the end.
                Control::Closed => exit(137),
            }
        }
        if !signal_ready {
            continue;
        }
        if let Some(wait_status) = signals.handle(command) {
            // What the command wrote before it ended is in the pipes now;
            // a daemon it left may hold them open, so read what is there
            // rather than wait for EOF.
            for (pipe, stream) in pipes.iter().zip(STREAMS) {
                if let Some(pipe) = pipe {
                    relay_pipe(channel, pipe, stream, &mut buf, 16);
                }
            }
            channel.report(Report::Exited { wait_status });
            exit(exit_code(wait_status));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_exits_as_a_shell_reports_its_command() {
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(libc::SIGKILL), 128 + 9);
        assert_eq!(exit_code(libc::SIGSEGV | 0x80), 128 + 11, "core dumped");
    }
}
