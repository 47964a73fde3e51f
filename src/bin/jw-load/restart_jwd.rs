//! Restarting jwd as a crash would, for the restart and soak scenarios:
//! read a running jwd's argv, environment and working directory from
//! /proc, SIGKILL it, and start the same command again, detached (its own
//! process group, stdin and stdout on /dev/null, stderr appended to a log
//! file); then time how long the new jwd takes to accept a client.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jw::client::{Client, ConnectOptions};

/// How long a restarted jwd may take to accept a client.
const READY_BOUND: Duration = Duration::from_secs(120);
/// How long a SIGKILLed jwd may take to disappear.
const GONE_BOUND: Duration = Duration::from_secs(30);

/// A jwd as started: enough to start the same one again.
pub(crate) struct Jwd {
    pub(crate) pid: u32,
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: PathBuf,
    /// Set once this process started it: reaped after it is killed.
    child: Option<Child>,
}

/// One restart's figures.
pub(crate) struct Restarted {
    pub(crate) old_pid: u32,
    pub(crate) new_pid: u32,
    /// When the new jwd was spawned.
    pub(crate) spawned: Instant,
    /// From spawn until a client connected (TLS and Hello).
    pub(crate) ready: Duration,
    /// jwd was started this many times (more than 1: the first ones exited
    /// before accepting a client; the jwd log says why).
    pub(crate) attempts: u32,
    log: PathBuf,
    log_start: u64,
}

impl Restarted {
    /// What the new jwd has logged on stderr so far (its part of the log).
    pub(crate) fn log(&self) -> String {
        read_from(&self.log, self.log_start)
    }
}

impl Jwd {
    /// The jwd running as `pid`, read from /proc.
    pub(crate) fn inspect(pid: u32) -> Result<Jwd, String> {
        let read = |what: &str| {
            std::fs::read(format!("/proc/{pid}/{what}"))
                .map_err(|e| format!("cannot read /proc/{pid}/{what} ({e}): is --server-pid {pid} a running jwd, and does jw-load run as its user or root?"))
        };
        let argv: Vec<OsString> = split_nul(&read("cmdline")?);
        if argv.is_empty() {
            return Err(format!(
                "process {pid} has no command line: is it a running jwd?"
            ));
        }
        let env = split_nul(&read("environ")?)
            .into_iter()
            .filter_map(|kv| {
                let bytes = kv.into_vec();
                let eq = bytes.iter().position(|b| *b == b'=')?;
                Some((
                    OsString::from_vec(bytes[..eq].to_vec()),
                    OsString::from_vec(bytes[eq + 1..].to_vec()),
                ))
            })
            .collect();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
            .map_err(|e| format!("cannot read the working directory of jwd {pid}: {e}"))?;
        Ok(Jwd {
            pid,
            argv,
            env,
            cwd,
            child: None,
        })
    }

    /// The value of `--flag` on jwd's command line (`--flag value` or
    /// `--flag=value`).
    pub(crate) fn flag(&self, flag: &str) -> Option<String> {
        let args: Vec<String> = self
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let prefix = format!("{flag}=");
        args.iter().enumerate().find_map(|(i, a)| {
            if a == flag {
                args.get(i + 1).cloned()
            } else {
                a.strip_prefix(&prefix).map(str::to_string)
            }
        })
    }

    /// jwd's `--data-dir` (relative paths taken from its working directory).
    pub(crate) fn data_dir(&self) -> PathBuf {
        let dir = PathBuf::from(self.flag("--data-dir").unwrap_or("/var/lib/jw".into()));
        self.cwd.join(dir)
    }

    /// Kills this jwd with SIGKILL, waits until it is gone, and starts the
    /// same command again with stderr appended to `log`; waits until the new
    /// jwd accepts a client. A new jwd that exits before that is started
    /// again 100 ms later (as a supervisor with Restart=always would), until
    /// `READY_BOUND`; the attempts are counted. `self` then describes the
    /// new jwd.
    pub(crate) async fn restart(
        &mut self,
        opts: &ConnectOptions,
        log: &Path,
    ) -> Result<Restarted, String> {
        let old_pid = self.pid;
        self.kill().await?;
        let log_start = std::fs::metadata(log).map_or(0, |m| m.len());
        let spawned = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.spawn(log)?;
            match self.wait_ready(opts, spawned).await? {
                Some(ready) => {
                    return Ok(Restarted {
                        old_pid,
                        new_pid: self.pid,
                        spawned,
                        ready,
                        attempts,
                        log: log.to_path_buf(),
                        log_start,
                    })
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Starts jwd's command, detached, stderr appended to `log`.
    fn spawn(&mut self, log: &Path) -> Result<(), String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open the jwd log {}: {e}", log.display()))?;
        let program = match Path::new(&self.argv[0]) {
            p if p.is_relative() && p.components().count() > 1 => self.cwd.join(p).into(),
            _ => self.argv[0].clone(),
        };
        let child = Command::new(program)
            .args(&self.argv[1..])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start jwd again ({:?}): {e}", self.argv))?;
        self.pid = child.id();
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, then wait until the process is gone (reaped, or a zombie of
    /// a parent other than this process).
    async fn kill(&mut self) -> Result<(), String> {
        let pid = rustix::process::Pid::from_raw(self.pid as i32)
            .ok_or_else(|| format!("{} is not a pid", self.pid))?;
        rustix::process::kill_process(pid, rustix::process::Signal::KILL)
            .map_err(|e| format!("cannot SIGKILL jwd {}: {e}", self.pid))?;
        let deadline = Instant::now() + GONE_BOUND;
        loop {
            let gone = match self.child.as_mut() {
                Some(child) => child.try_wait().map(|s| s.is_some()).unwrap_or(true),
                None => !alive(self.pid),
            };
            if gone {
                self.child = None;
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "jwd {} is still there {GONE_BOUND:?} after SIGKILL",
                    self.pid
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Connects until a client gets through (10 ms between tries); the time
    /// since `spawned`, or `None` if the new jwd exited first. Fails if it
    /// takes too long.
    async fn wait_ready(
        &mut self,
        opts: &ConnectOptions,
        spawned: Instant,
    ) -> Result<Option<Duration>, String> {
        loop {
            match Client::connect(opts).await {
                Ok(_) => return Ok(Some(spawned.elapsed())),
                Err(e) => {
                    let exited =
                        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(Some(_))));
                    if spawned.elapsed() > READY_BOUND {
                        return Err(format!(
                            "the restarted jwd {} did not accept a client within {READY_BOUND:?} (last: {e}; see the jwd log)",
                            self.pid
                        ));
                    }
                    if exited {
                        self.child = None;
                        return Ok(None);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Whether `pid` is a process that has not exited (zombies count as gone).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// NUL-separated words (/proc/PID/cmdline and environ).
fn split_nul(bytes: &[u8]) -> Vec<OsString> {
    bytes
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| OsString::from_vec(w.to_vec()))
        .collect()
}

/// The text of `path` from byte `start` on (empty if unreadable).
fn read_from(path: &Path, start: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        if f.seek(SeekFrom::Start(start)).is_ok() {
            let mut bytes = Vec::new();
            let _ = f.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

/// The `name=N` field of the new jwd's "job records loaded" log line.
pub(crate) fn loaded_field(log: &str, name: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("job records loaded"))?;
    let key = format!("{name}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&key))
        .and_then(|v| v.parse().ok())
}
