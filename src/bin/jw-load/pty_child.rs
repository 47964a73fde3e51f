//! A command in a fresh local pseudo-terminal, for the `pty` scenario: the
//! command is a session leader whose controlling terminal, stdin, stdout
//! and stderr are the slave; jw-load keeps the master, writes keys to it
//! and reads back what the terminal shows, every wait bounded. The command
//! is ended by its pid (SIGHUP, then SIGKILL) and reaped.

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::{kill_process, Pid, Signal};
use rustix::pty::OpenptFlags;
use rustix::termios::{tcgetattr, tcsetwinsize, LocalModes, Winsize};

/// How often the command is checked for having exited while it is ended.
const REAP_EVERY: Duration = Duration::from_millis(10);

/// A running command and the master of its terminal.
pub(crate) struct PtyChild {
    master: OwnedFd,
    child: Child,
    name: String,
}

impl PtyChild {
    /// Starts `command` (program and arguments) on a new `rows` x `cols`
    /// pseudo-terminal in a session of its own.
    pub(crate) fn spawn(command: &[String], rows: u16, cols: u16) -> Result<Self, String> {
        let (program, args) = command
            .split_first()
            .ok_or("no command given: put it after `--`")?;
        let name = command.join(" ");
        let fail = |what: &str, e: Errno| format!("cannot {what} for `{name}`: {e}");
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        let master = rustix::pty::openpt(flags).map_err(|e| fail("open a pseudo-terminal", e))?;
        rustix::pty::unlockpt(&master).map_err(|e| fail("unlock the pseudo-terminal", e))?;
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        tcsetwinsize(&master, size).map_err(|e| fail("set the window size", e))?;
        let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags)
            .map_err(|e| fail("open the terminal's slave", e))?;
        let copy = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| format!("cannot duplicate the terminal's slave for `{name}`: {e}"))
        };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::from(copy(&slave)?))
            .stdout(Stdio::from(copy(&slave)?))
            .stderr(Stdio::from(slave));
        let session = || -> std::io::Result<()> {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(std::io::stdin())?;
            Ok(())
        };
        // SAFETY: the closure runs between fork and exec and makes only two
        // system calls (setsid, ioctl), which are async-signal-safe; it
        // allocates nothing and takes no lock.
        unsafe { cmd.pre_exec(session) };
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{name}`: {e}"))?;
        // `cmd` (and with it jw-load's copies of the slave) is dropped here,
        // so the master reads EIO once the command and its children close
        // the terminal.
        Ok(PtyChild {
            master,
            child,
            name,
        })
    }

    /// The command line, for messages.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The terminal's local modes (echo, canonical input, ...) as the
    /// command last set them (on Linux the master reports the slave's).
    pub(crate) fn local_modes(&self) -> Result<LocalModes, String> {
        tcgetattr(&self.master)
            .map(|t| t.local_modes)
            .map_err(|e| format!("cannot read the terminal's modes: {e}"))
    }

    /// Types one byte; an error if the terminal takes nothing within
    /// `timeout`.
    pub(crate) fn write_byte(&self, byte: u8, timeout: Duration) -> Result<(), String> {
        if !self.ready(PollFlags::OUT, timeout)? {
            return Err(format!(
                "the terminal took no input within {} s",
                timeout.as_secs_f64()
            ));
        }
        match rustix::io::write(&self.master, &[byte]) {
            Ok(1) => Ok(()),
            Ok(_) => Err("the terminal took no input".into()),
            Err(e) => Err(format!("cannot write to the terminal: {e}")),
        }
    }

    /// What the terminal shows within `timeout` (0 bytes: nothing came);
    /// an error once the command and its children have all closed it.
    pub(crate) fn read_within(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, String> {
        if !self.ready(PollFlags::IN, timeout)? {
            return Ok(0);
        }
        match rustix::io::read(&self.master, buf) {
            Ok(n) => Ok(n),
            Err(Errno::INTR | Errno::AGAIN) => Ok(0),
            Err(Errno::IO) => Err(format!(
                "`{}` closed its terminal (did it exit? it must keep running)",
                self.name
            )),
            Err(e) => Err(format!("cannot read the terminal: {e}")),
        }
    }

    /// Whether the master is ready for `events` within `timeout` (a hang-up
    /// counts as ready: the read or write then says what happened).
    fn ready(&self, events: PollFlags, timeout: Duration) -> Result<bool, String> {
        let timeout = Timespec::try_from(timeout).map_err(|e| format!("bad timeout: {e}"))?;
        let mut fds = [PollFd::new(&self.master, events)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(Errno::INTR) => Ok(false),
            Ok(_) => Ok(!fds[0].revents().is_empty()),
            Err(e) => Err(format!("cannot wait on the terminal: {e}")),
        }
    }

    /// Ends the command: SIGHUP, then SIGKILL if it has not exited within
    /// `grace`; reaps it and returns how it ended. What it writes meanwhile
    /// is read and dropped, so that it cannot block on a full terminal.
    pub(crate) fn end(&mut self, grace: Duration) -> Result<ExitStatus, String> {
        if let Some(status) = self.exited()? {
            return Ok(status);
        }
        self.signal(Signal::HUP)?;
        let deadline = Instant::now() + grace;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Some(status) = self.exited()? {
                return Ok(status);
            }
            if self.read_within(&mut buf, REAP_EVERY).is_err() {
                // Terminal closed: the command is on its way out.
                std::thread::sleep(REAP_EVERY);
            }
        }
        self.signal(Signal::KILL)?;
        self.child
            .wait()
            .map_err(|e| format!("cannot reap `{}`: {e}", self.name))
    }

    /// How the command ended, if it has.
    fn exited(&mut self) -> Result<Option<ExitStatus>, String> {
        self.child
            .try_wait()
            .map_err(|e| format!("cannot check on `{}`: {e}", self.name))
    }

    /// Sends `signal` to the command by its pid.
    fn signal(&self, signal: Signal) -> Result<(), String> {
        let pid = Pid::from_raw(self.child.id() as i32)
            .ok_or_else(|| format!("`{}` has no pid", self.name))?;
        match kill_process(pid, signal) {
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(e) => Err(format!("cannot signal `{}` (pid {pid:?}): {e}", self.name)),
        }
    }
}

impl Drop for PtyChild {
    /// A command not ended by `end` (an error on the way) is killed and
    /// reaped, never left behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.signal(Signal::KILL);
            let _ = self.child.wait();
        }
    }
}
