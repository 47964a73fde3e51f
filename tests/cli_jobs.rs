//! `jw` and its jobs end to end (protocol 3), through the real jw and jwd
//! binaries: a `jw run` that goes away takes its job with it, exit codes,
//! timeouts, short ids and names, list filters, prune, truncation and
//! errors in the user's units. Needs root (jobs).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::{certs, Jwd};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The most any wait here takes: far past what a slow machine needs, only
/// so that a broken build fails instead of hanging.
const BOUND: Duration = Duration::from_secs(90);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// jw as `user` of the dev PKI, talking to `jwd`.
fn jw_command(jwd: &Jwd, user: &str) -> Command {
    let c = certs();
    let mut command = Command::new(env!("CARGO_BIN_EXE_jw"));
    command
        .env("JW_ADDR", &jwd.addr)
        .env("JW_CA", c.join("server-ca.crt"))
        .env("JW_CERT", c.join(format!("{user}.crt")))
        .env("JW_KEY", c.join(format!("{user}.key")))
        .stdin(Stdio::null());
    command
}

fn jw(jwd: &Jwd, args: &[&str]) -> Output {
    let child = jw_command(jwd, "alice")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jw runs");
    finish(child)
}

/// The child's output once it exits, within `BOUND`.
fn finish(mut child: Child) -> Output {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let status = wait_bounded(&mut child);
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a process did not end within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `jw run -v ...` (or a command that runs one) spawned with stderr
/// piped: the job id it says, and the rest of its stderr collected.
struct Running {
    child: Child,
    id: String,
    stderr: std::thread::JoinHandle<String>,
}

fn spawn_run(mut command: Command) -> Running {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let id = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(id) = line.strip_prefix("jw: job ") {
                    break id.trim().to_string();
                }
            }
            _ => {
                let _ = child.kill();
                panic!("jw run ended without saying the job's id");
            }
        }
    };
    let stderr =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    Running { child, id, stderr }
}

/// The job's status once it has ended (`jw wait`, then `jw status --json`).
fn ended(jwd: &Jwd, id: &str) -> serde_json::Value {
    jw(jwd, &["wait", id]);
    status(jwd, id)
}

