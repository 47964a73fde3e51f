//! The init's life after a successful exec: the job's keeper. It writes
//! the command's stdout and stderr into the job's files itself (`Store`),
//! tells jwd what it has written when jwd is there to hear it, forwards
//! signals, reaps orphans, and once the command has ended, keeps what is
//! left in the pipes, writes its exit record, reports the status and exits
//! with it.
//!
//! Nothing here waits for jwd: with jwd gone (killed, restarting,
//! upgraded) the job runs on and its output still lands on disk; a
//! restarted jwd connects to the keeper's listening socket and gets the
//! figures at once. The keeper allocates nothing after set-up, and the
//! command's bytes do not pass through its memory: they are spliced from
//! the pipes into the files (a small buffer on its stack serves only bytes
//! that are dropped, and file systems without splice).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

use rustix::event::{PollFd, PollFlags};
use rustix::process::Pid;

use super::endpoint::{Control, Endpoint, Sent};
use super::exit;
use super::signals::{self, Signals};
use super::stdio::{Input, Readers};
use crate::job::channel::{ExitRecord, FromInit, InputKind, Report, EXIT_FILE, MAX_MESSAGE};
use crate::job::output::{Moved, Progress, Store};
use crate::protocol::OutputStream;

const STREAMS: [OutputStream; 2] = [OutputStream::Stdout, OutputStream::Stderr];

/// How long the keeper waits for jwd's next grant before it drops what the
/// job writes (until a grant comes), in nanoseconds.
const GRANT_WAIT_NS: i64 = 1_000_000_000;

/// Now on the monotonic clock, in nanoseconds.
fn monotonic_ns() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec)
}

/// The keeper's buffer for bytes it drops (past the cap, a full disk) or
/// copies (a file system without splice): small, since it is most of the
/// keeper's memory and rarely used.
const SCRATCH: usize = 1024;
/// The keeper's buffer for a terminal's output, which cannot be spliced:
/// larger, so a chatty terminal costs fewer reads (allocated only for a
/// job with a terminal).
const TERMINAL_READ: usize = 16 * 1024;

