//! Followers resume across a lost connection: `jw logs -f` and `jw run`
//! through a SIGKILL of jwd and a restart on the same data directory,
//! cgroup subtree and port. They must show each byte of the job's output
//! exactly once: what they printed equals `jw logs` of the restarted jwd.
//! Needs root (jobs).

mod common;

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};

use common::{certs, Jwd};

/// One numbered line every 50 ms, for 20 s.
const JOB: &str = "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); sleep 0.05; done";

fn jw_command(addr: &str, args: &[&str]) -> Command {
    let c = certs();
    let mut command = Command::new(env!("CARGO_BIN_EXE_jw"));
    command
        .args(args)
        .env("JW_ADDR", addr)
        .env("JW_CA", c.join("server-ca.crt"))
        .env("JW_CERT", c.join("alice.crt"))
        .env("JW_KEY", c.join("alice.key"))
        .env_remove("JW_RECONNECT_TIMEOUT")
        .stdin(Stdio::null());
    command
}

fn jw(addr: &str, args: &[&str]) -> Output {
    let out = jw_command(addr, args).output().expect("jw runs");
    assert!(
        out.status.success(),
        "jw {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What a process wrote to one pipe so far, and whether the pipe closed.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    closed: bool,
}

type Pipe = Arc<(Mutex<Captured>, Condvar)>;

fn capture(mut from: impl Read + Send + 'static) -> (Pipe, std::thread::JoinHandle<()>) {
    let pipe: Pipe = Arc::default();
    let thread = {
        let pipe = pipe.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = from.read(&mut buf).unwrap_or(0);
                let mut captured = pipe.0.lock().unwrap();
                if n == 0 {
                    captured.closed = true;
                } else {
                    captured.bytes.extend_from_slice(&buf[..n]);
                }
                pipe.1.notify_all();
                if n == 0 {
                    return;
                }
            }
        })
    };
    (pipe, thread)
}

/// Blocks until `text` appears in the pipe; panics if it closes first.
fn wait_for(pipe: &Pipe, what: &str, text: &str) -> String {
    let mut captured = pipe.0.lock().unwrap();
    loop {
        let seen = String::from_utf8_lossy(&captured.bytes).into_owned();
        if seen.contains(text) {
            return seen;
        }
        assert!(
            !captured.closed,
            "{what} ended without printing {text:?}; it printed:\n{seen}"
        );
        captured = pipe.1.wait(captured).unwrap();
    }
}

/// A jw process whose stdout and stderr are read as it runs.
struct Watched {
    child: Child,
    stdout: Pipe,
    stderr: Pipe,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Watched {
    fn spawn(mut command: Command) -> Watched {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("jw starts");
        let (stdout, out_thread) = capture(child.stdout.take().unwrap());
        let (stderr, err_thread) = capture(child.stderr.take().unwrap());
        Watched {
            child,
            stdout,
            stderr,
            threads: vec![out_thread, err_thread],
        }
    }

    /// Waits for the end; its status, stdout and stderr.
    fn finish(mut self) -> (ExitStatus, Vec<u8>, String) {
        let status = self.child.wait().unwrap();
        for thread in self.threads.drain(..) {
            thread.join().unwrap();
        }
        let take = |pipe: &Pipe| std::mem::take(&mut pipe.0.lock().unwrap().bytes);
        let err = String::from_utf8_lossy(&take(&self.stderr)).into_owned();
        (status, take(&self.stdout), err)
    }
}

/// `line-0\n`, `line-1\n`, ... each once, in order, none missing; a last
/// line cut short must be the start of the next one.
fn assert_numbered_once(out: &[u8]) -> usize {
    let text = std::str::from_utf8(out).expect("the job prints text");
    let mut lines = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let want = format!("line-{i}\n");
        if line.ends_with('\n') {
            assert_eq!(line, want, "line {i} of the output:\n{text}");
            lines += 1;
        } else {
            assert!(want.starts_with(line), "last line {line:?}:\n{text}");
        }
    }
    lines
}