fn status(jwd: &Jwd, id: &str) -> serde_json::Value {
    let out = jw(jwd, &["status", "--json", id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn start(jwd: &Jwd, args: &[&str]) -> String {
    let mut all = vec!["start"];
    all.extend(args);
    let out = jw(jwd, &all);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// The job (sleep 1000) ended because it was stopped: by the SIGTERM of
/// the stop. The grace is long (`GRACE`): sleep dies of SIGTERM at once,
/// so it costs no time, and a loaded machine (the end reaching jwd late)
/// cannot turn a stop by SIGTERM into the SIGKILL at the grace's end.
fn assert_stopped(info: &serde_json::Value) {
    assert_eq!(info["state"], "exited", "{info}");
    assert_eq!(info["stopped"], true, "{info}");
    assert_eq!(info["signal"], 15, "{info}");
}

const GRACE: &str = "60s";

/// `jw run` of `sleep 1000` whose job jwd stops once no jw has held it
/// for a second.
fn tied_sleep(jwd: &Jwd) -> Running {
    let mut command = jw_command(jwd, "alice");
    command.args([
        "--reconnect-timeout",
        "1s",
        "run",
        "-v",
        "--grace",
        GRACE,
        "--",
        "sleep",
        "1000",
    ]);
    spawn_run(command)
}

#[test]
fn a_run_that_is_signalled_stops_its_job_and_exits_128_plus_n() {
    let Some(jwd) = Jwd::start("cli_run_signalled", &[]) else {
        return;
    };
    for signal in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGPIPE] {
        let mut command = jw_command(&jwd, "alice");
        command.args(["run", "-v", "--grace", GRACE, "--", "sleep", "1000"]);
        let mut run = spawn_run(command);
        kill(Pid::from_raw(run.child.id() as i32), signal).unwrap();
        let status = wait_bounded(&mut run.child);
        let err = run.stderr.join().unwrap();
        assert_eq!(status.code(), Some(128 + signal as i32), "{signal}: {err}");
        assert_stopped(&ended(&jwd, &run.id));
    }
}

#[test]
fn timeout_of_jw_run_stops_the_job() {
    let Some(jwd) = Jwd::start("cli_run_timeout1", &[]) else {
        return;
    };
    // --foreground: timeout signals jw alone. Without it, it signals jw
    // and then its own process group, jw included: a jw that handled the
    // first SIGTERM before the second came takes the second for "stop it
    // now" (SIGKILL), as a user pressing Ctrl-C twice means (seen once in
    // CI, signal 9 instead of 15).
    let mut command = Command::new("timeout");
    command
        .args(["--foreground", "-s", "TERM", "2", env!("CARGO_BIN_EXE_jw")])
        .args(["run", "-v", "--grace", GRACE, "--", "sleep", "1000"])
        .envs(
            jw_command(&jwd, "alice")
                .get_envs()
                .filter_map(|(k, v)| Some((k, v?))),
        );
    let mut run = spawn_run(command);
    let status = wait_bounded(&mut run.child);
    assert_eq!(status.code(), Some(124), "{}", run.stderr.join().unwrap());
    assert_stopped(&ended(&jwd, &run.id));
}

#[test]
fn a_reader_that_goes_away_ends_the_job() {
    let Some(jwd) = Jwd::start("cli_run_head", &[]) else {
        return;
    };
    let jw = env!("CARGO_BIN_EXE_jw");
    // The job writes once and then nothing (jw notices the closed pipe
    // without a write), or on and on (a write fails with EPIPE).
    for job in [
        "echo a; exec sleep 1000",
        "while :; do echo a; sleep 0.2; done",
    ] {
        let mut command = Command::new("bash");
        command
            .args(["-o", "pipefail", "-c"])
            .arg(format!(
                "{jw} run -v --grace 1s -- sh -c '{job}' | head -c1 >/dev/null"
            ))
            .envs(
                jw_command(&jwd, "alice")
                    .get_envs()
                    .filter_map(|(k, v)| Some((k, v?))),
            );
        let mut run = spawn_run(command);
        let status = wait_bounded(&mut run.child);
        assert_eq!(
            status.code(),
            Some(141),
            "{job}: {}",
            run.stderr.join().unwrap()
        );
        let info = ended(&jwd, &run.id);
        assert_eq!(info["state"], "exited", "{info}");
        assert!(info["signal"].is_number(), "{info}");
    }
}

#[test]
fn a_killed_jw_run_leaves_its_job_to_be_stopped_by_jwd() {
    let Some(jwd) = Jwd::start("cli_run_kill9", &[]) else {
        return;
    };
    let mut run = tied_sleep(&jwd);
    run.child.kill().unwrap();
    wait_bounded(&mut run.child);
    assert_stopped(&ended(&jwd, &run.id));
}

#[test]
fn detach_leaves_the_job_running() {
    let Some(jwd) = Jwd::start("cli_run_detach", &[]) else {
        return;
    };
    let out = jw(&jwd, &["run", "--detach", "--", "sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(status(&jwd, &id)["state"], "running");
    assert!(jw(&jwd, &["stop", "--grace", "0s", &id]).status.success());
}

#[test]
fn exit_codes_say_what_happened() {
    let Some(jwd) = Jwd::start("cli_exit_codes", &[]) else {
        return;
    };
    let cases: &[(&[&str], i32, &str)] = &[
        (&["run", "--memroy", "1G", "--", "true"], 2, "--memroy"),
        (&["run", "--grace", "2h", "--", "true"], 2, "--grace"),
        (&["run", "--", "/no/such"], 127, "/no/such"),
        (&["run", "--", "no-such-command"], 127, "no-such-command"),
        (&["run", "--", "/etc/passwd"], 126, "/etc/passwd"),
        (
            &["run", "--cpu", "1000", "--", "true"],
            1,
            "--cpu 1000: at most",
        ),
    ];
    for (args, code, needle) in cases {
        let out = jw(&jwd, args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = jw(&jwd, &["run", "--timeout", "2s", "--", "sleep", "20"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{err}");
    assert!(err.contains("timed out after 2s"), "{err}");
    // A CA that did not sign jwd's certificate.
    let out = jw_command(&jwd, "alice")
        .env("JW_CA", certs().join("client-ca.crt"))
        .arg("list")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(err.contains("not signed by the CA in --ca"), "{err}");
}

#[test]
fn truncated_output_is_reported() {
    let Some(jwd) = Jwd::start("cli_max_output", &[]) else {
        return;
    };
    let out = jw(
        &jwd,
        &[
            "run",
            "--max-output",
            "1K",
            "--",
            "sh",
            "-c",
            "head -c 10240 /dev/zero | tr '\\0' a",
        ],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(out.stdout.len() <= 1024, "{}", out.stdout.len());
    assert!(err.contains("output truncated: "), "{err}");
    assert!(err.contains("--max-output is 1.0K"), "{err}");
}

#[test]
fn jobs_are_found_by_prefix_and_name() {
    let Some(jwd) = Jwd::start("cli_ids", &[]) else {
        return;
    };
    let named = start(
        &jwd,
        &[
            "--name",
            "build-7",
            "--timeout",
            "10m",
            "--memory",
            "64M",
            "--",
            "sleep",
            "1000",
        ],
    );
    let other = start(&jwd, &["--", "sleep", "1000"]);
    let shown = text(&jw(&jwd, &["status", &named[..8]]).stdout);
    assert!(shown.contains(&named), "{shown}");
    assert!(shown.contains("name:      build-7"), "{shown}");
    assert!(shown.contains("memory 64M"), "{shown}");
    assert!(shown.contains("timeout:   10m"), "{shown}");
    let by_name = status(&jwd, "build-7");
    assert_eq!(by_name["id"], named.as_str());
    // The name is taken while the job exists.
    let out = jw(&jwd, &["start", "--name", "build-7", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&named), "{}", text(&out.stderr));
    // One bad id among good ones: the others are done, and jw says which failed.
    let out = jw(
        &jwd,
        &["stop", "--grace", "0s", &named[..8], "nosuchjob", &other],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nosuchjob"), "{err}");
    assert!(err.contains(&named) && err.contains(&other), "{err}");
    for id in [&named, &other] {
        assert_ne!(status(&jwd, id)["state"], "running");
    }
}

#[test]
fn list_filters_by_state_and_prune_removes_ended_jobs() {
    let Some(jwd) = Jwd::start("cli_list_prune", &[]) else {
        return;
    };
    let running = start(&jwd, &["--", "sleep", "1000"]);
    let done = start(&jwd, &["--", "true"]);
    jw(&jwd, &["wait", &done]);
    let out = jw(&jwd, &["list", "--state", "running", "-q"]);
    assert_eq!(text(&out.stdout), format!("{running}\n"));
    let out = jw(
        &jwd,
        &["list", "--state", "exited,failed", "--state", "lost", "-q"],
    );
    assert_eq!(text(&out.stdout), format!("{done}\n"));
    let table = text(&jw(&jwd, &["list"]).stdout);
    assert!(table.contains("NAME"), "{table}");
    let out = jw(&jwd, &["prune"]);
    assert_eq!(out.status.code(), Some(2), "without -f and a terminal");
    let out = jw(&jwd, &["prune", "-f"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(text(&out.stdout), format!("{done}\n"));
    assert!(err.contains("removed 1 job"), "{err}");
    assert_eq!(status(&jwd, &running)["state"], "running");
    assert!(!jw(&jwd, &["status", &done]).status.success());
    jw(&jwd, &["stop", "--grace", "0s", &running]);
}

#[test]
fn an_ambiguous_prefix_lists_the_jobs_it_matches() {
    let Some(jwd) = Jwd::start("cli_ambiguous", &[]) else {
        return;
    };
    // Jobs until two ids begin with the same 4 hex digits: about 320 are
    // needed on average; 5000 leave no chance of none (e^-190).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = runtime.block_on(async {
        let client = jw::client::Client::connect(&jwd.options("alice"))
            .await
            .unwrap();
        let mut seen = std::collections::HashMap::new();
        for _ in 0..5000 {
            let id = client
                .start(common::start_req("true", &[]))
                .await
                .unwrap()
                .to_string();
            if let Some(first) = seen.insert(id[..4].to_string(), id.clone()) {
                return (first, id);
            }
        }
        panic!("5000 ids and no two begin alike");
    });
    let out = jw(&jwd, &["status", &a[..4]]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&a) && err.contains(&b), "{err}");
    // One more digit (where they differ) finds each.
    let differ = a.chars().zip(b.chars()).position(|(x, y)| x != y).unwrap();
    for id in [&a, &b] {
        let prefix = &id[..(differ + 1).max(4)];
        assert_eq!(status(&jwd, prefix)["id"], id.as_str());
    }
}

#[test]
fn a_run_that_loses_jwd_exits_255_naming_the_job_and_jwd_stops_it_after() {
    let Some((mut jwd, data)) = Jwd::start_kept("cli_run_lost", &[]) else {
        return;
    };
    let mut run = tied_sleep(&jwd);
    jwd.kill9();
    let status = wait_bounded(&mut run.child);
    let err = run.stderr.join().unwrap();
    assert_eq!(status.code(), Some(255), "{err}");
    assert!(
        err.contains(&format!("job {} may still be running", run.id)),
        "{err}"
    );
    // Back on the same data: the job is tied and no jw holds it any more.
    let again = Jwd::start_on(&jwd.data_dir, &jwd.cgroup_name, &jwd.addr, &[]);
    assert_stopped(&ended(&again, &run.id));
    drop(again);
    drop(data);
}
