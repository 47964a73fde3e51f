//! A local pseudo-terminal for tests: runs a program (jw) with a terminal
//! of a given size as its controlling terminal, reads everything it
//! writes in the background, types into it, resizes it, and reads back
//! the terminal's settings (to check the program restored them).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long any wait on the terminal lasts before the test fails.
const BOUND: Duration = Duration::from_secs(60);

/// What the program wrote, whether the terminal hung up, and a signal
/// when either changes.
type Seen = Arc<(Mutex<(Vec<u8>, bool)>, Condvar)>;

/// A program on a local terminal.
pub struct Pty {
    master: std::fs::File,
    child: Child,
    /// Everything the program wrote to the terminal, and a signal when
    /// more came (or the terminal hung up).
    seen: Seen,
}

impl Pty {
    /// Runs `cmd` on a new terminal of `rows` x `cols`, in a new session
    /// whose controlling terminal it is (as a login shell's programs run).
    pub fn spawn(cmd: &mut Command, rows: u16, cols: u16) -> Pty {
        let size = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: between fork and exec the child only calls setsid and
        // ioctl, both async-signal-safe, and touches no memory of the
        // parent's other threads.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                // fd 0 is the slave: it becomes the controlling terminal.
                rustix::process::ioctl_tiocsctty(std::io::stdin())?;
                Ok(())
            });
        }
        let child = cmd.spawn().expect("the program starts");
        let master = std::fs::File::from(pty.master);
        let seen: Seen = Arc::new((Mutex::new((Vec::new(), false)), Condvar::new()));
        let mut reader = master.try_clone().unwrap();
        let shared = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // EIO once every process let go of the slave.
                let n = reader.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*shared;
                let mut seen = lock.lock().unwrap();
                if n == 0 {
                    seen.1 = true;
                    cv.notify_all();
                    return;
                }
                seen.0.extend_from_slice(&buf[..n]);
                cv.notify_all();
            }
        });
        Pty {
            master,
            child,
            seen,
        }
    }

    /// The program's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Types `bytes` at the terminal.
    pub fn type_bytes(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Waits until the program has written `text`; returns all it wrote.
    pub fn expect(&self, text: &str) -> String {
        let (lock, cv) = &*self.seen;
        let deadline = Instant::now() + BOUND;
        let mut seen = lock.lock().unwrap();
        loop {
            let now = String::from_utf8_lossy(&seen.0).into_owned();
            if now.contains(text) {
                return now;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !seen.1 && !left.is_zero(),
                "{text:?} never appeared on the terminal; it shows {now:?}"
            );
            seen = cv.wait_timeout(seen, left).unwrap().0;
        }
    }

    /// Everything written so far.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.seen.0.lock().unwrap().0).into_owned()
    }

    /// Resizes the terminal (the kernel signals SIGWINCH to its
    /// foreground process group).
    pub fn resize(&self, rows: u16, cols: u16) {
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(self.master.as_fd(), size).unwrap();
    }

    /// The terminal's settings now (the slave's, read through the master).
    pub fn settings(&self) -> rustix::termios::Termios {
        rustix::termios::tcgetattr(self.master.as_fd()).unwrap()
    }

    /// Waits (bounded) for the program to exit.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the program did not exit; the terminal shows {:?}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The parts of two terminal settings a raw mode changes (input, output
/// and local modes, and the control characters' behaviour).
pub fn same_mode(a: &rustix::termios::Termios, b: &rustix::termios::Termios) -> bool {
    a.input_modes == b.input_modes
        && a.output_modes == b.output_modes
        && a.local_modes == b.local_modes
        && a.control_modes == b.control_modes
}