/// The shell code `jw run` and `jw wait` give for the job's final status.
fn shell_code_of(addr: &str, id: &str) -> i32 {
    let out = jw(addr, &["status", "--json", id]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let field = |name: &str| info[name].as_i64().map(|v| v as i32);
    i32::from(jw::protocol::shell_code(
        field("exit_code"),
        field("signal"),
    ))
}

/// Kills jwd (SIGKILL) and starts a new one on the same data directory,
/// cgroup subtree and address.
/// Starts `JOB` with `jw start` and follows it with `jw logs -f` (which
/// reconnects for at most `reconnect`) until it has printed `line`.
fn start_and_follow(jwd: &Jwd, reconnect: &str, line: &str) -> (String, Watched) {
    let started = jw(&jwd.addr, &["start", "--", "sh", "-c", JOB]);
    let id = String::from_utf8(started.stdout)
        .unwrap()
        .trim()
        .to_string();
    let follower = Watched::spawn(jw_command(
        &jwd.addr,
        &["--reconnect-timeout", reconnect, "logs", "-f", &id],
    ));
    wait_for(&follower.stdout, "jw logs -f", line);
    (id, follower)
}

fn crash_and_restart(jwd: &mut Jwd) -> Jwd {
    jwd.kill9();
    Jwd::start_on(&jwd.data_dir, &jwd.cgroup_name, &jwd.addr, &[])
}

#[test]
fn logs_follow_resumes_after_jwd_is_killed_and_restarted() {
    let Some((mut jwd, data)) = Jwd::start_kept("resume_logs", &[]) else {
        return;
    };
    let (id, follower) = start_and_follow(&jwd, "10m", "line-5\n");

    let again = crash_and_restart(&mut jwd);
    let (status, out, err) = follower.finish();

    assert!(status.success(), "jw logs -f: {status}\n{err}");
    assert!(
        err.contains(&format!("connection to jwd lost; reconnecting (job {id})")),
        "no reconnect notice on stderr:\n{err}"
    );
    assert!(err.contains("reconnected to jwd"), "{err}");
    assert!(assert_numbered_once(&out) >= 6);
    let logs = jw(&again.addr, &["logs", &id]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&logs.stdout),
        "the follower's output differs from the job's"
    );
    assert_eq!(out, logs.stdout);
    drop(again);
    drop(data);
}

#[test]
fn run_resumes_after_jwd_is_killed_and_restarted() {
    let Some((mut jwd, data)) = Jwd::start_kept("resume_run", &[]) else {
        return;
    };
    let runner = Watched::spawn(jw_command(
        &jwd.addr,
        &["--reconnect-timeout", "10m", "run", "--", "sh", "-c", JOB],
    ));
    wait_for(&runner.stdout, "jw run", "line-5\n");

    let again = crash_and_restart(&mut jwd);
    let notice = "connection to jwd lost; reconnecting (job ";
    // The whole line: stderr is unbuffered, and a line may come in parts.
    wait_for(&runner.stderr, "jw run", notice);
    let err = wait_for(&runner.stderr, "jw run", ") ...\n");
    let id = err[err.find(notice).unwrap() + notice.len()..]
        .split(')')
        .next()
        .unwrap()
        .to_string();
    let (status, out, err) = runner.finish();

    assert!(err.contains("reconnected to jwd"), "{err}");
    assert!(assert_numbered_once(&out) >= 6);
    let logs = jw(&again.addr, &["logs", &id]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&logs.stdout),
        "jw run's output differs from the job's"
    );
    assert_eq!(out, logs.stdout);
    assert_eq!(
        status.code(),
        Some(shell_code_of(&again.addr, &id)),
        "jw run exits with the job's code\n{err}"
    );
    drop(again);
    drop(data);
}

#[test]
fn a_follower_gives_up_after_the_reconnect_timeout_naming_the_job() {
    let Some((mut jwd, data)) = Jwd::start_kept("resume_gives_up", &[]) else {
        return;
    };
    let (id, follower) = start_and_follow(&jwd, "2s", "line-1\n");

    jwd.kill9();
    let (status, out, err) = follower.finish();

    assert!(!status.success(), "jw logs -f without jwd: {status}\n{err}");
    assert!(err.contains("could not reconnect within 2s"), "{err}");
    assert!(
        err.contains(&format!("job {id} may still be running")),
        "{err}"
    );
    assert!(
        err.contains(&format!("read on with `jw logs -f {id}`")),
        "{err}"
    );
    assert_numbered_once(&out);
    // A jwd on the same directory and subtree ends the job and removes
    // the subtree when it is dropped.
    let again = Jwd::start_with(&jwd.data_dir, &jwd.cgroup_name, &[]);
    drop(again);
    drop(data);
}