/// Keeps up to `moves` pieces of what is in one output pipe now (one per
/// wake-up keeps the other pipe and the signals served; when the command
/// has ended, enough to empty a full 1 MiB pipe even through the small
/// buffer). Returns false at EOF.
fn keep_pipe(
    store: &mut Store,
    pipe: &OwnedFd,
    stream: OutputStream,
    scratch: &mut [u8],
    moves: usize,
) -> bool {
    for _ in 0..moves {
        match store.take_from(stream, pipe.as_fd(), scratch) {
            Ok(Moved::Bytes(_)) => {}
            Ok(Moved::Empty) => return true,
            Ok(Moved::End) | Err(_) => return false,
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

/// What jwd has been told of the store's progress, and whether it is
/// behind.
struct Told {
    last: Progress,
    /// A new connection: tell it even if nothing changed.
    fresh: bool,
}

impl Told {
    /// Tells jwd the store's progress if it changed (or jwd is new).
    /// Returns whether something is still to be said (the channel was
    /// full).
    fn tell(&mut self, channel: &mut Endpoint, store: &Store) -> bool {
        let now = store.progress();
        if !self.fresh && now == self.last {
            return false;
        }
        let mut message = [0u8; MAX_MESSAGE];
        let n = FromInit::Progress(now).encode(&mut message);
        match channel.send_now(&message[..n]) {
            Sent::Done => {
                self.last = now;
                self.fresh = false;
                false
            }
            Sent::Full => true,
            Sent::Gone => false,
        }
    }
}

/// Writes the exit record into the job's directory: how the command ended
/// and what was written, for a jwd that is not there to be told. Best
/// effort: on a full disk jwd has the report if it is there, and marks
/// the job lost if it was not.
fn write_exit_record(store: &Store, wait_status: i32) {
    use rustix::fs::{Mode, OFlags};
    let record = ExitRecord {
        wait_status,
        ended_at_ms: crate::job::now_ms(),
        written: store.progress(),
    };
    let Ok(fd) = rustix::fs::openat(
        store.dir(),
        EXIT_FILE,
        OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) else {
        return;
    };
    let _ = std::fs::File::from(fd).write_all_at(&record.encode(), 0);
}

/// Keeps the job until the command `command` has ended, then exits.
pub(super) fn run(
    channel: &mut Endpoint,
    command: Pid,
    signals: &Signals,
    (readers, mut input): (Readers, Input),
    mut store: Store,
) -> ! {
    let mut small = [0u8; SCRATCH];
    let mut wide = (input.kind() == InputKind::Terminal).then(|| vec![0u8; TERMINAL_READ]);
    let scratch: &mut [u8] = match &mut wide {
        Some(wide) => wide,
        None => &mut small,
    };
    let mut told = Told {
        last: Progress::default(),
        fresh: false,
    };
    let mut behind = false;
    // At the end of its grant with jwd there, the keeper leaves the pipes
    // alone (the job waits on them) until jwd answers, for at most
    // GRANT_WAIT: bytes are dropped only when jwd says no more or is not
    // there.
    let mut refused = false;
    // When the wait for the current grant ends (monotonic ns).
    let mut wait_until: Option<i64> = None;
    let mut pipes = readers.0.map(|fd| {
        // A pipe that stays blocking only costs the other stream its turn.
        // (A terminal's master is shared with jwd, which writes to it
        // without waiting too.)
        if let Some(fd) = &fd {
            let _ = rustix::io::ioctl_fionbio(fd, true);
        }
        fd
    });
    loop {
        let listener = channel.listener();
        let mut fds = [
            PollFd::new(signals, PollFlags::IN),
            PollFd::from_borrowed_fd(listener, PollFlags::IN),
            PollFd::new(signals, PollFlags::empty()),
            PollFd::new(signals, PollFlags::empty()),
            PollFd::new(signals, PollFlags::empty()),
        ];
        let mut polled = 2;
        let channel_slot = channel.channel_fd().map(|fd| {
            let wanted = if behind {
                PollFlags::IN | PollFlags::OUT
            } else {
                PollFlags::IN
            };
            fds[polled] = PollFd::from_borrowed_fd(fd, wanted);
            polled += 1;
            polled - 1
        });
        let waiting = store.needs_grant() && channel.connected() && !refused;
        if !waiting {
            wait_until = None;
        }
        // Where each open pipe sits in `fds`; a closed one is not polled.
        let mut slot = [None; 2];
        for (i, pipe) in pipes.iter().enumerate().filter(|_| !waiting) {
            if let Some(pipe) = pipe {
                fds[polled] = PollFd::new(pipe, PollFlags::IN);
                slot[i] = Some(polled);
                polled += 1;
            }
        }
        // One deadline per wait, however often other things wake the loop.
        let timeout = waiting.then(|| {
            let until = *wait_until.get_or_insert_with(|| monotonic_ns() + GRANT_WAIT_NS);
            let left = (until - monotonic_ns()).max(0);
            rustix::event::Timespec {
                tv_sec: left / 1_000_000_000,
                tv_nsec: left % 1_000_000_000,
            }
        });
        match rustix::event::poll(&mut fds[..polled], timeout.as_ref()) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => {
                // Out of memory for the poll: let the kernel breathe
                // rather than spin.
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
            // No grant in time: drop until the next one.
            Ok(0) if waiting => refused = true,
            Ok(_) => {}
        }
        let ready = |i: usize| !fds[i].revents().is_empty();
        let pipe_ready = slot.map(|s| s.is_some_and(ready));
        let channel_ready = channel_slot.is_some_and(ready);
        let (signal_ready, listener_ready) = (ready(0), ready(1));
        for (i, stream) in STREAMS.into_iter().enumerate() {
            let open = match (&pipes[i], pipe_ready[i]) {
                (Some(pipe), true) => keep_pipe(&mut store, pipe, stream, scratch, 1),
                _ => true,
            };
            if !open {
                pipes[i] = None;
            }
        }
        if channel_ready {
            match channel.control() {
                Control::Signal(sig) => signals::forward(command, sig),
                Control::SignalAll(sig) => signals::to_all(sig),
                Control::CloseInput => input.close(),
                Control::Grant(bytes) => refused = !store.grant(bytes),
                // jwd is gone: the job goes on; the next jwd connects.
                Control::Nothing | Control::Closed => {}
            }
        }
        if listener_ready && channel.accept() {
            // A new jwd: it says what the job may keep from now on, and
            // gets the job's input.
            told.fresh = true;
            refused = false;
            channel.send_input(&input);
        }
        if let Some(wait_status) = signal_ready.then(|| signals.handle(command)).flatten() {
            // What the command wrote before it ended is in the pipes now;
            // a daemon it left may hold them open, so take what is there
            // rather than wait for EOF.
            for (pipe, stream) in pipes.iter().zip(STREAMS) {
                if let Some(pipe) = pipe {
                    keep_pipe(&mut store, pipe, stream, scratch, 256);
                }
            }
            write_exit_record(&store, wait_status);
            if channel.connected() {
                told.tell(channel, &store);
                let _ = channel.send_now(&Report::Exited { wait_status }.encode());
            }
            exit(exit_code(wait_status));
        }
        behind = told.tell(channel, &store);
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
